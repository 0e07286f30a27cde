"""The competent library path per task, for ``bench.py --baseline``: the model loaded once and called per
request, sequentially, on the same weights (read from the same model store) and at the same precision as the
service (fp16 on CUDA: ultralytics ``half=True``, the depth pipeline in float16, RAFT under autocast).

``BASELINES[task](media_path, options) -> call``: ``call()`` handles one request end to end (decode the file's
bytes, run, produce plain results). ``BATCHED[task](media_path, options) -> call(batch)``: the library's own
batching, ``batch`` copies of the input in one call; ``bench.py`` takes its best throughput over a few batch
sizes as what the library can do on this machine, to compare the service's throughput under load with.
``SEED[task]``: the original backend's path (SAM 3's model and predictor rebuilt per request), a separate row.
"""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import numpy as np


def _decode(path: Path) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(path.read_bytes())).convert("RGB"))[:, :, ::-1].copy()


def _device_and_half() -> tuple[str, bool]:
    from runners.common import pick_device, use_all_cores, use_half

    use_all_cores()  # as the runner process does: same threads on both sides
    device = pick_device()
    return device, use_half(device)


def _yolo_model(store_name: str):
    from ultralytics import YOLO

    from models import store

    return YOLO(str(store.get(store_name).path / "model.pt"))


def _yolo_plain(result) -> list:
    """What the wire needs from the library: boxes, plus outlines (segment) or keypoints (pose)."""
    out = [result.boxes.xyxy.cpu().numpy(), result.boxes.conf.cpu().numpy()]
    if result.masks is not None:
        out.append(result.masks.xy)
    if result.keypoints is not None:
        out.append(result.keypoints.data.cpu().numpy())
    return out


def yolo(store_name: str):
    def make(path: Path, options: dict):
        from runners.common import keep_torch_threads

        device, half = _device_and_half()
        model = _yolo_model(store_name)

        def call():
            with keep_torch_threads():
                result = model.predict(_decode(path), conf=0.25, device=device, half=half, verbose=False)[0]
            return _yolo_plain(result)

        return call

    return make


def yolo_batched(store_name: str):
    def make(path: Path, options: dict):
        from runners.common import keep_torch_threads

        device, half = _device_and_half()
        model = _yolo_model(store_name)

        def call(batch: int):
            images = [_decode(path) for _ in range(batch)]
            with keep_torch_threads():
                results = model.predict(images, conf=0.25, device=device, half=half, batch=batch, verbose=False)
            return [_yolo_plain(r) for r in results]

        return call

    return make


def _depth_pipeline():
    import torch
    from transformers import pipeline

    from models import store

    device, half = _device_and_half()
    return pipeline("depth-estimation", model=str(store.get("depth-anything-small").path), device=device,
                    dtype=torch.float16 if half else torch.float32)


def depth(path: Path, options: dict):
    """transformers' own depth pipeline, loaded once, called per request."""
    from PIL import Image

    estimator = _depth_pipeline()

    def call():
        image = Image.open(io.BytesIO(path.read_bytes())).convert("RGB")
        return np.asarray(estimator(image)["depth"])

    return call


def depth_batched(path: Path, options: dict):
    from PIL import Image

    estimator = _depth_pipeline()

    def call(batch: int):
        images = [Image.open(io.BytesIO(path.read_bytes())).convert("RGB") for _ in range(batch)]
        return [np.asarray(out["depth"]) for out in estimator(images, batch_size=batch)]

    return call


def velocity(path: Path, options: dict):
    """velocity-estimation the sequential way, in one process, on the service's weights: decode, then per frame
    one YOLO ``predict`` (batch 1) and the same ultralytics tracker, per pair one RAFT call (batch 1, under fp16
    autocast on CUDA, 12 iterations unless ``raft_iters`` says otherwise), then the same arithmetic, drawing and
    H.264 encode."""
    import cv2
    import torch

    from media.video import decode_video
    from models import store
    from models.catalog import store_name_for
    from nets.raft import WEIGHTS_FILE, build_model
    from runners.common import keep_torch_threads
    from runners.yolo import to_arrays
    from tasks import velocity as task
    from vocab.detections import Detections
    from vocab.items import yolo_imgsz
    from vocab.schema import VelocityOptions

    opts = VelocityOptions(**options)
    device, half = _device_and_half()
    detector = _yolo_model(store_name_for(opts.detector))
    flow_entry = store.get(options.get("flow_model", "raft-large"))
    raft = build_model(flow_entry.variant)
    raft.load_state_dict(torch.load(str(flow_entry.path / WEIGHTS_FILE), map_location="cpu", weights_only=True))
    raft = raft.to(device).eval()
    precision = torch.autocast("cuda", dtype=torch.float16) if half else contextlib.nullcontext()

    def to_input(bgr: np.ndarray):
        tensor = torch.from_numpy(bgr[..., ::-1].copy()).permute(2, 0, 1)[None].float().div(255).to(device)
        return (tensor - 0.5) / 0.5

    def call():
        video = decode_video(path.read_bytes(), max_frames=opts.max_frames, max_pixels=10**9,
                             max_duration_s=1e9, min_frames=2)
        working_wh = task.working_size_wh((video.width, video.height), opts.imgsz)
        scale_xy = (video.width / working_wh[0], video.height / working_wh[1])
        working = [cv2.resize(f, working_wh, interpolation=cv2.INTER_AREA) for f in video.frames]
        detections = []
        for frame in working:
            with keep_torch_threads():
                result = detector.predict(frame, imgsz=yolo_imgsz(max(working_wh)), conf=opts.threshold,
                                          device=device, half=half, verbose=False)[0]
            detections.append(Detections.from_arrays(to_arrays(result)).rescaled(*scale_xy, (video.width, video.height)))
        tracks = task.track_frames(detections, video.frames, opts.tracker)
        flows_px = []
        with torch.inference_mode(), precision:
            for i in range(min(opts.max_pairs, len(working) - 1)):
                flow = raft(to_input(working[i]), to_input(working[i + 1]), num_flow_updates=opts.raft_iters)[-1]
                flows_px.append(task.flow_in_original_px(flow[0].float().permute(1, 2, 0).cpu().numpy(), scale_xy))
        pairs = task.measure(flows_px, detections, tracks, scale_xy, video.fps, opts)
        return pairs, task.annotate(video.frames, tracks, pairs, flows_px, video.fps)

    return call


def _concepts(options: dict) -> list[str]:
    return [c.strip() for c in str(options.get("text_prompt", "person")).split(",") if c.strip()]


def sam3(path: Path, options: dict):
    """SAM 3 through ultralytics' own ``SAM3SemanticPredictor``, built once (what ``Sam3Engine`` wraps) at the
    service's precision, called per request."""
    from models import store
    from runners.sam3 import Sam3Engine

    _device_and_half()
    engine = Sam3Engine({"sam3": store.get("sam3").path})
    concepts = _concepts(options)

    def call():
        return engine.segment_images([{"image": _decode(path), "concepts": concepts, "threshold": 0.25}])

    return call


def sam3_per_request(path: Path, options: dict):
    """SAM 3 the seed backend's way: the model and predictor constructed for every request."""
    from models import store
    from runners.sam3 import Sam3Engine

    model_dir = store.get("sam3").path
    concepts = _concepts(options)

    def call():
        engine = Sam3Engine({"sam3": model_dir})
        return engine.segment_images([{"image": _decode(path), "concepts": concepts, "threshold": 0.25}])

    return call


def sam2(path: Path, options: dict):
    """ultralytics' own ``SAM(path).predict`` with the same prompts, on the service's weights, model loaded once."""
    from ultralytics import SAM

    from models import store
    from nets import sam2 as stored

    device, half = _device_and_half()
    spec = stored.read(store.get("sam2.1_b").path)
    model = SAM(str(spec.checkpoint))
    prompts = {k: options.get(k) for k in ("bboxes", "points", "labels")}

    def call():
        return model.predict(_decode(path), imgsz=spec.imgsz, conf=options.get("threshold", 0.25), device=device,
                             half=half, verbose=False, **prompts)

    return call


BASELINES = {
    "object-detection": yolo("yolo26n"),
    "image-segmentation": yolo("yolo26n-seg"),
    "pose-estimation": yolo("yolo26n-pose"),
    "velocity-estimation": velocity,
    "depth-estimation": depth,
    "sam3-concept-segmentation": sam3,
    "sam2-segmentation": sam2,
}
BATCHED = {
    "object-detection": yolo_batched("yolo26n"),
    "image-segmentation": yolo_batched("yolo26n-seg"),
    "pose-estimation": yolo_batched("yolo26n-pose"),
    "depth-estimation": depth_batched,
}
SEED = {"sam3-concept-segmentation": sam3_per_request}
