"""The closed set of errors the API answers with: one kind → one status, one body shape.

Every non-2xx answer is ``{"error": "<human-readable text>"}`` (the web client shows ``data.error``).
Code anywhere on the request path raises ``ApiError``; ``service.py`` turns it into a response in one place.
"""

from __future__ import annotations

import enum


class ErrorKind(enum.Enum):
    BAD_REQUEST = 400
    UNAUTHORIZED = 401
    TOO_LARGE = 413
    UNAVAILABLE = 503
    INTERNAL = 500

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
        return {"error": self.message}


def bad_request(message: str) -> ApiError:
    return ApiError(ErrorKind.BAD_REQUEST, message)


def too_large(message: str) -> ApiError:
    return ApiError(ErrorKind.TOO_LARGE, message)


def unavailable(message: str) -> ApiError:
    return ApiError(ErrorKind.UNAVAILABLE, message)


def unauthorized(message: str = "missing or invalid API key (send 'Authorization: Bearer <key>')") -> ApiError:
    return ApiError(ErrorKind.UNAUTHORIZED, message)


INTERNAL_MESSAGE = "internal error while running the model; the request id is in the X-Request-ID header"
