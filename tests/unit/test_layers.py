"""The layers point one way. Every import of every module of the service, lazy imports inside functions
included, goes to a package strictly below its own:

    service.py                      the BentoML service classes
    edge/                           the HTTP edge
    jobs/                           the job store and the executor that runs jobs through the tasks
    tasks/                          the task registry and one module per task
    runners/                        one GPU service per model family
    models/, media/                 the model store and catalog; bytes in and out (side by side)
    nets/                           architectures the importers and the runners both build
    settings.py                     configuration: imports only vocab/ (its runner URLs come from the families)
    vocab/                          wire vocabulary and the family table: imports nothing of ours

And no module imports itself again through others: the modules' import graph (inside a package and across
packages, lazy imports included) has no cycle.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
RANK = {"service": 0, "edge": 1, "jobs": 2, "tasks": 3, "runners": 4, "models": 5, "media": 5, "nets": 6,
        "settings": 6, "vocab": 7}
NOT_SERVICE_CODE = {"tests", "scripts", "perception_client"}  # above every layer (perception_client: the client
# package in client/, a user of the HTTP API); nothing of the service may import them
REQUEST_PATH = ("service.py", "edge", "jobs", "tasks", "runners", "media", "vocab", "models/catalog.py",
                "models/resolve.py", "models/store.py")
MAX_FUNCTION_LINES = 45


def modules() -> list[Path]:
    files = [p for p in (ROOT / "service.py", ROOT / "settings.py") if p.exists()]
    for package in RANK:
        if (ROOT / package).is_dir():
            files += sorted((ROOT / package).rglob("*.py"))
    return files


def imports(path: Path) -> list[tuple[int, str]]:
    """(line, top-level package) of every absolute import in the file, wherever it stands."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name.split(".")[0]) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path}:{node.lineno}: relative import; write the package's name"
            found.append((node.lineno, node.module.split(".")[0]))
    return found


def layer_of(path: Path) -> str:
    rel = path.relative_to(ROOT)
    return rel.parts[0] if len(rel.parts) > 1 else rel.stem


def violations() -> list[str]:
    out = []
    for path in modules():
        own = layer_of(path)
        for line, target in imports(path):
            if target == own:
                continue
            if target in NOT_SERVICE_CODE or (target in RANK and RANK[target] <= RANK[own]):
                out.append(f"{path.relative_to(ROOT)}:{line} ({own}) imports {target}")
    return out


def test_every_import_points_down():
    assert violations() == []


def test_the_rule_sees_lazy_imports(tmp_path, monkeypatch):
    fake = tmp_path / "vocab" / "x.py"
    fake.parent.mkdir()
    fake.write_text("def f():\n    from tasks.registry import REGISTRY\n    return REGISTRY\n")
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    assert violations() == ["vocab/x.py:2 (vocab) imports tasks"]


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path, ours: set[str]) -> set[str]:
    """The modules of ours the file imports, wherever the import stands: ``from a.b import c`` is module
    ``a.b.c`` when there is one, else ``a.b``; ``import a.b`` is ``a.b``."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            found |= {f"{node.module}.{alias.name}" if f"{node.module}.{alias.name}" in ours else node.module
                      for alias in node.names}
    return found & ours


def import_cycles() -> list[list[str]]:
    """Every cycle of the modules' import graph, as its strongly connected component (Tarjan), sorted."""
    paths = {module_name(p): p for p in modules()}
    graph = {name: sorted(imported_modules(path, set(paths))) for name, path in paths.items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in graph[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1 or node in graph[node]:
                cycles.append(sorted(component))

    for name in sorted(graph):
        if name not in index:
            visit(name)
    return sorted(cycles)


def test_no_module_imports_itself_through_others():
    assert import_cycles() == []


def test_the_cycle_check_sees_lazy_imports_and_package_inits(tmp_path, monkeypatch):
    (tmp_path / "jobs").mkdir()
    (tmp_path / "tasks").mkdir()
    (tmp_path / "jobs" / "__init__.py").write_text("")
    (tmp_path / "jobs" / "a.py").write_text("from jobs.b import f\n")
    (tmp_path / "jobs" / "b.py").write_text("def f():\n    from jobs import a\n    return a\n")
    (tmp_path / "tasks" / "__init__.py").write_text("from tasks.c import g\n")
    (tmp_path / "tasks" / "c.py").write_text("import tasks\n")
    (tmp_path / "tasks" / "d.py").write_text("import tasks.c\n")  # imports into a cycle, is in none
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    assert import_cycles() == [["jobs.a", "jobs.b"], ["tasks", "tasks.c"]]


@pytest.mark.parametrize("path", [p for p in modules() if str(p.relative_to(ROOT)).startswith(REQUEST_PATH)],
                         ids=lambda p: str(p.relative_to(ROOT)))
def test_request_path_functions_are_short(path):
    long = [f"{node.name}: {node.end_lineno - node.lineno + 1} lines"
            for node in ast.walk(ast.parse(path.read_text()))
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
            and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES]
    assert long == []

