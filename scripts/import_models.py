"""Put models into the BentoML model store: real weights where they can be had, placeholders otherwise.

    python scripts/import_models.py                       # every catalog default; real weights, else a placeholder
    python scripts/import_models.py yolo26n-seg raft-small # just these (catalog or API names)
    python scripts/import_models.py --weights pretrained   # real weights or fail (no placeholders)
    python scripts/import_models.py --weights random-init  # placeholders only (offline tests)
    python scripts/import_models.py --file ~/Downloads/sam3.pt   # a local file: sam3.pt, sam2.1_b.pt, yolo11s.pt, ...

Models already in the store are kept unless ``--force``. Nothing here runs while serving.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from models import store  # noqa: E402
from models.catalog import BY_STORE_NAME, KIND_FAMILY, store_name_for  # noqa: E402
from models.importers import IMPORTERS  # noqa: E402
from tasks.registry import DEFAULT_MODELS  # noqa: E402

os.environ.setdefault("YOLO_AUTOINSTALL", "0")

BANNER = "!" * 78


def family_of_file(path: Path) -> str:
    name = path.name.lower()
    if path.is_dir():
        return "depth"
    if "sam3" in name:
        return "sam3"
    if "sam2" in name:
        return "sam2"
    if "raft" in name:
        return "flow"
    return "yolo"


def import_one(store_name: str, weights: str, force: bool) -> str:
    installed = store.installed()
    if store_name in installed and not force:
        current = installed[store_name]
        if not (weights == "pretrained" and current.placeholder):
            return f"{store_name}: already installed ({current.weights}, {current.tag})"
    family = KIND_FAMILY[BY_STORE_NAME[store_name].kind]
    module = IMPORTERS[family]
    if weights in ("auto", "pretrained"):
        try:
            return f"{store_name}: pretrained → {module.import_pretrained(store_name)}"
        except RuntimeError as exc:
            if weights == "pretrained":
                raise SystemExit(f"{store_name}: real weights unavailable: {exc}") from None
            print(f"{BANNER}\n{store_name}: real weights unavailable ({exc}).\n"
                  f"Installing a RANDOM-INIT PLACEHOLDER: its outputs are meaningless.\n{BANNER}", file=sys.stderr)
    return f"{store_name}: random-init placeholder → {module.import_placeholder(store_name)}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("names", nargs="*", help="catalog or API model names (default: every task's default)")
    parser.add_argument("--weights", choices=("auto", "pretrained", "random-init"), default="auto")
    parser.add_argument("--file", type=Path, help="import a local weights file or directory")
    parser.add_argument("--family", choices=sorted(set(KIND_FAMILY.values())), help="family of --file")
    parser.add_argument("--force", action="store_true", help="import again even if installed")
    args = parser.parse_args(argv)

    if args.file:
        path = args.file.expanduser()
        if not path.exists():
            parser.error(f"{path} does not exist")
        family = args.family or family_of_file(path)
        name = args.names[0] if args.names else store_name_for(path.name)
        print(f"{name}: from {path} → {IMPORTERS[family].import_pretrained(name, local_path=str(path))}")
        return 0

    names = [store_name_for(n) for n in args.names] or list(DEFAULT_MODELS)
    unknown = [n for n in names if n not in BY_STORE_NAME]
    if unknown:
        parser.error(f"not in the catalog: {unknown} (use --file for other YOLO variants)")
    for name in names:
        print(import_one(name, args.weights, args.force), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
