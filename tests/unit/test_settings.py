"""Settings come from PERCEPTION_* variables, typed, and every one is documented in the README."""

from __future__ import annotations

from pathlib import Path

import pytest

from settings import Settings, SettingsError

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()


@pytest.mark.parametrize("name", list(Settings.model_fields))
def test_every_setting_is_in_the_readme_table(name):
    assert f"| `PERCEPTION_{name.upper()}` |" in README


def test_environment_is_parsed_and_typed():
    settings = Settings.from_env({"PERCEPTION_MAX_BODY_BYTES": "1024", "PERCEPTION_API_KEY": "k", "OTHER": "x"})
    assert settings.max_body_bytes == 1024 and settings.api_key == "k"
    assert Settings.from_env({}).max_body_bytes == 64 * 1024 * 1024


def test_bad_values_fail_loudly_at_start_up():
    with pytest.raises(SettingsError, match="PERCEPTION_MAX_BODY_BYTES='lots'"):
        Settings.from_env({"PERCEPTION_MAX_BODY_BYTES": "lots"})


@pytest.mark.parametrize(("name", "value", "allowed"), [
    ("PERCEPTION_PRECISION", "fp61", "'fp16' or 'fp32'"),
    ("PERCEPTION_WARMUP", "yes", "'auto', 'always' or 'never'"),
    ("PERCEPTION_WEIGHTS", "real", "'any' or 'pretrained'"),
])
def test_closed_sets_name_their_allowed_values(name, value, allowed):
    with pytest.raises(SettingsError) as error:
        Settings.from_env({name: value})
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
        ({}, "flow", "cpu", 4),  # half the cores on a CPU host: one long request leaves the rest to the others
        ({}, "flow", "cuda:0", 8),  # every core where the GPU does the work
        ({"PERCEPTION_TORCH_THREADS": "3"}, "yolo", "cpu", 3),
        ({"PERCEPTION_RUNNER_THREADS": "yolo=1,flow=2", "PERCEPTION_TORCH_THREADS": "3"}, "flow", "cpu", 2),
        ({"PERCEPTION_RUNNER_THREADS": "yolo=1"}, "depth", "cpu", 4),
    ]:
        monkeypatch.setattr(common, "get_settings", lambda env=env: Settings.from_env(env))
        assert common.cpu_budget(family, device) == threads, (env, family, device)


@pytest.mark.parametrize("value", ["yolo", "yolo=0", "=2", "yolo=two"])
def test_runner_threads_must_be_family_equals_count(value):
    with pytest.raises(SettingsError, match="PERCEPTION_RUNNER_THREADS"):
        Settings.from_env({"PERCEPTION_RUNNER_THREADS": value})
