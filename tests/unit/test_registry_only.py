"""``tasks/registry.py`` is the only list of tasks: no other module of the service names a task in its code
(docstrings may), and the playground's page names none either. It builds its task list from ``/health`` and
shows each option field by the options schema ``/openapi.json`` gives a task (``data-options``) or by the model
kinds ``/health`` gives it (``data-kinds``): never ``data-only="<task>"`` nor ``task === "<task>"``."""

from __future__ import annotations

import ast
import re
import sys

from tests.unit.test_layers import ROOT, modules

PAGE_SUFFIXES = (".html", ".js", ".css")
# ``task === "…"``, ``currentTask() !== '…'``, ``"…" == task``: a task told apart by a literal
TASK_COMPARISON = re.compile(r"""task\w*(\(\))?\s*[!=]==?\s*["'`]|["'`]\s*[!=]==?\s*\w*task\b""", re.IGNORECASE)


def code_offenders(tasks) -> list[str]:
    offenders = []
    for path in modules():
        if path == ROOT / "tasks" / "registry.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            body = getattr(node, "body", None)
            docstring = body[0].value if isinstance(body, list) and body and isinstance(body[0], ast.Expr) else None
            for child in ast.iter_child_nodes(node):
                if child is not docstring and isinstance(child, ast.Constant) and child.value in tasks:
                    offenders.append(f"{path.relative_to(ROOT)}:{child.lineno} {child.value}")
    return offenders


def without_comments(text: str) -> str:
    """The page's code: HTML comments and whole-line ``//`` comments blanked (its lines keep their numbers)."""
    text = re.sub(r"<!--.*?-->", lambda m: "\n" * m.group(0).count("\n"), text, flags=re.DOTALL)
    return "\n".join("" if line.lstrip().startswith("//") else line for line in text.splitlines())


def page_offenders(tasks) -> list[str]:
    offenders = []
    for path in sorted((ROOT / "playground").rglob("*")):
        if path.suffix not in PAGE_SUFFIXES:
            continue
        code, where = without_comments(path.read_text()), path.relative_to(ROOT)
        offenders += [f"{where} names {name}" for name in tasks if name in code]
        offenders += [f"{where} has data-only=" for _ in re.finditer(r"\bdata-only\s*=", code)]
        offenders += [f"{where}:{code.count(chr(10), 0, m.start()) + 1} compares a task with a literal"
                      for m in TASK_COMPARISON.finditer(code)]
    return offenders


def test_the_registry_is_the_only_list_of_tasks():
    from tasks.registry import TASKS

    assert code_offenders(TASKS) == []
    assert page_offenders(TASKS) == []


def test_the_rule_sees_a_page_that_lists_tasks(tmp_path, monkeypatch):
    page = tmp_path / "playground"
    page.mkdir()
    (page / "index.html").write_text('<!-- depth-estimation: fine in a comment -->\n'
                                     '<div data-only="depth-estimation" hidden></div>\n<div data-only="x"></div>\n')
    (page / "app.js").write_text('// velocity-estimation: fine in a comment\nif (task === "x") go();\n'
                                 'if (currentTask() !== \'y\') stop();\n')
    (page / "jobs.js").write_text('const tasks = ["velocity-estimation"];\nif (task === SOME) go();\n')
    monkeypatch.setattr(sys.modules["tests.unit.test_layers"], "ROOT", tmp_path)
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    assert page_offenders(("depth-estimation", "velocity-estimation")) == [
        "playground/app.js:2 compares a task with a literal",
        "playground/app.js:3 compares a task with a literal",
        "playground/index.html names depth-estimation",
        "playground/index.html has data-only=",
        "playground/index.html has data-only=",
        "playground/jobs.js names velocity-estimation",
    ]


def test_the_rule_sees_a_module_that_names_a_task(tmp_path, monkeypatch):
    fake = tmp_path / "edge" / "x.py"
    fake.parent.mkdir()
    fake.write_text('"""depth-estimation: fine in a docstring."""\nTASK = "depth-estimation"\n')
    monkeypatch.setattr(sys.modules["tests.unit.test_layers"], "ROOT", tmp_path)
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    assert code_offenders(("depth-estimation",)) == ["edge/x.py:2 depth-estimation"]
