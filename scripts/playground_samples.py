"""Rebuild the playground's bundled samples (``playground/samples/``) from the shared test media.

    python scripts/playground_samples.py [--media ../shared/media]

A JPEG of messi5.jpg at quality 80, and the first 2 s of people-walking.mp4 downscaled to 384x288, H.264
``yuv420p`` with the ``moov`` atom first (so a browser plays it as it is). Together well under 100 KB.
"""

from __future__ import annotations

import argparse
from fractions import Fraction
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "playground" / "samples"
FPS, SECONDS, SIZE_WH = 10, 2, (384, 288)


def make_photo(media: Path) -> Path:
    import cv2

    target = OUT / "messi5.jpg"
    cv2.imwrite(str(target), cv2.imread(str(media / "messi5.jpg")), [cv2.IMWRITE_JPEG_QUALITY, 80])
    return target


def make_clip(media: Path) -> Path:
    import av

    target = OUT / "people-walking.mp4"
    with av.open(str(media / "people-walking.mp4")) as source, \
            av.open(str(target), "w", options={"movflags": "+faststart"}) as sink:
        stream = sink.add_stream("libx264", rate=FPS)
        stream.time_base = Fraction(1, FPS)
        stream.width, stream.height = SIZE_WH
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": "28", "preset": "slow"}
        for index, frame in enumerate(source.decode(video=0)):
            if index >= FPS * SECONDS:
                break
            small = frame.reformat(width=SIZE_WH[0], height=SIZE_WH[1], format="yuv420p")
            small.pts, small.time_base = index, Fraction(1, FPS)
            sink.mux(stream.encode(small))
        sink.mux(stream.encode())
    return target


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--media", type=Path, default=ROOT.parent / "shared" / "media")
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    for path in (make_photo(args.media), make_clip(args.media)):
        print(f"{path.relative_to(ROOT)}: {path.stat().st_size:,} bytes")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
