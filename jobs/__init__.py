"""Jobs: ``/infer``'s work run in the background, below the HTTP edge. ``store.py`` is the interface every store
keeps (``sqlite_store.py``, the default; ``redis_store.py``, for gateways on several machines); ``executor.py``
claims, runs, heartbeats, cancels and expires them through the task pipeline. ``edge/jobs.py`` is their routes."""
