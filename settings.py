"""All configuration, in one typed place, read once from ``PERCEPTION_*`` environment variables.

Request knobs (thresholds, sizes) belong in the request, not here; this holds what an operator sets.
Every field is documented in the README's configuration table (a test keeps the two in step).
pydantic-settings reads the variables (``PERCEPTION_<FIELD>``, any case); ``load_settings`` turns a bad value
into one readable ``SettingsError`` at start-up.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping, MutableMapping
from typing import Literal

from pydantic import Field, ValidationError, create_model, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from vocab.families import FAMILIES, Family

ENV_PREFIX = "PERCEPTION_"

# Serving never downloads: ultralytics and Hugging Face stay offline. The one list: the runners and the tests apply
# it (``stay_offline``), the gateway script gpu_check.py passes it on; the Makefile's serve targets and
# bentofile.yaml's docker env write it out, and a unit test keeps them equal to it.
OFFLINE_ENV = {"YOLO_OFFLINE": "1", "YOLO_AUTOINSTALL": "0", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


def stay_offline(environ: MutableMapping[str, str] | None = None, *, override: bool = False) -> None:
    """Put ``OFFLINE_ENV`` into ``environ`` (``os.environ``): over what is there with ``override``, else only
    where unset (an operator's own value wins)."""
    environ = os.environ if environ is None else environ
    for name, value in OFFLINE_ENV.items():
        if override:
            environ[name] = value
        else:
            environ.setdefault(name, value)


def runner_url_fields(families: Mapping[str, Family] = FAMILIES) -> type[BaseSettings]:
    """One ``runner_url_<family>`` field (``PERCEPTION_RUNNER_URL_<FAMILY>``) per family of the table."""
    fields = {family.url_setting: (str, Field("", description=f"URL of the {family.name} runner served on its "
                                                              "own (empty: started locally)"))
              for family in families.values()}
    return create_model("RunnerUrls", __base__=BaseSettings, __module__=__name__, **fields)


class Settings(runner_url_fields()):
    """What an operator sets: one field per ``PERCEPTION_<FIELD>`` variable, frozen once read."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, frozen=True)

    max_body_bytes: int = Field(64 * 1024 * 1024, description="largest request body accepted (413 above)")
    body_read_timeout_s: float = Field(
        60.0, description="seconds a request body may take to arrive (408 after): a stalled upload frees its slot"
    )
    decode_timeout_s: float = Field(
        120.0, description="seconds decoding one upload (image, or a video's frames) may take; 413 after"
    )
    max_image_pixels: int = Field(40_000_000, description="largest decoded image, width × height (413 above)")
    max_video_pixels: int = Field(3840 * 2160, description="largest video frame, width × height (413 above)")
    max_video_seconds: float = Field(600.0, description="longest video accepted, by its header (413 above)")
    max_video_frames: int = Field(900, description="hard cap on max_frames a request may ask for")
    max_video_decoded_bytes: int = Field(
        3 * 1024**3, description="decoded frames one video request may hold, frames x width x height x 3 (413 above)"
    )
    max_video_samples: int = Field(
        200_000, description="samples an MP4/MOV index may list, checked before FFmpeg opens it (413 above)"
    )
    max_flow_pixels: int = Field(
        1280 * 720, description="velocity: pixels of one working frame RAFT may take (its memory grows with their square)"
    )
    max_flow_work: int = Field(
        2 * 120 * 640 * 480, description="velocity: working pixels x frame pairs one request may send to RAFT (413 above)"
    )
    max_concepts: int = Field(16, description="most SAM 3 concepts in one prompt (400 above)")
    api_key: str = Field("", description="when set, /infer needs 'Authorization: Bearer <key>'")
    cors_origins: str = Field("", description="comma-separated origins allowed by CORS ('*' for any)")
    runner_max_latency_ms: int = Field(
        30_000, description="a batched runner call waiting longer than this is shed with a 503 (BentoML's max_latency)"
    )
    device: str = Field("", description="runner device: empty picks cuda:0 when visible, else cpu; or e.g. 'cpu'")
    precision: Literal["fp16", "fp32"] = Field("fp16", description="'fp16' (half precision on CUDA) or 'fp32'")
    warmup: Literal["auto", "always", "never"] = Field("auto", description="one inference per model at start-up: 'auto' (on CUDA), 'always', 'never'")
    torch_threads: int = Field(
        0, description="CPU threads per runner process (0: every core; CPU time is shared by priority: see README)"
    )
    runner_threads: str = Field(
        "", description="per-family torch threads, e.g. 'yolo=1,flow=1' (overrides torch_threads for those runners)"
    )
    engine: str = Field(
        "auto", description="how runners run their models: 'auto' (torch on CUDA, the exported ONNX Runtime engine on "
        "a CPU where the model has one), 'torch' or 'onnxruntime'; for every family, or per family, "
        "e.g. 'yolo=onnxruntime,depth=torch'"
    )
    gateway_workers: int = Field(1, description="gateway processes (decode and encode scale with them)")
    weights: Literal["any", "pretrained"] = Field("any", description="'pretrained' refuses to start with random-init placeholders")
    jobs_dir: str = Field(".jobs", description="directory of the SQLite job store (jobs.sqlite3), shared by every gateway worker")
    jobs_redis_url: str = Field("", description="redis://host:port/db: keep jobs in Redis instead (gateways on several machines)")
    jobs_max_running: int = Field(2, ge=1, description="jobs running at once, over all gateway workers")
    jobs_max_queued: int = Field(32, ge=0, description="jobs waiting to run; a submit over it is a 429 with Retry-After")
    jobs_retention_s: float = Field(86_400.0, gt=0, description="a finished job and its result are deleted this long after it ends")
    jobs_max_result_bytes: int = Field(1024 * 1024 * 1024, ge=0, description="results kept on disk at most; the oldest are deleted first")

    def runner_threads_for(self, family: str) -> int:
        """``runner_threads``' count for ``family`` (0: not set)."""
        for part in self.runner_threads.split(","):
            name, _, count = part.partition("=")
            if name.strip() == family:
                return int(count)
        return 0

    def engine_for(self, family: str) -> str:
        """``engine``'s choice for ``family``: a bare value applies to every family, ``family=engine`` to one."""
        chosen = "auto"
        for part in filter(None, (p.strip() for p in self.engine.split(","))):
            name, sep, value = part.partition("=")
            if not sep:
                chosen = name
            elif name.strip() == family:
                return value.strip()
        return chosen

    def runner_url(self, family: str) -> str:
        """The URL of the ``family`` runner when it is served elsewhere; empty when the gateway starts it."""
        return getattr(self, f"runner_url_{family}", "")

    @field_validator("runner_threads")
    @classmethod
    def _threads_map(cls, value: str) -> str:
        for part in filter(None, (p.strip() for p in value.split(","))):
            name, sep, count = part.partition("=")
            if not sep or not name.strip() or not count.strip().isdigit() or int(count) < 1:
                raise ValueError(f"{part!r}: expected family=threads, e.g. 'yolo=1,flow=1'")
        return value


    @field_validator("engine")
    @classmethod
    def _engine_map(cls, value: str) -> str:
        for part in filter(None, (p.strip() for p in value.split(","))):
            name, sep, engine = part.rpartition("=") if "=" in part else ("", "", part)
            if engine.strip() not in ENGINES or (sep and not name.strip()):
                raise ValueError(f"{part!r}: expected one of {', '.join(ENGINES)}, for all or as family=engine")
        return value


ENGINES = ("auto", "torch", "onnxruntime")


class SettingsError(ValueError):
    """A ``PERCEPTION_*`` variable with a value outside its type or its closed set: refused at start-up."""


def _describe(error: ValidationError) -> str:
    parts = []
    for item in error.errors():
        name = f"{ENV_PREFIX}{str(item['loc'][0]).upper()}"
        allowed = (item.get("ctx") or {}).get("expected")
        why = f"allowed values: {allowed}" if allowed else item["msg"]
        parts.append(f"{name}={item.get('input')!r} is not valid ({why})")
    return "; ".join(parts)


def load_settings() -> Settings:
    """The settings in the environment now; a value outside its type or its closed set is a ``SettingsError``."""
    try:
        return Settings()
    except ValidationError as exc:
        raise SettingsError(_describe(exc)) from None


@functools.lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The settings, read once per process."""
    return load_settings()
