"""The task registry: one literal entry per task, and the only place a task is listed.

Everything else is derived from it: the names ``/infer`` accepts and ``/health`` lists, each task's options
schema, the media it takes, the kind and default of its model, the runner families it calls, and the
playground's task list (which it reads from ``/health``). Adding a task is one entry here plus one module
beside this file (plus a runner in ``runners/`` if it needs a new model family).
"""

from __future__ import annotations

from tasks import depth, detection, sam2, sam3, velocity
from tasks.base import TaskSpec
from vocab.schema import IMAGE, VIDEO, DepthOptions, Sam2Options, Sam3Options, VelocityOptions, YoloOptions

REGISTRY: dict[str, TaskSpec] = {spec.name: spec for spec in (
    TaskSpec("object-detection", "Object detection", accepts=(IMAGE,), model_kind="detect",
             default_model="yolo26n", options=YoloOptions, module=detection, runners=("yolo",)),
    TaskSpec("image-segmentation", "Image segmentation", accepts=(IMAGE,), model_kind="segment",
             default_model="yolo26n-seg", options=YoloOptions, module=detection, runners=("yolo",)),
    TaskSpec("pose-estimation", "Pose estimation", accepts=(IMAGE,), model_kind="pose",
             default_model="yolo26n-pose", options=YoloOptions, module=detection, runners=("yolo",)),
    TaskSpec("sam3-concept-segmentation", "SAM 3 concept segmentation", accepts=(IMAGE, VIDEO), model_kind="sam3",
             default_model="sam3", options=Sam3Options, module=sam3, runners=("sam3",)),
    TaskSpec("depth-estimation", "Depth estimation", accepts=(IMAGE,), model_kind="depth",
             default_model="depth-anything-small", options=DepthOptions, module=depth, runners=("depth",)),
    TaskSpec("velocity-estimation", "Velocity estimation (video)", accepts=(VIDEO,), model_kind=("flow", "detect"),
             default_model=velocity.DEFAULT_FLOW_MODEL, options=VelocityOptions, module=velocity,
             runners=("yolo", "flow")),
    TaskSpec("sam2-segmentation", "SAM 2 segmentation (points, boxes)", accepts=(IMAGE, VIDEO), model_kind="sam2",
             default_model="sam2.1_b", options=Sam2Options, module=sam2, runners=("sam2", "yolo")),
)}

TASKS: tuple[str, ...] = tuple(REGISTRY)
RUNNER_FAMILIES: tuple[str, ...] = tuple(sorted({family for spec in REGISTRY.values() for family in spec.runners}))
DEFAULT_MODELS: tuple[str, ...] = tuple(dict.fromkeys(spec.default_model for spec in REGISTRY.values()))
