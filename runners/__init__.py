"""One BentoML GPU service per model family (``yolo``, ``sam3``, ``depth``, ``flow``): models loaded once from
the store, adaptive batching, fp16 on CUDA. Each module has an engine (plain Python, testable without a
server) and the service around it; item types and batch limits are in ``vocab/items.py``."""
