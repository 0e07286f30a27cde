"""Request ``model`` field → installed model, or the contract's error. Looks names up; never opens a path.

A task takes models of one kind, or of several (velocity-estimation: a flow model, or a detector, the task module
telling them apart): ``kinds`` (a task's ``model_kinds``). A name of any other kind
is a 400 naming every kind the task takes.
"""

from __future__ import annotations

from models.catalog import BY_STORE_NAME, accepted_names, is_plausible_name, store_name_for
from models.store import InstalledModel
from vocab.errors import bad_request, unavailable

IMPORT_HINT = "install it with `python scripts/import_models.py {name}` (or `make models`) and restart the service"


def resolve(name: str | None, *, task: str, kinds: tuple[str, ...], default: str,
            installed: dict[str, InstalledModel]) -> InstalledModel:
    """The installed model ``name`` means for ``task`` (``default`` if unnamed), of one of ``kinds``."""
    if name is None:
        store_name = default
    else:
        if not is_plausible_name(name):
            raise bad_request(f"model {name[:80]!r} is not a model name; {_listing(kinds, installed)}")
        store_name = store_name_for(name)
    model = installed.get(store_name)
    if model is None:
        if store_name in BY_STORE_NAME and BY_STORE_NAME[store_name].kind in kinds:
            raise unavailable(f"model {store_name!r} for {task} is not installed: {IMPORT_HINT.format(name=store_name)}")
        raise bad_request(f"model {name[:80]!r} is not installed; {_listing(kinds, installed)}")
    if model.kind not in kinds:
        raise bad_request(
            f"model {name!r} is a {model.kind} model, {task} needs a {' or '.join(kinds)} model; "
            f"{_listing(kinds, installed)}"
        )
    return model


def _listing(kinds: tuple[str, ...], installed: dict[str, InstalledModel]) -> str:
    names = [n for store_name, m in installed.items() if m.kind in kinds for n in accepted_names(store_name)]
    return "installed for this task: " + (", ".join(names) if names else "none")
