"""One ``/infer`` request, from its JSON body to its wire answer, in a straight line.

validate the body → look the task up in the registry → its options → resolve the model and the task's
companions → decode the base64 payload (or take an upload's bytes as they came: ``payload``, from
``edge/uploads.py``) and sniff it → the task module's ``decode`` (thread) → ``run`` (runners) → ``encode``
(thread).
"""

from __future__ import annotations

import asyncio
from typing import Any

from media.decode import decode_base64, sniff
from models.resolve import resolve
from models.store import InstalledModel
from runners.common import Runners
from settings import Settings
from tasks.base import TaskInput, TaskModule, TaskSpec, offload
from tasks.registry import REGISTRY, TASKS
from vocab import progress
from vocab.errors import bad_request, too_large
from vocab.schema import InferRequest, Options, UploadRequest, parse_options, parse_request
from vocab.timing import stage


async def infer(body: Any, runners: Runners, installed: dict[str, InstalledModel], settings: Settings) -> Any:
    spec, task_input = await prepare(body, installed)
    return await run_task(spec.module, task_input, runners, settings)


async def run_task(module: TaskModule, task_input: TaskInput, runners: Runners, settings: Settings) -> Any:
    """A task module's three steps; ``decode`` and ``encode`` in a worker thread, never on the event loop."""
    progress.report("decode")
    with stage("decode"):
        decoded = await within(offload(module.decode, task_input, settings), settings.decode_timeout_s, task_input)
    with stage("runner"):
        raw = await module.run(decoded, task_input, runners)
    progress.report("encode")
    with stage("encode"):
        return await offload(module.encode, raw, decoded, task_input)


async def within(decoding, deadline_s: float, task_input: TaskInput) -> Any:
    """A decode that runs past its deadline answers a 413 instead of holding the request (its worker thread
    cannot be stopped and finishes on its own; the JPEG-scan, pixel and frame budgets keep that bounded)."""
    try:
        return await asyncio.wait_for(decoding, deadline_s)
    except TimeoutError:
        raise too_large(f"decoding the {task_input.media_kind} took longer than {deadline_s:g} s "
                        f"(PERCEPTION_DECODE_TIMEOUT_S): send a smaller file or ask for fewer frames") from None


def validate(body: Any) -> tuple[TaskSpec, InferRequest, Options]:
    """The body's task (from the registry), its fields and the task's options, or a 400 naming what is wrong."""
    task = body.get("task") if isinstance(body, dict) else None
    if not isinstance(task, str) or task not in REGISTRY:
        if not isinstance(body, dict):
            parse_request(body)  # raises the "must be a JSON object" 400
        raise bad_request(f"unknown task {str(task)[:80]!r}; expected one of: {', '.join(TASKS)}")
    spec = REGISTRY[task]
    request = parse_request(body)
    return spec, request, parse_options(spec.options, request.options)


async def prepare(body: Any, installed: dict[str, InstalledModel]) -> tuple[TaskSpec, TaskInput]:
    """The validated request: unknown task, bad fields, options, model and payload errors are 400s (or 413)."""
    spec, request, options = validate(body)
    task = spec.name
    model, models = resolve_models(spec, request.model, options, installed)
    if isinstance(request, UploadRequest):
        data = request.payload
    else:
        with stage("payload"):
            data = await offload(decode_base64, request.payloadBase64)
    media_kind, container = sniff(data)
    if media_kind not in spec.accepts:
        wanted = " or ".join(spec.accepts)
        raise bad_request(f"{task} takes {'an' if wanted[0] in 'aeiou' else 'a'} {wanted}; "
                          f"the payload is {'an' if media_kind == 'image' else 'a'} {media_kind} ({container})")
    return spec, TaskInput(task, data, media_kind, container, options, model, models)


def resolve_models(spec: TaskSpec, name: str | None, options: Options,
                   installed: dict[str, InstalledModel]) -> tuple[InstalledModel, dict[str, InstalledModel]]:
    """The request's ``model`` (or the task's default), and by kind that model and each companion the task needs."""
    model = resolve(name, task=spec.name, kinds=spec.model_kinds, default=spec.default_model, installed=installed)
    models = {model.kind: model}
    for companion in spec.companions:
        if companion.kind in models or (companion.when and not getattr(options, companion.when)()):
            continue
        named = getattr(options, companion.option) if companion.option else None
        models[companion.kind] = resolve(named, task=spec.name, kinds=(companion.kind,),
                                         default=companion.default or named, installed=installed)
    return model, models
