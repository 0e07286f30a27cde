"""velocity-estimation arithmetic on synthetic flow fields, and the task's orchestration with fake runners
(known boxes, known flow): working size, pixel scaling, chunking, camera motion, the response's shape."""

from __future__ import annotations

import asyncio
import base64
import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from media import draw
from models.store import InstalledModel
from runners.common import Runners as Clients
from runners.flow import FlowClient
from runners.yolo import YoloClient
from settings import Settings
from tasks import velocity
from tasks.base import TaskInput
from tasks.infer import resolve_models
from tasks.infer import run_task as run_module
from tasks.registry import REGISTRY
from tests.mp4 import probe_mp4
from tests.unit.test_video import _make_clip
from vocab.schema import VelocityOptions

# ---------------------------------------------------------------- working size


@pytest.mark.parametrize(
    ("resolution_wh", "imgsz", "expected"),
    [
        ((768, 576), 640, (640, 480)),
        ((768, 576), 192, (192, 144)),
        ((1920, 1080), 640, (640, 360)),
        ((1080, 1920), 640, (360, 640)),  # portrait: the long side is the height
        ((768, 576), 643, (640, 480)),  # rounded to the nearest multiple of 8
        ((768, 576), 64, (128, 128)),  # RAFT's floor of 128 on both sides
        ((1920, 100), 640, (640, 128)),  # a strip: the short side is raised to 128
        ((320, 240), 640, (640, 480)),  # a small clip is brought up to the working size
    ],
)
def test_working_size(resolution_wh, imgsz, expected):
    assert velocity.working_size_wh(resolution_wh, imgsz) == expected


@given(st.integers(16, 4000), st.integers(16, 4000), st.integers(64, 1920))
def test_working_size_always_suits_raft(width, height, imgsz):
    work_w, work_h = velocity.working_size_wh((width, height), imgsz)
    assert work_w % 8 == 0 and work_h % 8 == 0 and min(work_w, work_h) >= 128
    assert max(work_w, work_h) == max(128, round(imgsz / 8) * 8)
    assert (work_w >= work_h) if width >= height else (work_w <= work_h)  # orientation kept


# ---------------------------------------------------------------- speed arithmetic


def constant_field(grid_wh, dx, dy):
    width, height = grid_wh
    field = np.empty((height, width, 2), dtype=np.float32)
    field[..., 0], field[..., 1] = dx, dy
    return field


@pytest.mark.parametrize(("k", "fps", "meter_per_pixel"), [(2.0, 10.0, 0.05), (0.5, 30.0, 0.02), (3.0, 25.0, 1.0)])
def test_constant_flow_gives_k_times_fps_times_scale(k, fps, meter_per_pixel):
    # 768x576 seen at 192x144: one working pixel is 4 original pixels on both axes
    grid_wh, scale_xy = (192, 144), (4.0, 4.0)
    flow_px = velocity.flow_in_original_px(constant_field(grid_wh, k, 0.0), scale_xy)
    region = velocity.box_on_grid(np.array([100.0, 80.0, 300.0, 400.0]), scale_xy, grid_wh)
    px_per_frame = velocity.median_flow_px_per_frame(flow_px, region)
    assert px_per_frame == 4 * k
    assert velocity.speed_mps(px_per_frame, fps, meter_per_pixel) == pytest.approx(4 * k * fps * meter_per_pixel,
                                                                                   rel=1e-12)


def test_scaling_is_per_axis():
    # a 1920x1080 frame worked at 640x368 (not 360: both sides multiples of 8): x and y scale differently
    scale_xy = (1920 / 640, 1080 / 368)
    flow_px = velocity.flow_in_original_px(constant_field((640, 368), 3.0, 4.0), scale_xy)
    assert flow_px[0, 0, 0] == pytest.approx(9.0) and flow_px[0, 0, 1] == pytest.approx(4.0 * 1080 / 368)
    region = velocity.box_on_grid(np.array([0.0, 0.0, 1920.0, 1080.0]), scale_xy, (640, 368))
    assert velocity.median_flow_px_per_frame(flow_px, region) == pytest.approx(math.hypot(9.0, 4.0 * 1080 / 368),
                                                                              rel=1e-6)


def test_median_is_of_magnitudes_inside_the_box_only():
    flow_px = constant_field((160, 128), 50.0, 0.0)  # fast everywhere ...
    flow_px[40:80, 20:60] = (3.0, 4.0)  # ... but the box moves 5 px/frame
    flow_px[40, 20] = (100.0, 0.0)  # one outlier inside the box does not move a median
    region = velocity.box_on_grid(np.array([20.0, 40.0, 60.0, 80.0]), (1.0, 1.0), (160, 128))
    assert region == (slice(40, 80), slice(20, 60))
    assert velocity.median_flow_px_per_frame(flow_px, region) == pytest.approx(5.0)


def test_box_on_grid_clips_and_keeps_one_cell():
    grid_wh, scale_xy = (192, 144), (4.0, 4.0)
    assert velocity.box_on_grid(np.array([-50.0, -10.0, 9000.0, 9000.0]), scale_xy, grid_wh) == (
        slice(0, 144), slice(0, 192))
    assert velocity.box_on_grid(np.array([401.0, 401.0, 401.0, 401.0]), scale_xy, grid_wh) == (
        slice(100, 101), slice(100, 101))
    assert velocity.box_on_grid(np.array([768.0, 576.0, 768.0, 576.0]), scale_xy, grid_wh) == (
        slice(143, 144), slice(191, 192))


def test_camera_motion_is_the_median_outside_every_box_and_is_subtracted():
    grid_wh = (160, 128)
    flow_px = constant_field(grid_wh, 1.0, -2.0)  # the camera pans: everything drifts by (1, -2)
    flow_px[30:70, 40:80] = (6.0, 1.0)  # an object moving (5, 3) relative to the scene
    flow_px[90:110, 100:140] = (9.0, 9.0)  # another object, excluded from the background by its box
    boxes = [np.array([40.0, 30.0, 80.0, 70.0]), np.array([100.0, 90.0, 140.0, 110.0])]
    regions = [velocity.box_on_grid(b, (1.0, 1.0), grid_wh) for b in boxes]
    camera = velocity.background_flow_px_per_frame(flow_px, regions)
    np.testing.assert_array_equal(camera, [1.0, -2.0])
    assert velocity.median_flow_px_per_frame(flow_px, regions[0]) == pytest.approx(math.hypot(6, 1))
    assert velocity.median_flow_px_per_frame(flow_px, regions[0], camera) == pytest.approx(math.hypot(5, 3))


def test_camera_motion_with_no_background_is_zero():
    flow_px = constant_field((128, 128), 2.0, 2.0)
    whole = velocity.box_on_grid(np.array([0.0, 0.0, 128.0, 128.0]), (1.0, 1.0), (128, 128))
    np.testing.assert_array_equal(velocity.background_flow_px_per_frame(flow_px, [whole]), [0.0, 0.0])


def test_flow_panel_hue_is_direction_and_value_is_magnitude():
    import cv2

    flow_px = np.zeros((8, 32, 2), dtype=np.float32)
    flow_px[:, 8:16] = (4.0, 0.0)  # right, full scale
    flow_px[:, 16:24] = (0.0, 2.0)  # down (image y grows downward), half scale
    flow_px[:, 24:32] = (40.0, 0.0)  # beyond the scale: clipped to full brightness
    panel = draw.flow_panel_bgr(flow_px, max_px_per_frame=4.0)
    hsv = cv2.cvtColor(panel, cv2.COLOR_BGR2HSV)
    assert (panel[:, :8] == 0).all()  # no motion is black
    assert tuple(panel[0, 8]) == (0, 0, 255)  # 0° is red
    assert abs(int(hsv[0, 16, 0]) - 45) <= 1 and abs(int(hsv[0, 16, 2]) - 127) <= 1  # 90°, half value
    assert tuple(panel[0, 24]) == (0, 0, 255)


# ---------------------------------------------------------------- the task with fake runners


class FakeYolo:
    """One box per frame, in the pixels of the frame it is sent; records the calls."""

    def __init__(self, box_working_xyxy):
        self.box = np.asarray(box_working_xyxy, dtype=np.float32)
        self.calls: list[list[dict]] = []

    async def predict(self, items):
        self.calls.append(items)
        return [{"xyxy": self.box[None], "confidence": np.array([0.9], np.float32), "class_id": np.array([0]),
                 "class_name": ["person"]} for _ in items]

    async def describe(self):
        names = {0: "person", 1: "bicycle", 2: "car"}
        return {name: {"tag": f"{name}:test", "names": names} for name in ("yolo26n", "yolo11s")}


class FakeFlow:
    """A fixed flow field (working pixels) for every pair; records the calls."""

    def __init__(self, field, device="cpu"):
        self.field, self.device = field, device
        self.calls: list[list[dict]] = []

    async def flow(self, items):
        self.calls.append(items)
        return [{"flow": self.field.copy()} for _ in items]

    async def describe(self):
        return {name: {"tag": f"{name}:test", "device": self.device} for name in ("raft-large", "raft-small")}


def model(name, kind, family):
    return InstalledModel(name, f"{name}:test", kind, family, "random-init", "test", "", Path("/nonexistent"))


INSTALLED = {"yolo26n": model("yolo26n", "detect", "yolo"), "raft-large": model("raft-large", "flow", "flow"),
             "yolo26n-pose": model("yolo26n-pose", "pose", "yolo"), "yolo11s": model("yolo11s", "detect", "yolo"),
             "raft-small": model("raft-small", "flow", "flow")}


def run_task(data, runners, model_name="raft-large", installed=INSTALLED, **options):
    given = VelocityOptions(**options)
    model, models = resolve_models(REGISTRY["velocity-estimation"], model_name, given, installed)
    task_input = TaskInput("velocity-estimation", data, "video", "mp4", given, model, models)
    return asyncio.run(run_module(velocity, task_input, runners, Settings()))


def Runners(yolo, flow) -> Clients:  # noqa: N802 - reads like the runners it stands for
    """The fake runners (the gateway's dependencies, raw answers) behind the real clients the task calls."""
    return Clients([YoloClient(yolo), FlowClient(flow)])


def test_task_speeds_from_known_boxes_and_flow():
    # a 320x240 clip at 10 fps worked at 192x144: one working pixel is 5/3 original pixels
    clip = _make_clip(6, width=320, height=240, fps=10)
    field = constant_field((192, 144), 3.0, 0.0)  # 3 working px/frame = 5 original px/frame
    yolo, flow = FakeYolo([48.0, 36.0, 96.0, 108.0]), FakeFlow(field)
    body = run_task(clip, Runners(yolo, flow), max_frames=6, imgsz=192, raft_iters=3, meter_per_pixel=0.05)

    frame0 = flow.calls[0][0]["frame0"]
    assert frame0.shape == (144, 192, 3) and frame0.dtype == np.uint8
    assert {item["iters"] for call in flow.calls for item in call} == {3}
    assert all(item["image"].shape == (144, 192, 3) and item["threshold"] == 0.5 for call in yolo.calls for item in call)

    metrics, vel = body["metrics"], body["velocity"]
    assert metrics["frames_processed"] == 6 and metrics["pairs_processed"] == 5 == len(vel["data"])
    assert (metrics["width"], metrics["height"], metrics["working_width"], metrics["working_height"]) == (
        320, 240, 192, 144)
    assert vel["mode"] == "per_track" and vel["meter_per_pixel"] == 0.05 and vel["fps"] == pytest.approx(10.0)
    for frame_id, entry in enumerate(vel["data"]):
        assert entry["frame_id"] == frame_id
        (track,) = entry["tracks"]
        assert track["track_id"] == 1 and track["class_name"] == "person"
        assert track["median_flow_px_per_frame"] == pytest.approx(5.0, abs=1e-4)
        assert track["speed_mps_est"] == pytest.approx(5.0 * 10.0 * 0.05, abs=1e-3)
        assert track["bbox"] == pytest.approx([80.0, 60.0, 160.0, 180.0], abs=1.0)  # working box × 5/3
    assert metrics["mean_flow_px_per_frame"] == pytest.approx(5.0, abs=1e-4)
    assert metrics["mean_speed_mps_est"] == pytest.approx(2.5, abs=1e-3)
    assert vel["summary"] == [{"track_id": 1, "class_name": "person", "frames_seen": 6, "pairs_measured": 5,
                               "mean_speed_mps_est": pytest.approx(2.5, abs=1e-3),
                               "max_speed_mps_est": pytest.approx(2.5, abs=1e-3)}]
    info = probe_mp4(base64.b64decode(body["annotated_video"]))
    assert (info["codec"], info["pix_fmt"], info["frames"], info["width"], info["height"]) == (
        "h264", "yuv420p", 6, 640, 240)  # the frame and its flow panel side by side


def test_task_camera_motion_option():
    clip = _make_clip(3, width=320, height=240, fps=10)
    field = constant_field((192, 144), 1.2, 0.0)  # the camera pans right by 2 original px/frame
    field[36:108, 48:96] = (1.2 + 1.8, 2.4)  # the object moves (3, 4) original px/frame relative to the scene
    yolo = FakeYolo([48.0, 36.0, 96.0, 108.0])
    on = run_task(clip, Runners(yolo, FakeFlow(field)), max_frames=3, imgsz=192, subtract_camera_motion=True)
    off = run_task(clip, Runners(yolo, FakeFlow(field)), max_frames=3, imgsz=192)
    assert on["metrics"]["camera_motion_subtracted"] is True and off["metrics"]["camera_motion_subtracted"] is False
    for entry in on["velocity"]["data"]:
        assert entry["camera_flow_px_per_frame"] == pytest.approx([2.0, 0.0], abs=1e-4)
        assert entry["tracks"][0]["median_flow_px_per_frame"] == pytest.approx(5.0, abs=1e-3)
    for entry in off["velocity"]["data"]:
        assert "camera_flow_px_per_frame" not in entry
        assert entry["tracks"][0]["median_flow_px_per_frame"] == pytest.approx(math.hypot(5.0, 4.0), abs=1e-3)


def test_task_sends_chunks_and_caps_pairs():
    clip = _make_clip(70, width=160, height=128, fps=25)
    yolo, flow = FakeYolo([10.0, 10.0, 50.0, 50.0]), FakeFlow(constant_field((160, 128), 1.0, 0.0))
    body = run_task(clip, Runners(yolo, flow), max_frames=70, max_pairs=9, imgsz=160)
    assert [len(call) for call in yolo.calls] == [64, 6]
    assert [len(call) for call in flow.calls] == [8, 1]
    pairs = [(item["frame0"], item["frame1"]) for call in flow.calls for item in call]
    assert len(pairs) == 9 and all(a is not b for a, b in pairs)
    assert body["metrics"]["frames_processed"] == 70 and body["metrics"]["pairs_processed"] == 9
    assert len(body["velocity"]["data"]) == 9
    assert probe_mp4(base64.b64decode(body["annotated_video"]))["frames"] == 70


def test_task_wrong_detector_is_a_400():
    from vocab.errors import ApiError

    clip = _make_clip(3, width=160, height=128)
    runners = Runners(FakeYolo([0, 0, 1, 1]), FakeFlow(constant_field((160, 128), 0, 0)))
    for detector, fragment in (("yolo26n-pose", "pose"), ("nope", "not installed")):
        with pytest.raises(ApiError) as caught:
            run_task(clip, runners, detector=detector)
        assert caught.value.status == 400 and fragment in caught.value.message


class SlowFlow:
    """Each call takes ``seconds``; records the most calls in flight at once."""

    def __init__(self, seconds):
        self.seconds, self.in_flight, self.most = seconds, 0, 0

    async def flow(self, items):
        self.in_flight += 1
        self.most = max(self.most, self.in_flight)
        await asyncio.sleep(self.seconds)
        self.in_flight -= 1
        return [{"flow": np.full((128, 128, 2), i, np.float32)} for i in range(len(items))]


@pytest.mark.parametrize(("shed_after_s", "most"), [(10.0, velocity.FLOW_WINDOW), (0.1, 1)])
def test_flow_calls_in_flight_stay_under_the_shedding_deadline(shed_after_s, most):
    frames = [np.zeros((128, 128, 3), np.uint8)] * 57  # 56 pairs: 7 calls of 8
    slow = SlowFlow(0.1)
    flows = asyncio.run(velocity.estimate_flow(FlowClient(slow), "raft-large", frames, 56, 2, shed_after_s))
    assert len(flows) == 56 and [float(f[0, 0, 0]) for f in flows[:9]] == [0, 1, 2, 3, 4, 5, 6, 7, 0]
    assert slow.most == most


@pytest.mark.parametrize(("call_s", "shed_after_s", "window"),
                         [(0.05, 60.0, velocity.FLOW_WINDOW), (68.0, 60.0, 1), (10.0, 60.0, 4), (20.0, 60.0, 2)])
def test_flow_window(call_s, shed_after_s, window):
    assert velocity.flow_window(call_s, shed_after_s) == window


# ---------------------------------------------------------------- the later client: a detector in ``model``


def test_a_detector_in_model_is_the_detector_and_the_flow_model_stays_the_default():
    clip = _make_clip(3, width=320, height=240, fps=10)
    yolo, flow = FakeYolo([48.0, 36.0, 96.0, 108.0]), FakeFlow(constant_field((192, 144), 1.0, 0.0))
    body = run_task(clip, Runners(yolo, flow), model_name="yolo11s", max_frames=3, imgsz=192, detector="yolo26n")
    assert {item["model"] for call in yolo.calls for item in call} == {"yolo11s"}  # ``model`` wins over the option
    assert {item["model"] for call in flow.calls for item in call} == {"raft-large"}
    assert (body["metrics"]["detector"], body["metrics"]["flow_model"]) == ("yolo11s", "raft-large")
    as_before = run_task(clip, Runners(FakeYolo([48.0, 36.0, 96.0, 108.0]), flow), model_name="raft-small",
                         max_frames=3, imgsz=192, detector="yolo11s")
    assert (as_before["metrics"]["detector"], as_before["metrics"]["flow_model"]) == ("yolo11s", "raft-small")


def test_a_detector_in_model_without_the_default_flow_model_is_503():
    from vocab.errors import ApiError

    installed = {k: v for k, v in INSTALLED.items() if k != "raft-large"}
    runners = Runners(FakeYolo([0, 0, 1, 1]), FakeFlow(constant_field((160, 128), 0, 0)))
    with pytest.raises(ApiError) as caught:
        run_task(_make_clip(3, width=160, height=128), runners, model_name="yolo26n", installed=installed)
    assert caught.value.status == 503 and "raft-large" in caught.value.message


def test_later_client_options_tracker_yaml_classes_iou_fps():
    clip = _make_clip(4, width=320, height=240, fps=10)
    field = constant_field((192, 144), 3.0, 0.0)  # 5 original px/frame
    yolo = FakeYolo([48.0, 36.0, 96.0, 108.0])
    body = run_task(clip, Runners(yolo, FakeFlow(field)), model_name="yolo26n", max_frames=4, imgsz=192,
                    tracker="botsort.yaml", classes=["Car", 0], iou=0.4, fps=25, meter_per_pixel=0.1)
    items = [item for call in yolo.calls for item in call]
    assert {tuple(item["classes"]) for item in items} == {(0, 2)} and {item["iou"] for item in items} == {0.4}
    metrics, vel = body["metrics"], body["velocity"]
    assert metrics["tracker"] == "botsort"
    assert vel["fps"] == metrics["fps"] == 25.0 and metrics["video_fps"] == pytest.approx(10.0)
    speeds = [t["speed_mps_est"] for entry in vel["data"] for t in entry["tracks"]]
    assert speeds and speeds == pytest.approx([5.0 * 25 * 0.1] * len(speeds), abs=1e-3)
    assert probe_mp4(base64.b64decode(body["annotated_video"]))["fps_from_pts"] == pytest.approx(10.0, rel=1e-3)


def test_unknown_class_name_is_a_400():
    from vocab.errors import ApiError

    runners = Runners(FakeYolo([0, 0, 1, 1]), FakeFlow(constant_field((160, 128), 0, 0)))
    with pytest.raises(ApiError) as caught:
        run_task(_make_clip(3, width=160, height=128), runners, classes="person, unicorn")
    assert caught.value.status == 400 and "unicorn" in caught.value.message


@pytest.mark.parametrize(("value", "name"), [("bytetrack.yaml", "bytetrack"), ("BoTSORT.yaml", "botsort"),
                                             ("botsort", "botsort")])
def test_tracker_spellings(value, name):
    assert VelocityOptions(tracker=value).tracker == name


@pytest.mark.parametrize("options", [{"tracker": "sort.yaml"}, {"fps": "abc"}, {"iou": "x"}, {"classes": [1.5]}])
def test_bad_later_client_options_are_400(options):
    from vocab.errors import ApiError
    from vocab.schema import parse_options

    with pytest.raises(ApiError) as caught:
        parse_options(VelocityOptions, options)
    assert caught.value.status == 400 and f"options.{next(iter(options))}" in caught.value.message


def test_fps_is_clamped_and_defaults_to_the_clip():
    assert VelocityOptions().fps is None and VelocityOptions(fps=0).fps == 0.1 and VelocityOptions(fps=1e9).fps == 1000


# ---------------------------------------------------------------- the flow plan: CPU size and iterations


@pytest.mark.parametrize(("device", "quality", "expected"), [
    ("cpu", "auto", ((320, 240), 6, "cpu")),  # a CPU runner: the CPU size, at most 6 refinements
    ("cuda:0", "auto", ((640, 480), 12, "full")),  # a GPU runner: the full path
    ("cpu", "full", ((640, 480), 12, "full")),  # asked for explicitly
])
def test_flow_plan(device, quality, expected):
    plan = velocity.flow_plan((640, 480), VelocityOptions(flow_quality=quality), device)
    assert (plan.size_wh, plan.iters, plan.quality) == expected
    small = velocity.flow_plan((256, 192), VelocityOptions(raft_iters=3), device)  # never above the working size
    assert (small.size_wh, small.iters) == ((256, 192), 3)


@pytest.mark.parametrize(("device", "flow_wh", "quality", "iters"), [("cpu", (320, 240), "cpu", 6),
                                                                     ("cuda:0", (640, 480), "full", 12)])
def test_task_runs_flow_at_the_plans_size_and_measures_in_original_pixels(device, flow_wh, quality, iters):
    clip = _make_clip(3, width=640, height=480, fps=10)
    per_flow_px = 640 / flow_wh[0]  # original pixels per flow pixel
    yolo, flow = FakeYolo([100.0, 100.0, 300.0, 400.0]), FakeFlow(constant_field(flow_wh, 3.0, 0.0), device=device)
    body = run_task(clip, Runners(yolo, flow), max_frames=3)  # today's client: defaults (imgsz 640, raft_iters 12)
    assert {item["frame0"].shape for call in flow.calls for item in call} == {(flow_wh[1], flow_wh[0], 3)}
    assert {item["iters"] for call in flow.calls for item in call} == {iters}
    metrics = body["metrics"]
    assert metrics["flow_size"] == f"{flow_wh[0]}x{flow_wh[1]}" and metrics["flow_quality"] == quality
    assert metrics["raft_iters"] == iters and (metrics["working_width"], metrics["working_height"]) == (640, 480)
    (track,) = body["velocity"]["data"][0]["tracks"]
    assert track["median_flow_px_per_frame"] == pytest.approx(3.0 * per_flow_px, abs=1e-4)


def test_the_working_size_is_never_above_the_clips_own():
    clip = _make_clip(3, width=384, height=288, fps=10)  # the playground's sample size, asked at imgsz 640
    yolo, flow = FakeYolo([10.0, 10.0, 100.0, 100.0]), FakeFlow(constant_field((320, 240), 1.0, 0.0))
    metrics = run_task(clip, Runners(yolo, flow), max_frames=3)["metrics"]
    assert (metrics["working_width"], metrics["working_height"]) == (384, 288)
    assert all(item["image"].shape == (288, 384, 3) for call in yolo.calls for item in call)
