"""The closed set of errors the API answers with: one kind → one status, one body shape.

Every non-2xx answer is ``{"error": "<human-readable text>"}`` (the web client shows ``data.error``).
Code on the request path raises ``ApiError`` (or, in ``media/``, its own error kinds); ``tasks/outcome.py``
is the one place that turns any exception into a status and that body (``edge/errors.py`` adds the routing
errors).
"""

from __future__ import annotations

import enum

MAX_ERROR_CHARS = 1000  # an error's text on the wire, at most


class ErrorKind(enum.Enum):
    BAD_REQUEST = 400
    UNAUTHORIZED = 401
    NOT_FOUND = 404
    METHOD_NOT_ALLOWED = 405
    REQUEST_TIMEOUT = 408
    CONFLICT = 409
    TOO_LARGE = 413
    UNSUPPORTED_MEDIA_TYPE = 415
    UNPROCESSABLE = 422
    TOO_MANY_REQUESTS = 429
    INTERNAL = 500
    UNAVAILABLE = 503

    @property
    def status(self) -> int:
        return self.value


class ApiError(Exception):
    def __init__(self, kind: ErrorKind, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message

    @property
    def status(self) -> int:
        return self.kind.status

    def body(self) -> dict[str, str]:
        """The wire body; its text bounded whatever a message quotes (each quote of input is cut to ~80 characters
        where it is made: this is the net under them)."""
        text = self.message if len(self.message) <= MAX_ERROR_CHARS else self.message[:MAX_ERROR_CHARS - 1] + "…"
        return {"error": text}


def bad_request(message: str) -> ApiError:
    return ApiError(ErrorKind.BAD_REQUEST, message)


def too_large(message: str) -> ApiError:
    return ApiError(ErrorKind.TOO_LARGE, message)


def unsupported_media_type(message: str) -> ApiError:
    return ApiError(ErrorKind.UNSUPPORTED_MEDIA_TYPE, message)


def unavailable(message: str) -> ApiError:
    return ApiError(ErrorKind.UNAVAILABLE, message)


def unauthorized(message: str = "missing or invalid API key (send 'Authorization: Bearer <key>')") -> ApiError:
    return ApiError(ErrorKind.UNAUTHORIZED, message)


INTERNAL_MESSAGE = "internal error while running the model; the request id is in the X-Request-ID header"
