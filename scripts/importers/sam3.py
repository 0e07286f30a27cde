"""SAM 3 into the model store: the user's own ``sam3.pt`` (gated), or a random-init placeholder.

Stored files (both kinds): ``sam3.pt`` in Meta's checkpoint layout (``detector.*``, ``tracker.*``; what
ultralytics' ``build_sam3`` loads) and ``sam3_arch.json`` (variant, the ``Sam3Arch`` sizes, the input size).

- ``import_pretrained``: Meta's weights cannot be downloaded here (gated: https://huggingface.co/facebook/sam3,
  after accepting the SAM License). A hand-downloaded file is taken from ``local_path``, else
  ``$SAM3_CHECKPOINT``, else ``./sam3.pt``. Variant ``full``.
- ``import_placeholder``: the real classes with random weights, seeded. ``full`` is ultralytics'
  ``build_sam3_image_model`` / ``build_interactive_sam3`` on an empty checkpoint (848 M + 12 M parameters,
  a 3.4 GB file; for GPU hosts). ``reduced`` is the same classes with smaller sizes (``REDUCED_ARCH``,
  34 M + 6.5 M parameters, run at 252 px), for CPU tests. Both get the text encoder's ``torch.empty``
  parameters initialised (NaN otherwise) and the score heads nudged so that some queries pass a 0.25
  threshold (random weights score every query about the same, ~0.3); see ``tune_placeholder_``.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import tempfile
from pathlib import Path

from models import store
from models.catalog import BY_STORE_NAME, WEIGHTS_PRETRAINED, WEIGHTS_RANDOM
from nets.sam3_arch import ARCH_FILE, CHECKPOINT, FULL_ARCH

GATED_HELP = (
    "SAM 3 weights are gated and cannot be downloaded automatically: request access at "
    "https://huggingface.co/facebook/sam3 (accept the SAM License), download sam3.pt, then run "
    "`python scripts/import_models.py --file /path/to/sam3.pt`"
)
SEED = 0
PRETRAINED_ARCH = FULL_ARCH  # what a real sam3.pt must fill (Meta's released model)
REDUCED_IMGSZ = 252  # 18 x 18 patches; the convolutions at 4x this resolution dominate a reduced run

# Placeholder score tuning (see tune_placeholder_): dot-product logits spread ~N(-3.5, 2), presence ~0.9.
LOGIT_GAIN = 15.0
LOGIT_OFFSET = -5.0
PRESENCE_BIAS = 2.5


def find_checkpoint(local_path: str | None) -> Path:
    """The user's ``sam3.pt``: ``local_path``, else ``$SAM3_CHECKPOINT``, else ``./sam3.pt``."""
    candidates = [local_path] if local_path else [os.environ.get("SAM3_CHECKPOINT"), CHECKPOINT]
    for candidate in candidates:
        if candidate and Path(candidate).expanduser().is_file():
            return Path(candidate).expanduser().resolve()
    looked = local_path or f"$SAM3_CHECKPOINT ({os.environ.get('SAM3_CHECKPOINT') or 'unset'}) and ./{CHECKPOINT}"
    raise RuntimeError(f"no SAM 3 checkpoint at {looked}. {GATED_HELP}")


def check_checkpoint(path: Path) -> int:
    """Refuse files that are not SAM 3 checkpoints (memory-mapped: the tensors are not read). Returns #keys."""
    import torch

    try:
        try:
            ckpt = torch.load(path, map_location="cpu", mmap=True, weights_only=True)
        except pickle.UnpicklingError:  # extra non-tensor entries: ultralytics loads it unrestricted too
            ckpt = torch.load(path, map_location="cpu", mmap=True, weights_only=False)
    except Exception as exc:  # any unreadable file gets the same answer
        raise RuntimeError(
            f"{path} is not a readable PyTorch checkpoint ({exc.__class__.__name__}). {GATED_HELP}"
        ) from exc
    state = ckpt.get("model", ckpt) if isinstance(ckpt, dict) else None
    if not isinstance(state, dict) or not any(str(k).startswith("detector.") for k in state):
        raise RuntimeError(f"{path} is not a SAM 3 checkpoint (no 'detector.*' weights). {GATED_HELP}")
    return len(state)


def verify_architecture(path: Path, arch) -> None:
    """Refuse a file that does not fill ``arch``: after ultralytics' own key remapping (``_load_checkpoint``, what
    ``build_sam3_*`` and the runner use, which then loads non-strictly), every parameter of the detector and of
    the tracker must be there with its shape. Built with its parameters on the meta device: no memory kept for the weights themselves."""
    from ultralytics.models.sam.build_sam3 import _load_checkpoint

    from nets import sam3_arch
    from nets.sam3_tokenizer import make_tokenizer

    with sam3_arch.parameters_on_meta():
        networks = {"detector": (sam3_arch.build_detector(arch, make_tokenizer()), False),
                    "tracker": (sam3_arch.build_tracker(arch), True)}
    problems = []
    for name, (network, interactive) in networks.items():
        given: dict = {}
        network.load_state_dict = lambda state, strict=True, given=given: given.update(state)  # capture, not load
        _load_checkpoint(network, str(path), interactive=interactive)
        expected = {key: tuple(param.shape) for key, param in network.named_parameters()}
        missing = [key for key in expected if key not in given]
        wrong = [key for key in expected if key in given and tuple(given[key].shape) != expected[key]]
        if missing or wrong:
            problems.append(f"{name}: {len(missing)} of {len(expected)} parameters missing "
                            f"(e.g. {missing[:3]}), {len(wrong)} of the wrong shape (e.g. {wrong[:3]})")
    if problems:
        raise RuntimeError(f"{path} does not match SAM 3's architecture: {'; '.join(problems)}. {GATED_HELP}")


def import_pretrained(store_name: str = "sam3", local_path: str | None = None) -> str:
    """A hand-downloaded ``sam3.pt``, accepted only when it fills the real architecture (``verify_architecture``)."""
    path = find_checkpoint(local_path)
    n_keys = check_checkpoint(path)
    verify_architecture(path, PRETRAINED_ARCH)
    from nets.sam3_arch import IMGSZ

    def write(model_dir: Path) -> None:
        shutil.copyfile(path, model_dir / CHECKPOINT)
        _write_arch(model_dir, "full", PRETRAINED_ARCH.to_json(), IMGSZ)

    return store.save(
        store_name,
        kind="sam3",
        weights=WEIGHTS_PRETRAINED,
        source=f"file:{path.name}",
        write=write,
        variant="full",
        metadata={"checkpoint_keys": n_keys, "licence": BY_STORE_NAME["sam3"].licence},
    )


def import_placeholder(store_name: str = "sam3", variant: str | None = None, seed: int = SEED) -> str:
    """Random-init SAM 3. ``variant``: ``reduced`` | ``full``; default ``full`` on a CUDA host, else ``reduced``."""
    import torch

    from nets import sam3_arch as arch_mod

    variant = variant or ("full" if torch.cuda.is_available() else "reduced")
    if variant not in ("reduced", "full"):
        raise ValueError(f"variant must be 'reduced' or 'full', not {variant!r}")
    torch.manual_seed(seed)
    if variant == "full":
        with tempfile.TemporaryDirectory() as tmp:
            empty = Path(tmp) / "empty.pt"
            torch.save({}, empty)
            detector, tracker = arch_mod.build_full_from_checkpoint(empty)
        arch, imgsz = arch_mod.FULL_ARCH, arch_mod.IMGSZ
    else:
        from nets.sam3_tokenizer import make_tokenizer

        arch, imgsz = arch_mod.REDUCED_ARCH, REDUCED_IMGSZ
        detector = arch_mod.build_detector(arch, make_tokenizer())
        tracker = arch_mod.build_tracker(arch)
    arch_mod.init_uninitialised_(detector, seed)
    tune_placeholder_(detector)
    _assert_finite(detector, tracker)
    counts = {"detector_params": arch_mod.count_params(detector), "tracker_params": arch_mod.count_params(tracker)}

    def write(model_dir: Path) -> None:
        torch.save(arch_mod.checkpoint_state(detector, tracker), model_dir / CHECKPOINT)
        _write_arch(model_dir, variant, arch.to_json(), imgsz)

    return store.save(
        store_name,
        kind="sam3",
        weights=WEIGHTS_RANDOM,
        source=f"random-init:{variant}:seed={seed}",
        write=write,
        variant=variant,
        metadata={**counts, "seed": seed, "imgsz": imgsz},
    )


def tune_placeholder_(detector) -> None:
    """Make a random SAM 3 score a few queries above 0.25 and the rest below, deterministically.

    A query's score is ``sigmoid(dot-product logit) * sigmoid(presence logit)``. Untrained, the logits are
    ~N(0, 0.15) and the presence ~0.5, so every query scores ~0.3: everything or nothing passes a
    threshold. The dot-product projections are scaled (spread ~2) and given a constant offset through one
    reserved coordinate (bias-only in both projections: ``offset = b_hs[0] * b_prompt[0] / sqrt(d)``),
    and the presence head's output bias is raised (~0.9).
    """
    import torch

    scoring = detector.dot_prod_scoring
    with torch.no_grad():
        scoring.hs_proj.weight.mul_(LOGIT_GAIN)
        scoring.hs_proj.bias.mul_(LOGIT_GAIN)
        scoring.hs_proj.weight[0].zero_()
        scoring.prompt_proj.weight[0].zero_()
        scoring.prompt_proj.bias[0] = 1.0
        scoring.hs_proj.bias[0] = LOGIT_OFFSET / scoring.scale
        detector.transformer.decoder.presence_token_head.layers[-1].bias.add_(PRESENCE_BIAS)


def _assert_finite(*modules) -> None:
    import torch

    for module in modules:
        for name, tensor in module.state_dict().items():
            if tensor.is_floating_point() and not torch.isfinite(tensor).all():
                raise RuntimeError(f"placeholder tensor {name} is not finite")


def _write_arch(model_dir: Path, variant: str, arch: dict, imgsz: int) -> None:
    (model_dir / ARCH_FILE).write_text(json.dumps({"variant": variant, "imgsz": imgsz, "arch": arch}, indent=2))
