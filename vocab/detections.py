"""One canonical result type for boxes, masks and keypoints, and its wire encoding.

Runners return plain arrays in the pixels of the image they were sent; the adapters take them (``from_yolo``
for the YOLO runner's arrays, ``from_sam`` for a SAM runner's instances), ``rescaled`` maps them to the pixels of
the image as uploaded, and ``to_wire`` serialises once.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np


@dataclass(frozen=True)
class Detections:
    xyxy: np.ndarray  # float (N, 4): x1, y1, x2, y2 in pixels
    confidence: np.ndarray  # float (N,)
    class_id: np.ndarray  # int (N,)
    class_name: list[str]
    polygons: list[np.ndarray] | None = None  # each float (K, 2), x, y in pixels
    mask_area_px: np.ndarray | None = None  # float (N,)
    keypoints: np.ndarray | None = None  # float (N, 17, 3): x, y, confidence
    extra: list[dict] = field(default_factory=list)  # per-item wire fields of ours (e.g. concept_index)

    def __post_init__(self) -> None:
        n = len(self.xyxy)
        assert self.xyxy.shape == (n, 4), self.xyxy.shape
        assert len(self.confidence) == n and len(self.class_id) == n and len(self.class_name) == n
        assert self.polygons is None or len(self.polygons) == n
        assert self.keypoints is None or self.keypoints.shape[0] == n
        assert not self.extra or len(self.extra) == n

    def __len__(self) -> int:
        return len(self.xyxy)

    @classmethod
    def from_arrays(cls, arrays: dict) -> Detections:
        return cls(
            xyxy=np.asarray(arrays["xyxy"], dtype=np.float64).reshape(-1, 4),
            confidence=np.asarray(arrays["confidence"], dtype=np.float64).reshape(-1),
            class_id=np.asarray(arrays["class_id"], dtype=np.int64).reshape(-1),
            class_name=list(arrays["class_name"]),
            polygons=[np.asarray(p, dtype=np.float64).reshape(-1, 2) for p in arrays["polygons"]]
            if arrays.get("polygons") is not None
            else None,
            mask_area_px=np.asarray(arrays["mask_area_px"], dtype=np.float64)
            if arrays.get("mask_area_px") is not None
            else None,
            keypoints=np.asarray(arrays["keypoints"], dtype=np.float64)
            if arrays.get("keypoints") is not None
            else None,
            extra=list(arrays.get("extra") or []),
        )

    @classmethod
    def from_yolo(cls, arrays: dict) -> Detections:
        """The YOLO runner's answer for one image (``runners.yolo.to_arrays``: xyxy, confidence, class_id,
        class_name, and polygons + mask_area_px or keypoints)."""
        return cls.from_arrays(arrays)

    @classmethod
    def from_sam(cls, instances: list[dict], class_id: list[int], class_names: list[str]) -> Detections:
        """A SAM runner's instances (``vocab.segmentation.SamInstance``) for one image, each of class
        ``class_id[i]`` (the concept it answers), named ``class_names[class_id[i]]``. The instance's own indices go
        on the wire beside it: ``prompt_index`` (SAM 2), ``concept_index``, ``object_id`` (video)."""
        return cls.from_arrays({
            "xyxy": np.array([i["xyxy"] for i in instances], dtype=np.float64).reshape(-1, 4),
            "confidence": [i["confidence"] for i in instances],
            "class_id": class_id,
            "class_name": [class_names[c] for c in class_id],
            "polygons": [i["polygon"] for i in instances],
            "mask_area_px": [i["mask_area_px"] for i in instances],
            "extra": [{**({"prompt_index": i["prompt_index"]} if "prompt_index" in i else {}), "concept_index": c,
                       **({"object_id": i["object_id"]} if "object_id" in i else {})}
                      for i, c in zip(instances, class_id, strict=True)],
        })

    def rescaled(self, scale_x: float, scale_y: float, resolution_wh: tuple[int, int]) -> Detections:
        """Multiply coordinates by (scale_x, scale_y), then clip them to the ``resolution_wh`` image."""
        width, height = resolution_wh
        factor = np.array([scale_x, scale_y])
        xyxy = self.xyxy * np.tile(factor, 2)
        xyxy[:, [0, 2]] = xyxy[:, [0, 2]].clip(0, width)
        xyxy[:, [1, 3]] = xyxy[:, [1, 3]].clip(0, height)
        polygons = None
        if self.polygons is not None:
            polygons = [(p * factor).clip([0, 0], [width, height]) for p in self.polygons]
        keypoints = None
        if self.keypoints is not None:
            keypoints = self.keypoints.copy()
            keypoints[..., :2] *= factor
            keypoints[..., 0] = keypoints[..., 0].clip(0, width)
            keypoints[..., 1] = keypoints[..., 1].clip(0, height)
        area = self.mask_area_px * scale_x * scale_y if self.mask_area_px is not None else None
        return replace(self, xyxy=xyxy, polygons=polygons, keypoints=keypoints, mask_area_px=area)

    def where(self, keep: np.ndarray) -> Detections:
        """The subset where the boolean ``keep`` is true."""
        index = np.flatnonzero(keep)
        return Detections(
            xyxy=self.xyxy[index],
            confidence=self.confidence[index],
            class_id=self.class_id[index],
            class_name=[self.class_name[i] for i in index],
            polygons=[self.polygons[i] for i in index] if self.polygons is not None else None,
            mask_area_px=self.mask_area_px[index] if self.mask_area_px is not None else None,
            keypoints=self.keypoints[index] if self.keypoints is not None else None,
            extra=[self.extra[i] for i in index] if self.extra else [],
        )

    def with_masks(self) -> Detections:
        """Only the instances whose mask outline has more than two points (the contract's polygon). No outlines at
        all (a segment model that found nothing has no mask set: ultralytics' ``masks`` is None) keeps none."""
        if self.polygons is None:
            return self.where(np.zeros(len(self), dtype=bool))
        return self.where(np.array([len(p) > 2 for p in self.polygons], dtype=bool))

    def to_wire(self, labels: list[str] | None = None) -> list[dict]:
        # .tolist() first: Python floats in one C call (iterating numpy rows point by point cost ~30 ms for the
        # ~6,000 outline points of a segmentation answer)
        xyxy, confidence, class_id = self.xyxy.tolist(), self.confidence.tolist(), self.class_id.tolist()
        keypoints = self.keypoints.tolist() if self.keypoints is not None else None
        items = []
        for i in range(len(self)):
            x1, y1, x2, y2 = (round(v, 2) for v in xyxy[i])
            score = round(confidence[i], 5)
            name = self.class_name[i]
            item = {
                "label": labels[i] if labels is not None else name,
                "score": score,
                "box": {"xmin": x1, "ymin": y1, "xmax": x2, "ymax": y2},
                "bbox": [x1, y1, x2, y2],
                "class_id": int(class_id[i]),
                "class_name": name,
                "confidence": score,
                "instance_id": i,
            }
            if self.polygons is not None:
                # numpy rounds the outline (thousands of points) ~10x faster than round(); it can differ from
                # round() by 0.1 px on exact decimal halves, which float32 model outputs practically never are
                item["mask_polygon"] = np.round(self.polygons[i], 1).tolist()
                item["mask_area_px"] = int(round(float(self.mask_area_px[i]))) if self.mask_area_px is not None else 0
            if keypoints is not None:
                item["keypoints"] = [[round(x, 2), round(y, 2), round(c, 4)] for x, y, c in keypoints[i]]
            if self.extra:
                item.update(self.extra[i])
            items.append(item)
        return items
