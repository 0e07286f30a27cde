"""SAM 2.1 into the model store: ultralytics' release checkpoint (downloaded, or a local file), or a random-init
placeholder built by ultralytics' own builder.

Stored files (both kinds): ``<store name>.pt`` (``sam2.1_b.pt``: ultralytics' layout, ``{"model": state_dict}``;
ultralytics picks the architecture from that file name, so the name is kept) and ``sam2_arch.json`` (variant,
architecture, the input size the runner predicts at).

- ``import_pretrained``: a local file (``--file ~/Downloads/sam2.1_b.pt``), else ultralytics' release asset
  (no network here: that fails at once, with how to import the file by hand). The file is loaded into the
  architecture its name says before it is stored (strict: a file of another size or model is refused).
- ``import_placeholder``: ``ultralytics.models.sam.build.build_sam2_{t,s,b,l}`` with random weights, seeded,
  built with SAM 2.1's options (ultralytics turns them on from a ``sam2.1`` checkpoint name; the build is given
  the name with its checkpoint loading skipped). Variant ``full`` predicts at 1024 px, SAM 2's own size (for
  GPU hosts); ``reduced`` is the same architecture predicting at 256 px (about 0.9 s an image on these 2 CPU
  cores instead of 12 s), for CPU tests. Random SAM 2 weights already give non-empty image masks for box and
  point prompts (scores about 0.5); the video tracker, though, blanks every mask whose object score is below 0
  (random: most of them), so the object-score head's output bias is raised (``OBJECT_SCORE_BIAS``; image
  predictions never read that head).
"""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

from models import store
from models.catalog import BY_STORE_NAME, WEIGHTS_PRETRAINED, WEIGHTS_RANDOM
from nets import sam2 as stored

SEED = 0
FULL_IMGSZ = 1024
REDUCED_IMGSZ = 256
OBJECT_SCORE_BIAS = 10.0
_NAME = re.compile(r"sam2(?:\.1)?_([tsbl])(?:\.pt)?$")


def architecture_of(name: str) -> str:
    """``sam2.1_b`` / ``sam2.1_b.pt`` → ``sam2.1_b``; ``ValueError`` for names that are not a SAM 2.1 size."""
    match = _NAME.search(Path(name).name.lower())
    if not match or not Path(name).name.lower().startswith("sam2.1_"):
        raise ValueError(f"{name!r} is not a SAM 2.1 checkpoint name (sam2.1_t, sam2.1_s, sam2.1_b or sam2.1_l)")
    return f"sam2.1_{match.group(1)}"


def build(architecture: str, checkpoint: Path | None = None):
    """ultralytics' SAM 2.1 network of ``architecture``, with ``checkpoint``'s weights (strict) or random ones."""
    from unittest import mock

    from ultralytics.models.sam import build as ultralytics_build

    builder = getattr(ultralytics_build, f"build_sam2_{architecture[-1]}")
    if checkpoint is not None:
        return builder(str(checkpoint))
    with mock.patch.object(ultralytics_build, "_load_checkpoint", lambda model, _checkpoint: model):
        return builder(f"{architecture}.pt")  # the name turns SAM 2.1's options on; nothing is loaded


def import_pretrained(store_name: str = "sam2.1_b", local_path: str | None = None) -> str:
    if local_path is None:
        from scripts.importers.yolo import _download_asset

        spec = BY_STORE_NAME.get(store_name)
        asset = spec.source.split(":", 1)[1] if spec else f"{store_name}.pt"
        with tempfile.TemporaryDirectory(prefix="sam2-download-") as tmp:
            return _store_checkpoint(store_name, _download_asset(asset, Path(tmp)), f"ultralytics:{asset}")
    path = Path(local_path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"no such checkpoint: {path}")
    return _store_checkpoint(store_name, path, f"file:{path.name}")


def _store_checkpoint(store_name: str, path: Path, source: str) -> str:
    import shutil

    architecture = architecture_of(path.name)
    try:
        build(architecture, path)
    except Exception as exc:  # any file that does not load into the architecture its name says
        raise RuntimeError(f"{path} is not a {architecture} checkpoint ({exc.__class__.__name__}: {exc})"[:500]) from exc

    def write(model_dir: Path) -> None:
        shutil.copyfile(path, model_dir / f"{architecture}.pt")
        stored.write(model_dir, "full", architecture, FULL_IMGSZ)

    return store.save(store_name, kind="sam2", weights=WEIGHTS_PRETRAINED, source=source, write=write,
                      variant="full", metadata={"architecture": architecture})


def import_placeholder(store_name: str = "sam2.1_b", variant: str | None = None, seed: int = SEED) -> str:
    """Random-init SAM 2.1 of the store name's size. ``variant``: ``reduced`` (256 px) | ``full`` (1024 px);
    default ``full`` on a CUDA host, else ``reduced``."""
    import torch

    variant = variant or ("full" if torch.cuda.is_available() else "reduced")
    if variant not in ("reduced", "full"):
        raise ValueError(f"variant must be 'reduced' or 'full', not {variant!r}")
    architecture = architecture_of(store_name)
    torch.manual_seed(seed)
    model = build(architecture)
    shape_placeholder_(model)
    params = sum(p.numel() for p in model.parameters())
    imgsz = FULL_IMGSZ if variant == "full" else REDUCED_IMGSZ

    def write(model_dir: Path) -> None:
        torch.save({"model": model.state_dict()}, model_dir / f"{architecture}.pt")
        stored.write(model_dir, variant, architecture, imgsz)

    return store.save(store_name, kind="sam2", weights=WEIGHTS_RANDOM, source=f"random-init:{variant}:seed={seed}",
                      write=write, variant=variant,
                      metadata={"architecture": architecture, "params": params, "seed": seed, "imgsz": imgsz})



def shape_placeholder_(model) -> None:
    """Let the video tracker see every prompted object: its object-score logit made clearly positive."""
    import torch

    with torch.no_grad():
        model.sam_mask_decoder.pred_obj_score_head.layers[-1].bias.add_(OBJECT_SCORE_BIAS)
