"""Shared fixtures, and the tiers. The tests use their own model store of random-init placeholders (built once,
kept in ``.cache/test-store`` between local runs; CI starts from a clean clone), never the user's store.

Tiers, one folder each, marked from the folder (``pytest -m unit`` and so on; markers are strict):
``unit/`` pure functions on small inputs (no model store, no torch model); ``component/`` real engines and
importers on placeholder weights, no server; ``contract/`` the wire contract through the real gateway in
process; ``integration/`` real ``bentoml serve`` processes and the playground in Chromium; ``gpu/`` the same
engines on ``cuda:0`` (skipped without CUDA; run in the lent-GPU check, ``scripts/gpu_check.py``).
"""

from __future__ import annotations

import atexit
import base64
import contextlib
import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

from settings import stay_offline

ROOT = Path(__file__).resolve().parent.parent
MEDIA = (ROOT.parent / "shared" / "media").resolve()

os.environ["BENTOML_HOME"] = os.environ.get("PERCEPTION_TEST_STORE", str(ROOT / ".cache" / "test-store"))
os.environ.setdefault("YOLO_CONFIG_DIR", str(ROOT / ".cache" / "ultralytics"))
stay_offline(override=True)  # no test downloads anything, and the servers the tests start inherit it
os.environ["BENTOML_DO_NOT_TRACK"] = "true"
# The placeholders carry their ONNX exports (the CPU engine) unless PERCEPTION_TEST_EXPORTS=0 (the lent-GPU check:
# the GPU serves on torch, and its image has no onnxslim).
EXPORTS = os.environ.get("PERCEPTION_TEST_EXPORTS", "1") != "0"
KEEP_TMP = os.environ.get("PERCEPTION_KEEP_TEST_TMP") == "1"  # read before the PERCEPTION_ settings are cleared
for name in list(os.environ):
    if name.startswith("PERCEPTION_") and name not in ("PERCEPTION_TEST_STORE", "PERCEPTION_TEST_EXPORTS"):
        del os.environ[name]
# Every tier but tests/gpu/ runs on the CPU, on any host (and the servers it starts inherit this): parity with
# the libraries' CPU fp32 paths holds everywhere. tests/gpu/ puts its engines on cuda:0 itself.
os.environ["PERCEPTION_DEVICE"] = "cpu"
sys.path.insert(0, str(ROOT))

# A private temp dir for this test session (and the servers it starts), so "no temporary file left behind"
# checks see only what this code writes, not other processes on the machine. It holds pytest's tmp_path folders
# too (placeholder checkpoints, model stores: about 3 GB a full run), so it goes when the session ends, or when
# a process that imported this module without a session ends (``scripts/image_test.py``);
# PERCEPTION_KEEP_TEST_TMP=1 keeps it to look at what a failed test wrote.
SESSION_TMP = tempfile.mkdtemp(prefix="perception-tests-")
os.environ["TMPDIR"] = SESSION_TMP
tempfile.tempdir = None
_CREATOR = os.getpid()  # a forked child inherits the exit hook, not the dir


def remove_session_tmp() -> None:
    if os.getpid() != _CREATOR or not os.path.isdir(SESSION_TMP):
        return
    if KEEP_TMP:
        print(f"\nthe test session's temp dir is kept: {SESSION_TMP}")
    else:
        shutil.rmtree(SESSION_TMP, ignore_errors=True)


atexit.register(remove_session_tmp)


def pytest_sessionfinish(session, exitstatus):
    """Session fixtures (the servers) are torn down by now; nothing of this run needs its temp dir any more."""
    remove_session_tmp()


TIERS = ("unit", "component", "contract", "integration", "gpu")


def pytest_collection_modifyitems(config, items):
    for item in items:
        tier = Path(str(item.fspath)).relative_to(ROOT / "tests").parts[0]
        assert tier in TIERS, f"{item.nodeid}: tests live in one of the tier folders {TIERS}"
        item.add_marker(getattr(pytest.mark, tier))


PROCESS_WIDE_CACHES = ("torchinductor_",)  # created once per process by torch, not by a request


def temp_entries() -> set[str]:
    """What this session's temp dir holds, less the per-process caches of libraries."""
    return {n for n in os.listdir(tempfile.gettempdir()) if not n.startswith(PROCESS_WIDE_CACHES)}


def media(name: str) -> Path:
    path = MEDIA / name
    if not path.exists():
        pytest.skip(f"shared media {path} is missing")
    return path


def b64(path_or_bytes) -> str:
    data = path_or_bytes if isinstance(path_or_bytes, bytes) else Path(path_or_bytes).read_bytes()
    return base64.b64encode(data).decode()


@pytest.fixture(scope="session")
def placeholder_store() -> dict:
    """Every default model, and raft-small (velocity by name), as placeholders in the test store (imported
    once; reused when present, with its ONNX export added where it lacks one)."""
    from models import store
    from scripts.import_models import import_one
    from tasks.registry import DEFAULT_MODELS

    installed = store.installed()
    for name in dict.fromkeys([*DEFAULT_MODELS, "raft-small"]):
        if name == "sam3" and name not in installed:  # the CPU-sized variant, on a CUDA host too
            from scripts.importers import sam3

            sam3.import_placeholder("sam3", variant="reduced")
        import_one(name, "random-init", force=False, export=EXPORTS)
    return store.installed()


@pytest.fixture(scope="session")
def gateway(placeholder_store):
    """The real gateway with real runner engines, in this process (BentoML resolves dependencies locally)."""
    import service

    return service.Gateway()


def wrapped(app, settings):
    """``app`` inside the same middleware as a served deployment (``edge.middleware``, which service.py mounts on
    BentoML's app), to serve it without BentoML."""
    from edge.app import middleware

    for cls, options in reversed(middleware(settings)):
        app = cls(app, **options)
    return app


def in_process_client(gateway, settings=None):
    """A test client for the gateway's HTTP app inside the middleware a served deployment wears."""
    from starlette.testclient import TestClient

    from edge.app import create_app
    from settings import get_settings

    settings = settings or get_settings()
    return TestClient(wrapped(create_app(lambda: gateway, settings), settings), raise_server_exceptions=False)


@pytest.fixture(scope="session")
def client(gateway, tmp_path_factory):
    """The in-process client; its jobs go to a store of this session's own (not ``.jobs/`` in the checkout)."""
    from settings import get_settings

    settings = get_settings().model_copy(update={"jobs_dir": str(tmp_path_factory.mktemp("jobs"))})
    with in_process_client(gateway, settings) as test_client:
        yield test_client


@contextlib.contextmanager
def counting_sam3_predictor_builds():
    """Counts ultralytics SAM 3 predictor pairs built while the block runs (none should be, per request)."""
    import runners.sam3 as module

    builds: list[int] = []
    original = module._build_predictors

    def counted(*args, **kwargs):
        builds.append(1)
        return original(*args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(module, "_build_predictors", counted)
        yield builds
