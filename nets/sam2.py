"""SAM 2.1 as stored: ultralytics builds the network itself (``SAM("…/sam2.1_b.pt")``: the file name picks the
architecture); what is ours is the file layout the importer writes and the runner reads."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

ARCH_FILE = "sam2_arch.json"  # {"variant", "architecture", "imgsz"}


@dataclass(frozen=True)
class StoredSam2:
    architecture: str  # sam2.1_t | sam2.1_s | sam2.1_b | sam2.1_l
    variant: str  # full | reduced (the placeholder predicting at a smaller input size on CPU)
    imgsz: int  # the square input size predictions run at
    checkpoint: Path  # <model dir>/<architecture>.pt, ultralytics' layout


def read(model_dir: Path) -> StoredSam2:
    spec = json.loads((Path(model_dir) / ARCH_FILE).read_text())
    architecture = spec["architecture"]
    return StoredSam2(architecture, spec["variant"], int(spec["imgsz"]), Path(model_dir) / f"{architecture}.pt")


def write(model_dir: Path, variant: str, architecture: str, imgsz: int) -> None:
    (Path(model_dir) / ARCH_FILE).write_text(
        json.dumps({"variant": variant, "architecture": architecture, "imgsz": imgsz})
    )
