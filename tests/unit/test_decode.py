"""Payload decoding: base64 forms, sniffing by bytes, image modes, EXIF orientation, limits."""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
from PIL import Image

from media.decode import _plain_rgb_with_opencv, decode_base64, decode_image, sniff
from media.errors import MediaError
from tasks.outcome import as_api_error
from tests.conftest import media

RAW = bytes(range(256)) * 3


@pytest.mark.parametrize(
    "text",
    [
        base64.b64encode(RAW).decode(),
        base64.urlsafe_b64encode(RAW).decode(),
        base64.b64encode(RAW).decode().rstrip("="),
        "\n".join(base64.b64encode(RAW).decode()[i : i + 76] for i in range(0, 1024, 76)),
        "data:image/jpeg;base64," + base64.b64encode(RAW).decode(),
        "data:application/octet-stream;name=x.bin;base64," + base64.urlsafe_b64encode(RAW).decode().rstrip("="),
    ],
    ids=["standard", "urlsafe", "no-padding", "wrapped", "data-url", "data-url-params-urlsafe"],
)
def test_base64_forms_decode_to_the_same_bytes(text):
    assert decode_base64(text) == RAW


@pytest.mark.parametrize("text", ["", "   ", "!!!!", "abc$", "a", "data:image/png;base64,"])
def test_bad_base64_is_a_400(text):
    with pytest.raises(MediaError) as info:
        decode_base64(text)
    assert as_api_error(info.value).status == 400


def _encode(image: Image.Image, fmt: str, **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **kwargs)
    return buffer.getvalue()


def test_sniff_trusts_bytes_not_names():
    assert sniff(media("messi5.jpg").read_bytes()) == ("image", "jpeg")
    assert sniff(media("basketball1.png").read_bytes()) == ("image", "png")
    assert sniff(media("people-walking.mp4").read_bytes())[0] == "video"
    assert sniff(media("people-walking.webm").read_bytes()) == ("video", "matroska")
    assert sniff(media("people-walking-msmpeg4.avi").read_bytes()) == ("video", "avi")
    assert sniff(_encode(Image.new("RGB", (4, 4)), "WEBP")) == ("image", "webp")
    with pytest.raises(MediaError) as info:
        sniff(b"%PDF-1.7 not an image")
    assert as_api_error(info.value).status == 400


@pytest.mark.parametrize(
    "image",
    [
        Image.new("L", (7, 5), 128),
        Image.new("1", (7, 5), 1),
        Image.new("P", (7, 5), 3),
        Image.new("RGBA", (7, 5), (255, 0, 0, 0)),
        Image.new("CMYK", (7, 5), (0, 255, 0, 0)),
        Image.new("I;16", (7, 5), 65535),
        Image.new("LA", (7, 5), (10, 255)),
    ],
    ids=lambda im: im.mode,
)
def test_every_mode_becomes_8bit_bgr(image):
    fmt = "TIFF" if image.mode in ("CMYK",) else "PNG"
    decoded = decode_image(_encode(image, fmt), max_pixels=10_000)
    assert decoded.bgr.shape == (5, 7, 3) and decoded.bgr.dtype == np.uint8


def test_sixteen_bit_keeps_its_brightness_and_transparent_is_white():
    assert decode_image(_encode(Image.new("I;16", (3, 3), 65535), "PNG"), max_pixels=100).bgr.min() == 255
    assert decode_image(_encode(Image.new("I;16", (3, 3), 0), "PNG"), max_pixels=100).bgr.max() == 0
    clear = decode_image(_encode(Image.new("RGBA", (3, 3), (255, 0, 0, 0)), "PNG"), max_pixels=100)
    assert (clear.bgr == 255).all()


def test_cmyk_red_is_red_in_bgr():
    red = decode_image(_encode(Image.new("CMYK", (2, 2), (0, 255, 255, 0)), "JPEG"), max_pixels=100).bgr
    b, g, r = red[0, 0].astype(int)
    assert r > 200 and g < 60 and b < 60


def test_exif_orientation_is_applied():
    pixels = np.zeros((20, 40, 3), dtype=np.uint8)
    pixels[:, :20] = (255, 0, 0)  # red on the left of the stored pixels
    image = Image.fromarray(pixels)
    exif = image.getexif()
    exif[0x0112] = 6  # rotate 90° clockwise to display
    decoded = decode_image(_encode(image, "JPEG", exif=exif.tobytes()), max_pixels=10_000)
    assert (decoded.height, decoded.width) == (40, 20)
    top, bottom = decoded.bgr[2, 10], decoded.bgr[37, 10]
    assert top[2] > 200 and bottom[2] < 60  # displayed: red on top


def test_animated_gif_gives_its_first_frame():
    frames = [Image.new("RGB", (8, 8), c) for c in ((255, 0, 0), (0, 0, 255))]
    buffer = io.BytesIO()
    frames[0].save(buffer, "GIF", save_all=True, append_images=frames[1:], duration=50)
    decoded = decode_image(buffer.getvalue(), max_pixels=1000)
    assert decoded.bgr[0, 0, 2] > 200 and decoded.bgr[0, 0, 0] < 60


def test_decompression_bomb_is_a_413_before_decoding():
    bomb = _encode(Image.new("L", (12_000, 12_000), 0), "PNG")  # ~140 KB of file, 144 Mpx of pixels
    assert len(bomb) < 1_000_000
    with pytest.raises(MediaError) as info:
        decode_image(bomb, max_pixels=40_000_000)
    assert as_api_error(info.value).status == 413


@pytest.mark.parametrize("cut", [10, 200, 2000])
def test_truncated_or_garbage_images_are_a_400(cut):
    data = media("messi5.jpg").read_bytes()[:cut] if cut < 2000 else b"\x89PNG\r\n\x1a\n" + b"\x00" * cut
    with pytest.raises(MediaError) as info:
        decode_image(data, max_pixels=40_000_000)
    assert as_api_error(info.value).status == 400


def test_garbage_is_a_400_even_after_ultralytics_patches_pil():
    """ultralytics replaces PIL's Image.open with one that tries to install a HEIF plugin on unknown bytes."""
    import ultralytics.utils.patches  # noqa: F401  (applies the patch, as the runners' imports do)

    with pytest.raises(MediaError) as info:
        decode_image(b"\x89PNG\r\n\x1a\n" + b"\x00" * 500, max_pixels=1000)
    assert as_api_error(info.value).status == 400


def _pil_general_path(data: bytes) -> np.ndarray:
    """What PIL alone makes of the bytes: EXIF orientation applied, first frame, RGB → BGR."""
    from PIL import ImageOps

    image = Image.open(io.BytesIO(data))
    image.load()
    return np.asarray(ImageOps.exif_transpose(image).convert("RGB"))[:, :, ::-1]


def _noise(mode: str, size=(41, 29)) -> Image.Image:
    rng = np.random.default_rng(7)
    shape = (size[1], size[0], 3) if mode == "RGB" else (size[1], size[0])
    return Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode)


def _rotated_png() -> bytes:
    exif = Image.Exif()
    exif[0x0112] = 6
    return _encode(_noise("RGB"), "PNG", exif=exif.tobytes())


def _animated_png() -> bytes:
    return _encode(_noise("RGB"), "PNG", save_all=True, append_images=[Image.new("RGB", (41, 29), (0, 0, 255))])


@pytest.mark.parametrize(
    "data",
    [
        lambda: media("messi5.jpg").read_bytes(),
        lambda: media("fruits.jpg").read_bytes(),
        lambda: media("basketball1.png").read_bytes(),  # 8-bit grey
        lambda: _encode(_noise("RGB"), "PNG"),
        lambda: _encode(_noise("L"), "PNG", bits=4),
        lambda: _encode(_noise("RGB"), "PNG", transparency=(0, 0, 0)),
        lambda: _encode(_noise("RGB"), "JPEG", quality=75, subsampling=2),
        lambda: _encode(_noise("L"), "JPEG"),
        _rotated_png,  # EXIF after the header: the general path
        _animated_png,  # APNG: the general path, first frame
    ],
    ids=["messi-jpeg", "fruits-jpeg", "grey-png", "rgb-png", "grey4-png", "trns-png", "rgb-jpeg420", "grey-jpeg",
         "exif6-png", "apng"],
)
def test_every_decode_path_gives_pils_pixels(data, request):
    """Plain RGB/grey JPEG and PNG take OpenCV's decoder (faster); the pixels must be the ones PIL gives."""
    raw = data()
    expected = _pil_general_path(raw)
    decoded = decode_image(raw, max_pixels=10**7).bgr
    takes_opencv = _plain_rgb_with_opencv(Image.open(io.BytesIO(raw)), raw) is not None
    assert takes_opencv == (request.node.callspec.id not in ("exif6-png", "apng"))
    assert decoded.shape == expected.shape and decoded.dtype == np.uint8
    np.testing.assert_array_equal(decoded, expected)
