"""depth-estimation: image → Depth Anything runner → 8-bit grey PNG (bright = near), same size as the input.

The runner returns relative inverse depth (larger = nearer) at the size of the image it was sent; the map
is min-max normalised here, so ``depth_image`` is relative, never metric. Extras of ours beside it:
``width``, ``height``, the raw range ``depth_min`` / ``depth_max`` (the runner's units), and on request a
lossless 16-bit PNG (``png16``: 65,536 levels for measuring) and an inferno colour preview (``colormap``).
"""

from __future__ import annotations

import numpy as np

from runners.common import Runners
from runners.depth import DepthClient
from settings import Settings
from tasks.base import Resized, TaskInput, resize_to_fit
from vocab.depth import DepthAnswer
from vocab.errors import bad_request
from vocab.items import depth_item
from vocab.schema import DepthOptions

MAX_SIDE = 1024  # larger photos are shrunk in the gateway (the model works at 518 px anyway), maps scaled back
MAX_ASPECT = 50  # the processor scales the long side to ~518 px: a thinner image would have a short side of 0


def decode(task_input: TaskInput, settings: Settings) -> Resized:
    from media.decode import decode_image

    image = decode_image(task_input.data, max_pixels=settings.max_image_pixels)
    if max(image.width, image.height) > MAX_ASPECT * min(image.width, image.height):
        raise bad_request(f"{task_input.task} needs an image no thinner than 1:{MAX_ASPECT}; this one is "
                          f"{image.width}x{image.height}")
    return resize_to_fit(image.bgr, min(MAX_SIDE, max(image.width, image.height)))


async def run(resized: Resized, task_input: TaskInput, runners: Runners) -> np.ndarray:
    (depth,) = await runners[DepthClient].estimate([depth_item(task_input.model.store_name, resized.bgr)])
    return depth


def normalise(depth: np.ndarray) -> np.ndarray:
    """Min-max to [0, 1] (a constant map is all zeros); NaN and inf count as the far end."""
    finite = np.isfinite(depth)
    if not finite.any():
        return np.zeros(depth.shape, dtype=np.float64)
    low, high = float(depth[finite].min()), float(depth[finite].max())
    out = np.zeros(depth.shape, dtype=np.float64)
    if high > low:
        out[finite] = (depth[finite] - low) / (high - low)
    return out


def _png(array: np.ndarray) -> bytes:
    import cv2

    ok, buffer = cv2.imencode(".png", array)
    assert ok
    return buffer.tobytes()


def encode(depth: np.ndarray, resized: Resized, task_input: TaskInput) -> dict:
    import cv2

    options: DepthOptions = task_input.options
    width, height = resized.resolution_wh
    if depth.shape != (height, width):
        depth = cv2.resize(depth, (width, height), interpolation=cv2.INTER_CUBIC)
    unit = normalise(depth)
    finite = depth[np.isfinite(depth)]
    grey8 = np.round(unit * 255).astype(np.uint8)
    return DepthAnswer(
        _png(grey8), width, height,
        depth_min=float(finite.min()) if finite.size else 0.0, depth_max=float(finite.max()) if finite.size else 0.0,
        png16=_png(np.round(unit * 65535).astype(np.uint16)) if options.png16 else None,
        colormap=_png(cv2.applyColorMap(grey8, cv2.COLORMAP_INFERNO)) if options.colormap else None,
    ).to_wire()
