"""The task registry: one literal entry per task, and the only place a task is listed.

Everything else is derived from it: the names ``/infer`` accepts and ``/health`` lists, each task's options
schema, the media it takes, the kind and default of its model, the runner families it calls, and the
playground's task list (which it reads from ``/health``). Adding a task is one entry here plus one module
beside this file (plus a runner in ``runners/`` if it needs a new model family).
"""

from __future__ import annotations

from tasks import depth, detection, sam2, sam3, velocity
from tasks.base import DETECT, FLOW, Companion, TaskSpec
from vocab.schema import IMAGE, VIDEO, DepthOptions, Sam2Options, Sam3Options, VelocityOptions, YoloOptions

DEFAULT_FLOW_MODEL = "raft-large"
DETECTOR = Companion(DETECT, option="detector")  # the ``detector`` option names it (default: its field's default)

REGISTRY: dict[str, TaskSpec] = {spec.name: spec for spec in (
    TaskSpec("object-detection", "Object detection", accepts=(IMAGE,), model_kinds=(DETECT,),
             default_model="yolo26n", options=YoloOptions, module=detection, live=True),
    TaskSpec("image-segmentation", "Image segmentation", accepts=(IMAGE,), model_kinds=("segment",),
             default_model="yolo26n-seg", options=YoloOptions, module=detection, live=True),
    TaskSpec("pose-estimation", "Pose estimation", accepts=(IMAGE,), model_kinds=("pose",),
             default_model="yolo26n-pose", options=YoloOptions, module=detection, live=True),
    TaskSpec("sam3-concept-segmentation", "SAM 3 concept segmentation", accepts=(IMAGE, VIDEO), model_kinds=("sam3",),
             default_model="sam3", options=Sam3Options, module=sam3),
    TaskSpec("depth-estimation", "Depth estimation", accepts=(IMAGE,), model_kinds=("depth",),
             default_model="depth-anything-small", options=DepthOptions, module=depth, live=True),
    # ``model`` names the flow model or the detector (the later web client sends ``yolo26n.pt``); the other is a
    # companion: the ``detector`` option, or the default flow model
    TaskSpec("velocity-estimation", "Velocity estimation (video)", accepts=(VIDEO,), model_kinds=(FLOW, DETECT),
             default_model=DEFAULT_FLOW_MODEL, options=VelocityOptions, module=velocity,
             companions=(DETECTOR, Companion(FLOW, default=DEFAULT_FLOW_MODEL)), live=True),
    TaskSpec("sam2-segmentation", "SAM 2 segmentation (points, boxes)", accepts=(IMAGE, VIDEO), model_kinds=("sam2",),
             default_model="sam2.1_b", options=Sam2Options, module=sam2,
             companions=(Companion(DETECT, option="detector", when="wants_detector"),)),
)}

TASKS: tuple[str, ...] = tuple(REGISTRY)
LIVE_TASKS: tuple[str, ...] = tuple(name for name, spec in REGISTRY.items() if spec.live)  # GET /stream
DEFAULT_MODELS: tuple[str, ...] = tuple(dict.fromkeys(spec.default_model for spec in REGISTRY.values()))
