"""The playground's Camera source in headless Chromium with a fake camera fed from the shared walking clip (a
.y4m made from it here): frames go to ``GET /stream``, the answers are drawn over the live picture, track ids
persist, the fps shown is above 0, and nothing leaves the server. Skipped where Chromium or Playwright is missing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.conftest import media
from tests.integration.browser import launch_chromium, wait_until


def walking_y4m(target: Path, frames: int = 50) -> Path:
    """The shared clip's first frames at 320x240 as a raw YUV4MPEG2 file (what Chromium's fake camera plays)."""
    import av

    with av.open(str(media("people-walking.mp4"))) as source, av.open(str(target), "w", format="yuv4mpegpipe") as out:
        stream = out.add_stream("rawvideo", rate=10)
        stream.width, stream.height, stream.pix_fmt = 320, 240, "yuv420p"
        for index, frame in enumerate(source.decode(video=0)):
            if index >= frames:
                break
            for packet in stream.encode(frame.reformat(320, 240, "yuv420p")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return target


@pytest.fixture(scope="module")
def camera_browser(tmp_path_factory):
    y4m = walking_y4m(tmp_path_factory.mktemp("camera") / "walking.y4m")
    with launch_chromium("--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
                         f"--use-file-for-fake-video-capture={y4m}") as chromium:
        yield chromium


def test_the_camera_streams_to_the_live_route_and_draws_tracked_results(camera_browser, server):
    context = camera_browser.new_context(viewport={"width": 1100, "height": 900}, permissions=["camera"])
    page = context.new_page()
    errors, foreign = [], []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("request", lambda r: None if r.url.startswith((server.base + "/", "data:", "blob:",
                                                          server.base.replace("http", "ws") + "/"))
            else foreign.append(r.url))
    try:
        page.goto(f"{server.base}/playground/")
        page.wait_for_selector("#service-table:not([hidden])")
        assert page.is_disabled("#camera-start") is False  # the first task (detection) is live per /health
        page.check("input[name=task][value=sam3-concept-segmentation]")
        assert page.is_disabled("#camera-start")  # not a live task: no camera
        page.check("input[name=task][value=object-detection]")
        page.fill("#threshold", "0.1")
        page.dispatch_event("#threshold", "input")
        page.click("#camera-start")
        wait_until(page, "window.liveCamera.answers.length >= 15", timeout=240_000)  # under the page's CSP
        wait_until(page, "Number(document.querySelector('#camera-stats').dataset.fps) > 0", timeout=30_000)
        camera = page.evaluate("({answers: window.liveCamera.answers, drawn: window.liveCamera.drawn})")
        stats = page.text_content("#camera-stats")
        picture = page.evaluate("""(() => { const c = document.querySelector('#camera-canvas');
            return [c.width, c.height, Array.from(c.getContext('2d').getImageData(0, 0, c.width, c.height).data
            .filter((_, i) => i % 4 === 0 && i % 401 === 0))]; })()""")
        page.click("#camera-stop")
    finally:
        context.close()
    assert errors == [] and foreign == [], (errors, foreign)
    assert camera["drawn"] > 0 and "fps" in stats and "dropped" in stats
    frames = [a["frame"] for a in camera["answers"]]
    assert frames == sorted(frames)
    seen: dict[int, int] = {}
    for answer in camera["answers"]:
        for track_id in set(answer["ids"]):
            seen[track_id] = seen.get(track_id, 0) + 1
    assert max(seen.values(), default=0) >= 3, seen  # an id that persists over several answers
    width, height, reds = picture
    assert (width, height) == (320, 240) and np.std(reds) > 5  # the live picture, not a blank canvas
