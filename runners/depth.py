"""Depth runner: every installed Depth Anything model, one BentoML GPU service.

What comes back is Depth Anything's own output: *relative inverse depth* (affine-invariant disparity), not
metric depth. **Larger values are nearer**. The model's map is >= 0 (its head ends in a ReLU); the
bicubic resize back to the input size can undershoot a little below 0 near sharp edges, as in the HF
pipeline. The scale means nothing across images: a consumer normalises per image (min-max).

Preprocessing is the checkpoint's own ``DPTImageProcessor`` (518 px on the side that changes least,
aspect kept, multiples of 14, bicubic, ImageNet normalisation), run on the model's device. The map is
resized back to the input size the way ``post_process_depth_estimation`` (and so the HF pipeline) does:
bicubic, ``align_corners=False``, in float32.

Batching: images of different aspect ratios become differently shaped tensors after preprocessing.
Padding them to one shape would change the result (a ViT attends over the padding, so every output
pixel would depend on what else was in the batch), so items are grouped by (model, processed shape) and
each group is one forward pass. A request's result never depends on its batch-mates.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from pathlib import Path
from typing import Any

import bentoml
import numpy as np

from models import store
from runners.common import (
    blank_bgr,
    pick_device,
    run_items,
    runner_service,
    should_warm_up,
    use_cpu_budget,
    use_half,
)
from settings import get_settings
from vocab.items import DEPTH_MAX_BATCH, depth_item


class DepthEngine:
    """Loads each depth model once; ``estimate`` runs same-model, same-shape items as one batch."""

    def __init__(self, paths: dict[str, str | Path], tags: dict[str, str] | None = None,
                 device: str | None = None, max_batch: int = DEPTH_MAX_BATCH):
        import torch
        from transformers import AutoImageProcessor, DepthAnythingForDepthEstimation

        self.device = device or pick_device()
        self.half = use_half(self.device)
        self.dtype = torch.float16 if self.half else torch.float32
        self.max_batch = max_batch
        self.tags = tags or {name: name for name in paths}
        self.models: dict[str, Any] = {}
        self.processors: dict[str, Any] = {}
        self._lock = threading.Lock()
        for name, path in paths.items():
            model = DepthAnythingForDepthEstimation.from_pretrained(str(path), dtype=self.dtype)
            self.models[name] = model.to(self.device).eval()
            self.processors[name] = AutoImageProcessor.from_pretrained(str(path))

    @classmethod
    def from_store(cls, device: str | None = None) -> DepthEngine:
        installed = store.of_family("depth")
        return cls({name: m.path for name, m in installed.items()},
                   tags={name: m.tag for name, m in installed.items()}, device=device)

    def describe(self) -> dict[str, dict]:
        return {name: {"tag": self.tags[name], "device": self.device, "half": self.half,
                       "output": "relative inverse depth (larger = nearer)"} for name in self.models}

    def preprocess(self, model: str, image_bgr: np.ndarray):
        """One image → ``pixel_values`` (1, 3, h, w) on the model's device, by the checkpoint's processor."""
        import torch

        _check_image(image_bgr)
        rgb = torch.from_numpy(np.ascontiguousarray(image_bgr[..., ::-1])).permute(2, 0, 1)
        processed = self.processors[model](images=rgb.to(self.device), return_tensors="pt", device=self.device)
        return processed["pixel_values"]

    def estimate(self, items: list[dict]) -> list[dict]:
        """``[{"model", "image": uint8 HxWx3 BGR}]`` → ``[{"depth": float32 HxW}]`` in the input's pixels."""
        import torch

        for item in items:
            if item.get("model") not in self.models:
                raise KeyError(f"depth model {item.get('model')!r} is not loaded (have {sorted(self.models)})")
        with self._lock, torch.inference_mode():
            pixel_values = [self.preprocess(item["model"], item["image"]) for item in items]
            groups: dict[tuple, list[int]] = defaultdict(list)
            for index, (item, pixels) in enumerate(zip(items, pixel_values, strict=True)):
                groups[(item["model"], tuple(pixels.shape[-2:]))].append(index)
            out: list[dict] = [{} for _ in items]
            for (name, _shape), indices in groups.items():
                for start in range(0, len(indices), self.max_batch):
                    chunk = indices[start:start + self.max_batch]
                    batch = torch.cat([pixel_values[i] for i in chunk]).to(self.dtype)
                    predicted = self.models[name](pixel_values=batch).predicted_depth.float()
                    for row, i in enumerate(chunk):
                        height, width = items[i]["image"].shape[:2]
                        out[i] = {"depth": _resize_like_hf(predicted[row], (height, width))}
        return out


def _resize_like_hf(depth, size: tuple[int, int]) -> np.ndarray:
    """``DPTImageProcessor.post_process_depth_estimation``'s resize: bicubic, align_corners=False."""
    import torch

    resized = torch.nn.functional.interpolate(depth[None, None], size=size, mode="bicubic", align_corners=False)
    return resized[0, 0].cpu().numpy().astype(np.float32, copy=False)


def _check_image(image: Any) -> None:
    if not (isinstance(image, np.ndarray) and image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3):
        raise ValueError(f"an image must be uint8 HxWx3 BGR, got {getattr(image, 'dtype', type(image))} "
                         f"{getattr(image, 'shape', '')}")
    if min(image.shape[:2]) < 1:
        raise ValueError(f"empty image {image.shape}")


@runner_service("depth-runner")
class DepthRunner:
    def __init__(self) -> None:
        self.engine = DepthEngine.from_store()
        use_cpu_budget("depth", self.engine.device)
        if should_warm_up(self.engine.device):
            self.engine.estimate([depth_item(name, blank_bgr()) for name in self.engine.models])

    # max_latency_ms is BentoML's cancel threshold (503), not a wait: a batch of 16 takes ~20 ms on an
    # H200 in fp16, so a tight value would turn a burst into 503s. The wait for batch-mates is adaptive.
    @bentoml.api(batchable=True, max_batch_size=DEPTH_MAX_BATCH, max_latency_ms=get_settings().runner_max_latency_ms)
    async def estimate(self, items: list[dict]) -> list[dict]:
        return await run_items(self.engine.estimate, items)

    @bentoml.api
    async def describe(self) -> dict:
        return self.engine.describe()


DepthRunner.models.extend(store.references("depth"))
