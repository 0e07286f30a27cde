"""The HTTP edge: the Starlette app the gateway mounts (routes, body limit, request ids, metrics), the API
key, and the one place every exception becomes a JSON error answer."""
