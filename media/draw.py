"""Drawing results onto frames (annotated videos): boxes with labels, translucent mask outlines, colours by id,
captions, and the colour-coded optical-flow panel.

OpenCV only, BGR frames in and out; the caller owns the frame (drawn in place and returned). Every string is
reduced to printable ASCII before OpenCV sees it (its Hershey fonts draw nothing else, and text from a
request, a lone surrogate say, must never reach native code as it is).
"""

from __future__ import annotations

import cv2
import numpy as np

# 20 distinct, readable BGR colours; an id always gets the same one
PALETTE = [
    (56, 56, 255), (151, 157, 255), (31, 112, 255), (29, 178, 255), (49, 210, 207), (10, 249, 72),
    (23, 204, 146), (134, 219, 61), (52, 147, 26), (187, 212, 0), (168, 153, 44), (255, 194, 0),
    (147, 69, 52), (255, 115, 100), (236, 24, 0), (255, 56, 132), (133, 0, 82), (255, 56, 203),
    (200, 149, 255), (199, 55, 255),
]  # fmt: skip


def printable(text: str, limit: int = 80) -> str:
    """``text`` as OpenCV can draw it: printable ASCII only (others become ``?``), at most ``limit`` characters."""
    return "".join(c if " " <= c <= "~" else "?" for c in str(text)[:limit])


def color_for(key: int) -> tuple[int, int, int]:
    return PALETTE[int(key) % len(PALETTE)]


def fill_polygon(frame: np.ndarray, polygon: np.ndarray, color: tuple[int, int, int], alpha: float = 0.35) -> np.ndarray:
    points = np.round(np.asarray(polygon, dtype=np.float64)).astype(np.int32).reshape(-1, 1, 2)
    if len(points) < 3:
        return frame
    overlay = frame.copy()
    cv2.fillPoly(overlay, [points], color)
    cv2.addWeighted(overlay, alpha, frame, 1 - alpha, 0, dst=frame)
    cv2.polylines(frame, [points], isClosed=True, color=color, thickness=2, lineType=cv2.LINE_AA)
    return frame


def draw_box(frame: np.ndarray, xyxy, label: str, color: tuple[int, int, int]) -> np.ndarray:
    height, width = frame.shape[:2]
    x1, y1, x2, y2 = (int(round(v)) for v in xyxy)
    x1, x2 = max(0, min(x1, width - 1)), max(0, min(x2, width - 1))
    y1, y2 = max(0, min(y1, height - 1)), max(0, min(y2, height - 1))
    thickness = max(1, round(min(width, height) / 300))
    cv2.rectangle(frame, (x1, y1), (x2, y2), color, thickness, cv2.LINE_AA)
    label = printable(label)
    if label:
        scale = max(0.4, min(width, height) / 900)
        (tw, th), baseline = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
        top = y1 - th - baseline - 2 if y1 - th - baseline - 2 >= 0 else y1
        cv2.rectangle(frame, (x1, top), (min(x1 + tw + 4, width - 1), top + th + baseline + 2), color, -1)
        cv2.putText(frame, label, (x1 + 2, top + th + 1), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 1, cv2.LINE_AA)
    return frame


def draw_instances(frame: np.ndarray, polygons, items: list[dict], label) -> np.ndarray:
    """Each wire item's mask outline (filled, translucent) and box, coloured by its ``object_id``, labelled by
    ``label(item)``: the annotated frames of the segmentation videos."""
    for item, polygon in zip(items, polygons or [], strict=True):
        color = color_for(item["object_id"])
        fill_polygon(frame, polygon, color)
        draw_box(frame, item["bbox"], label(item), color)
    return frame


def caption(panel: np.ndarray, text: str) -> np.ndarray:
    """White text in the top-left corner, sized to the panel."""
    text = printable(text)
    scale = max(0.4, min(panel.shape[:2]) / 900)
    (_, text_h), baseline = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
    cv2.putText(panel, text, (4, text_h + baseline), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1, cv2.LINE_AA)
    return panel


def flow_panel_bgr(flow_px: np.ndarray, max_px_per_frame: float) -> np.ndarray:
    """Colour-coded flow (HSV wheel): hue = direction, value = magnitude / ``max_px_per_frame`` (clipped)."""
    dx, dy = flow_px[..., 0], flow_px[..., 1]
    magnitude = np.hypot(dx, dy)
    hsv = np.empty((*flow_px.shape[:2], 3), dtype=np.uint8)
    hsv[..., 0] = ((np.degrees(np.arctan2(dy, dx)) % 360) / 2).astype(np.uint8)  # OpenCV hue is 0..179
    hsv[..., 1] = 255
    hsv[..., 2] = (np.clip(magnitude / max(max_px_per_frame, 1e-6), 0, 1) * 255).astype(np.uint8)
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)
