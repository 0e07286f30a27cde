"""The BentoML services: the CPU gateway that owns the wire contract, and the GPU runners it depends on.

A request travels: ``edge/`` (HTTP: body limit, API key, JSON, errors) → ``Gateway.infer`` →
``tasks/infer.py`` (validate, resolve the model, sniff the payload) → ``tasks/<task>.py`` (decode → runner(s)
→ encode) → ``runners/`` (one GPU service per model family). Importing the gateway loads no torch (a test
checks it): decoding and resizing happen here, tensors in the runners. The one exception is velocity's
tracker (ultralytics' trackers import torch, CPU only), loaded on the first velocity request.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time

import bentoml

from edge import app as edge
from models import store
from runners.common import RunnerClient, Runners, client_of, redacted, runner_dependency
from settings import get_settings
from tasks.infer import infer
from tasks.registry import REGISTRY, TASKS
from vocab.families import FAMILIES, KIND_FAMILY

logging.getLogger("perception").setLevel(logging.INFO)  # BentoML's root handler prints them; root stays at WARNING
log = logging.getLogger("perception.gateway")
HEALTH_TTL_S = 5.0


class GatewayCore:
    """What the gateway does, however it is served: BentoML below, or in-process in tests. Each runner family of
    ``vocab/families.py`` is an attribute of that name (a BentoML dependency, local or remote); ``runners`` is what
    the tasks call: each family's typed client around its dependency."""

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

    @functools.cached_property
    def clients(self) -> dict[str, RunnerClient]:
        """Each family's typed client around this gateway's dependency on it."""
        return {name: client_of(family, getattr(self, name), self.settings.runner_url(name))
                for name, family in FAMILIES.items()}

    @functools.cached_property
    def runners(self) -> Runners:
        return Runners(self.clients.values())

    async def infer(self, body):
        return await infer(body, self.runners, self.installed, self.settings)

    async def _runner_status(self, family: str) -> dict | None:
        try:
            return await asyncio.wait_for(self.clients[family].describe(), timeout=2.0)
        except Exception:  # a runner that is down or still starting is reported as not loaded
            return None

    async def health(self) -> dict:
        now = time.monotonic()
        if self._health_cache and now - self._health_cache[0] < HEALTH_TTL_S:
            return self._health_cache[1]
        statuses = dict(zip(FAMILIES, await asyncio.gather(*(self._runner_status(f) for f in FAMILIES)), strict=True))
        models = {task: self._task_health(task, statuses) for task in TASKS}
        devices = sorted({m["device"] for m in models.values() if m["device"]})
        payload = {
            "ok": True,
            "cuda": any(d.startswith("cuda") for d in devices),
            "tasks": list(TASKS),
            "ready": all(m["loaded"] for m in models.values() if m["installed"])
            and all(statuses[f] is not None for f in FAMILIES if self.settings.runner_url(f)),
            "devices": devices,
            "runners": {family: self._runner_health(family, statuses[family]) for family in FAMILIES},
            "placeholders": sorted(name for name, m in self.installed.items() if m.placeholder),
            "models": models,
            "installed": {name: {"kind": m.kind, "weights": m.weights, "tag": m.tag} for name, m in self.installed.items()},
        }
        self._health_cache = (now, payload)
        return payload

    def _runner_health(self, family: str, status: dict | None) -> dict:
        url = self.settings.runner_url(family)
        return {"location": "remote" if url else "local", "url": redacted(url) if url else None,
                "reachable": status is not None, "models": sorted(status or {})}

    def _task_health(self, task: str, statuses: dict[str, dict | None]) -> dict:
        from models.catalog import accepted_names, request_name

        spec = REGISTRY[task]
        entry = self.installed.get(spec.default_model)
        loaded = (statuses.get(KIND_FAMILY[spec.default_kind]) or {}).get(spec.default_model)
        return {
            "model": spec.default_model,
            "request_name": request_name(spec.default_model),
            "names": accepted_names(spec.default_model),
            "title": spec.title,
            "accepts": list(spec.accepts),
            "kind": spec.default_kind,
            "kinds": list(spec.model_kinds),
            "installed": entry is not None,
            "loaded": loaded is not None,
            "weights": entry.weights if entry else None,
            "variant": entry.variant if entry else None,
            "device": loaded["device"] if loaded else None,
            "engine": loaded.get("engine", "torch") if loaded else None,
        }


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


def with_runner_families(cls):
    """One dependency per runner family of ``vocab/families.py``, named after it: local, or, when its
    ``PERCEPTION_RUNNER_URL_<FAMILY>`` is set, the runner served at that URL. (Before ``bentoml.service`` reads the
    class: it collects dependencies from the class's attributes.)"""
    for name, family in FAMILIES.items():
        setattr(cls, name, runner_dependency(family, get_settings().runner_url(name)))
    return cls


@bentoml.service(
    name="perception-gateway",
    workers=get_settings().gateway_workers,
    traffic={"timeout": 600, "max_concurrency": 512},
)
@bentoml.asgi_app(edge.create_app(bentoml.get_current_service), path="/")
@with_runner_families
class Gateway(GatewayCore):
    """The BentoML service: the HTTP app of ``edge/`` over ``GatewayCore``, with a dependency per runner family."""

    def __init__(self) -> None:
        return_large_buffers_to_the_os()
        super().__init__()


for _middleware, _options in edge.middleware(get_settings()):
    Gateway.add_asgi_middleware(_middleware, **_options)
