"""The import command: real weights first, a loud placeholder when they cannot be had, refusal when asked for
real weights only; and the gateway's refusal to serve placeholders under PERCEPTION_WEIGHTS=pretrained."""

from __future__ import annotations

from pathlib import Path

import pytest

from models.store import InstalledModel
from scripts import import_models
from vocab.families import FAMILIES, KIND_FAMILY, family_of_file


class FakeImporter:
    def __init__(self, online: bool):
        self.online = online
        self.calls: list[str] = []
        self.families: list[str] = []  # the families whose importer was asked for

    def of(self, family: str) -> FakeImporter:
        self.families.append(family)
        return self

    def import_pretrained(self, name, local_path=None):
        self.calls.append(f"pretrained:{name}:{local_path}")
        if not self.online and local_path is None:
            raise RuntimeError("no network")
        return f"{name}:real"

    def import_placeholder(self, name):
        self.calls.append(f"placeholder:{name}")
        return f"{name}:fake"


@pytest.fixture
def fake(monkeypatch):
    def install(online: bool, installed: dict | None = None) -> FakeImporter:
        importer = FakeImporter(online)
        monkeypatch.setattr(import_models, "importer", importer.of)
        monkeypatch.setattr(import_models.store, "installed", lambda: installed or {})
        return importer

    return install


def entry(name: str, weights: str) -> InstalledModel:
    return InstalledModel(name, f"{name}:v1", "detect", "yolo", weights, "", "", Path("/nonexistent"))


def test_auto_prefers_real_weights(fake):
    importer = fake(online=True)
    assert "pretrained" in import_models.import_one("yolo26n", "auto", force=False)
    assert importer.calls == ["pretrained:yolo26n:None"]


def test_auto_falls_back_to_a_loud_placeholder(fake, capsys):
    importer = fake(online=False)
    assert "placeholder" in import_models.import_one("yolo26n", "auto", force=False)
    assert importer.calls == ["pretrained:yolo26n:None", "placeholder:yolo26n"]
    assert "RANDOM-INIT PLACEHOLDER" in capsys.readouterr().err


def test_pretrained_only_refuses_placeholders(fake):
    importer = fake(online=False)
    with pytest.raises(SystemExit) as info:
        import_models.import_one("yolo26n", "pretrained", force=False)
    assert "real weights unavailable" in str(info.value) and "placeholder:yolo26n" not in importer.calls


def test_installed_models_are_kept_unless_a_real_one_replaces_a_placeholder(fake):
    importer = fake(online=True, installed={"yolo26n": entry("yolo26n", "random-init")})
    assert "already installed" in import_models.import_one("yolo26n", "auto", force=False)
    assert importer.calls == []
    assert "pretrained" in import_models.import_one("yolo26n", "pretrained", force=False)
    assert "placeholder" in import_models.import_one("yolo26n", "random-init", force=True)


class FakeExporter(FakeImporter):
    """An importer whose models carry an ONNX export (yolo, depth)."""

    def import_placeholder(self, name, export=True):
        self.calls.append(f"placeholder:{name}:export={export}")
        return f"{name}:fake"

    def add_export(self, name):
        self.calls.append(f"add_export:{name}")
        return f"{name}:v2"


def test_an_installed_model_without_its_export_gets_one_unless_no_export(monkeypatch, tmp_path):
    importer = FakeExporter(online=False)
    monkeypatch.setattr(import_models, "importer", importer.of)
    stored = InstalledModel("yolo26n", "yolo26n:v1", "detect", "yolo", "random-init", "", "", tmp_path)
    monkeypatch.setattr(import_models.store, "installed", lambda: {"yolo26n": stored})
    assert "ONNX export added → yolo26n:v2" in import_models.import_one("yolo26n", "random-init", force=False)
    assert "already installed" in import_models.import_one("yolo26n", "random-init", force=False, export=False)
    (tmp_path / "model.onnx").write_bytes(b"onnx")
    (tmp_path / "export.json").write_text("{}")
    assert "already installed" in import_models.import_one("yolo26n", "random-init", force=False)
    assert importer.calls == ["add_export:yolo26n"]
    import_models.import_one("yolo26n", "random-init", force=True, export=False)
    assert importer.calls[-1] == "placeholder:yolo26n:export=False"


def test_local_files_go_to_the_right_family(fake, tmp_path, capsys):
    importer = fake(online=False)
    for name in ("sam3.pt", "yolo11s.pt"):
        (tmp_path / name).write_bytes(b"x")
        assert import_models.main(["--file", str(tmp_path / name)]) == 0
    assert importer.calls == [f"pretrained:sam3:{tmp_path / 'sam3.pt'}", f"pretrained:yolo11s:{tmp_path / 'yolo11s.pt'}"]
    assert importer.families == ["sam3", "yolo"]
    (tmp_path / "depth-snapshot").mkdir()  # a Hugging Face snapshot directory
    assert import_models.main(["--file", str(tmp_path / "depth-snapshot"), "depth-anything-v2-small"]) == 0
    assert importer.families[-1] == "depth"
    assert import_models.main(["--file", str(tmp_path / "sam3.pt"), "--family", "sam2", "sam2.1_b"]) == 0
    assert importer.families[-1] == "sam2"  # --family overrides the file's name


def test_local_files_are_recognised_by_the_family_table():
    assert family_of_file("sam3.pt") == "sam3"
    assert family_of_file("SAM2.1_b.pt") == "sam2"
    assert family_of_file("raft_large.pth") == "flow"
    assert family_of_file("yolo11s.pt") == "yolo"  # the family that takes any other file
    assert family_of_file("Depth-Anything-V2-Small-hf", is_dir=True) == "depth"


def test_every_family_has_its_importer_module():
    for family in FAMILIES.values():
        module = import_models.importer(family.name)
        assert module.__name__ == f"scripts.importers.{family.importer}"
        assert callable(module.import_pretrained) and callable(module.import_placeholder)
    assert import_models.importer("flow").__name__ == "scripts.importers.flow"
    with pytest.raises(KeyError):
        import_models.importer("raft")  # a family's name, not a model's


def test_every_catalog_model_has_a_family_with_an_importer():
    from models.catalog import BY_STORE_NAME

    assert {spec.kind for spec in BY_STORE_NAME.values()} <= set(KIND_FAMILY)
    assert {KIND_FAMILY[spec.kind] for spec in BY_STORE_NAME.values()} == set(FAMILIES)


def test_gateway_refuses_placeholders_when_pretrained_is_required(monkeypatch):
    import service
    from settings import Settings

    monkeypatch.setattr(service, "get_settings", lambda: Settings(weights="pretrained"))
    monkeypatch.setattr(service.store, "installed", lambda: {"yolo26n": entry("yolo26n", "random-init")})
    with pytest.raises(RuntimeError, match="placeholders"):
        service.GatewayCore()
    monkeypatch.setattr(service.store, "installed", lambda: {"yolo26n": entry("yolo26n", "pretrained")})
    assert service.GatewayCore().installed["yolo26n"].weights == "pretrained"
