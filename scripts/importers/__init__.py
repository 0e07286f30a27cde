"""Import tooling: put weights into the model store, real ones (downloaded or a local file) or random-init
placeholders of the real architecture (shaped so offline tests get real outputs). Never loaded while serving,
and not shipped in the Bento (the models are).

One module per runner family, named by its ``importer`` in ``vocab/families.py``; each has
``import_pretrained(store_name, local_path=None)`` and ``import_placeholder(store_name)``."""
