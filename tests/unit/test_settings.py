"""Settings come from PERCEPTION_* variables, typed, and every one is documented in the README."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from settings import Settings, SettingsError, load_settings, runner_url_fields
from vocab.families import FAMILIES, Family

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()


def from_env(monkeypatch, environ: dict[str, str]) -> Settings:
    """The settings read from exactly ``environ``'s PERCEPTION_* variables (the rest of the environment kept)."""
    for name in [n for n in os.environ if n.upper().startswith("PERCEPTION_")]:
        monkeypatch.delenv(name)
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    return load_settings()


@pytest.mark.parametrize("name", list(Settings.model_fields))
def test_every_setting_is_in_the_readme_table(name):
    assert f"| `PERCEPTION_{name.upper()}` |" in README


def test_environment_is_parsed_and_typed(monkeypatch):
    settings = from_env(monkeypatch, {"PERCEPTION_MAX_BODY_BYTES": "1024", "PERCEPTION_API_KEY": "k", "OTHER": "x"})
    assert settings.max_body_bytes == 1024 and settings.api_key == "k"
    assert from_env(monkeypatch, {}).max_body_bytes == 64 * 1024 * 1024


def test_settings_are_frozen(monkeypatch):
    settings = from_env(monkeypatch, {})
    with pytest.raises(ValueError, match="frozen"):
        settings.api_key = "k"


def test_bad_values_fail_loudly_at_start_up(monkeypatch):
    with pytest.raises(SettingsError, match="PERCEPTION_MAX_BODY_BYTES='lots'"):
        from_env(monkeypatch, {"PERCEPTION_MAX_BODY_BYTES": "lots"})


@pytest.mark.parametrize("family", list(FAMILIES.values()), ids=lambda family: family.name)
def test_every_family_has_its_runner_url_setting(monkeypatch, family):
    assert family.url_setting in Settings.model_fields and Settings.model_fields[family.url_setting].description
    settings = from_env(monkeypatch, {family.url_env: f"http://{family.name}:3000"})
    assert settings.runner_url(family.name) == f"http://{family.name}:3000"
    assert all(settings.runner_url(other) == "" for other in FAMILIES if other != family.name)


def test_a_family_added_to_the_table_gets_its_runner_url_setting(monkeypatch):
    extra = Family("ocr", kinds=("ocr",), runner="runners.ocr:OcrRunner", apis=(), importer="ocr", local_file="ocr")

    class Extended(runner_url_fields({**FAMILIES, "ocr": extra}), env_prefix="PERCEPTION_"):
        pass

    monkeypatch.setenv("PERCEPTION_RUNNER_URL_OCR", "http://ocr:3000")
    assert Extended().runner_url_ocr == "http://ocr:3000"
    assert "runner_url_ocr" not in Settings.model_fields


@pytest.mark.parametrize(("name", "value", "allowed"), [
    ("PERCEPTION_PRECISION", "fp61", "'fp16' or 'fp32'"),
    ("PERCEPTION_WARMUP", "yes", "'auto', 'always' or 'never'"),
    ("PERCEPTION_WEIGHTS", "real", "'any' or 'pretrained'"),
])
def test_closed_sets_name_their_allowed_values(monkeypatch, name, value, allowed):
    with pytest.raises(SettingsError) as error:
        from_env(monkeypatch, {name: value})
    assert f"{name}={value!r}" in str(error.value) and allowed in str(error.value)


def test_importing_the_gateway_loads_no_torch_and_no_import_tooling():
    import subprocess
    import sys

    code = ("import sys, service; print(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('torch', 'ultralytics', 'transformers', 'tests', 'scripts')))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                            cwd=Path(__file__).resolve().parents[2])
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().splitlines()[-1] == "[]"


def test_runner_cpu_budgets(monkeypatch):
    import runners.common as common

    monkeypatch.setattr(common.os, "cpu_count", lambda: 8)
    for env, family, device, threads in [
        ({}, "flow", "cpu", 8),  # every core: a runner alone uses the machine; sharing is by priority
        ({}, "yolo", "cuda:0", 8),
        ({"PERCEPTION_TORCH_THREADS": "3"}, "yolo", "cpu", 3),
        ({"PERCEPTION_RUNNER_THREADS": "yolo=1,flow=2", "PERCEPTION_TORCH_THREADS": "3"}, "flow", "cpu", 2),
        ({"PERCEPTION_RUNNER_THREADS": "yolo=1"}, "depth", "cpu", 8),
    ]:
        settings = from_env(monkeypatch, env)
        monkeypatch.setattr(common, "get_settings", lambda settings=settings: settings)
        assert common.cpu_budget(family, device) == threads, (env, family, device)


@pytest.mark.parametrize("value", ["yolo", "yolo=0", "=2", "yolo=two"])
def test_runner_threads_must_be_family_equals_count(monkeypatch, value):
    with pytest.raises(SettingsError, match="PERCEPTION_RUNNER_THREADS"):
        from_env(monkeypatch, {"PERCEPTION_RUNNER_THREADS": value})
