"""Flow runner: every installed RAFT model (torchvision), one BentoML GPU service.

An item is a pair of frames of one size; the answer is the flow from ``frame0`` to ``frame1`` in pixels of
those frames: ``flow[y, x] = (dx, dy)`` moves pixel ``(x, y)`` of ``frame0`` to ``(x + dx, y + dy)`` in
``frame1`` (float32 HxWx2). It is RAFT's last refinement (``iters``, default 12, per item).

The gateway sizes the frames: both sides must be multiples of 8 (RAFT works at 1/8 scale) and at least
128 (its correlation pyramid halves the 1/8 map three more times), else ``ValueError``.

Preprocessing is torchvision's ``OpticalFlow`` preset (what ``Raft_Large_Weights.DEFAULT.transforms()``
does): RGB, ``x / 255``, then ``(x - 0.5) / 0.5``, i.e. [-1, 1]. Reproduced here, on the device, so no
weights enum is needed. Pairs of the same model, size and ``iters`` run as one batch; on CUDA under fp16
autocast (RAFT's correlation and GRU are autocast-safe; the output is returned in float32).
"""

from __future__ import annotations

import contextlib
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from nets.raft import WEIGHTS_FILE, build_model, variant_of
from runners.common import Engine, Runner, RunnerClient, blank_bgr, keep_torch_threads, runner_service
from vocab.families import FAMILIES
from vocab.items import RAFT_DEFAULT_ITERS, FlowItem, flow_item

FAMILY = FAMILIES["flow"]
FLOW_API = FAMILY.api("flow")  # its batch limit: tasks chunk their calls by it
MAX_ITERS = 64
MIN_SIDE = 128


class FlowEngine(Engine):
    """Loads each RAFT once; ``flow`` runs same-model, same-size, same-``iters`` pairs as one batch."""

    family = FAMILY.name
    max_batch = FLOW_API.max_batch

    def _load(self, name: str, model_dir: Path) -> Any:
        """``raft.pt`` in ``model_dir``, rebuilt by the constructor of the store's variant (``large`` | ``small``)."""
        import torch

        self.variants[name] = self.variants[name] or variant_of(name)
        model = build_model(self.variants[name])
        model.load_state_dict(torch.load(str(model_dir / WEIGHTS_FILE), map_location="cpu", weights_only=True),
                              strict=True)
        return model.to(self.device).eval()

    def _facts(self, name: str) -> dict:
        return {"variant": self.variants[name], "output": "flow frame0 → frame1, (dx, dy) pixels"}

    def warm_up(self) -> None:
        self.flow([flow_item(name, blank_bgr(360, 640), blank_bgr(360, 640)) for name in self.models])

    def _precision(self):
        import torch

        if self.half:
            return torch.autocast(device_type="cuda", dtype=torch.float16)
        return contextlib.nullcontext()

    def to_input(self, frames_bgr: list[np.ndarray]):
        """uint8 HxWx3 BGR frames → (N, 3, H, W) float32 RGB in [-1, 1] on the device (torchvision's preset)."""
        import torch

        batch = torch.from_numpy(np.stack(frames_bgr)[..., ::-1].copy()).to(self.device)
        batch = batch.permute(0, 3, 1, 2).float().div(255)
        return ((batch - 0.5) / 0.5).contiguous()

    def flow(self, items: list[FlowItem]) -> list[dict]:
        """``[{"model", "frame0", "frame1", "iters"?}]`` → ``[{"flow": float32 HxWx2 (dx, dy)}]``."""
        import torch

        groups: dict[tuple, list[int]] = defaultdict(list)
        for index, item in enumerate(items):
            shape, iters = _check_item(item, self.models)
            groups[(item["model"], shape, iters)].append(index)
        out: list[dict] = [{} for _ in items]
        with torch.inference_mode():
            for (name, _shape, iters), indices in groups.items():
                for start in range(0, len(indices), self.max_batch):
                    chunk = indices[start:start + self.max_batch]
                    image0 = self.to_input([items[i]["frame0"] for i in chunk])
                    image1 = self.to_input([items[i]["frame1"] for i in chunk])
                    with self.locks[name], keep_torch_threads(), self._precision():
                        predictions = self.models[name](image0, image1, num_flow_updates=iters)
                    flow = predictions[-1].float().permute(0, 2, 3, 1).cpu().numpy()
                    for row, i in enumerate(chunk):
                        out[i] = {"flow": np.ascontiguousarray(flow[row], dtype=np.float32)}
        return out


def _check_item(item: dict, models: dict) -> tuple[tuple[int, int], int]:
    name = item.get("model")
    if name not in models:
        raise KeyError(f"flow model {name!r} is not loaded (have {sorted(models)})")
    frames = [item.get("frame0"), item.get("frame1")]
    for frame in frames:
        if not (isinstance(frame, np.ndarray) and frame.dtype == np.uint8 and frame.ndim == 3 and frame.shape[2] == 3):
            raise ValueError(f"frames must be uint8 HxWx3 BGR, got {getattr(frame, 'dtype', type(frame))} "
                             f"{getattr(frame, 'shape', '')}")
    if frames[0].shape != frames[1].shape:
        raise ValueError(f"frame0 and frame1 differ in size: {frames[0].shape} vs {frames[1].shape}")
    height, width = frames[0].shape[:2]
    if height % 8 or width % 8:
        raise ValueError(f"RAFT needs height and width divisible by 8, got {width}x{height}")
    if min(height, width) < MIN_SIDE:
        raise ValueError(f"RAFT needs both sides at least {MIN_SIDE} px, got {width}x{height}")
    iters = item.get("iters", RAFT_DEFAULT_ITERS)
    if isinstance(iters, bool) or not isinstance(iters, int | np.integer) or not 1 <= iters <= MAX_ITERS:
        raise ValueError(f"iters must be an integer in 1..{MAX_ITERS}, got {iters!r}")
    return (height, width), int(iters)


class FlowClient(RunnerClient):
    """The flow runner as tasks call it: frame pairs in, flow fields (float32 HxWx2, dx dy) out."""

    def __init__(self, dependency, remote: bool = False) -> None:
        super().__init__(dependency, remote)
        self._devices: dict[str, str] = {}  # model → the device it runs on (a runner's models never move)

    async def flow(self, items: list[FlowItem]) -> list[np.ndarray]:
        return [np.asarray(answer["flow"], dtype=np.float32) for answer in await self.call("flow", items)]

    async def device(self, model: str) -> str:
        """The device the runner runs ``model`` on (``cpu``, ``cuda:0``), asked once."""
        if model not in self._devices:
            self._devices.update({name: info["device"] for name, info in (await self.describe()).items()})
        return self._devices[model]


# The table's ``flow`` API: max_latency_ms is BentoML's cancel threshold (503), not a wait. A velocity request sends
# ~120 pairs (RAFT large 640x360 fp16: ~46 ms per batch of 8 on an H200), so its bound is twice the others'.
@runner_service(FAMILY)
class FlowRunner(Runner):
    engine_class = FlowEngine
    client = FlowClient
