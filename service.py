"""The gateway: one CPU BentoML service that owns the wire contract (``POST /infer``, ``GET /health``).

A request travels: ``api/http.py`` (body limit, API key, JSON) → ``Gateway.infer`` (schema, model lookup,
payload sniffing) → ``tasks/<task>.py`` (decode → runner(s) → encode) → ``runners/`` (GPU services).
Importing the gateway loads no torch (a test checks it): decoding and resizing happen here, tensors in the
runners. The one exception is velocity's tracker (ultralytics' trackers import torch, CPU only), loaded on the
first velocity request.
"""

from __future__ import annotations

import asyncio
import logging
import time

import aiohttp
import bentoml
import httpx
from bentoml.exceptions import ServiceUnavailable

from api import http
from api.errors import bad_request, unavailable
from api.schema import parse_request
from media.decode import decode_base64, sniff
from models import store
from models.catalog import DEFAULT_MODEL, TASK_KIND, TASKS
from models.resolve import resolve
from runners.depth import DepthRunner
from runners.flow import FlowRunner
from runners.sam3 import Sam3Runner
from runners.yolo import YoloRunner
from settings import get_settings
from tasks import HANDLERS
from tasks.base import TaskInput

logging.getLogger("perception").setLevel(logging.INFO)  # BentoML's root handler prints them; root stays at WARNING
log = logging.getLogger("perception.gateway")
RUNNER_OF_KIND = {"detect": "yolo", "segment": "yolo", "pose": "yolo", "sam3": "sam3", "depth": "depth", "flow": "flow"}
HEALTH_TTL_S = 5.0
# What a call to a runner raises when the runner is down, restarting, shedding load or too slow: a 503, not a 500.
RUNNER_UNAVAILABLE = (aiohttp.ClientError, httpx.TransportError, ConnectionError, TimeoutError, ServiceUnavailable)


class _Gateway:
    """Everything the gateway does, independent of how it is served (BentoML below, or in-process tests)."""

    def __init__(self) -> None:
        self.settings = get_settings()
        self.installed = store.installed()  # the store does not change while serving
        placeholders = sorted(name for name, m in self.installed.items() if m.placeholder)
        if placeholders:
            log.warning("RANDOM-INIT PLACEHOLDER WEIGHTS (outputs are meaningless): %s", ", ".join(placeholders))
        if self.settings.weights == "pretrained" and placeholders:
            raise RuntimeError(
                f"PERCEPTION_WEIGHTS=pretrained but these models are random-init placeholders: {placeholders}"
            )
        self._health_cache: tuple[float, dict] | None = None

    async def infer(self, body):
        request, options = parse_request(body)
        model = resolve(request.task, request.model, self.installed)
        handler = HANDLERS.get(request.task)
        if handler is None:
            raise unavailable(f"task {request.task!r} is not available in this version of the service yet")
        data = await asyncio.to_thread(decode_base64, request.payloadBase64)
        media_kind, container = sniff(data)
        if media_kind not in handler.ACCEPTS:
            wanted = " or ".join(handler.ACCEPTS)
            raise bad_request(f"{request.task} takes {'an' if wanted[0] in 'aeiou' else 'a'} {wanted}; "
                              f"the payload is {'an' if media_kind == 'image' else 'a'} {media_kind} ({container})")
        task_input = TaskInput(data, media_kind, container, options, model, self.installed)
        try:
            return await handler.handle(task_input, self, self.settings)
        except RUNNER_UNAVAILABLE as exc:
            log.warning("runner unreachable for %s: %s", request.task, type(exc).__name__)
            raise unavailable(f"the model runner for {request.task} is unavailable or restarting; retry shortly") from None

    async def _runner_status(self, family: str) -> dict | None:
        try:
            return await asyncio.wait_for(getattr(self, family).describe(), timeout=2.0)
        except Exception:  # a runner that is down or still starting is reported as not loaded
            return None

    async def health(self) -> dict:
        now = time.monotonic()
        if self._health_cache and now - self._health_cache[0] < HEALTH_TTL_S:
            return self._health_cache[1]
        families = sorted(set(RUNNER_OF_KIND.values()))
        statuses = dict(zip(families, await asyncio.gather(*(self._runner_status(f) for f in families)), strict=True))
        models = {}
        for task in TASKS:
            name = DEFAULT_MODEL[task]
            entry = self.installed.get(name)
            family = RUNNER_OF_KIND.get(TASK_KIND[task])
            loaded = (statuses.get(family) or {}).get(name) if family else None
            models[task] = {
                "model": name,
                "available": task in HANDLERS,
                "installed": entry is not None,
                "loaded": loaded is not None,
                "weights": entry.weights if entry else None,
                "variant": entry.variant if entry else None,
                "device": loaded["device"] if loaded else None,
            }
        devices = sorted({m["device"] for m in models.values() if m["device"]})
        payload = {
            "ok": True,
            "cuda": any(d.startswith("cuda") for d in devices),
            "tasks": list(TASKS),
            "ready": all(m["loaded"] for m in models.values() if m["installed"] and m["available"]),
            "devices": devices,
            "placeholders": sorted(name for name, m in self.installed.items() if m.placeholder),
            "models": models,
            "installed": {name: {"kind": m.kind, "weights": m.weights, "tag": m.tag} for name, m in self.installed.items()},
        }
        self._health_cache = (now, payload)
        return payload


_app_gateway: _Gateway | None = None


class _Proxy:
    """The Starlette app is built at import time; the gateway instance exists only once BentoML creates it."""

    @property
    def settings(self):
        return get_settings()

    async def infer(self, body):
        return await _require().infer(body)

    async def health(self):
        return await _require().health()


def _require() -> _Gateway:
    if _app_gateway is None:
        raise unavailable("the service is starting")
    return _app_gateway


def return_large_buffers_to_the_os() -> None:
    """Serve every allocation of 128 KiB or more (request bodies, decoded images and video frames, encoded
    answers) from its own mapping, given back to the OS when freed. glibc's default raises that threshold after
    each such free, after which these buffers come from the heap arenas of the gateway's worker threads, and
    fragments pin them: the soak measured the gateway growing ~30 MB a minute that way, and flat with this.
    Gateway only: in the runners' torch (CPU) the same setting cost 40% more latency, and they plateau anyway.
    No-op where the C library is not glibc."""
    import ctypes

    m_mmap_threshold = -3  # <malloc.h>; setting it also turns off glibc's dynamic threshold
    try:
        ctypes.CDLL("libc.so.6").mallopt(m_mmap_threshold, 128 * 1024)
    except (OSError, AttributeError):
        pass


@bentoml.service(
    name="perception-gateway",
    workers=get_settings().gateway_workers,
    traffic={"timeout": 600, "max_concurrency": 512},
)
@bentoml.asgi_app(http.create_app(_Proxy()), path="/")
class Gateway(_Gateway):
    """The BentoML service: the runners it depends on, and the HTTP app above."""

    yolo = bentoml.depends(YoloRunner)
    sam3 = bentoml.depends(Sam3Runner)
    depth = bentoml.depends(DepthRunner)
    flow = bentoml.depends(FlowRunner)

    def __init__(self) -> None:
        global _app_gateway
        return_large_buffers_to_the_os()
        super().__init__()
        _app_gateway = self


Gateway.add_asgi_middleware(http.ApiKeyMiddleware)
