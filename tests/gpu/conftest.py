"""The GPU tier: skipped where CUDA is not available (every CPU machine, CI included)."""

from __future__ import annotations

import pytest


def pytest_collection_modifyitems(config, items):
    try:
        import torch

        cuda = torch.cuda.is_available()
    except ImportError:
        cuda = False
    if not cuda:
        skip = pytest.mark.skip(reason="needs CUDA (run by scripts/gpu_check.py on a lent GPU)")
        for item in items:
            if "/tests/gpu/" in str(item.fspath):
                item.add_marker(skip)
