"""What the task pipeline's outcome is on the wire, for ``/infer`` and for jobs alike: a payload's JSON bytes
(``encode``), and the API error an exception answers as (``as_api_error``; ``failure`` also logs it).

``ApiError`` carries its kind; ``media/``'s own error kinds, a runner that cannot be reached and a service that is
still starting are mapped here; anything else is a 500 whose text carries no internals (the log has them, under
the request id). It sits in ``tasks/`` because these are the exceptions the pipeline raises (``media/``, the
runner clients, BentoML's dependencies) and both its callers sit above it: the HTTP edge (``edge/errors.py`` adds
Starlette's routing errors, 404 and 405) and the jobs executor (``jobs/executor.py``).
"""

from __future__ import annotations

import json
import logging
from typing import Any

import aiohttp
import httpx
from bentoml.exceptions import BentoMLException, ServiceUnavailable

from media.errors import BadMedia, MediaTooLarge
from vocab.errors import INTERNAL_MESSAGE, ApiError, ErrorKind

log = logging.getLogger("perception.http")  # the request log's name, whichever caller answers

# What a call to a runner raises when the runner is down, restarting, shedding load or too slow: a 503.
RUNNER_UNAVAILABLE = (aiohttp.ClientError, httpx.TransportError, ConnectionError, TimeoutError, ServiceUnavailable)
RUNNER_MESSAGE = "the model runner for {task} is unavailable or restarting; retry shortly"
STARTING_MESSAGE = "the service is starting; retry shortly"


def encode(payload: Any) -> bytes:
    """The JSON bytes of every answer: compact, and no NaN or Infinity (not JSON)."""
    return json.dumps(payload, separators=(",", ":"), allow_nan=False).encode()


def as_api_error(exc: BaseException, task: str = "this task") -> ApiError:
    """The API error an exception answers as (the closed set of ``vocab.errors.ErrorKind``)."""
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, BadMedia):
        return ApiError(ErrorKind.BAD_REQUEST, str(exc))
    if isinstance(exc, MediaTooLarge):
        return ApiError(ErrorKind.TOO_LARGE, str(exc))
    if isinstance(exc, RUNNER_UNAVAILABLE):
        return ApiError(ErrorKind.UNAVAILABLE, RUNNER_MESSAGE.format(task=task))
    if isinstance(exc, BentoMLException) and "isn't instantiated" in str(exc):
        return ApiError(ErrorKind.UNAVAILABLE, STARTING_MESSAGE)
    return ApiError(ErrorKind.INTERNAL, INTERNAL_MESSAGE)


def failure(exc: BaseException, request_id: str, task: str = "this task") -> ApiError:
    """``as_api_error``, logged: a 500 with its traceback, an unreachable runner with the exception's type."""
    error = as_api_error(exc, task)
    if error.kind is ErrorKind.INTERNAL:
        log.error("request_id=%s task=%s failed", request_id, task, exc_info=exc)
    elif error.kind is ErrorKind.UNAVAILABLE and not isinstance(exc, ApiError):
        log.warning("request_id=%s runner unreachable: %s", request_id, type(exc).__name__)
    return error
