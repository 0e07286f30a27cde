"""Binary masks as run lengths: what a runner sends for a mask, and COCO's compressed RLE on the wire.

``runs_of`` / ``mask_of`` are COCO's uncompressed RLE (column-major, runs alternating 0s and 1s, starting with
0s); ``coco_counts`` is pycocotools' ``rleToString`` (the compressed ``counts`` string), in Python. The RLE on
the wire comes from the mask itself, so holes and separate parts are kept and its area is the mask's.
"""

from __future__ import annotations

import numpy as np


def runs_of(mask: np.ndarray) -> np.ndarray:
    """Column-major run lengths of a binary (H, W) mask, the first run counting 0s (possibly empty)."""
    flat = np.asarray(mask, dtype=bool).flatten(order="F")
    bounds = np.concatenate(([0], np.flatnonzero(np.diff(flat)) + 1, [flat.size]))
    runs = np.diff(bounds)
    if flat.size and flat[0]:
        runs = np.concatenate(([0], runs))
    return runs.astype(np.uint32)


def mask_of(runs: np.ndarray, height: int, width: int) -> np.ndarray:
    """The uint8 (H, W) mask of ``runs``."""
    values = (np.arange(len(runs)) % 2).astype(np.uint8)
    flat = np.repeat(values, np.asarray(runs, dtype=np.int64))
    if flat.size != height * width:
        raise ValueError(f"runs cover {flat.size} pixels, the mask has {height * width}")
    return flat.reshape((width, height)).T


def coco_counts(runs: np.ndarray) -> str:
    """COCO's compressed RLE string of ``runs`` (pycocotools' ``maskApi.c`` rleToString)."""
    runs = [int(r) for r in runs]
    out = []
    for index, run in enumerate(runs):
        value = run - (runs[index - 2] if index > 2 else 0)
        more = True
        while more:
            chunk = value & 0x1F
            value >>= 5
            more = (value != -1) if chunk & 0x10 else (value != 0)
            if more:
                chunk |= 0x20
            out.append(chr(chunk + 48))
    return "".join(out)


def coco_rle(mask: np.ndarray) -> dict:
    """``{"size": [h, w], "counts": str}``: COCO's compressed RLE of a binary mask."""
    height, width = mask.shape[:2]
    return {"size": [int(height), int(width)], "counts": coco_counts(runs_of(mask))}


def resized_rle(runs: np.ndarray, runs_hw: tuple[int, int], target_wh: tuple[int, int]) -> tuple[dict, int]:
    """A runner's mask (run lengths at the size of the image it was sent) at the uploaded image's size, as COCO
    RLE, with its area in pixels (nearest-neighbour scaling, as the outline is scaled)."""
    import cv2

    mask = mask_of(runs, *runs_hw)
    if (mask.shape[1], mask.shape[0]) != tuple(target_wh):
        mask = cv2.resize(mask, tuple(target_wh), interpolation=cv2.INTER_NEAREST)
    return coco_rle(mask), int(mask.sum())


def polygon_to_rle(polygon: np.ndarray, width: int, height: int) -> dict:
    """COCO compressed RLE of a filled outline (for answers that have only an outline)."""
    import cv2

    mask = np.zeros((height, width), dtype=np.uint8)
    points = np.round(np.asarray(polygon)).astype(np.int32).reshape(-1, 1, 2)
    if len(points) >= 3:
        cv2.fillPoly(mask, [points], 1)
    return coco_rle(mask)
