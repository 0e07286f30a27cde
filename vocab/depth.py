"""The depth answer: relative inverse depth (larger = nearer) at the uploaded size, as PNGs, with one ``to_wire()``."""

from __future__ import annotations

import base64
from dataclasses import dataclass


@dataclass(frozen=True)
class DepthAnswer:
    depth_png: bytes  # 8-bit grey PNG of the min-max normalised map (bright = near)
    width: int
    height: int
    depth_min: float  # the raw map's finite range, in the runner's units
    depth_max: float
    png16: bytes | None = None  # the same map as a 16-bit grey PNG (``png16``)
    colormap: bytes | None = None  # an inferno colour preview (``colormap``)

    def to_wire(self) -> dict:
        out = {"depth_image": _b64(self.depth_png), "width": self.width, "height": self.height,
               "depth_min": self.depth_min, "depth_max": self.depth_max, "relative": True}
        if self.png16 is not None:
            out["depth_png16"] = _b64(self.png16)
        if self.colormap is not None:
            out["depth_colormap"] = _b64(self.colormap)
        return out


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()
