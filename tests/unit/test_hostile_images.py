"""Images built to cost more than they weigh, or to be drawn otherwise than a browser draws them."""

from __future__ import annotations

import io
import time

import numpy as np
import pytest
from PIL import Image

from media.decode import MAX_JPEG_SCANS, decode_image, jpeg_scans
from media.errors import MediaTooLarge

XMP_ROTATED = (b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
               b'<rdf:Description xmlns:tiff="http://ns.adobe.com/tiff/1.0/" tiff:Orientation="6"/></rdf:RDF></x:xmpmeta>')


def photo(width=64, height=32) -> Image.Image:
    gradient = np.linspace(0, 255, width * height * 3).reshape(height, width, 3).astype(np.uint8)
    return Image.fromarray(gradient)


def jpeg(image: Image.Image, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", **options)
    return buffer.getvalue()


def scan_bomb(repeats: int) -> bytes:
    """A valid progressive JPEG whose last scan is repeated ``repeats`` more times before EOI."""
    data = jpeg(photo(256, 256), progressive=True, quality=90)
    last_sos = data.rfind(b"\xff\xda")
    return data[:-2] + data[last_sos:-2] * repeats + b"\xff\xd9"


def test_scans_are_counted_from_the_markers():
    assert jpeg_scans(jpeg(photo()), 100) == 1
    progressive = jpeg(photo(), progressive=True)
    assert 2 < jpeg_scans(progressive, 100) < 20
    assert jpeg_scans(scan_bomb(300), 1000) == jpeg_scans(progressive_of_256(), 1000) + 300


def progressive_of_256() -> bytes:
    return jpeg(photo(256, 256), progressive=True, quality=90)


def test_a_scan_bomb_is_refused_before_decoding():
    bomb = scan_bomb(400)
    assert len(bomb) < 300_000  # far inside the body limit
    started = time.perf_counter()
    with pytest.raises(MediaTooLarge, match=f"more than {MAX_JPEG_SCANS} progressive scans"):
        decode_image(bomb, max_pixels=10**8)
    assert time.perf_counter() - started < 0.5


def test_ordinary_progressive_jpegs_still_decode():
    assert decode_image(progressive_of_256(), max_pixels=10**8).bgr.shape == (256, 256, 3)


def test_orientation_comes_from_exif_only_as_browsers_do():
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise to display
    rotated = decode_image(jpeg(photo(), exif=exif.tobytes()), max_pixels=10**8)
    assert rotated.bgr.shape == (64, 32, 3)  # drawn upright: width and height swap
    xmp_only = decode_image(jpeg(photo(), xmp=XMP_ROTATED), max_pixels=10**8)
    assert Image.open(io.BytesIO(jpeg(photo(), xmp=XMP_ROTATED))).getexif().get(0x0112) == 6  # Pillow would rotate
    assert xmp_only.bgr.shape == (32, 64, 3)  # a browser ignores XMP orientation, and so do we
