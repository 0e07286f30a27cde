"""Put YOLO detect / segment / pose models into the store: real checkpoints, or random-init placeholders.

Both are stored the same way, as one ultralytics checkpoint ``model.pt`` that ``ultralytics.YOLO(path)`` loads
and predicts with (task, class names and keypoint shape travel inside it), so the runner never needs to know
which it serves.

A placeholder is the real architecture (built from the ultralytics yaml, e.g. ``yolo26n-seg.yaml``) with
random weights, shaped so that ordinary photos give a handful to a few dozen well-formed results:

1. Residual blocks start as the identity (their last BatchNorm zeroed, the "zero-init residual" trick), and
   the second hidden layer of every head branch becomes a bounded gate (identity conv, BatchNorm weight
   ``-GATE_GAIN``: ``SiLU(-g·x + b)`` of a SiLU output is bounded both ways). A random network amplifies some
   photos far more than others; without these two, the same weights give no detection on one photo and 300
   inverted boxes on the next.
2. BatchNorm statistics are calibrated on the two photos that ship with ultralytics (``bus.jpg``,
   ``zidane.jpg``, in colour and in grey), in eval mode, layer after layer, over all photos together.
3. The head's last convolutions are rescaled per output channel to chosen statistics on those photos: box
   sides ``BOX_SIDE`` ± ``BOX_SIDE_STD`` strides from the anchor (YOLO26 regresses the four sides directly,
   ``reg_max=1``; a positive mean keeps boxes the right way round), class logits of unit spread, mask
   coefficients slightly positive (masks cover part of each box), keypoints near the anchor, mostly visible.
4. One class (0, "person") gets the bias that puts about ``PERSON_ANCHORS`` anchors per calibration photo
   above ``CONF``; every other class sits far below any threshold.

Both branches of the YOLO26 head are shaped: the one-to-many branch (``cv2``/``cv3``, with NMS), which this
ultralytics version (8.4.190) uses by default, and the one-to-one branch (``one2one_*``, NMS-free), which
``predict(..., nms=False)`` selects. Builds run on one CPU thread, the checkpoint carries no date and its
strings are interned, so the same seed gives a byte-identical file (about 6 s per model on a laptop CPU).

Every import also stores ultralytics' ONNX export of the checkpoint beside it (``model.onnx``, with
``export.json``; ``export_onnx``): dynamic batch, height and width, fp32, opset 18, slimmed by onnxslim, the
one-to-many head with NMS left to ``predict`` as on torch. The CPU runner serves it on ONNX Runtime. Dynamic
height and width matter: a fixed 640x640 export makes ``predict`` pad every photo to a square, a different
input from torch's minimal-rectangle letterbox, and on these placeholders a different set of boxes (messi5.jpg at
640: 49 boxes instead of 31, and torch given the same square input gives the same 49).

Counts still depend on the photo and the seed. With seed 0, at conf 0.25: yolo26n and yolo26n-seg give 31 on
messi5.jpg and 21 on basketball1.png, yolo26n-pose 17 and 6; some other seeds give none on the dull grey
basketball1.png. Tests should use seed 0.
"""

from __future__ import annotations

import io
import math
import shutil
import sys
import tempfile
from pathlib import Path

from models import store
from models.catalog import BY_STORE_NAME, WEIGHTS_PRETRAINED, WEIGHTS_RANDOM, store_name_for
from runners.exported import ONNX_FILE
from scripts.importers.onnx_export import OPSET, resave_with_export, write_record

KINDS: tuple[str, ...] = ("detect", "segment", "pose")  # the ultralytics tasks we serve; task name == kind
CHECKPOINT = "model.pt"
IMGSZ = 640

# Placeholder shaping (see the module docstring).
CALIBRATION_PHOTOS = ("bus.jpg", "zidane.jpg")  # in ultralytics/assets, installed with the package
CONF = 0.25  # the score threshold the placeholder is tuned for (ultralytics' default predict conf)
PERSON_ANCHORS = 20  # the aim: anchors per calibration photo above CONF (other photos give more or fewer)
PRE_GAIN = 4.0  # BatchNorm weight of the layer before each gate: pushes it towards on/off
GATE_GAIN, GATE_SHIFT = 10.0, 0.0
BOX_SIDE, BOX_SIDE_STD = 2.5, 0.5  # anchor-to-side distance, in strides
CLASS_LOGIT_STD = 1.0
OTHER_CLASS_BIAS = -12.0  # sigmoid ≈ 6e-6: never above any sensible threshold
MASK_COEF_MEAN, MASK_COEF_STD = 0.1, 1.0
KPT_OFFSET_STD = 0.5  # decoded as (2·y + anchor - 0.5)·stride: ±1 std is ±1 stride around the anchor
KPT_VISIBLE_MEAN, KPT_VISIBLE_STD = 1.5, 1.0  # visibility logit: mostly visible, not all


def import_placeholder(store_name: str, *, config: str | None = None, seed: int = 0, export: bool = True) -> str:
    """Build a random-init YOLO of the real architecture, shape it (module doc), store it with its ONNX export
    (unless ``export`` is false); returns the tag.

    ``config`` is an ultralytics model yaml (default: the catalog's ``extra["config"]``, else
    ``<store_name>.yaml``). The same ``seed`` gives a byte-identical ``model.pt``.
    """
    spec = BY_STORE_NAME.get(store_name)
    config = config or (spec.extra.get("config") if spec else None) or f"{store_name}.yaml"
    model = build_placeholder(config, seed=seed)
    _check_kind(store_name, model.task)
    payload = checkpoint_bytes(model, note=_placeholder_note(config, seed))
    return store.save(
        store_name,
        kind=model.task,
        weights=WEIGHTS_RANDOM,
        source=spec.source if spec else f"ultralytics:{store_name}.pt",
        write=_with_export(lambda d: (d / CHECKPOINT).write_bytes(payload), export),
        metadata={"config": config, "seed": seed, "task": model.task, "classes": len(model.names)},
    )


def placeholder_bytes(config: str, *, seed: int = 0) -> bytes:
    """The ``model.pt`` that ``import_placeholder`` stores for this config and seed."""
    return checkpoint_bytes(build_placeholder(config, seed=seed), note=_placeholder_note(config, seed))


def _placeholder_note(config: str, seed: int) -> str:
    return f"random-init placeholder of {config} (seed {seed}) for offline tests, not a trained model"


def import_pretrained(
    store_name: str | None, local_path: str | None = None, *, weights: str = WEIGHTS_PRETRAINED, export: bool = True
) -> str:
    """Store a real ultralytics YOLO checkpoint (detect, segment or pose); returns the tag.

    With ``local_path`` the file is copied in as is, under ``store_name`` or, when that is empty, under the
    store name its file name maps to (``yolo11s.pt`` → ``yolo11s``). Without it, ultralytics downloads the
    asset (the catalog's source, else ``<store_name>.pt``) into a temporary directory; offline that fails at
    once with a ``RuntimeError`` saying how to import the file by hand. Nothing is stored unless the
    checkpoint loads and its task fits (``ValueError`` otherwise). The ONNX export is stored with it unless
    ``export`` is false.
    """
    if local_path is not None:
        path = Path(local_path)
        if not path.is_file():
            raise FileNotFoundError(f"no such checkpoint: {path}")
        name = store_name or store_name_for(path.name)
        return _store_checkpoint(name, path, weights=weights, source=f"file:{path.name}", export=export)
    if not store_name:
        raise ValueError("a store name is needed when no local file is given")
    spec = BY_STORE_NAME.get(store_name)
    asset = spec.source.split(":", 1)[1] if spec and spec.source.startswith("ultralytics:") else f"{store_name}.pt"
    with tempfile.TemporaryDirectory(prefix="yolo-download-") as tmp:
        path = _download_asset(asset, Path(tmp))
        return _store_checkpoint(store_name, path, weights=weights, source=f"ultralytics:{asset}", export=export)


def add_export(store_name: str) -> str:
    """Store a new version of an installed YOLO model with its ONNX export added (a model imported before exports
    were made at import); returns the tag."""
    return resave_with_export(store.get(store_name), export_onnx)


def export_onnx(directory: Path) -> dict:
    """ultralytics' ONNX export of ``directory/model.pt`` into ``directory/model.onnx`` (module doc), and its
    ``export.json``; returns the record."""
    from ultralytics import YOLO
    from ultralytics import __version__ as ultralytics_version

    yolo = YOLO(str(directory / CHECKPOINT))
    options = {"format": "onnx", "dynamic": True, "simplify": True, "opset": OPSET, "device": "cpu"}
    written = Path(yolo.export(**options, verbose=False))
    if written != directory / ONNX_FILE:
        raise RuntimeError(f"ultralytics wrote its export to {written}, not beside the checkpoint")
    import onnxslim

    return write_record(
        directory, exporter=f"ultralytics {ultralytics_version} YOLO.export", options=options, task=yolo.task,
        head="one-to-many; NMS, masks and keypoints decoded by ultralytics' predict outside the graph",
        letterbox="minimal rectangle (dynamic height and width), as on torch", onnxslim=onnxslim.__version__,
        checked=check_export(directory, yolo.task))


def check_export(directory: Path, task: str) -> dict:
    """The export against the checkpoint on one photo (ultralytics' ``bus.jpg``, imgsz 640, conf 0.25): the same
    count, boxes within 1 px, scores within 0.01, or ``RuntimeError`` (nothing is stored). Returns the figures."""
    import numpy as np
    from ultralytics import YOLO
    from ultralytics.utils import ASSETS

    results = [YOLO(str(directory / f), task=task).predict(str(ASSETS / "bus.jpg"), imgsz=IMGSZ, conf=CONF,
                                                           device="cpu", verbose=False)[0].boxes.data.numpy()
               for f in (CHECKPOINT, ONNX_FILE)]
    torch_boxes, onnx_boxes = results
    if len(torch_boxes) != len(onnx_boxes):
        raise RuntimeError(f"the ONNX export finds {len(onnx_boxes)} boxes on bus.jpg, torch {len(torch_boxes)}")
    box = float(np.abs(onnx_boxes[:, :4] - torch_boxes[:, :4]).max(initial=0))
    score = float(np.abs(onnx_boxes[:, 4] - torch_boxes[:, 4]).max(initial=0))
    if box > 1 or score > 0.01 or not np.array_equal(onnx_boxes[:, 5], torch_boxes[:, 5]):
        raise RuntimeError(f"the ONNX export disagrees with torch on bus.jpg: boxes {box:.3f} px, scores {score:.4f}")
    return {"image": "bus.jpg", "imgsz": IMGSZ, "boxes": len(torch_boxes), "max_box_px": box, "max_score": score}


def _with_export(put, export: bool):
    """A store ``write`` that puts the checkpoint in, then (``export``) its ONNX export beside it."""
    def write(directory: Path) -> None:
        put(directory)
        if export:
            export_onnx(directory)
    return write


def build_placeholder(config: str, *, seed: int = 0):
    """The shaped random-init model: an ultralytics ``DetectionModel`` (or subclass), eval mode, fp32."""
    import torch
    from ultralytics.nn.tasks import (
        DetectionModel,
        PoseModel,
        SegmentationModel,
        guess_model_task,
        yaml_model_load,
    )

    cfg = yaml_model_load(config)
    task = guess_model_task(cfg)
    if task not in KINDS:
        raise ValueError(f"{config} builds a {task!r} model; only {', '.join(KINDS)} are served")
    # The pose yamls say nc: 80, but the real yolo26*-pose checkpoints have one class, person.
    nc = 1 if task == "pose" else cfg["nc"]
    model_class = {"detect": DetectionModel, "segment": SegmentationModel, "pose": PoseModel}[task]

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # CPU float sums depend on how threads split them: one thread, same bytes
    try:
        torch.manual_seed(seed)
        model = model_class(cfg, nc=nc, verbose=False)
        model.names = _class_names(task, nc)
        model.task = task
        model.args = {"task": task, "model": config, "imgsz": IMGSZ, "seed": seed}
        with torch.no_grad():
            _zero_residual_branches(model)
            _gate_head_features(model)
            _calibrate_batchnorm(model, _calibration_images(square=True))
            _shape_head_outputs(model, _calibration_images(square=False))
    finally:
        torch.set_num_threads(threads)
    for p in model.parameters():
        p.requires_grad = False
    return model


def checkpoint_bytes(model, *, note: str = "") -> bytes:
    """The model as an ultralytics checkpoint: the layout ``Model.save`` / ``strip_optimizer`` write, fp16."""
    import copy

    import torch
    from ultralytics import __version__

    model = copy.deepcopy(model).half()
    # Pickle writes a string seen before as a reference to it, so the bytes depend on which equal strings
    # happen to be one object (e.g. a config name that went through a cache). Interning makes them all one.
    for attr in ("yaml", "args", "names", "task"):
        if hasattr(model, attr):
            setattr(model, attr, _interned(getattr(model, attr)))
    ckpt = _interned({
        "date": None,  # a date would make two builds from the same seed differ
        "version": __version__,
        "license": "AGPL-3.0 License (https://ultralytics.com/license)",
        "docs": "https://docs.ultralytics.com",
        "note": note,
        "epoch": -1,
        "best_fitness": None,
        "ema": None,
        "updates": None,
        "optimizer": None,
        "train_args": dict(model.args),
    })
    ckpt["model"] = model
    buffer = io.BytesIO()
    torch.save(ckpt, buffer)
    return buffer.getvalue()


def _interned(value):
    """``value`` with every string in it (through dicts, lists and tuples) replaced by its interned twin."""
    if isinstance(value, str):
        return sys.intern(value)
    if isinstance(value, dict):
        return {_interned(k): _interned(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_interned(v) for v in value)
    return value


# ---------------------------------------------------------------------------------------------- placeholder


def _class_names(task: str, nc: int) -> dict[int, str]:
    if task == "pose":
        return {0: "person"}
    from ultralytics.utils import ROOT, YAML

    names = YAML.load(ROOT / "cfg/datasets/coco.yaml")["names"]
    if len(names) != nc:
        raise ValueError(f"the config has {nc} classes, COCO has {len(names)}")
    return {int(i): str(n) for i, n in names.items()}


def _head_parts(model) -> list[tuple[str, dict]]:
    """``[(prefix, {part: ModuleList over levels})]`` for the one-to-many ("") and one-to-one branches."""
    head = model.model[-1]
    branches = []
    for prefix in ("", "one2one_"):
        if getattr(head, f"{prefix}cv2", None) is None:
            continue
        parts = {"box": getattr(head, f"{prefix}cv2"), "cls": getattr(head, f"{prefix}cv3")}
        if model.task in ("segment", "pose"):
            parts["extra"] = getattr(head, f"{prefix}cv4")  # mask coefficients / keypoint features
        branches.append((prefix, parts))
    return branches


def _last_convs(model) -> list[tuple[str, str, list]]:
    """``[(prefix, part, [last conv per level])]``: the layers whose outputs the head decodes."""
    head = model.model[-1]
    out = []
    for prefix, parts in _head_parts(model):
        for part, levels in parts.items():
            if part == "extra" and model.task == "pose":
                out.append((prefix, "kpt", list(getattr(head, f"{prefix}cv4_kpts"))))
            else:
                out.append((prefix, "mask" if part == "extra" else part, [level[-1] for level in levels]))
    return out


def _zero_residual_branches(model) -> None:
    """Every residual block starts as the identity: its last BatchNorm gets weight and bias 0."""
    from ultralytics.nn.modules.block import Bottleneck, PSABlock

    for m in model.modules():
        if isinstance(m, Bottleneck) and m.add:
            norms = [m.cv2.bn]
        elif isinstance(m, PSABlock) and m.add:
            norms = [m.attn.proj.bn, m.ffn[-1].bn]
        else:
            continue
        for bn in norms:
            bn.weight.data.zero_()
            bn.bias.data.zero_()


def _gate_head_features(model) -> None:
    """Make the second hidden layer of every head branch a bounded gate on the first one's output.

    The gate conv becomes the identity (centre tap) and its BatchNorm weight ``-GATE_GAIN``: its input is a
    SiLU output, bounded below, so ``SiLU(-g·x + b)`` is bounded above and below, and so is everything the
    head computes from it. The layer before gets a high gain, so the gate works as an on/off switch that
    reads the same on a dull photo as on a busy one.
    """
    for _, parts in _head_parts(model):
        for part, levels in parts.items():
            for level in levels:
                # cls levels are ((DWConv, Conv), (DWConv, Conv), Conv2d); the others (Conv, Conv, ...)
                pre, gate = (level[0][1], level[1][0]) if part == "cls" else (level[0], level[1])
                weight = gate.conv.weight.data
                weight.zero_()
                centre = weight.shape[-1] // 2
                for c in range(weight.shape[0]):
                    weight[c, 0 if gate.conv.groups > 1 else c, centre, centre] = 1.0
                gate.bn.weight.data.fill_(-GATE_GAIN)
                gate.bn.bias.data.fill_(GATE_SHIFT)
                pre.bn.weight.data.fill_(PRE_GAIN)


def _calibration_images(*, square: bool):
    """The ultralytics sample photos in colour and in grey, letterboxed as ``predict`` does, RGB 0-1.

    ``square``: one (N, 3, 640, 640) batch; otherwise a list of (1, 3, H, W) tensors at ``predict``'s shapes.
    """
    import cv2
    import numpy as np
    import torch
    from ultralytics.data.augment import LetterBox
    from ultralytics.utils import ASSETS

    letterbox = LetterBox(new_shape=(IMGSZ, IMGSZ), auto=not square, stride=32)
    images = []
    for name in CALIBRATION_PHOTOS:
        bgr = cv2.imread(str(ASSETS / name))
        if bgr is None:
            raise RuntimeError(f"calibration photo {ASSETS / name} is missing from the ultralytics install")
        grey = cv2.cvtColor(cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY), cv2.COLOR_GRAY2BGR)
        for image in (bgr, grey):  # grey too, or grey photos fall outside the calibrated range
            boxed = letterbox(image=image)
            rgb = np.ascontiguousarray(boxed[..., ::-1].transpose(2, 0, 1))
            images.append(torch.from_numpy(rgb).float().div(255).unsqueeze(0))
    return torch.cat(images) if square else images


def _calibrate_batchnorm(model, batch) -> None:
    """Set every BatchNorm's statistics to those of its input over the calibration batch, in eval mode.

    One forward pass does it: a pre-hook sets each layer's statistics just before it runs, from inputs that
    the already calibrated layers upstream produced. The variance is over photos and positions together
    (train mode would use each photo's own, which lets a random network blow some photos up).
    """
    import torch

    def calibrate(module, inputs):
        x = inputs[0]
        module.running_mean.copy_(x.mean(dim=(0, 2, 3)))
        module.running_var.copy_(x.var(dim=(0, 2, 3), unbiased=False))

    norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    hooks = [m.register_forward_pre_hook(calibrate) for m in norms]
    model.eval()
    try:
        model(batch)
    finally:
        for h in hooks:
            h.remove()


def _shape_head_outputs(model, images: list) -> None:
    """Rescale the head's last convolutions to the target statistics, then set the class biases."""
    import torch

    head = model.model[-1]
    groups = _last_convs(model)
    responses = _responses(model, [conv for _, _, convs in groups for conv in convs], images)
    centred: dict[object, list] = {}  # conv -> its centred, rescaled responses per image (class convs only)

    for _, part, convs in groups:
        for conv in convs:
            channels = conv.out_channels
            if part == "box":
                means, stds = [BOX_SIDE] * channels, [BOX_SIDE_STD] * channels
            elif part == "cls":
                means, stds = [0.0] * channels, [CLASS_LOGIT_STD] * channels
            elif part == "mask":
                means, stds = [MASK_COEF_MEAN] * channels, [MASK_COEF_STD] * channels
            else:  # kpt: (x, y[, visibility]) per keypoint
                ndim = head.kpt_shape[1]
                visible = [ndim == 3 and c % ndim == 2 for c in range(channels)]
                means = [KPT_VISIBLE_MEAN if v else 0.0 for v in visible]
                stds = [KPT_VISIBLE_STD if v else KPT_OFFSET_STD for v in visible]
            scale, offset = _set_output_stats(conv, responses[conv], means, stds)
            if part == "cls":
                centred[conv] = [scale.view(-1, 1) * r + offset.view(-1, 1) for r in responses[conv]]

    # One "person" bias per branch, the same at every level.
    threshold = math.log(CONF / (1 - CONF))
    for _, part, convs in groups:
        if part != "cls":
            continue
        person_logits = [torch.cat([centred[conv][n][0] for conv in convs]) for n in range(len(images))]
        person_bias = _best_bias(person_logits, threshold)
        for conv in convs:  # on top of the centring offset _set_output_stats put in the bias
            conv.bias.data.add_(OTHER_CLASS_BIAS)
            conv.bias.data[0] += person_bias - OTHER_CLASS_BIAS

    for attr in ("anchors", "strides", "shape"):  # grid caches from the forward passes above
        head.__dict__.pop(attr, None)


def _responses(model, convs: list, images: list) -> dict[object, list]:
    """Each conv's output without its bias, per image: ``{conv: [tensor (C, H·W) per image]}``."""
    captured: dict[object, list] = {conv: [] for conv in convs}

    def hook(module, inputs, output):
        captured[module].append((output[0] - module.bias.view(-1, 1, 1)).flatten(1).clone())

    hooks = [conv.register_forward_hook(hook) for conv in convs]
    try:
        for x in images:
            model(x)
    finally:
        for h in hooks:
            h.remove()
    return captured


def _set_output_stats(conv, responses: list, means: list[float], stds: list[float]):
    """Scale each output channel of ``conv`` and set its bias so that over ``responses`` it has these stats.

    Returns ``(scale, offset)`` with which a bias-free response ``r`` becomes ``scale·r + offset``, centred.
    """
    import torch

    r = torch.cat(responses, dim=1)  # (C, N)
    mean, std = r.mean(dim=1), r.std(dim=1).clamp_min(1e-6)
    scale = torch.tensor(stds) / std
    conv.weight.data.mul_(scale.view(-1, *([1] * (conv.weight.dim() - 1))))
    conv.bias.data.copy_(torch.tensor(means) - scale * mean)
    return scale, -scale * mean


def _best_bias(logits: list, threshold: float) -> float:
    """The bias that keeps every photo's count of ``logits + bias > threshold`` nearest PERSON_ANCHORS.

    Nearest in log terms, for the worst photo: photos differ, the aim is that none is off by a large factor.
    """
    import torch

    candidates = torch.arange(-20.0, 10.0, 0.01)
    worst = torch.zeros_like(candidates)
    for z in logits:
        counts = (z.view(1, -1) + candidates.view(-1, 1) > threshold).sum(dim=1).float()
        worst = torch.maximum(worst, (torch.log(counts + 0.5) - math.log(PERSON_ANCHORS)).abs())
    return float(candidates[int(worst.argmin())])


# ------------------------------------------------------------------------------------------------ pretrained


def _check_kind(store_name: str, kind: str) -> None:
    if kind not in KINDS:
        raise ValueError(f"{store_name}: a {kind!r} checkpoint; only {', '.join(KINDS)} models can be served")
    spec = BY_STORE_NAME.get(store_name)
    if spec and spec.kind != kind:
        raise ValueError(f"{store_name} must be a {spec.kind} model, this checkpoint is {kind}")


def _store_checkpoint(store_name: str, path: Path, *, weights: str, source: str, export: bool = True) -> str:
    """Load ``path`` once with ultralytics (to learn and check its task), then copy it into the store."""
    from ultralytics import YOLO

    try:
        yolo = YOLO(str(path))
    except Exception as exc:  # ultralytics raises TypeError, RuntimeError, ModuleNotFoundError... by damage
        raise ValueError(f"{path} is not a loadable ultralytics YOLO checkpoint: {exc}") from exc
    kind = yolo.task
    _check_kind(store_name, kind)
    return store.save(
        store_name,
        kind=kind,
        weights=weights,
        source=source,
        write=_with_export(lambda d: shutil.copyfile(path, d / CHECKPOINT), export),
        metadata={"task": kind, "classes": len(yolo.names), "file": path.name},
    )


def _download_asset(asset: str, directory: Path) -> Path:
    """Let ultralytics fetch a release asset into ``directory`` (one retry); ``RuntimeError`` if it cannot."""
    from ultralytics.utils import is_online
    from ultralytics.utils.downloads import GITHUB_ASSETS_NAMES, attempt_download_asset

    how = (
        f"Download {asset} from https://github.com/ultralytics/assets/releases on a machine with internet "
        f"access, copy it here and import it with: python scripts/import_models.py --file path/to/{asset}"
    )
    if asset not in GITHUB_ASSETS_NAMES:
        raise RuntimeError(f"{asset} is not an ultralytics release asset. {how}")
    if not is_online():  # offline, or YOLO_OFFLINE=1: fail now rather than after timeouts and retries
        raise RuntimeError(f"cannot download {asset}: no network. {how}")
    target = directory / asset  # an absolute path: ultralytics would otherwise download into the cwd
    try:
        attempt_download_asset(str(target), retry=1)
    except Exception as exc:
        raise RuntimeError(f"downloading {asset} failed ({exc}). {how}") from exc
    if not target.is_file():
        raise RuntimeError(f"downloading {asset} failed. {how}")
    return target
