"""Serving never downloads: ``settings.OFFLINE_ENV`` is the one list of the variables that keep ultralytics and
Hugging Face offline. Python applies it (``stay_offline``); the Makefile's serve targets and bentofile.yaml's
``envs`` write it out, and must say the same."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from settings import OFFLINE_ENV, stay_offline

ROOT = Path(__file__).resolve().parents[2]


def makefile_offline_env(text: str) -> dict[str, str]:
    """The ``OFFLINE_ENV := NAME=value ...`` assignment of a Makefile, as a dict."""
    match = re.search(r"^OFFLINE_ENV\s*:?=\s*(.*)$", text, re.MULTILINE)
    assert match, "the Makefile has no OFFLINE_ENV assignment"
    return dict(pair.split("=", 1) for pair in match.group(1).split())


def serve_recipes(text: str) -> dict[str, str]:
    """Each serve target's recipe (its tab-indented lines)."""
    return {m.group(1): m.group(2) for m in re.finditer(r"^(serve[\w-]*):.*\n((?:\t.*\n)+)", text, re.MULTILINE)}


def test_the_makefile_serves_with_the_same_offline_env():
    text = (ROOT / "Makefile").read_text()
    assert makefile_offline_env(text) == OFFLINE_ENV
    recipes = serve_recipes(text)
    assert set(recipes) == {"serve", "serve-split"}
    assert all("$(OFFLINE_ENV)" in recipe for recipe in recipes.values()), recipes


def test_the_bento_image_has_the_same_offline_env():
    config = yaml.safe_load((ROOT / "bentofile.yaml").read_text())
    env = {e["name"]: e["value"] for e in config["envs"]}  # `envs`: what BentoML writes into the Dockerfile
    assert {name: env.get(name) for name in OFFLINE_ENV} == OFFLINE_ENV
    assert "env" not in config["docker"], "BentoML ignores docker.env for these Bentos: use envs"


def test_the_checks_see_a_different_list():
    assert makefile_offline_env("OFFLINE_ENV := YOLO_OFFLINE=1 HF_HUB_OFFLINE=1\n") != OFFLINE_ENV
    assert serve_recipes("serve: models ## x\n\tbentoml serve\n\nlint:\n\truff\n") == {"serve": "\tbentoml serve\n"}


def test_stay_offline_keeps_an_operators_value_unless_told_to_override():
    environ = {"HF_HUB_OFFLINE": "0", "PATH": "/bin"}
    stay_offline(environ)
    assert environ == {**OFFLINE_ENV, "HF_HUB_OFFLINE": "0", "PATH": "/bin"}
    stay_offline(environ, override=True)
    assert environ == {**OFFLINE_ENV, "PATH": "/bin"}
