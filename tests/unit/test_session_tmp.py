"""A test session leaves no temp dir behind: its private TMPDIR (pytest's tmp_path folders, and whatever the servers
it starts write) goes when the session ends. A full run writes about 3 GB there; kept, a few dozen runs once filled
this machine's disk."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def child_writes_to_tmp(tmp_path):
    """Collected only by the child sessions below (``-o python_functions=child_*``): a test that writes where tests
    write, into its tmp_path and into the session's TMPDIR."""
    (tmp_path / "weights.pt").write_bytes(b"\0" * 1024)
    with open(Path(tempfile.gettempdir()) / "scratch.bin", "wb") as scratch:
        scratch.write(b"\0" * 1024)


def run_child(parent: Path, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-o", "python_functions=child_*",
         str(Path(__file__).relative_to(ROOT))],
        cwd=ROOT, env={**os.environ, "TMPDIR": str(parent), **env}, capture_output=True, text=True, timeout=300)


def test_the_session_temp_dir_goes_when_the_session_ends(tmp_path):
    parent = tmp_path / "gone"
    parent.mkdir()
    child = run_child(parent)
    assert child.returncode == 0 and "1 passed" in child.stdout, child.stdout + child.stderr
    assert list(parent.iterdir()) == []


def test_it_is_kept_when_asked(tmp_path):
    parent = tmp_path / "kept"
    parent.mkdir()
    child = run_child(parent, PERCEPTION_KEEP_TEST_TMP="1")
    assert child.returncode == 0 and "1 passed" in child.stdout, child.stdout + child.stderr
    (kept,) = parent.iterdir()
    assert kept.name.startswith("perception-tests-") and f"temp dir is kept: {kept}" in child.stdout
    assert (kept / "scratch.bin").stat().st_size == 1024
    assert [p.name for p in kept.rglob("weights.pt")] == ["weights.pt"]


def test_a_process_that_imports_the_harness_without_a_session_leaves_nothing(tmp_path):
    """``scripts/image_test.py`` imports ``tests.conftest`` for its store and settings, with no pytest session."""
    parent = tmp_path / "imported"
    parent.mkdir()
    child = subprocess.run([sys.executable, "-c", "import tests.conftest as h, os; print(os.path.isdir(h.SESSION_TMP))"],
                           cwd=ROOT, env={**os.environ, "TMPDIR": str(parent)}, capture_output=True, text=True,
                           timeout=300)
    assert child.returncode == 0 and child.stdout.strip() == "True", child.stdout + child.stderr
    assert list(parent.iterdir()) == []
