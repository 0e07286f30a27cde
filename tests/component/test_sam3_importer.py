"""SAM 3 importer: where a hand-downloaded sam3.pt is looked for, what is refused, what is stored.

``models.store.save`` is replaced by a recorder that runs ``write`` into a temporary folder, so nothing here
touches a BentoML store. A real sam3.pt must fill the full architecture (848 M parameters, 3.4 GB); here the
architecture it is held to is the reduced one, and the "downloaded" files are built from it in Meta's key
layout, so the same check runs on files of a few hundred MB less."""

from __future__ import annotations

import json

import pytest

torch = pytest.importorskip("torch")

from scripts.importers import sam3 as importer  # noqa: E402


@pytest.fixture(scope="module")
def meta_layout_state():
    """A checkpoint's ``model`` dict in Meta's layout (``detector.*``, ``tracker.*``) of the reduced architecture."""
    from nets import sam3_arch
    from nets.sam3_tokenizer import make_tokenizer

    detector = sam3_arch.build_detector(sam3_arch.REDUCED_ARCH, make_tokenizer())
    tracker = sam3_arch.build_tracker(sam3_arch.REDUCED_ARCH)
    return sam3_arch.checkpoint_state(detector, tracker)["model"]


@pytest.fixture(autouse=True)
def reduced_is_the_real_architecture(monkeypatch):
    from nets.sam3_arch import REDUCED_ARCH

    monkeypatch.setattr(importer, "PRETRAINED_ARCH", REDUCED_ARCH)


@pytest.fixture
def fake_sam3(meta_layout_state):
    def write(path, drop=(), reshape=()):
        state = {k: v for k, v in meta_layout_state.items() if not k.startswith(tuple(drop)) if drop} if drop \
            else dict(meta_layout_state)
        for key in reshape:
            state[key] = torch.zeros(3, 3)
        torch.save({"model": state}, path)
        return path

    return write


@pytest.fixture
def saved(monkeypatch, tmp_path):
    calls = []

    def fake_save(store_name, *, kind, weights, source, write, variant="", metadata=None):
        folder = tmp_path / f"store-{len(calls)}"
        folder.mkdir()
        write(folder)
        calls.append({"name": store_name, "kind": kind, "weights": weights, "source": source,
                      "variant": variant, "metadata": metadata, "dir": folder})
        return f"{store_name}:fake{len(calls)}"

    monkeypatch.setattr(importer.store, "save", fake_save)
    return calls


@pytest.fixture
def no_checkpoint_anywhere(monkeypatch, tmp_path):
    monkeypatch.delenv("SAM3_CHECKPOINT", raising=False)
    monkeypatch.chdir(tmp_path)


def one_key_file(path, key="detector.backbone.x"):
    torch.save({"model": {key: torch.zeros(2), "tracker.y": torch.ones(1)}}, path)
    return path


def test_missing_checkpoint_says_where_to_get_it(no_checkpoint_anywhere, saved):
    with pytest.raises(RuntimeError) as info:
        importer.import_pretrained("sam3")
    message = str(info.value)
    assert "huggingface.co/facebook/sam3" in message and "SAM License" in message
    assert "python scripts/import_models.py --file /path/to/sam3.pt" in message
    assert not saved


def test_missing_local_path_is_refused(no_checkpoint_anywhere, saved, tmp_path):
    with pytest.raises(RuntimeError, match="no SAM 3 checkpoint at .*nope.pt"):
        importer.import_pretrained("sam3", local_path=str(tmp_path / "nope.pt"))
    assert not saved


@pytest.mark.parametrize("content", [b"not a checkpoint", None])
def test_files_that_are_not_sam3_are_refused(no_checkpoint_anywhere, saved, tmp_path, content):
    path = tmp_path / "sam3.pt"
    if content is None:
        one_key_file(path, key="model.22.weight")  # a YOLO-like state dict
    else:
        path.write_bytes(content)
    with pytest.raises(RuntimeError, match="huggingface.co/facebook/sam3"):
        importer.import_pretrained("sam3", local_path=str(path))
    assert not saved


@pytest.mark.parametrize(("damage", "what"), [
    ({"path_key": "one"}, "detector: "),
    ({"drop": ("detector.transformer.decoder",)}, "detector: "),
    ({"drop": ("tracker.memory_attention",)}, "tracker: "),
    ({"reshape": ("detector.dot_prod_scoring.hs_proj.weight",)}, "1 of the wrong shape"),
])
def test_files_that_do_not_fill_the_architecture_are_refused(no_checkpoint_anywhere, saved, tmp_path, fake_sam3,
                                                             damage, what):
    path = tmp_path / "sam3.pt"
    if damage.get("path_key"):
        one_key_file(path)  # accepted before: any file with one detector.* key
    else:
        fake_sam3(path, drop=damage.get("drop", ()), reshape=damage.get("reshape", ()))
    with pytest.raises(RuntimeError, match="does not match SAM 3's architecture") as info:
        importer.import_pretrained("sam3", local_path=str(path))
    assert what in str(info.value) and not saved


def test_local_path_is_copied_as_pretrained_full(no_checkpoint_anywhere, saved, tmp_path, fake_sam3):
    source = fake_sam3(tmp_path / "downloaded.pt")
    assert importer.import_pretrained("sam3", local_path=str(source)) == "sam3:fake1"
    (call,) = saved
    assert (call["weights"], call["variant"], call["kind"]) == ("pretrained", "full", "sam3")
    assert (call["dir"] / "sam3.pt").read_bytes() == source.read_bytes()
    spec = json.loads((call["dir"] / "sam3_arch.json").read_text())
    assert spec["variant"] == "full" and spec["imgsz"] == 1008
    assert spec["arch"]["vit_depth"] == importer.PRETRAINED_ARCH.vit_depth


@pytest.mark.parametrize("where", ["env", "cwd"])
def test_checkpoint_found_via_env_or_working_directory(no_checkpoint_anywhere, saved, tmp_path, monkeypatch, where,
                                                       fake_sam3):
    if where == "env":
        monkeypatch.setenv("SAM3_CHECKPOINT", str(fake_sam3(tmp_path / "elsewhere.pt")))
    else:
        fake_sam3(tmp_path / "sam3.pt")
    importer.import_pretrained("sam3")
    assert saved[0]["source"] == ("file:elsewhere.pt" if where == "env" else "file:sam3.pt")


def test_reduced_placeholder_is_deterministic_and_finite(saved):
    importer.import_placeholder("sam3", variant="reduced", seed=0)
    importer.import_placeholder("sam3", variant="reduced", seed=0)
    first, second = (torch.load(c["dir"] / "sam3.pt", weights_only=True)["model"] for c in saved)
    assert first.keys() == second.keys()
    assert all(torch.equal(first[k], second[k]) for k in first)
    assert all(torch.isfinite(v).all() for v in first.values() if v.is_floating_point())
    assert {c["weights"] for c in saved} == {"random-init"} and saved[0]["variant"] == "reduced"
    spec = json.loads((saved[0]["dir"] / "sam3_arch.json").read_text())
    assert spec["imgsz"] == importer.REDUCED_IMGSZ and spec["arch"]["vit_depth"] == 4
    assert 25e6 < saved[0]["metadata"]["detector_params"] < 40e6
    assert any(k.startswith("tracker.memory_attention.") for k in first)


def test_unknown_variant_is_refused(saved):
    with pytest.raises(ValueError, match="reduced"):
        importer.import_placeholder("sam3", variant="tiny")
