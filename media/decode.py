"""Payload → bytes → image. The bytes decide what a payload is; ``mimeType`` is only a hint.

- ``decode_base64``: standard and URL-safe alphabets, missing padding, whitespace, ``data:<mime>;base64,``.
- ``sniff``: ``"image"`` or ``"video"`` from magic numbers (or a 400).
- ``decode_image``: EXIF orientation applied (pixels as a browser draws the photo), any PIL mode → 8-bit BGR,
  the first frame of an animated image, the pixel limit checked from the header before decoding.
"""

from __future__ import annotations

import base64
import binascii
import functools
import io
import re
import struct
import warnings
from dataclasses import dataclass

import numpy as np

from media.errors import BadMedia, MediaTooLarge
from vocab.schema import IMAGE, VIDEO

_DATA_URL = re.compile(r"^data:[^,;]*(;[^,;=]+=[^,;]*)*;base64,", re.IGNORECASE)
_WHITESPACE = re.compile(r"\s+")
_BASE64_CHARS = re.compile(r"^[A-Za-z0-9+/\-_]*={0,2}$")

def decode_base64(text: str) -> bytes:
    try:  # the common case, a plain standard-alphabet string, in one C call (the checks below cost ~4 ms per 200 KB)
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        data = b""
    if data:
        return data
    text = _DATA_URL.sub("", text.strip(), count=1)
    text = _WHITESPACE.sub("", text)
    if not text:
        raise BadMedia("payloadBase64 is empty")
    if not _BASE64_CHARS.match(text):
        raise BadMedia("payloadBase64 is not valid base64")
    text = text.rstrip("=").replace("-", "+").replace("_", "/")
    if len(text) % 4 == 1:
        raise BadMedia("payloadBase64 is not valid base64 (truncated)")
    try:
        data = base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise BadMedia("payloadBase64 is not valid base64") from None
    if not data:
        raise BadMedia("payloadBase64 decodes to zero bytes")
    return data


_IMAGE_MAGIC = (
    (b"\xff\xd8\xff", "jpeg"),
    (b"\x89PNG\r\n\x1a\n", "png"),
    (b"GIF87a", "gif"),
    (b"GIF89a", "gif"),
    (b"BM", "bmp"),
    (b"II*\x00", "tiff"),
    (b"MM\x00*", "tiff"),
)
_IMAGE_FTYP_BRANDS = {b"heic", b"heix", b"mif1", b"msf1", b"avif", b"avis"}


def sniff(data: bytes) -> tuple[str, str]:
    """(``"image"`` | ``"video"``, container name) from the first bytes; 400 for anything else."""
    for magic, name in _IMAGE_MAGIC:
        if data.startswith(magic):
            return IMAGE, name
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return IMAGE, "webp"
    if data[:4] == b"RIFF" and data[8:12] == b"AVI ":
        return VIDEO, "avi"
    if data[4:8] == b"ftyp":
        brand = data[8:12]
        return (IMAGE, brand.decode("ascii", "replace")) if brand in _IMAGE_FTYP_BRANDS else (VIDEO, "mp4")
    if data[4:8] in (b"moov", b"mdat", b"wide", b"free"):
        return VIDEO, "mov"
    if data.startswith(b"\x1a\x45\xdf\xa3"):
        return VIDEO, "matroska"  # WebM or MKV
    if data.startswith(b"FLV"):
        return VIDEO, "flv"
    if data.startswith(b"OggS"):
        return VIDEO, "ogg"
    if len(data) >= 376 and data[0] == 0x47 and data[188] == 0x47:
        return VIDEO, "mpegts"
    raise BadMedia("payload is neither a supported image (JPEG, PNG, WebP, GIF, BMP, TIFF) nor a video")


@dataclass(frozen=True)
class DecodedImage:
    bgr: np.ndarray  # uint8 HxWx3, OpenCV channel order, EXIF orientation applied

    @property
    def width(self) -> int:
        return int(self.bgr.shape[1])

    @property
    def height(self) -> int:
        return int(self.bgr.shape[0])


@functools.cache
def _register_heif() -> None:
    """HEIC/HEIF (phone photos) through pi-heif, registered once, explicitly (not via ultralytics' PIL patch)."""
    from pi_heif import register_heif_opener

    register_heif_opener()


MAX_JPEG_SCANS = 64  # progressive JPEGs have ~10; every scan is a full pass over the image's coefficients


def decode_image(data: bytes, *, max_pixels: int, max_jpeg_scans: int = MAX_JPEG_SCANS) -> DecodedImage:
    from PIL import Image, UnidentifiedImageError

    _register_heif()
    if data[:3] == b"\xff\xd8\xff" and (scans := jpeg_scans(data, max_jpeg_scans)) > max_jpeg_scans:
        raise MediaTooLarge(f"the JPEG has more than {max_jpeg_scans} progressive scans ({scans} counted): each is "
                            f"a full decoding pass; the limit is {max_jpeg_scans}")
    Image.MAX_IMAGE_PIXELS = None  # our own limit below, checked from the header before decoding
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            image = Image.open(io.BytesIO(data))
            width, height = image.size
            if width * height > max_pixels:
                raise MediaTooLarge(f"image is {width}x{height} = {width * height:,} pixels; the limit is {max_pixels:,}")
            if width < 1 or height < 1:
                raise BadMedia("image has no pixels")
            if (bgr := _plain_rgb_with_opencv(image, data)) is not None:
                return DecodedImage(bgr=bgr)
            image.seek(0)  # animated images: the first frame
            image.load()
            image = upright(image)
            rgb = _to_rgb8(image)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError, ImportError,
            Image.DecompressionBombError) as exc:
        raise BadMedia(f"payload is not a decodable image ({type(exc).__name__})") from None
    return DecodedImage(bgr=np.ascontiguousarray(rgb[:, :, ::-1]))


_ORIENTATION = 0x0112


def _plain_rgb_with_opencv(image, data: bytes) -> np.ndarray | None:
    """The common photo (8-bit RGB or grey JPEG or PNG, upright, one frame) straight to BGR with OpenCV: one decode,
    no RGB→BGR copy, half the time of the general path below (which every other image takes). ``image`` is
    PIL's header-only view; ``None`` means "take the general path"."""
    import cv2

    if image.mode not in ("RGB", "L") or getattr(image, "is_animated", False):
        return None
    if image.format == "JPEG":
        if exif_orientation(image) != 1:  # JPEG EXIF sits in the header: no decode to read it
            return None
    elif image.format != "PNG" or b"eXIf" in data:  # a PNG's EXIF chunk may follow the pixels: look for it
        return None
    bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
    if bgr is None or bgr.shape != (image.height, image.width, 3):
        return None
    return bgr


_TRANSPOSE = {2: "FLIP_LEFT_RIGHT", 3: "ROTATE_180", 4: "FLIP_TOP_BOTTOM", 5: "TRANSPOSE", 6: "ROTATE_270",
              7: "TRANSVERSE", 8: "ROTATE_90"}


def exif_orientation(image) -> int:
    """The EXIF orientation (1-8) a browser applies: from the EXIF block alone (TIFF: its own tag). Pillow's
    ``getexif`` also reads an XMP ``tiff:Orientation``, which browsers ignore, so it is not used here."""
    from PIL import Image

    if image.format == "TIFF":
        value = getattr(image, "tag_v2", {}).get(_ORIENTATION, 1)
    else:
        raw = image.info.get("exif")
        if not raw:
            return 1
        exif = Image.Exif()
        try:
            exif.load(raw)
        except (SyntaxError, ValueError, OSError, struct.error):
            return 1
        value = exif.get(_ORIENTATION, 1)
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def upright(image):
    """``image`` as a browser draws it: its EXIF orientation applied (only EXIF's, see ``exif_orientation``)."""
    from PIL import Image

    orientation = exif_orientation(image)
    if orientation == 1:
        return image
    return image.transpose(getattr(Image.Transpose, _TRANSPOSE[orientation]))


def jpeg_scans(data: bytes, stop_after: int) -> int:
    """How many scans (SOS segments) a JPEG holds, counted from its markers without decoding; stops counting
    past ``stop_after``. Baseline JPEGs have one per component group; progressive ones ~10."""
    scans, i, size = 0, 2, len(data)
    while i + 4 <= size and scans <= stop_after:
        if data[i] != 0xFF:
            return scans  # not at a marker: leave the file to the decoder
        marker = data[i + 1]
        if marker == 0xFF or 0xD0 <= marker <= 0xD8 or marker == 0x01:  # fill byte, RSTn, SOI, TEM: no length
            i += 1 if marker == 0xFF else 2
            continue
        if marker == 0xD9:  # EOI
            return scans
        i += 2 + int.from_bytes(data[i + 2:i + 4], "big")
        if marker == 0xDA:  # SOS: its entropy-coded data runs to the next marker that is not a stuffed 0xFF00 or RSTn
            scans += 1
            i = _next_marker(data, i)
    return scans


def _next_marker(data: bytes, i: int) -> int:
    while (i := data.find(b"\xff", i)) != -1 and i + 1 < len(data):
        following = data[i + 1]
        if following != 0x00 and not 0xD0 <= following <= 0xD7:
            return i
        i += 2
    return len(data)


def _to_rgb8(image) -> np.ndarray:
    """Any PIL mode (1, L, P, RGBA, CMYK, I;16, I, F, LA, ...) → uint8 RGB array."""
    from PIL import Image

    mode = image.mode
    if mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        array = np.asarray(image, dtype=np.float64)
        top = 65535.0 if mode.startswith("I;16") else max(float(array.max()), 1.0)
        if mode == "I" and array.max() <= 65535:
            top = 65535.0 if array.max() > 255 else 255.0
        grey = np.clip(array / top * 255.0, 0, 255).astype(np.uint8)
        return np.repeat(grey[:, :, None], 3, axis=2)
    if mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in image.info):
        image = image.convert("RGBA")
        background = Image.new("RGB", image.size, (255, 255, 255))
        background.paste(image, mask=image.getchannel("A"))
        image = background
    return np.asarray(image.convert("RGB"), dtype=np.uint8)

