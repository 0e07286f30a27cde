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
        from runners.common import keep_torch_threads, pick_device, use_all_cores

        device = pick_device()
        model = YOLO(str(store.get(store_name).path / "model.pt"))
        use_all_cores()  # as the runner process does: same threads on both sides

        def call():
            with keep_torch_threads():
                result = model.predict(_decode(path), conf=0.25, device=device, verbose=False)[0]
            # what the wire needs from the library: boxes, plus outlines (segment) or keypoints (pose)
            out = [result.boxes.xyxy.cpu().numpy(), result.boxes.conf.cpu().numpy()]
            if result.masks is not None:
                out.append(result.masks.xy)
            if result.keypoints is not None:
                out.append(result.keypoints.data.cpu().numpy())
            return out

        return call

    return make


def velocity(path: Path, options: dict):
    """velocity-estimation the sequential way, in one process, on the service's weights: decode, then per frame
    one YOLO ``predict`` (batch 1) and the same ultralytics tracker, per pair one fp32 RAFT call (batch 1, 12
    iterations unless ``raft_iters`` says otherwise), then the same arithmetic, drawing and H.264 encode."""
    import cv2
    import torch
    from ultralytics import YOLO

    from media.video import decode_video
    from models import store
    from models.catalog import store_name_for
    from nets.raft import WEIGHTS_FILE, build_model
    from runners.common import keep_torch_threads, pick_device
    from runners.yolo import to_arrays
    from tasks import velocity as task
    from vocab.detections import Detections
    from vocab.items import yolo_imgsz
    from vocab.schema import VelocityOptions

    opts = VelocityOptions(**options)
    device = pick_device()
    detector = YOLO(str(store.get(store_name_for(opts.detector)).path / "model.pt"))
    flow_entry = store.get(options.get("flow_model", "raft-large"))
    raft = build_model(flow_entry.variant)
    raft.load_state_dict(torch.load(str(flow_entry.path / WEIGHTS_FILE), map_location="cpu", weights_only=True))
    raft = raft.to(device).eval()

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
                                          device=device, verbose=False)[0]
            detections.append(Detections.from_arrays(to_arrays(result)).rescaled(*scale_xy, (video.width, video.height)))
        tracks = task.track_frames(detections, video.frames, opts.tracker)
        flows_px = []
        with torch.inference_mode():
            for i in range(min(opts.max_pairs, len(working) - 1)):
                flow = raft(to_input(working[i]), to_input(working[i + 1]), num_flow_updates=opts.raft_iters)[-1]
                flows_px.append(task.flow_in_original_px(flow[0].permute(1, 2, 0).cpu().numpy(), scale_xy))
        pairs = task.measure(flows_px, detections, tracks, scale_xy, video.fps, opts)
        return pairs, task.annotate(video.frames, tracks, pairs, flows_px, video.fps)

    return call


def depth(path: Path, options: dict):
    """transformers' own depth pipeline, called per request on the service's weights (what a notebook does)."""
    from PIL import Image
    from transformers import pipeline

    from models import store
    from runners.common import pick_device

    estimator = pipeline("depth-estimation", model=str(store.get("depth-anything-small").path), device=pick_device())

    def call():
        image = Image.open(io.BytesIO(path.read_bytes())).convert("RGB")
        return np.asarray(estimator(image)["depth"])

    return call


def sam3_per_request(path: Path, options: dict):
    """SAM 3 the naive way: the model and predictor constructed for every request (as the original backend did)."""
    from models import store
    from runners.sam3 import Sam3Engine

    model_dir = store.get("sam3").path
    concepts = [c.strip() for c in str(options.get("text_prompt", "person")).split(",") if c.strip()]

    def call():
        engine = Sam3Engine({"sam3": model_dir})
        return engine.segment_images([{"image": _decode(path), "concepts": concepts, "threshold": 0.25}])

    return call


def sam2(path: Path, options: dict):
    """ultralytics' own ``SAM(path).predict`` with the same prompts, on the service's weights, model loaded once."""
    from ultralytics import SAM

    from models import store
    from nets import sam2 as stored

    spec = stored.read(store.get("sam2.1_b").path)
    model = SAM(str(spec.checkpoint))
    prompts = {k: options.get(k) for k in ("bboxes", "points", "labels")}

    def call():
        return model.predict(_decode(path), imgsz=spec.imgsz, conf=options.get("threshold", 0.25), verbose=False,
                             **prompts)

    return call


BASELINES = {
    "object-detection": yolo("yolo26n"),
    "image-segmentation": yolo("yolo26n-seg"),
    "pose-estimation": yolo("yolo26n-pose"),
    "velocity-estimation": velocity,
    "depth-estimation": depth,
    "sam3-concept-segmentation": sam3_per_request,
    "sam2-segmentation": sam2,
}
