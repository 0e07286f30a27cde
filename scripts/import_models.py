"""Put models into the BentoML model store: real weights where they can be had, placeholders otherwise.

    python scripts/import_models.py                       # every catalog default; real weights, else a placeholder
    python scripts/import_models.py yolo26n-seg raft-small # just these (catalog or API names)
    python scripts/import_models.py --weights pretrained   # real weights or fail (no placeholders)
    python scripts/import_models.py --weights random-init  # placeholders only (offline tests)
    python scripts/import_models.py --file ~/Downloads/sam3.pt   # a local file: sam3.pt, sam2.1_b.pt, yolo11s.pt, ...
    python scripts/import_models.py --no-export            # no ONNX exports (a host that serves only on CUDA)

Models already in the store are kept unless ``--force``. Nothing here runs while serving. YOLO and Depth Anything
models are stored with their ONNX export (the CPU engine, ``runners/exported.py``); one installed before exports
were made at import gets a new version with its export added.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from models import store  # noqa: E402
from models.catalog import BY_STORE_NAME, store_name_for  # noqa: E402
from runners.exported import has_export  # noqa: E402
from tasks.registry import DEFAULT_MODELS  # noqa: E402
from vocab.families import FAMILIES, KIND_FAMILY, family_of_file  # noqa: E402

os.environ.setdefault("YOLO_AUTOINSTALL", "0")

BANNER = "!" * 78


def importer(family: str):
    """The family's importer module, ``scripts/importers/<importer>.py`` (``import_pretrained``, ``import_placeholder``)."""
    return importlib.import_module(f"scripts.importers.{FAMILIES[family].importer}")


def import_one(store_name: str, weights: str, force: bool, export: bool = True) -> str:
    installed = store.installed()
    module = importer(KIND_FAMILY[BY_STORE_NAME[store_name].kind])
    if store_name in installed and not force:
        current = installed[store_name]
        if not (weights == "pretrained" and current.placeholder):
            if export and hasattr(module, "add_export") and not has_export(current.path):
                return f"{store_name}: ONNX export added → {module.add_export(store_name)}"
            return f"{store_name}: already installed ({current.weights}, {current.tag})"
    if weights in ("auto", "pretrained"):
        try:
            return f"{store_name}: pretrained → {module.import_pretrained(store_name, **_export_option(module, export))}"
        except RuntimeError as exc:
            if weights == "pretrained":
                raise SystemExit(f"{store_name}: real weights unavailable: {exc}") from None
            print(f"{BANNER}\n{store_name}: real weights unavailable ({exc}).\n"
                  f"Installing a RANDOM-INIT PLACEHOLDER: its outputs are meaningless.\n{BANNER}", file=sys.stderr)
    placeholder = module.import_placeholder(store_name, **_export_option(module, export))
    return f"{store_name}: random-init placeholder → {placeholder}"


def _export_option(module, export: bool) -> dict:
    """``export=False`` for an importer that exports (those with ``add_export``), nothing for the others."""
    return {} if export or not hasattr(module, "add_export") else {"export": False}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("names", nargs="*", help="catalog or API model names (default: every task's default)")
    parser.add_argument("--weights", choices=("auto", "pretrained", "random-init"), default="auto")
    parser.add_argument("--file", type=Path, help="import a local weights file or directory")
    parser.add_argument("--family", choices=sorted(FAMILIES), help="family of --file")
    parser.add_argument("--force", action="store_true", help="import again even if installed")
    parser.add_argument("--no-export", dest="export", action="store_false",
                        help="store no ONNX export (the CPU engine) beside YOLO and Depth Anything weights")
    args = parser.parse_args(argv)

    if args.file:
        path = args.file.expanduser()
        if not path.exists():
            parser.error(f"{path} does not exist")
        family = args.family or family_of_file(path.name, is_dir=path.is_dir())
        name = args.names[0] if args.names else store_name_for(path.name)
        module = importer(family)
        tag = module.import_pretrained(name, local_path=str(path), **_export_option(module, args.export))
        print(f"{name}: from {path} → {tag}")
        return 0

    names = [store_name_for(n) for n in args.names] or list(DEFAULT_MODELS)
    unknown = [n for n in names if n not in BY_STORE_NAME]
    if unknown:
        parser.error(f"not in the catalog: {unknown} (use --file for other YOLO variants)")
    for name in names:
        print(import_one(name, args.weights, args.force, args.export), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
