"""One BentoML GPU service per model family (``vocab/families.py`` lists them: ``yolo``, ``sam3``, ``sam2``,
``depth``, ``flow``): models loaded once from the store, adaptive batching, fp16 on CUDA. Each module holds the
family's engine (plain Python, testable without a server: a ``common.Engine``), its service (a ``common.Runner``
whose batchable APIs come from the family table) and its client (a ``common.RunnerClient`` with typed methods:
what the tasks call)."""
