"""Photos are turned upright the way a browser turns them: our decode against Chromium's own
``createImageBitmap(blob, {imageOrientation: "from-image"})`` on the same files — every EXIF orientation, and an
XMP-only orientation (which Pillow would apply and browsers ignore)."""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
from PIL import Image

from media.decode import decode_image
from tests.integration.browser import launch_chromium
from tests.unit.test_hostile_images import XMP_ROTATED

# Four flat quadrants (red, green, blue, white) of a 64x32 image: survive JPEG and tell every turn apart.
COLOURS = np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 255]], dtype=np.uint8)

READ_IN_CHROMIUM = """async (data) => {
  const bytes = Uint8Array.from(atob(data), (c) => c.charCodeAt(0));
  const bitmap = await createImageBitmap(new Blob([bytes], {type: "image/jpeg"}), {imageOrientation: "from-image"});
  const canvas = new OffscreenCanvas(bitmap.width, bitmap.height);
  const ctx = canvas.getContext("2d");
  ctx.drawImage(bitmap, 0, 0);
  const at = (x, y) => Array.from(ctx.getImageData(x, y, 1, 1).data.slice(0, 3));
  const w = bitmap.width, h = bitmap.height;
  return {width: w, height: h, corners: [at(4, 4), at(w - 5, 4), at(4, h - 5), at(w - 5, h - 5)]};
}"""


def quadrants() -> Image.Image:
    image = np.zeros((32, 64, 3), np.uint8)
    image[:16, :32], image[:16, 32:], image[16:, :32], image[16:, 32:] = COLOURS
    return Image.fromarray(image)


def jpeg(orientation: int | None = None, xmp: bytes | None = None) -> bytes:
    options = {"quality": 95}
    if orientation is not None:
        exif = Image.Exif()
        exif[0x0112] = orientation
        options["exif"] = exif.tobytes()
    if xmp is not None:
        options["xmp"] = xmp
    buffer = io.BytesIO()
    quadrants().save(buffer, "JPEG", **options)
    return buffer.getvalue()


def ours(data: bytes) -> dict:
    rgb = decode_image(data, max_pixels=10**8).bgr[:, :, ::-1]
    h, w = rgb.shape[:2]
    return {"width": w, "height": h, "corners": [rgb[4, 4], rgb[4, w - 5], rgb[h - 5, 4], rgb[h - 5, w - 5]]}


@pytest.fixture(scope="module")
def chromium():
    with launch_chromium() as browser:
        page = browser.new_page()
        page.goto("about:blank")
        yield page


@pytest.mark.parametrize("case", [*(f"exif-{n}" for n in range(1, 9)), "xmp-only-6"])
def test_upright_as_chromium_draws_it(chromium, case):
    data = jpeg(xmp=XMP_ROTATED) if case.startswith("xmp") else jpeg(int(case.split("-")[1]))
    theirs, mine = chromium.evaluate(READ_IN_CHROMIUM, base64.b64encode(data).decode()), ours(data)
    assert (mine["width"], mine["height"]) == (theirs["width"], theirs["height"])
    for a, b in zip(mine["corners"], theirs["corners"], strict=True):
        assert np.abs(np.asarray(a, int) - np.asarray(b, int)).max() <= 40, (case, mine["corners"], theirs["corners"])
