"""torchvision's RAFT (``raft_large`` / ``raft_small``) as this project stores it: one torchvision-format
``state_dict`` in ``raft.pt``; the store's ``variant`` label (``large`` | ``small``) says which constructor
rebuilds it."""

from __future__ import annotations

WEIGHTS_FILE = "raft.pt"
VARIANTS = {"raft-large": "large", "raft-small": "small"}


def variant_of(store_name: str) -> str:
    if store_name not in VARIANTS:
        raise KeyError(f"{store_name!r} is not a RAFT model in the catalog ({sorted(VARIANTS)})")
    return VARIANTS[store_name]


def build_model(variant: str):
    """An untrained torchvision RAFT of ``variant`` (no download: ``weights=None``)."""
    from torchvision.models.optical_flow import raft_large, raft_small

    constructors = {"large": raft_large, "small": raft_small}
    if variant not in constructors:
        raise ValueError(f"unknown RAFT variant {variant!r} (large | small)")
    return constructors[variant](weights=None, progress=False)
