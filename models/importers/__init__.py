"""Import tooling: put weights into the model store, real ones (downloaded or a local file) or random-init
placeholders of the real architecture (shaped so offline tests get real outputs). Never loaded while serving,
and not shipped in the Bento (the models are)."""

from models.importers import depth, raft, sam2, sam3, yolo

# Model family (models/catalog.py) → its importer module (``import_pretrained``, ``import_placeholder``).
IMPORTERS = {"yolo": yolo, "sam3": sam3, "sam2": sam2, "depth": depth, "flow": raft}
