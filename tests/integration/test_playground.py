"""The built-in playground page (``/playground/``) in headless Chromium, against the real ``make serve``.

The page must send the client's JSON to ``/infer``, draw what comes back over the uploaded image, play returned
videos, show the API's ``error`` text, and touch nothing outside this server. Skipped (not failed) when
Playwright or the system Chromium is missing (``make tools`` installs it).

``PLAYGROUND_SCREENSHOTS=docs/screenshots`` also writes the screenshots of each result there.
"""

from __future__ import annotations

import base64
import io
import os
import re
import types
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.conftest import media
from tests.integration.browser import launch_chromium, wait_until

ROOT = Path(__file__).resolve().parents[2]
CLIENT_KEYS = {"task", "model", "payloadBase64", "mimeType", "options"}
IMAGE_TASKS = ("object-detection", "image-segmentation", "pose-estimation", "sam3-concept-segmentation",
               "depth-estimation", "sam2-segmentation")
CHANGED = 24  # a pixel whose channels moved by more than this was drawn on (JPEG decoders differ by a few)
RUN_TIMEOUT_MS = 300_000


@pytest.fixture(scope="module")
def browser():
    with launch_chromium() as chromium:
        yield chromium


@pytest.fixture
def pg(browser, server):
    """A fresh page on /playground/ recording console errors and every request that leaves this server."""
    context = browser.new_context(viewport={"width": 1100, "height": 800})
    page = context.new_page()
    record = types.SimpleNamespace(page=page, errors=[], foreign=[])
    page.on("console", lambda m: record.errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: record.errors.append(str(e)))
    page.on("request", lambda r: None if r.url.startswith((server.base + "/", "data:", "blob:"))
            else record.foreign.append(r.url))
    page.goto(f"{server.base}/playground/")
    page.wait_for_selector("#service-table:not([hidden])")  # /health was read and shown
    yield record
    context.close()


def assert_clean(pg, http_status: int | None = None) -> None:
    """No script errors, no requests elsewhere; Chromium's own log line for an expected non-2xx answer is fine."""
    expected = f"the server responded with a status of {http_status} "
    errors = [e for e in pg.errors if not (http_status and e.startswith("Failed to load resource") and expected in e)]
    assert errors == [], f"console errors: {errors}"
    assert pg.foreign == [], f"requests outside the server: {pg.foreign}"


def choose(pg, task: str, path: Path) -> None:
    pg.page.check(f"input[name=task][value={task}]")
    pg.page.set_input_files("#file", str(path))
    wait_until(pg.page, "document.querySelector('#status').textContent.startsWith('Ready')")


def run(pg):
    """Press Run; returns (request JSON, response) of the page's POST /infer once the page has drawn it."""
    with pg.page.expect_response(lambda r: r.url.endswith("/infer"), timeout=RUN_TIMEOUT_MS) as answer:
        pg.page.click("#run")
    response = answer.value
    wait_until(pg.page, "/^(Done|Failed)/.test(document.querySelector('#status').textContent)",
                              timeout=RUN_TIMEOUT_MS)
    return response.request.post_data_json, response


def canvas_pixels(page) -> np.ndarray:
    data_url = page.evaluate("document.querySelector('#canvas').toDataURL('image/png')")
    png = base64.b64decode(data_url.split(",", 1)[1])
    return cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR)  # BGR, like cv2.imread


def outline_painted(changed: np.ndarray, bbox_xyxy) -> float:
    """The share of positions along the box's four sides where a pixel within 1 px of the side changed."""
    height, width = changed.shape
    x1, y1, x2, y2 = (int(round(v)) for v in bbox_xyxy)

    def near(v: int, size: int) -> np.ndarray:
        return np.clip(np.arange(v - 1, v + 2), 0, size - 1)

    cols = np.clip(np.arange(x1, x2 + 1), 0, width - 1)
    rows = np.clip(np.arange(y1, y2 + 1), 0, height - 1)
    sides = [changed[np.ix_(near(y, height), cols)].any(axis=0) for y in (y1, y2)]
    sides += [changed[np.ix_(rows, near(x, width))].any(axis=1) for x in (x1, x2)]
    return float(np.concatenate(sides).mean())


def save_screenshot(page, name: str, tmp_path: Path) -> Path:
    """A PNG of the page, palette-quantised to stay small; also into $PLAYGROUND_SCREENSHOTS when set."""
    from PIL import Image

    image = Image.open(io.BytesIO(page.screenshot(full_page=True))).convert("RGB")
    small = image.quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    targets = [tmp_path / name]
    if os.environ.get("PLAYGROUND_SCREENSHOTS"):
        targets.append(ROOT / os.environ["PLAYGROUND_SCREENSHOTS"] / name)
    for target in targets:
        target.parent.mkdir(parents=True, exist_ok=True)
        small.save(target, optimize=True)
    return targets[-1]


def health_of(http) -> dict:
    return http.get("/health").json()


def wait_playing(page) -> None:
    """The result <video> has loaded a frame with a real size, and its clock has run over most of a short clip or
    0.2 s of a longer one. Measured on ``video.played`` (the time ranges actually played), not on two readings of
    ``currentTime``: the element loops, so a 0.3 s answer read at 0.1 s never shows ``currentTime`` above 0.3."""
    wait_until(page, "(v => v.readyState >= 2 && v.videoWidth > 0 && v.duration > 0)(document.querySelector('#video'))",
                           timeout=30_000)
    page.evaluate("document.querySelector('#video').play()")
    wait_until(page, PLAYED_ENOUGH, timeout=30_000)


PLAYED_ENOUGH = """(v => {
    let played = 0;
    for (let i = 0; i < v.played.length; i++) played += v.played.end(i) - v.played.start(i);
    return played >= Math.min(0.2, 0.9 * v.duration);
})(document.querySelector('#video'))"""


def test_page_and_assets_are_served(http):
    redirect = http.get("/playground")
    assert redirect.status_code in (301, 307) and redirect.headers["location"].endswith("/playground/")
    page = http.get("/playground/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    for asset, kind in (("app.js", "javascript"), ("chart.js", "javascript"), ("style.css", "text/css"),
                        ("samples/messi5.jpg", "image/jpeg"), ("samples/people-walking.mp4", "video/mp4")):
        response = http.get(f"/playground/{asset}")
        assert response.status_code == 200 and kind in response.headers["content-type"], asset
    assert http.get("/playground/../service.py").status_code == 404
    chart = http.get("/playground/chart.js").text.replace('"http://www.w3.org/2000/svg"', "")  # a name, not a URL
    for text in (page.text, http.get("/playground/app.js").text, http.get("/playground/style.css").text, chart):
        assert "http://" not in text and "https://" not in text and "@import" not in text


def test_speed_chart_colours_are_the_annotated_videos():
    """chart.js's track colours are media/draw.py's PALETTE (BGR there), so a line matches its box in the video."""
    from media.draw import PALETTE

    text = (ROOT / "playground" / "chart.js").read_text()
    block = re.search(r"TRACK_PALETTE = \[(.*?)\];", text, re.S).group(1)
    assert re.findall(r'"#([0-9a-f]{6})"', block) == [f"{r:02x}{g:02x}{b:02x}" for b, g, r in PALETTE]


def test_object_detection_is_drawn_over_the_photo(pg, tmp_path):
    page = pg.page
    photo = media("messi5.jpg")
    choose(pg, "object-detection", photo)
    bare = canvas_pixels(page)
    reference = cv2.imread(str(photo))
    assert bare.shape == reference.shape  # the canvas holds the photo at its own pixel size
    assert np.abs(bare.astype(int) - reference).mean() < 3

    body, response = run(pg)
    assert set(body) == CLIENT_KEYS and body["task"] == "object-detection" and body["model"] == "yolo26n.pt"
    assert body["mimeType"] == "image/jpeg" and body["options"] == {"threshold": 0.25}
    assert base64.b64decode(body["payloadBase64"]) == photo.read_bytes()
    assert response.status == 200
    detections = response.json()
    assert detections, "the placeholder model is expected to find something in this photo"
    assert page.text_content("#error") == "" and page.is_hidden("#error")

    drawn = canvas_pixels(page)
    changed = (np.abs(drawn.astype(int) - bare).max(axis=2) > CHANGED)
    touched = np.zeros_like(changed)
    for item in detections:
        painted = outline_painted(changed, item["bbox"])
        assert painted > 0.8, f"box {item['bbox']} outline painted at {painted:.0%} of its length"
        x1, y1, x2, y2 = (int(round(v)) for v in item["bbox"])
        # where a box and its label may paint: the box ±3 px, and a label strip above (or inside) it
        touched[max(0, y1 - 24):y2 + 4, max(0, x1 - 3):max(x2, x1 + 200) + 4] = True
    assert not (changed & ~touched).any(), "the overlay painted pixels away from every returned box"

    label = page.get_attribute("#canvas", "aria-label")
    assert f"{len(detections)} object-detection results" in label
    assert page.locator("#tables table tbody tr").count() == min(len(detections), 50)
    assert "Done: object-detection" in page.text_content("#status")
    save_screenshot(page, "playground-object-detection.png", tmp_path)
    assert_clean(pg)


@pytest.mark.parametrize("task", [t for t in IMAGE_TASKS if t != "object-detection"])
def test_other_image_tasks_draw_or_show_the_error(pg, http, task, tmp_path):
    """Available tasks draw over (or, for depth, replace) the photo; the others show the API's 503 text."""
    page = pg.page
    choose(pg, task, media("messi5.jpg"))
    bare = canvas_pixels(page)
    body, response = run(pg)
    assert set(body) == CLIENT_KEYS and body["task"] == task
    if task == "sam3-concept-segmentation":
        assert body["options"] == {"threshold": 0.25, "text_prompt": "person"}
    if task == "sam2-segmentation":  # no prompt drawn: what the later web client sends, segment-everything
        assert body["options"] == {"threshold": 0.25} and body["model"] == "sam2.1_b.pt"
    if not health_of(http)["models"][task]["installed"]:
        assert response.status == 503
        assert page.text_content("#error") == response.json()["error"] and page.is_visible("#error")
        assert page.text_content("#status").startswith("Failed")
        assert_clean(pg, 503)
        return
    assert response.status == 200, response.text()
    drawn = canvas_pixels(page)
    assert drawn.shape == bare.shape
    result = response.json()
    if task == "depth-estimation":
        assert page.is_visible("#depth-scale")
        assert (np.abs(drawn.astype(int) - bare) > CHANGED).mean() > 0.5  # the depth map replaced the photo
    elif result if isinstance(result, list) else result["instances"]:
        assert (np.abs(drawn.astype(int) - bare) > CHANGED).any()
    save_screenshot(page, f"playground-{task}.png", tmp_path)
    assert_clean(pg)


def test_video_to_an_image_task_shows_the_api_error(pg):
    page = pg.page
    choose(pg, "object-detection", media("people-walking.mp4"))
    body, response = run(pg)
    assert body["mimeType"] == "video/mp4" and response.status == 400
    assert page.text_content("#error") == response.json()["error"] and "video" in response.json()["error"]
    assert page.get_attribute("#error", "role") == "alert"
    assert_clean(pg, 400)


def test_api_key_is_sent_as_bearer_and_401_text_is_shown(pg):
    """The page adds Authorization when a key is typed (answered here by a stand-in 401, like a keyed server)."""
    page = pg.page
    seen = {}

    def answer(route):
        seen.update(route.request.headers)
        route.fulfill(status=401, content_type="application/json", body='{"error": "a valid API key is required"}')

    page.route("**/infer", answer)
    choose(pg, "object-detection", media("messi5.jpg"))
    page.fill("#api-key", "s3cret")
    run(pg)
    assert seen["authorization"] == "Bearer s3cret"
    assert page.text_content("#error") == "a valid API key is required"
    assert page.evaluate("document.activeElement.id") == "api-key"
    assert_clean(pg, 401)


def test_bundled_sample_video_plays_and_controls_are_labelled(pg):
    page = pg.page
    page.click("button[data-sample$='people-walking.mp4']")
    wait_playing(page)
    assert page.evaluate("document.querySelector('#video').videoWidth") == 384
    unlabelled = page.evaluate("""[...document.querySelectorAll('input, select, button, textarea')]
        .filter(e => e.type !== 'hidden' && !e.labels?.length && !e.getAttribute('aria-label') && !e.textContent.trim())
        .map(e => e.id || e.outerHTML)""")
    assert unlabelled == []
    assert page.get_attribute("#status", "aria-live") == "polite"
    assert page.get_attribute("#canvas", "role") == "img"
    assert_clean(pg)


RECORD_BAR = """() => { window.barSeen = [];
  new MutationObserver(() => { const bar = document.querySelector('#job-bar');
    if (bar) window.barSeen.push([document.querySelector('#job-stage').textContent, bar.value]); })
  .observe(document.body, {subtree: true, childList: true, characterData: true}); }"""


def submit_job(pg):
    """Press Run on a video task: the page's POST /jobs (its JSON body, and the job it answered with)."""
    with pg.page.expect_response(lambda r: r.url.endswith("/jobs") and r.request.method == "POST",
                                 timeout=RUN_TIMEOUT_MS) as answer:
        pg.page.click("#run")
    assert answer.value.status == 202, answer.value.text()
    return answer.value.request.post_data_json, answer.value.json()


def test_velocity_runs_as_a_job_with_a_progress_bar_and_plays_with_per_track_speeds(pg, http, tmp_path):
    if health_of(http)["models"]["velocity-estimation"]["installed"] is not True:
        pytest.skip("velocity-estimation is not available on this server yet (see /health)")
    page = pg.page
    choose(pg, "velocity-estimation", media("people-walking.mp4"))
    names = page.eval_on_selector_all("#model-names option", "options => options.map(o => o.value)")
    assert {"raft-large", "raft-small", "yolo26n"} <= set(names) and "yolo26n-pose" not in names  # flow or detect
    page.fill("#max-frames", "12")  # keeps RAFT on the CPU short
    page.evaluate(RECORD_BAR)
    body, job = submit_job(pg)
    assert set(body) == CLIENT_KEYS and body["mimeType"] == "video/mp4"
    assert body["options"]["max_frames"] == 12 and body["options"]["meter_per_pixel"] == 0.05
    wait_until(page, "/^(Done|Failed)/.test(document.querySelector('#status').textContent)",
                           timeout=RUN_TIMEOUT_MS)
    assert page.text_content("#status").startswith("Done"), page.text_content("#error")
    result = http.get(f"/jobs/{job['id']}/result")
    assert result.status_code == 200 and result.json()["content_type"] == "video/mp4"
    wait_playing(page)
    tables = page.text_content("#tables")
    assert "Per-track speeds" in tables and "frames_processed" in tables
    assert_speed_chart(page, result.json()["velocity"])
    seen = page.evaluate("window.barSeen")
    stages = [text.split(":")[1].split()[0] for text, _ in seen if ":" in text]
    assert "flow" in stages and stages[-1] == "encode" and seen[-1][1] == 1, seen
    assert seen[-1][0].startswith("succeeded: encode 12/12 (12 frames)")
    assert not page.is_visible("#job-cancel")
    save_screenshot(page, "playground-velocity-estimation.png", tmp_path)
    assert_clean(pg)


CHART_POINTS = """() => [...document.querySelectorAll('#speed-chart .track')].flatMap(shape => {
  const points = shape.tagName === 'polyline'
    ? Array.from({length: shape.points.numberOfItems}, (_, i) => shape.points.getItem(i))
    : [{x: shape.cx.baseVal.value, y: shape.cy.baseVal.value}];
  return points.map((p, index) => {
    const at = new DOMPoint(p.x, p.y).matrixTransform(shape.getScreenCTM());
    return {track: Number(shape.dataset.trackId), tag: shape.tagName, count: points.length, index, x: at.x, y: at.y};
  });
})"""


def assert_speed_chart(page, velocity: dict) -> None:
    """A line (a dot when measured on one pair) per track of velocity.data, a point per measured pair; hovering
    the chart's most isolated point shows that point's track, time and speed."""
    measured: dict[int, list[tuple[int, float]]] = {}
    for frame in sorted(velocity["data"], key=lambda f: f["frame_id"]):
        for track in frame["tracks"]:
            measured.setdefault(track["track_id"], []).append((frame["frame_id"], track["speed_mps_est"]))
    if not measured:
        assert page.text_content("#speed-chart") == "No track was measured."
        return
    chart = page.locator("#speed-chart svg")
    chart.scroll_into_view_if_needed()
    assert chart.get_attribute("role") == "img"
    fastest = max(speed for pairs in measured.values() for _, speed in pairs)
    label = chart.get_attribute("aria-label")
    assert f"{len(measured)} track" in label and f"{fastest:.2f} m/s" in label, label
    points = page.evaluate(CHART_POINTS)
    shapes = Counter(p["track"] for p in points if p["index"] == 0)
    assert sorted(shapes) == sorted(measured) and set(shapes.values()) == {1}  # exactly one shape per track
    for p in points:
        assert p["count"] == len(measured[p["track"]]) and (p["tag"] == "circle") == (p["count"] == 1), p
    assert page.locator(".chart-legend li").count() == len(measured)

    def gap(p):
        return min((np.hypot(p["x"] - q["x"], p["y"] - q["y"]) for q in points if q is not p), default=99.0)

    target = max(points, key=gap)
    assert gap(target) >= 2, "no point of the chart stands apart enough to hover it alone"
    frame_id, speed = measured[target["track"]][target["index"]]
    page.mouse.move(target["x"], target["y"])
    tip = page.locator(".chart-tip")
    tip.wait_for(state="visible", timeout=5_000)
    text = tip.text_content()
    assert text.startswith(f"track {target['track']} ("), text
    shown = re.search(r"· ([\d.]+) s · ([\d.]+) m/s$", text)
    assert shown, text
    assert abs(float(shown.group(1)) - frame_id / velocity["fps"]) <= 0.005
    assert abs(float(shown.group(2)) - speed) <= 0.005


def test_sam2_click_adds_a_point_and_drag_draws_a_box_in_image_pixels(pg, tmp_path):
    page = pg.page
    photo = media("messi5.jpg")
    width, height = cv2.imread(str(photo)).shape[1::-1]
    choose(pg, "sam2-segmentation", photo)
    bare = canvas_pixels(page)

    def at(x, y):  # image pixels → page coordinates, wherever the canvas is shown now, at whatever size
        shown = page.locator("#canvas").bounding_box()
        return shown["x"] + x * shown["width"] / width, shown["y"] + y * shown["height"] / height

    page.mouse.click(*at(150, 200))
    page.mouse.move(*at(40, 30))
    page.mouse.down()
    page.mouse.move(*at(200, 150), steps=4)
    page.mouse.move(*at(280, 320), steps=4)
    page.mouse.up()
    assert page.text_content("#sam2-prompts") == "1 point(s), 1 box(es)."
    assert (np.abs(canvas_pixels(page).astype(int) - bare) > CHANGED).any()  # the prompts are drawn
    body, response = run(pg)
    options = body["options"]
    assert set(options) == {"threshold", "points", "labels", "bboxes"} and options["labels"] == [1]
    assert np.allclose(options["points"], [[150, 200]], atol=1.5)  # image pixels, whatever size it is shown at
    assert np.allclose(options["bboxes"], [[40, 30, 280, 320]], atol=1.5)
    assert response.status == 200, response.text()
    result = response.json()
    assert result["concepts"] == ["box + point"] and [i["prompt_index"] for i in result["instances"]] == [0]
    assert "1 instance(s) of box + point" in page.text_content("#image-caption")
    save_screenshot(page, "playground-sam2-segmentation.png", tmp_path)

    page.click("#sam2-clear")
    assert page.text_content("#sam2-prompts").startswith("No prompts")
    page.locator("#canvas").scroll_into_view_if_needed()
    page.keyboard.down("Shift")
    page.mouse.click(*at(300, 100))
    page.keyboard.up("Shift")
    assert page.text_content("#sam2-prompts") == "1 point(s) (1 background), 0 box(es)."
    body, response = run(pg)
    assert body["options"]["labels"] == [0] and "bboxes" not in body["options"] and response.status == 200
    assert_clean(pg)


def test_sam2_video_plays(pg, http, tmp_path):
    """A video to SAM 2 without prompts, as a job: the first frame's grid of points tracked; the H.264 answer plays."""
    page = pg.page
    choose(pg, "sam2-segmentation", media("people-walking.mp4"))
    page.fill("#max-frames", "3")
    body, job = submit_job(pg)
    assert body["options"] == {"threshold": 0.25, "max_frames": 3} and body["mimeType"] == "video/mp4"
    wait_until(page, "/^(Done|Failed)/.test(document.querySelector('#status').textContent)",
                           timeout=RUN_TIMEOUT_MS)
    result = http.get(f"/jobs/{job['id']}/result").json()
    assert "instances" not in result and result["metrics"]["frames_processed"] == 3
    wait_playing(page)
    assert "frames_processed" in page.text_content("#tables")
    save_screenshot(page, "playground-sam2-video.png", tmp_path)
    assert_clean(pg)


def test_cancel_stops_a_velocity_job(pg, http):
    if health_of(http)["models"]["velocity-estimation"]["installed"] is not True:
        pytest.skip("velocity-estimation is not available on this server yet (see /health)")
    page = pg.page
    choose(pg, "velocity-estimation", media("people-walking.mp4"))
    page.fill("#max-frames", "40")  # 39 pairs, 5 flow calls of RAFT on a CPU: still running when cancelled
    _, job = submit_job(pg)
    wait_until(page, "document.querySelector('#job-stage')?.textContent.startsWith('running: flow')",
                           timeout=RUN_TIMEOUT_MS)
    page.click("#job-cancel")
    wait_until(page, "/^Failed/.test(document.querySelector('#status').textContent)", timeout=30_000)
    assert "cancelled" in page.text_content("#error")
    state = http.get(f"/jobs/{job['id']}").json()
    flow = state["progress"]["stages"]["flow"]
    assert state["status"] == "cancelled" and flow["done"] < flow["total"] == 39  # stopped before its end
    assert page.text_content("#job-stage").startswith("cancelled")
    assert_clean(pg, 409)
