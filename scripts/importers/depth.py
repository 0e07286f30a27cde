"""Depth Anything (V1 and V2, small) into the model store, as a Hugging Face ``save_pretrained`` directory.

The store directory holds ``config.json``, the weights and ``preprocessor_config.json``, so both
``DepthAnythingForDepthEstimation.from_pretrained(dir)`` and ``AutoImageProcessor.from_pretrained(dir)``
load it. V1 small (``LiheYoung/depth-anything-small-hf``) and V2 small
(``depth-anything/Depth-Anything-V2-Small-hf``) share the architecture except for which DINOv2 layers feed
the DPT neck: V1 the last four (9-12), V2 every third (3, 6, 9, 12), as in the hub configs.

Every import also stores the network's ONNX export beside it (``model.onnx`` and ``export.json``;
``export_onnx``): ``pixel_values`` (batch, 3, height, width) → ``predicted_depth`` (batch, height, width), fp32,
opset 18, by torch's TorchScript-based exporter; preprocessing and the resize back stay outside, as on torch. The
head's upsampling size is written ``int(patch_height * patch_size)`` in transformers, which tracing turns into
the constant of the example input (every export would answer at that one size); the export traces the same
head without the ``int``, so height and width stay dynamic.
"""

from __future__ import annotations

from pathlib import Path

from models import store
from models.catalog import BY_STORE_NAME, WEIGHTS_PRETRAINED, WEIGHTS_RANDOM
from runners.exported import ONNX_FILE
from scripts.importers.onnx_export import OPSET, resave_with_export, write_record

SEED = 0

# Per store name: the DINOv2 layers the neck reads, and the variant label.
_VARIANTS: dict[str, tuple[list[int], str]] = {
    "depth-anything-small": ([9, 10, 11, 12], "v1-small"),
    "depth-anything-v2-small": ([3, 6, 9, 12], "v2-small"),
}

# preprocessor_config.json of both hub repos: 518 on the side that changes least, aspect kept, both sides
# a multiple of the 14-pixel patch, bicubic, ImageNet mean/std.
PROCESSOR_KWARGS = {
    "do_resize": True,
    "size": {"height": 518, "width": 518},
    "keep_aspect_ratio": True,
    "ensure_multiple_of": 14,
    "resample": 3,  # PIL.Image.BICUBIC
    "do_rescale": True,
    "rescale_factor": 1 / 255,
    "do_normalize": True,
    "image_mean": [0.485, 0.456, 0.406],
    "image_std": [0.229, 0.224, 0.225],
    "do_pad": False,
}


def _variant(store_name: str) -> tuple[list[int], str]:
    if store_name not in _VARIANTS:
        raise KeyError(f"{store_name!r} is not a Depth Anything model in the catalog ({sorted(_VARIANTS)})")
    return _VARIANTS[store_name]


def build_config(store_name: str):
    """The ``DepthAnythingConfig`` of the hub checkpoint: DINOv2-small backbone (384 wide, 12 layers,
    6 heads, patch 14, 518 px), DPT neck 48/96/192/384 → 64, head 32, relative depth."""
    from transformers import DepthAnythingConfig, Dinov2Config

    out_indices, _ = _variant(store_name)
    backbone = Dinov2Config(
        hidden_size=384,
        num_hidden_layers=12,
        num_attention_heads=6,
        mlp_ratio=4,
        image_size=518,
        patch_size=14,
        layerscale_value=1.0,
        out_indices=out_indices,
        apply_layernorm=True,
        reshape_hidden_states=False,
    )
    return DepthAnythingConfig(
        backbone_config=backbone,
        patch_size=14,
        reassemble_hidden_size=384,
        reassemble_factors=[4, 2, 1, 0.5],
        neck_hidden_sizes=[48, 96, 192, 384],
        fusion_hidden_size=64,
        head_in_index=-1,
        head_hidden_size=32,
        depth_estimation_type="relative",
    )


def build_processor():
    from transformers import DPTImageProcessor

    return DPTImageProcessor(**PROCESSOR_KWARGS)


def build_placeholder(store_name: str):
    """A random-init model of the real architecture, the same for the same ``store_name`` every time.

    One adjustment: at this init the head's output is about 1e-5 (subnormal in fp16, where most of its
    digits would be lost), so the last 1x1 convolution is scaled once, on a fixed noise image, to make
    the pre-ReLU output's spread 1. Scaling before a ReLU only rescales the map; it stays random.
    """
    import torch
    from transformers import DepthAnythingForDepthEstimation

    config = build_config(store_name)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(SEED)
        model = DepthAnythingForDepthEstimation(config).eval()
        calibration = torch.randn(1, 3, 14 * 16, 14 * 16, generator=torch.Generator().manual_seed(SEED))
    seen: list[torch.Tensor] = []
    hook = model.head.conv3.register_forward_hook(lambda _m, _i, out: seen.append(out.detach()))
    try:
        with torch.inference_mode():
            model(pixel_values=calibration)
    finally:
        hook.remove()
    spread = float(seen[0].std())
    if spread > 0:
        with torch.no_grad():
            model.head.conv3.weight.mul_(1.0 / spread)
            model.head.conv3.bias.mul_(1.0 / spread)
    return model


EXPORT_SHAPE = (1, 3, 14 * 26, 14 * 37)  # the example input traced: any shape works, its sizes are not kept


def export_onnx(directory: Path, model=None) -> dict:
    """The ONNX export of the model in ``directory`` (or of ``model``, fp32, eval) into ``directory/model.onnx``
    (module doc), and its ``export.json``; returns the record."""
    import torch
    from transformers import DepthAnythingForDepthEstimation

    if model is None:
        model = DepthAnythingForDepthEstimation.from_pretrained(str(directory))
    model = model.float().eval()
    axes = {"pixel_values": {0: "batch", 2: "height", 3: "width"}, "predicted_depth": {0: "batch", 1: "height", 2: "width"}}
    head = model.head
    head.forward = _traceable_head(head)  # on this instance only, removed below
    try:
        with torch.no_grad():
            torch.onnx.export(model, (torch.zeros(EXPORT_SHAPE),), str(directory / ONNX_FILE), input_names=["pixel_values"],
                              output_names=["predicted_depth"], dynamic_axes=axes, opset_version=OPSET, dynamo=False)
    finally:
        del head.forward
    return write_record(directory, exporter=f"torch {torch.__version__} torch.onnx.export (TorchScript-based, dynamo=False)",
                        task="depth", example_input=list(EXPORT_SHAPE), checked=check_export(directory, model),
                        outside_the_graph="DPTImageProcessor before, the bicubic resize to the input's size after")


CHECK_SHAPE = (2, 3, 14 * 8, 14 * 11)  # another batch, height and width than the example's: they must stay dynamic


def check_export(directory: Path, model) -> dict:
    """The export against ``model`` on a fixed noise batch of another shape than the example's: the same output
    shape and a median relative error <= 1 %, or ``RuntimeError`` (nothing is stored). Returns the figures."""
    import numpy as np
    import onnxruntime
    import torch

    pixels = torch.randn(CHECK_SHAPE, generator=torch.Generator().manual_seed(SEED))
    with torch.no_grad():
        expected = model(pixel_values=pixels).predicted_depth.numpy()
    session = onnxruntime.InferenceSession(str(directory / ONNX_FILE), providers=["CPUExecutionProvider"])
    (actual,) = session.run(["predicted_depth"], {"pixel_values": pixels.numpy()})
    if actual.shape != expected.shape:
        raise RuntimeError(f"the ONNX export answers {actual.shape} for {expected.shape}: its sizes are not dynamic")
    floor = 1e-3 * float(np.abs(expected).max())
    errors = np.abs(actual - expected) / np.maximum(np.abs(expected), floor)
    median, p99 = float(np.median(errors)), float(np.percentile(errors, 99))
    if not median <= 0.01:
        raise RuntimeError(f"the ONNX export disagrees with torch: median relative error {median:.4f}")
    return {"input": list(CHECK_SHAPE), "median_relative_error": median, "p99_relative_error": p99}


def _traceable_head(head):
    """``DepthAnythingDepthEstimationHead.forward`` with the upsampling size kept as traced values (no ``int``)."""
    import torch

    def forward(hidden_states, patch_height, patch_width):
        depth = head.conv1(hidden_states[head.head_in_index])
        size = (patch_height * head.patch_size, patch_width * head.patch_size)
        depth = torch.nn.functional.interpolate(depth, size, mode="bilinear", align_corners=True)
        depth = head.conv3(head.activation1(head.conv2(depth)))
        return (head.activation2(depth) * head.max_depth).squeeze(dim=1)

    return forward


def add_export(store_name: str) -> str:
    """Store a new version of an installed depth model with its ONNX export added; returns the tag."""
    return resave_with_export(store.get(store_name), export_onnx)


def _write(model, processor, export: bool = True):
    def write(directory: Path) -> None:
        model.save_pretrained(directory)
        processor.save_pretrained(directory)
        if export:
            export_onnx(directory, model)

    return write


def _save(store_name: str, model, processor, *, weights: str, source: str, export: bool = True) -> str:
    _, variant = _variant(store_name)
    return store.save(
        store_name,
        kind="depth",
        weights=weights,
        source=source,
        variant=variant,
        write=_write(model, processor, export),
        metadata={
            "architecture": type(model).__name__,
            "parameters": sum(p.numel() for p in model.parameters()),
            "out_indices": list(model.config.backbone_config.out_indices),
        },
    )


def import_placeholder(store_name: str, *, export: bool = True, **_opts) -> str:
    """Random-init weights of the real architecture (seeded), saved with the real preprocessing (and the export)."""
    model = build_placeholder(store_name)
    return _save(store_name, model, build_processor(), weights=WEIGHTS_RANDOM, source="random-init (seed 0)",
                 export=export)


def import_pretrained(store_name: str, local_path: str | None = None, *, export: bool = True) -> str:
    """Real weights: from ``local_path`` (a ``save_pretrained`` / hub snapshot directory) if given, else
    from the Hugging Face repo named in the catalog. Everything is loaded before the store is touched; the
    ONNX export is stored with them unless ``export`` is false."""
    from transformers import AutoImageProcessor, DepthAnythingForDepthEstimation

    _variant(store_name)
    repo_id = BY_STORE_NAME[store_name].source.removeprefix("hf:")
    where = local_path or repo_id
    if local_path is not None and not Path(local_path).is_dir():
        raise RuntimeError(f"{local_path} is not a directory holding config.json and the weights")
    try:
        model = DepthAnythingForDepthEstimation.from_pretrained(where)
    except (OSError, ValueError) as exc:
        raise RuntimeError(
            f"cannot load Depth Anything weights from {where!r} ({type(exc).__name__}: {exc}). "
            f"On a machine with internet access run `hf download {repo_id} --local-dir <dir>`, copy <dir> "
            f"here and import it with import_pretrained({store_name!r}, local_path='<dir>')."
        ) from exc
    try:
        processor = AutoImageProcessor.from_pretrained(where)
    except (OSError, ValueError):
        processor = build_processor()  # a bare weights directory: the hub's preprocessing is known
    source = f"file:{local_path}" if local_path else f"hf:{repo_id}"
    return _save(store_name, model, processor, weights=WEIGHTS_PRETRAINED, source=source, export=export)
