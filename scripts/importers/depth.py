"""Depth Anything (V1 and V2, small) into the model store, as a Hugging Face ``save_pretrained`` directory.

The store directory holds ``config.json``, the weights and ``preprocessor_config.json``, so both
``DepthAnythingForDepthEstimation.from_pretrained(dir)`` and ``AutoImageProcessor.from_pretrained(dir)``
load it. V1 small (``LiheYoung/depth-anything-small-hf``) and V2 small
(``depth-anything/Depth-Anything-V2-Small-hf``) share the architecture except for which DINOv2 layers feed
the DPT neck: V1 the last four (9-12), V2 every third (3, 6, 9, 12), as in the hub configs.
"""

from __future__ import annotations

from pathlib import Path

from models import store
from models.catalog import BY_STORE_NAME, WEIGHTS_PRETRAINED, WEIGHTS_RANDOM

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


def _write(model, processor):
    def write(directory: Path) -> None:
        model.save_pretrained(directory)
        processor.save_pretrained(directory)

    return write


def _save(store_name: str, model, processor, *, weights: str, source: str) -> str:
    _, variant = _variant(store_name)
    return store.save(
        store_name,
        kind="depth",
        weights=weights,
        source=source,
        variant=variant,
        write=_write(model, processor),
        metadata={
            "architecture": type(model).__name__,
            "parameters": sum(p.numel() for p in model.parameters()),
            "out_indices": list(model.config.backbone_config.out_indices),
        },
    )


def import_placeholder(store_name: str, **_opts) -> str:
    """Random-init weights of the real architecture (seeded), saved with the real preprocessing."""
    model = build_placeholder(store_name)
    return _save(store_name, model, build_processor(), weights=WEIGHTS_RANDOM, source="random-init (seed 0)")


def import_pretrained(store_name: str, local_path: str | None = None) -> str:
    """Real weights: from ``local_path`` (a ``save_pretrained`` / hub snapshot directory) if given, else
    from the Hugging Face repo named in the catalog. Everything is loaded before the store is touched."""
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
    return _save(store_name, model, processor, weights=WEIGHTS_PRETRAINED, source=source)
