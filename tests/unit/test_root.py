"""The repository's root holds the project's own top-level files only: no answer of a manual run, no scratch
file committed by accident (``walk.json`` once was)."""

from __future__ import annotations

import fnmatch
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ALLOWED = ("LICENSE", "Makefile", "README.md", "bentofile.yaml", "pyproject.toml", "requirements*.txt",
           "requirements*.lock", "service.py", "settings.py")


def stray(names: list[str]) -> list[str]:
    """The root-level names among ``names`` (paths relative to the root) that are not the project's own."""
    return [name for name in names
            if "/" not in name and not name.startswith(".")
            and not any(fnmatch.fnmatchcase(name, pattern) for pattern in ALLOWED)]


def tracked() -> list[str]:
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    result = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, timeout=60, check=True)
    return [name for name in result.stdout.decode().split("\0") if name]


def test_the_root_holds_only_the_projects_own_files():
    assert stray(tracked()) == []


def test_the_rule_sees_a_stray_file():
    names = ["walk.json", "answer.png", ".gitignore", "README.md", "requirements-dev.txt", "requirements.lock",
             "edge/app.py", "docs/walk.json"]
    assert stray(names) == ["walk.json", "answer.png"]
