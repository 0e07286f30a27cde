"""RAFT optical flow (torchvision's ``raft_large`` / ``raft_small``) into the model store as ``raft.pt``.

The store directory holds one torchvision-format ``state_dict``; the ``variant`` label (``large`` |
``small``) says which constructor rebuilds it (``build_model``). Real weights come from torchvision's
weights enums (``Raft_Large_Weights.DEFAULT``: trained on FlyingChairs → FlyingThings3D → Sintel/KITTI
mix, "C_T_SKHT_V2") or from a local ``state_dict`` file in torchvision's layout.
"""

from __future__ import annotations

from pathlib import Path

from models import store
from models.catalog import BY_STORE_NAME, WEIGHTS_PRETRAINED, WEIGHTS_RANDOM
from nets.raft import WEIGHTS_FILE, build_model, variant_of

SEED = 0


def build_placeholder(store_name: str):
    """Random-init weights of the real architecture, the same every time (seeded, global RNG untouched)."""
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(SEED)
        return build_model(variant_of(store_name)).eval()


def _save(store_name: str, model, *, weights: str, source: str) -> str:
    import torch

    state = {key: value.detach().cpu().contiguous() for key, value in model.state_dict().items()}

    def write(directory: Path) -> None:
        torch.save(state, directory / WEIGHTS_FILE)

    return store.save(
        store_name,
        kind="flow",
        weights=weights,
        source=source,
        variant=variant_of(store_name),
        write=write,
        metadata={"architecture": f"torchvision raft_{variant_of(store_name)}",
                  "parameters": sum(p.numel() for p in model.parameters())},
    )


def import_placeholder(store_name: str, **_opts) -> str:
    return _save(store_name, build_placeholder(store_name), weights=WEIGHTS_RANDOM, source="random-init (seed 0)")


def _weights_enum(store_name: str):
    from torchvision.models.optical_flow import Raft_Large_Weights, Raft_Small_Weights

    return {"raft-large": Raft_Large_Weights, "raft-small": Raft_Small_Weights}[store_name].DEFAULT


def load_state_dict_file(path: str) -> dict:
    """A torchvision-layout RAFT ``state_dict`` from a ``.pt``/``.pth`` file (a bare dict, or one under
    ``state_dict``/``model``; a ``module.`` prefix from DataParallel is dropped)."""
    import torch

    state = torch.load(path, map_location="cpu", weights_only=True)
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict):
        raise RuntimeError(f"{path} does not hold a state_dict")
    return {k.removeprefix("module."): v for k, v in state.items()}


def import_pretrained(store_name: str, local_path: str | None = None) -> str:
    """Real weights from ``local_path`` (a torchvision-layout ``state_dict`` file) or torchvision's
    download. The weights are loaded into the architecture (strictly) before the store is touched."""
    variant = variant_of(store_name)
    enum = _weights_enum(store_name)
    if local_path is not None:
        if not Path(local_path).is_file():
            raise RuntimeError(f"{local_path} is not a file")
        try:
            state = load_state_dict_file(local_path)
        except Exception as exc:  # unpickling errors have no common base
            raise RuntimeError(f"cannot read a RAFT state_dict from {local_path}: {exc}") from exc
        source = f"file:{local_path}"
    else:
        try:
            state = enum.get_state_dict(progress=False, check_hash=True)
        except Exception as exc:  # URLError, HTTPError, hash mismatch, ...
            raise RuntimeError(
                f"cannot download torchvision {enum} ({type(exc).__name__}: {exc}). On a machine with internet "
                f"access fetch {enum.url}, copy it here and import it with "
                f"import_pretrained({store_name!r}, local_path='<file>') (or put it in torch hub's cache, "
                f"{_hub_checkpoints_dir()})."
            ) from exc
        source = BY_STORE_NAME[store_name].source
    model = build_model(variant)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise RuntimeError(f"these weights are not torchvision's raft_{variant} layout: {exc}") from exc
    return _save(store_name, model.eval(), weights=WEIGHTS_PRETRAINED, source=source)


def _hub_checkpoints_dir() -> str:
    import torch

    return str(Path(torch.hub.get_dir()) / "checkpoints")
