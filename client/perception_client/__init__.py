"""A Python client for the perception backend: ``Client`` / ``AsyncClient``, typed results, the ``perception``
command line. Uploads are multipart (the file as it is, no base64). See ``client.py`` for the methods."""

from perception_client.client import TASKS, AsyncClient, Client, PerceptionError, Retry
from perception_client.results import (
    AnnotatedVideo,
    DepthResult,
    Detection,
    Sam3Result,
    TrackSpeed,
    VelocityFrame,
    VelocityResult,
)

__all__ = ["TASKS", "AnnotatedVideo", "AsyncClient", "Client", "DepthResult", "Detection", "PerceptionError",
           "Retry", "Sam3Result", "TrackSpeed", "VelocityFrame", "VelocityResult"]
