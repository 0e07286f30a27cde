"""The ``flow`` family's importer under its family name (``scripts/import_models.py`` looks importers up
by family); the code lives in ``raft.py``."""

from models.importers.raft import import_placeholder, import_pretrained

__all__ = ["import_placeholder", "import_pretrained"]
