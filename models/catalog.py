"""The model catalog: every name the API accepts, and what it resolves to in the model store.

A plain registry (like ultralytics' ``task_map``): adding a model is one ``ModelSpec`` entry here (a new family
is an entry in ``vocab/families.py`` and its importer in ``scripts/importers/``). Nothing here imports torch.

Vocabulary
- *store name*: the BentoML model store name (``yolo26n-seg``), tags are ``<store name>:<version>``.
- *kind*: what a model computes. A task accepts models of the kinds its registry entry names (``model_kinds``).
- *family*: which runner serves it (``vocab/families.py``: ``KIND_FAMILY`` maps each kind to its family).
- *weights*: ``pretrained`` (real weights: downloaded or imported from a local file) or
  ``random-init`` (a placeholder of the real architecture, for offline tests; never for users).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from vocab.families import KIND_FAMILY

WEIGHTS_PRETRAINED = "pretrained"
WEIGHTS_RANDOM = "random-init"


@dataclass(frozen=True)
class ModelSpec:
    store_name: str
    kind: str
    aliases: tuple[str, ...]
    source: str  # where real weights come from: an ultralytics asset, a HF repo id, a torchvision enum, a file
    licence: str
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def family(self) -> str:
        return KIND_FAMILY[self.kind]


CATALOG: tuple[ModelSpec, ...] = (
    ModelSpec("yolo26n", "detect", ("yolo26n.pt",), "ultralytics:yolo26n.pt", "AGPL-3.0",
              {"config": "yolo26n.yaml"}),
    ModelSpec("yolo26n-seg", "segment", ("yolo26n-seg.pt",), "ultralytics:yolo26n-seg.pt", "AGPL-3.0",
              {"config": "yolo26n-seg.yaml"}),
    ModelSpec("yolo26n-pose", "pose", ("yolo26n-pose.pt",), "ultralytics:yolo26n-pose.pt", "AGPL-3.0",
              {"config": "yolo26n-pose.yaml"}),
    ModelSpec("sam3", "sam3", ("sam3.pt",), "file:sam3.pt (gated, download by hand)", "SAM License"),
    *(ModelSpec(f"sam2.1_{size}", "sam2", (f"sam2.1_{size}.pt",), f"ultralytics:sam2.1_{size}.pt", "Apache-2.0")
      for size in ("b", "t", "s", "l")),
    ModelSpec("depth-anything-small", "depth",
              ("LiheYoung/depth-anything-small-hf", "depth-anything-small-hf", "depth-anything-small"),
              "hf:LiheYoung/depth-anything-small-hf", "Apache-2.0"),
    ModelSpec("depth-anything-v2-small", "depth",
              ("depth-anything/Depth-Anything-V2-Small-hf", "Depth-Anything-V2-Small-hf", "depth-anything-v2-small"),
              "hf:depth-anything/Depth-Anything-V2-Small-hf", "Apache-2.0"),
    ModelSpec("raft-large", "flow", ("raft-large", "raft_large"), "torchvision:Raft_Large_Weights.DEFAULT",
              "BSD-3-Clause"),
    ModelSpec("raft-small", "flow", ("raft-small", "raft_small"), "torchvision:Raft_Small_Weights.DEFAULT",
              "BSD-3-Clause"),
)

BY_STORE_NAME: dict[str, ModelSpec] = {spec.store_name: spec for spec in CATALOG}

# Model names are looked up, never opened: anything else is refused before the store is consulted.
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,62}(/[A-Za-z0-9][A-Za-z0-9_.\-]{0,62})?$")


def is_plausible_name(name: str) -> bool:
    """True for catalog-shaped names (``yolo26n.pt``, ``org/repo``); False for paths, URLs, ``..``."""
    return bool(_NAME_RE.match(name)) and ".." not in name and "://" not in name


def store_name_for(name: str) -> str:
    """The store name a user-facing name maps to, for catalog entries and imported YOLO variants alike.

    ``yolo26n.pt`` → ``yolo26n``; ``LiheYoung/depth-anything-small-hf`` → ``depth-anything-small``;
    ``yolo11s.pt`` (not in the catalog) → ``yolo11s``.
    """
    for spec in CATALOG:
        if name == spec.store_name or name in spec.aliases:
            return spec.store_name
    base = name.rsplit("/", 1)[-1]
    if base.endswith(".pt"):
        base = base[: -len(".pt")]
    return base.lower()


def accepted_names(store_name: str) -> list[str]:
    """Every name the API accepts for an installed model (for error messages and /health)."""
    spec = BY_STORE_NAME.get(store_name)
    names = [store_name, *(spec.aliases if spec else (f"{store_name}.pt",))]
    return list(dict.fromkeys(names))


def request_name(store_name: str) -> str:
    """The name the web client sends for a model (its first alias: ``yolo26n.pt``, ``raft-large``)."""
    spec = BY_STORE_NAME.get(store_name)
    return spec.aliases[0] if spec else f"{store_name}.pt"
