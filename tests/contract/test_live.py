"""``GET /stream`` (live video over a WebSocket), point by point, through the real gateway and runner engines in
process (placeholder weights: the YOLO placeholder finds "person" boxes on photos). Frames are kept small so the
whole file stays within a couple of minutes on 2 cores."""

from __future__ import annotations

import json
import time

import cv2
import numpy as np
import pytest
from starlette.testclient import WebSocketDenialResponse

from settings import Settings
from tests.conftest import b64, in_process_client, media

TRACKED = ("object-detection", "image-segmentation", "pose-estimation")


def jpeg(bgr: np.ndarray, quality: int = 90) -> bytes:
    return cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, quality])[1].tobytes()


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    return cv2.imread(str(media("basketball1.png")))


def panning(photo: np.ndarray, frames: int, step_px: int = 4, size_wh=(320, 240)) -> list[bytes]:
    """A camera panning slowly right over the photo: windows of ``size_wh`` shifted ``step_px`` a frame."""
    width, height = size_wh
    top = (photo.shape[0] - height) // 2
    return [jpeg(photo[top:top + height, 200 + i * step_px:200 + i * step_px + width]) for i in range(frames)]


def answers_until(ws, last: int) -> list[dict]:
    """Every message until the answer to frame ``last``."""
    out = []
    while True:
        message = json.loads(ws.receive_text())
        out.append(message)
        if message["frame"] == last:
            return out


def one_by_one(ws, frames: list[bytes]) -> list[dict]:
    """Send each frame once the previous one is answered (nothing dropped)."""
    out = []
    for frame in frames:
        ws.send_bytes(frame)
        out.append(json.loads(ws.receive_text()))
    return out


def refused(client, url: str, **kwargs) -> WebSocketDenialResponse:
    with pytest.raises(WebSocketDenialResponse) as refusal, client.websocket_connect(url, **kwargs):
        pass
    return refusal.value


def closed_with(ws) -> dict:
    message = ws.receive()
    assert message["type"] == "websocket.close", message
    return message


@pytest.mark.parametrize("task", TRACKED)
def test_a_frame_answers_what_infer_answers_plus_track_ids(client, task):
    data = media("basketball1.png").read_bytes()
    expected = client.post("/infer", json={"task": task, "payloadBase64": b64(data),
                                           "options": {"threshold": 0.3}}).json()
    with client.websocket_connect(f"/stream?task={task}&options=%7B%22threshold%22%3A0.3%7D") as ws:
        ws.send_bytes(data)
        message = json.loads(ws.receive_text())
    assert set(message) == {"frame", "result", "dropped", "latency_ms"}
    assert message["frame"] == 0 and message["dropped"] == 0 and message["latency_ms"] > 0
    items = message["result"]
    assert expected and len(items) == len(expected)
    for got, want in zip(items, expected, strict=True):
        assert isinstance(got["track_id"], int) and got["track_id"] >= 1
        assert_same_item({k: v for k, v in got.items() if k != "track_id"}, want)
    assert len({item["track_id"] for item in items}) == len(items)  # one id per object


def assert_same_item(got: dict, want: dict) -> None:
    """The same item up to a batch's float noise: coordinates within 1 px, scores within 1e-3, the rest equal."""
    assert set(got) == set(want)
    for key, value in want.items():
        if key in ("bbox", "mask_polygon", "keypoints"):
            assert np.allclose(np.array(got[key])[..., :2], np.array(value)[..., :2], atol=1.0), key
        elif key == "box":
            assert np.allclose(list(got[key].values()), list(value.values()), atol=1.0)
        elif key in ("score", "confidence"):
            assert got[key] == pytest.approx(value, abs=1e-3)
        elif key == "mask_area_px":
            assert got[key] == pytest.approx(value, rel=0.01)
        else:
            assert got[key] == value, key


def test_depth_frame_answers_what_infer_answers(client):
    data = jpeg(cv2.imread(str(media("messi5.jpg"))), 95)
    expected = client.post("/infer", json={"task": "depth-estimation", "payloadBase64": b64(data)}).json()
    with client.websocket_connect("/stream?task=depth-estimation") as ws:
        ws.send_bytes(data)
        message = json.loads(ws.receive_text())
    assert message["result"] == expected


def iou(a, b) -> float:
    x1, y1, x2, y2 = max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3])
    inter = max(0.0, x2 - x1) * max(0.0, y2 - y1)
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


COLOURS = ((40, 40, 220), (40, 200, 40), (220, 60, 60))  # BGR: three objects in the scene


def scene_frames(frames: int, step_px: int) -> list[bytes]:
    """A camera panning right over a scene of three coloured objects, ``step_px`` a frame."""
    scene = np.full((300, 900, 3), 128, np.uint8)
    for index, colour in enumerate(COLOURS):
        x, y = 300 + index * 90, 60 + index * 50
        cv2.rectangle(scene, (x, y), (x + 60, y + 110), colour, -1)
    return [jpeg(scene[30:270, 200 + i * step_px:520 + i * step_px]) for i in range(frames)]


async def colour_detector(self, items):
    """A stand-in for YOLO that finds the scene's objects by colour in the image the gateway sends it."""
    from vocab.detections import Detections

    out = []
    for item in items:
        boxes, scores = [], []
        for index, colour in enumerate(COLOURS):
            mask = cv2.inRange(item["image"], np.array(colour) - 50, np.array(colour) + 50)
            x, y, w, h = cv2.boundingRect(mask)
            if w * h:
                boxes.append([x, y, x + w, y + h])
                scores.append(0.9 - 0.1 * index)
        out.append(Detections.from_arrays({"xyxy": np.array(boxes, np.float64).reshape(-1, 4), "confidence": scores,
                                           "class_id": [0] * len(boxes), "class_name": ["person"] * len(boxes)}))
    return out


def test_track_ids_are_kept_across_a_slowly_panning_image(client, monkeypatch):
    from runners.yolo import YoloClient

    monkeypatch.setattr(YoloClient, "predict", colour_detector)
    with client.websocket_connect("/stream?task=object-detection") as ws:
        frames = one_by_one(ws, scene_frames(30, 4))
    per_object = [[], [], []]  # each object's id on each frame, by its colour's score
    for frame in frames:
        assert len(frame["result"]) == 3, frame
        for item in frame["result"]:
            per_object[round((0.9 - item["score"]) / 0.1)].append(item["track_id"])
    ids = [set(seen) for seen in per_object]
    assert all(len(seen) == 1 for seen in ids), per_object  # one id per object on all 30 frames
    assert len(set.union(*ids)) == 3 and None not in set.union(*ids)
    middle = [next(i["bbox"][0] for i in frame["result"] if i["score"] == pytest.approx(0.8)) for frame in frames]
    assert middle[0] - middle[-1] == pytest.approx(29 * 4, abs=3)  # the camera moved: 116 px over the frame


def test_a_burst_of_60_frames_keeps_one_waiting_and_counts_the_rest(client, photo):
    frames = panning(photo, 60, 1, (160, 120))
    with client.websocket_connect("/stream?task=object-detection&options=%7B%22imgsz%22%3A160%7D") as ws:
        for frame in frames:
            ws.send_bytes(frame)
        answers = answers_until(ws, 59)
        ws.send_bytes(frames[0])
        after = json.loads(ws.receive_text())
    numbers = [a["frame"] for a in answers]
    assert numbers == sorted(numbers) and len(set(numbers)) == len(numbers)  # in frame order, each once
    assert numbers[0] == 0 and numbers[-1] == 59  # the first and the last are never dropped
    assert 2 <= len(answers) < 60  # the rest were replaced while one waited
    assert answers[-1]["dropped"] == 60 - len(answers)  # every frame is answered or counted
    assert [a["dropped"] for a in answers] == sorted(a["dropped"] for a in answers)
    assert after["frame"] == 60 and after["dropped"] == answers[-1]["dropped"]  # the session goes on


def test_a_bad_frame_mid_session_answers_an_error_and_the_session_goes_on(client, photo, gateway, monkeypatch):
    good = panning(photo, 1)[0]
    with client.websocket_connect("/stream?task=object-detection") as ws:
        answers = one_by_one(ws, [good, b"not an image", good[: len(good) // 3], media("people-walking.mp4").read_bytes()[:4096], good])
    assert "result" in answers[0] and "result" in answers[4]
    for index in (1, 2, 3):
        assert set(answers[index]) == {"frame", "error"} and answers[index]["frame"] == index, answers[index]
    assert "neither a supported image" in answers[1]["error"]
    assert "video" in answers[3]["error"]
    assert answers[4]["frame"] == 4 and answers[4]["dropped"] == 0


def test_a_frame_over_the_image_limit_is_an_error_and_the_session_goes_on(gateway, photo):
    settings = Settings(max_image_pixels=100 * 100)
    with in_process_client(gateway, settings) as small, small.websocket_connect("/stream?task=object-detection") as ws:
        answers = one_by_one(ws, [panning(photo, 1)[0], jpeg(cv2.resize(photo, (90, 60)))])
    assert answers[0]["frame"] == 0 and "pixels" in answers[0]["error"]
    assert answers[1]["frame"] == 1 and isinstance(answers[1]["result"], list)


def test_two_sessions_in_parallel_give_the_same_results_ids_included(client, photo):
    frames = panning(photo, 6, 4)
    url = "/stream?task=object-detection&options=%7B%22imgsz%22%3A320%7D"
    with client.websocket_connect(url) as one, client.websocket_connect(url) as two:
        results = [], []
        for frame in frames:
            one.send_bytes(frame)
            two.send_bytes(frame)
            for ws, out in zip((one, two), results, strict=True):
                out.append(json.loads(ws.receive_text())["result"])
    assert results[0] == results[1]
    assert any(item["track_id"] for frame in results[0] for item in frame)


def test_velocity_tracks_with_flow_and_speeds(client):
    from media.video import decode_video

    video = decode_video(media("people-walking.mp4").read_bytes(), max_frames=3, max_pixels=10**8,
                         max_duration_s=600, max_frames_hard=900, min_frames=1, max_decoded_bytes=10**10,
                         max_samples=10**6)
    frames = [jpeg(cv2.resize(f, (320, 180))) for f in video.frames]
    options = json.dumps({"imgsz": 192, "threshold": 0.25, "fps": 25, "raft_iters": 2, "meter_per_pixel": 0.05})
    with client.websocket_connect(f"/stream?task=velocity-estimation&options={options}") as ws:
        answers = one_by_one(ws, frames)
    first = answers[0]["result"]
    assert set(first) == {"tracks", "mean_flow_px_per_frame"} and first["mean_flow_px_per_frame"] is None
    assert all(t["speed_mps_est"] is None for t in first["tracks"])  # no pair yet
    measured = [t for a in answers[1:] for t in a["result"]["tracks"]]
    assert measured, answers
    for track in measured:
        assert {"track_id", "class_name", "bbox", "median_flow_px_per_frame", "speed_mps_est"} <= set(track)
        assert track["speed_mps_est"] == pytest.approx(track["median_flow_px_per_frame"] * 25 * 0.05, abs=1e-3)
    ids = [{t["track_id"] for t in a["result"]["tracks"]} for a in answers]
    assert ids[0] & ids[-1]  # the session's tracker follows them


@pytest.mark.parametrize(("query", "fragment"), [
    ("task=sam3-concept-segmentation", "not a live task"),
    ("task=nope", "unknown task"),
    ("", "unknown task"),
    ("task=object-detection&model=depth-anything-small", "model"),
    ("task=object-detection&options=%7Bnot-json", "not valid JSON"),
    ("task=object-detection&options=%5B1%5D", "JSON object"),
    ("task=object-detection&options=%7B%22imgsz%22%3A%22big%22%7D", "options.imgsz"),
])
def test_a_bad_handshake_is_refused_before_any_result(client, query, fragment):
    refusal = refused(client, f"/stream?{query}")
    assert refusal.status_code == 400
    assert refusal.headers["content-type"].startswith("application/json")
    assert fragment.lower() in refusal.json()["error"].lower()


def test_the_api_key_on_the_handshake(gateway, photo):
    with in_process_client(gateway, Settings(api_key="sesame")) as keyed:
        assert refused(keyed, "/stream?task=object-detection").status_code == 401
        assert refused(keyed, "/stream?task=object-detection&key=wrong").status_code == 401
        assert refused(keyed, "/stream?task=object-detection", headers={"Authorization": "Bearer no"}).status_code == 401
        for url, headers in (("/stream?task=object-detection&key=sesame", {}),
                             ("/stream?task=object-detection", {"Authorization": "Bearer sesame"})):
            with keyed.websocket_connect(url, headers=headers) as ws:
                ws.send_bytes(panning(photo, 1, size_wh=(160, 120))[0])
                assert json.loads(ws.receive_text())["frame"] == 0


def test_sessions_over_the_limit_are_429_and_a_closed_one_frees_its_slot(gateway):
    with in_process_client(gateway, Settings(live_max_sessions=1)) as limited:
        with limited.websocket_connect("/stream?task=object-detection") as ws:
            assert limited.get("/health").json()["live_sessions"] == 1
            refusal = refused(limited, "/stream?task=object-detection")
            assert refusal.status_code == 429 and "PERCEPTION_LIVE_MAX_SESSIONS" in refusal.json()["error"]
            ws.send_bytes(b"x")
            ws.receive_text()
        deadline = time.monotonic() + 5
        while limited.get("/health").json()["live_sessions"] and time.monotonic() < deadline:
            time.sleep(0.05)
        with limited.websocket_connect("/stream?task=object-detection"):
            pass


def test_an_idle_session_is_closed_with_1000(gateway):
    with in_process_client(gateway, Settings(live_idle_timeout_s=0.5)) as idle, \
            idle.websocket_connect("/stream?task=object-detection") as ws:
        started = time.monotonic()
        message = closed_with(ws)
    assert message["code"] == 1000 and "PERCEPTION_LIVE_IDLE_TIMEOUT_S" in message["reason"]
    assert 0.4 < time.monotonic() - started < 5


def test_a_session_longer_than_the_limit_is_closed_with_1000(gateway, photo):
    frame = panning(photo, 1, size_wh=(160, 120))[0]
    with in_process_client(gateway, Settings(live_max_session_s=1.0)) as short, \
            short.websocket_connect("/stream?task=object-detection&options=%7B%22imgsz%22%3A160%7D") as ws:
        started = time.monotonic()
        ws.send_bytes(frame)
        assert json.loads(ws.receive_text())["frame"] == 0
        message = closed_with(ws)
    assert message["code"] == 1000 and "PERCEPTION_LIVE_MAX_SESSION_S" in message["reason"]
    assert time.monotonic() - started < 5


def test_a_message_over_the_limit_is_closed_with_1009_and_text_with_1003(gateway):
    with in_process_client(gateway, Settings(live_max_message_bytes=1000)) as small:
        with small.websocket_connect("/stream?task=object-detection") as ws:
            ws.send_bytes(b"\xff" * 1001)
            message = closed_with(ws)
        assert message["code"] == 1009 and "PERCEPTION_LIVE_MAX_MESSAGE_BYTES" in message["reason"]
        with small.websocket_connect("/stream?task=object-detection") as ws:
            ws.send_text("hello")
            assert closed_with(ws)["code"] == 1003


def test_health_lists_the_live_tasks(client):
    from tasks.registry import LIVE_TASKS

    models = client.get("/health").json()["models"]
    assert tuple(task for task, info in models.items() if info["live"]) == LIVE_TASKS
    assert len(LIVE_TASKS) == 5


def test_memory_is_flat_over_five_sessions_of_200_frames(client, photo):
    frames = panning(photo, 200, 1, (160, 120))

    def session() -> None:
        with client.websocket_connect("/stream?task=object-detection&options=%7B%22imgsz%22%3A160%7D") as ws:
            for start in range(0, 200, 10):  # bursts of 10: most are dropped, some answered
                for frame in frames[start:start + 10]:
                    ws.send_bytes(frame)
                answers_until(ws, start + 9)

    rss = []
    for _ in range(5):
        session()
        rss.append(resident_mb())
    assert rss[-1] - rss[0] < 25, rss  # after the first (warm) session: no growth with sessions


def resident_mb() -> float:
    import gc

    gc.collect()
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")
