"""Make the velocity benchmark clip: N frames (120) of W x H (640x360) from the walking clip, looped or
ping-ponged (forward, then backward) over its 60 frames, H.264 at the source fps, written where you say.

    python scripts/make_clip.py /tmp/walking-120-640x360.mp4
    python scripts/make_clip.py /tmp/clip.mp4 --frames 12 --size 640x360 --mode loop

The frames are scaled to cover W x H and centre-cropped (no stretching). The output is not committed.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SOURCE = ROOT.parent / "shared" / "media" / "people-walking.mp4"


def cover_crop(frame, width: int, height: int):
    """Scale so the frame covers width x height, then cut the centre."""
    import cv2

    src_h, src_w = frame.shape[:2]
    scale = max(width / src_w, height / src_h)
    size = (max(width, round(src_w * scale)), max(height, round(src_h * scale)))
    scaled = cv2.resize(frame, size, interpolation=cv2.INTER_AREA)
    top, left = (size[1] - height) // 2, (size[0] - width) // 2
    return scaled[top:top + height, left:left + width]


def frame_order(count: int, frames: int, mode: str) -> list[int]:
    """Indices into the source: ``loop`` 0..n-1, 0..; ``pingpong`` 0..n-1, n-2..1, 0.. (no frame doubled)."""
    cycle = list(range(count)) if mode == "loop" or count < 2 else [*range(count), *range(count - 2, 0, -1)]
    return [cycle[i % len(cycle)] for i in range(frames)]


def main(argv: list[str] | None = None) -> int:
    from media.video import decode_video, encode_h264

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("output", type=Path)
    parser.add_argument("--source", type=Path, default=SOURCE)
    parser.add_argument("--frames", type=int, default=120)
    parser.add_argument("--size", default="640x360", help="WIDTHxHEIGHT")
    parser.add_argument("--mode", choices=("pingpong", "loop"), default="pingpong")
    args = parser.parse_args(argv)

    width, height = (int(v) for v in args.size.lower().split("x"))
    video = decode_video(args.source.read_bytes(), max_frames=10_000, max_pixels=10**9, max_duration_s=1e9)
    frames = [cover_crop(f, width, height) for f in video.frames]
    out = [frames[i] for i in frame_order(len(frames), args.frames, args.mode)]
    args.output.write_bytes(encode_h264(out, video.fps))
    print(f"{args.output}: {len(out)} frames {width}x{height} at {video.fps:g} fps ({args.mode})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
