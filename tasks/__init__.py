"""The tasks: ``registry.py`` lists them, ``infer.py`` runs one request, and one module per task (``detection``,
``sam3``, ``sam2``, ``depth``, ``velocity``) does ``decode → run (runner clients) → encode``."""
