"""The plain path a notebook-style backend takes, per task: the library called per request, sequentially,
on the same weights as the service (read from the same model store). Used by ``bench.py --baseline``.

Each entry: ``make(media_path, options) -> call`` where ``call()`` handles one request end to end
(decode the file's bytes, run, produce plain results), nothing cached between calls but the loaded model
(what even a naive backend keeps), unless the naive path is to rebuild it (SAM 3's predictor).
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np


def _decode(path: Path) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(path.read_bytes())).convert("RGB"))[:, :, ::-1].copy()


def yolo(store_name: str):
    def make(path: Path, options: dict):
        from ultralytics import YOLO

        from models import store
        from runners.common import keep_torch_threads, pick_device

        device = pick_device()
        model = YOLO(str(store.get(store_name).path / "model.pt"))

        def call():
            with keep_torch_threads():
                result = model.predict(_decode(path), conf=0.25, device=device, verbose=False)[0]
            return result.boxes.xyxy.cpu().numpy()

        return call

    return make


BASELINES = {
    "object-detection": yolo("yolo26n"),
    "image-segmentation": yolo("yolo26n-seg"),
    "pose-estimation": yolo("yolo26n-pose"),
}
