"""Test helpers for MP4 answers: what a file really holds, found by parsing its boxes and decoding it with
PyAV, not by trusting whoever wrote it. (Test-only: the service never needs to probe its own output.)"""

from __future__ import annotations

import io
import struct

from media.video import _fps_from_times


class BadMp4(ValueError):
    pass


def mp4_top_level_boxes(data: bytes) -> list[tuple[str, int]]:
    """``[(type, size), ...]`` of the top-level ISO-BMFF boxes, read from the bytes themselves."""
    boxes: list[tuple[str, int]] = []
    offset = 0
    while offset + 8 <= len(data):
        size, kind = struct.unpack(">I4s", data[offset:offset + 8])
        header = 8
        if size == 1:  # 64-bit size follows the type
            if offset + 16 > len(data):
                raise BadMp4("truncated MP4 box header")
            size = struct.unpack(">Q", data[offset + 8:offset + 16])[0]
            header = 16
        elif size == 0:  # the box runs to the end of the file
            size = len(data) - offset
        if size < header or offset + size > len(data):
            raise BadMp4(f"MP4 box {kind!r} at {offset} has a bad size {size}")
        boxes.append((kind.decode("latin-1"), size))
        offset += size
    if offset != len(data):
        raise BadMp4(f"{len(data) - offset} stray bytes after the last MP4 box")
    return boxes


def probe_mp4(data: bytes) -> dict:
    """What an MP4 really holds, found by parsing it (box order) and decoding it (PyAV), not by trusting
    whoever wrote it: ``boxes``, ``moov_before_mdat``, ``codec``, ``pix_fmt``, ``width``, ``height``,
    ``frames`` (decoded), ``frames_header``, ``fps`` (average rate from the header), ``fps_from_pts``.
    """
    import av

    boxes = mp4_top_level_boxes(data)
    kinds = [kind for kind, _ in boxes]
    moov_before_mdat = "moov" in kinds and "mdat" in kinds and kinds.index("moov") < kinds.index("mdat")
    with av.open(io.BytesIO(data), mode="r") as container:
        stream = container.streams.video[0]
        ctx = stream.codec_context
        info = {
            "boxes": kinds,
            "moov_before_mdat": moov_before_mdat,
            "container": container.format.name,
            "codec": ctx.name,
            "profile": stream.profile,
            "pix_fmt": ctx.pix_fmt,
            "width": ctx.width,
            "height": ctx.height,
            "frames_header": int(stream.frames),
            "fps": float(stream.average_rate) if stream.average_rate else None,
        }
        times = []
        count = 0
        for frame in container.decode(stream):
            count += 1
            if frame.time is not None:
                times.append(float(frame.time))
    info["frames"] = count
    info["fps_from_pts"] = _fps_from_times(times)
    return info

