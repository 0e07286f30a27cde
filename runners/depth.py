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

Engines (``runners/exported.py``): a model whose store entry has an ONNX export runs on ONNX Runtime on a CPU host
(``PERCEPTION_ENGINE=auto``): the same processor before and the same resize after, only the network's forward is
the exported graph's (dynamic batch, height and width), in an ONNX Runtime session at the runner's CPU budget.
"""

from __future__ import annotations

import contextlib
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from runners.common import Engine, Runner, RunnerClient, blank_bgr, keep_torch_threads, runner_service
from runners.exported import ONNX_FILE, ONNXRUNTIME, ExportedEngines, Replicas, cpu_session
from vocab.families import FAMILIES
from vocab.items import DepthItem, depth_item

FAMILY = FAMILIES["depth"]


@dataclass(frozen=True)
class _LoadedDepth:
    model: Any  # DepthAnythingForDepthEstimation, on the device, eval; or ``Replicas`` of ONNX Runtime sessions
    processor: Any  # the checkpoint's DPTImageProcessor
    dtype: Any  # torch.float16 on CUDA (fp16), else torch.float32

    def forward(self, pixel_values):
        """``pixel_values`` (N, 3, h, w) → ``predicted_depth`` (N, h, w), float32, on the input's device: on torch
        as one batch; on ONNX Runtime an image alone on every thread, several side by side (``Replicas``)."""
        import torch

        if isinstance(self.model, torch.nn.Module):
            return self.model(pixel_values=pixel_values.to(self.dtype)).predicted_depth.float()

        def run(session, image) -> np.ndarray:
            return session.run(["predicted_depth"], {"pixel_values": image[None]})[0]

        images = list(pixel_values.float().cpu().numpy())
        return torch.from_numpy(np.concatenate(self.model.map(run, images)))


class DepthEngine(ExportedEngines, Engine):
    """Loads each depth model once, on torch or its ONNX export (``engine=``, default ``PERCEPTION_ENGINE``);
    ``estimate`` runs same-model, same-shape items as one batch."""

    family = FAMILY.name
    max_batch = FAMILY.api("estimate").max_batch

    def _load(self, name: str, model_dir: Path) -> Any:
        import torch
        from transformers import AutoImageProcessor, DepthAnythingForDepthEstimation

        processor = AutoImageProcessor.from_pretrained(str(model_dir))
        if self.engine_of(name, model_dir) == ONNXRUNTIME:
            sessions = Replicas(lambda threads: cpu_session(model_dir / ONNX_FILE, threads), self.threads)
            return _LoadedDepth(sessions, processor, torch.float32)
        dtype = torch.float16 if self.half else torch.float32
        model = DepthAnythingForDepthEstimation.from_pretrained(str(model_dir), dtype=dtype)
        return _LoadedDepth(model.to(self.device).eval(), processor, dtype)

    def _facts(self, name: str) -> dict:
        return {"output": "relative inverse depth (larger = nearer)", "engine": self.engines[name]}

    def warm_up(self) -> None:
        self.estimate([depth_item(name, blank_bgr()) for name in self.models])

    def preprocess(self, model: str, image_bgr: np.ndarray):
        """One image → ``pixel_values`` (1, 3, h, w) on the model's device, by the checkpoint's processor."""
        import torch

        _check_image(image_bgr)
        rgb = torch.from_numpy(np.ascontiguousarray(image_bgr[..., ::-1])).permute(2, 0, 1)
        processed = self.models[model].processor(images=rgb.to(self.device), return_tensors="pt", device=self.device)
        return processed["pixel_values"]

    def estimate(self, items: list[DepthItem]) -> list[dict]:
        """``[{"model", "image": uint8 HxWx3 BGR}]`` → ``[{"depth": float32 HxW}]`` in the input's pixels."""
        import torch

        for item in items:
            if item.get("model") not in self.models:
                raise KeyError(f"depth model {item.get('model')!r} is not loaded (have {sorted(self.models)})")
        with torch.inference_mode():
            pixel_values = [self.preprocess(item["model"], item["image"]) for item in items]
            groups: dict[tuple, list[int]] = defaultdict(list)
            for index, (item, pixels) in enumerate(zip(items, pixel_values, strict=True)):
                groups[(item["model"], tuple(pixels.shape[-2:]))].append(index)
            out: list[dict] = [{} for _ in items]
            for (name, _shape), indices in groups.items():
                for start in range(0, len(indices), self.max_batch):
                    chunk = indices[start:start + self.max_batch]
                    loaded = self.models[name]
                    batch = torch.cat([pixel_values[i] for i in chunk])
                    with contextlib.nullcontext() if self.engines[name] == ONNXRUNTIME else self.locks[name], \
                            keep_torch_threads():
                        predicted = loaded.forward(batch)
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


class DepthClient(RunnerClient):
    """The depth runner as tasks call it: images in, relative inverse depth maps (float32 HxW) out."""

    async def estimate(self, items: list[DepthItem]) -> list[np.ndarray]:
        return [np.asarray(answer["depth"], dtype=np.float32) for answer in await self.call("estimate", items)]


# The table's ``estimate`` API (max_latency_ms is BentoML's cancel threshold, 503, not a wait: a batch of 16 takes
# ~20 ms on an H200 in fp16, so a tight value would turn a burst into 503s; the wait for batch-mates is adaptive).
@runner_service(FAMILY)
class DepthRunner(Runner):
    engine_class = DepthEngine
    client = DepthClient
