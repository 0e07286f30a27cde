"""The BentoML model store, as this project uses it.

Every model is stored under its catalog store name with these labels (strings, as BentoML wants):
``family``, ``kind``, ``weights`` (``pretrained`` | ``random-init``), ``source``, ``variant`` (free text,
e.g. ``reduced`` for the CPU-sized SAM 3 placeholder). Runners load from ``path_of``; the gateway
reads ``installed`` once at start-up (no torch needed). Nothing here downloads anything.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from vocab.families import KIND_FAMILY


@dataclass(frozen=True)
class InstalledModel:
    store_name: str
    tag: str
    kind: str
    family: str
    weights: str
    source: str
    variant: str
    path: Path

    @property
    def placeholder(self) -> bool:
        return self.weights != "pretrained"


def save(
    store_name: str,
    *,
    kind: str,
    weights: str,
    source: str,
    write: Callable[[Path], None],
    variant: str = "",
    metadata: dict | None = None,
) -> str:
    """Create a new version of ``store_name``; ``write(dir)`` puts the files in. Returns the tag."""
    import bentoml

    labels = {
        "family": KIND_FAMILY[kind],
        "kind": kind,
        "weights": weights,
        "source": source,
        "variant": variant,
        "project": "perception-backend",
    }
    with bentoml.models.create(store_name, labels=labels, metadata=metadata or {}) as model:
        write(Path(model.path))
    return str(model.tag)


def _from_bento_model(model) -> InstalledModel | None:
    labels = model.info.labels or {}
    if labels.get("project") != "perception-backend":
        return None
    return InstalledModel(
        store_name=model.tag.name,
        tag=str(model.tag),
        kind=labels["kind"],
        family=labels["family"],
        weights=labels.get("weights", "random-init"),
        source=labels.get("source", ""),
        variant=labels.get("variant", ""),
        path=Path(model.path),
    )


def installed() -> dict[str, InstalledModel]:
    """The newest version of each of our models in the store, by store name."""
    import bentoml

    newest: dict[str, tuple] = {}
    for model in bentoml.models.list():
        entry = _from_bento_model(model)
        if entry is None:
            continue
        key = (model.info.creation_time, entry)
        if entry.store_name not in newest or key[0] > newest[entry.store_name][0]:
            newest[entry.store_name] = key
    return {name: entry for name, (_, entry) in sorted(newest.items())}


def get(store_name: str) -> InstalledModel:
    """The newest version of one model; ``KeyError`` if it is not installed."""
    import bentoml

    try:
        model = bentoml.models.get(f"{store_name}:latest")
    except bentoml.exceptions.NotFound as exc:
        raise KeyError(store_name) from exc
    entry = _from_bento_model(model)
    if entry is None:
        raise KeyError(store_name)
    return entry


def of_family(family: str) -> dict[str, InstalledModel]:
    return {name: m for name, m in installed().items() if m.family == family}


def references(family: str) -> list:
    """``BentoModel`` references to every installed model of a family, for a runner's class scope.

    ``bentoml build`` packs what a service references; when a Bento is served, the store *is* the Bento's
    models, so the same lookup finds exactly what was packed.
    """
    from bentoml.models import BentoModel

    return [BentoModel(m.tag) for m in of_family(family).values()]
