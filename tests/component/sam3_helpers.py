"""Shared by the SAM 3 engine tests: a reduced placeholder written straight to a folder (no BentoML store)."""

from __future__ import annotations

from pathlib import Path

import pytest


def reduced_placeholder_dir(folder: Path) -> Path:
    """``import_placeholder("sam3", variant="reduced")`` with ``store.save`` writing into ``folder``."""
    from scripts.importers import sam3 as importer

    def write_here(store_name, *, write, **_labels):
        write(folder)
        return f"{store_name}:test"

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(importer.store, "save", write_here)
        importer.import_placeholder("sam3", variant="reduced")
    return folder
