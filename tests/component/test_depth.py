"""Depth Anything: the placeholder's architecture, the store round trip, and the engine against HF's own
pipeline on the same weights. CPU, fp32; the forward passes at 518 px dominate (about 5-10 s each here)."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from tests.conftest import MEDIA

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

NAME = "depth-anything-small"


@pytest.fixture(scope="module")
def installed(model_store):
    from scripts.importers import depth

    return depth.import_placeholder(NAME)


@pytest.fixture(scope="module")
def engine(installed):
    from runners.depth import DepthEngine

    return DepthEngine.from_store(device="cpu")


@pytest.fixture(scope="module")
def messi():
    return cv2.imread(str(MEDIA / "messi5.jpg"))


@pytest.fixture(scope="module")
def messi_depth(engine, messi):
    return engine.estimate([{"model": NAME, "image": messi}])[0]["depth"]


def _close(actual: np.ndarray, expected: np.ndarray, rel: float = 1e-4) -> None:
    """Equal within ``rel`` of the map's own range (elementwise relative error is meaningless near 0)."""
    scale = float(np.abs(expected).max())
    assert scale > 0
    np.testing.assert_allclose(actual, expected, rtol=0, atol=rel * scale)


# ---------------------------------------------------------------- importer


@pytest.fixture(scope="module")
def v2_placeholder():
    from scripts.importers.depth import build_placeholder

    return build_placeholder("depth-anything-v2-small")


def _check_architecture(model, out_indices):
    params = sum(p.numel() for p in model.parameters())
    assert params == pytest.approx(24.8e6, rel=0.005)
    backbone = model.config.backbone_config
    assert (backbone.hidden_size, backbone.num_hidden_layers, backbone.num_attention_heads) == (384, 12, 6)
    assert (backbone.patch_size, backbone.image_size) == (14, 518)
    assert list(backbone.out_indices) == out_indices
    assert list(model.config.neck_hidden_sizes) == [48, 96, 192, 384]
    assert model.config.fusion_hidden_size == 64 and model.config.depth_estimation_type == "relative"


def test_v1_placeholder_is_the_real_architecture_and_seeded(installed):
    from transformers import DepthAnythingForDepthEstimation

    from models import store
    from scripts.importers.depth import build_placeholder

    model = build_placeholder(NAME)
    _check_architecture(model, [9, 10, 11, 12])
    stored = DepthAnythingForDepthEstimation.from_pretrained(store.get(NAME).path)
    for key, value in model.state_dict().items():  # built again: the same weights as the stored one
        assert torch.equal(value, stored.state_dict()[key]), key


def test_v2_placeholder_reads_every_third_layer(v2_placeholder):
    _check_architecture(v2_placeholder, [3, 6, 9, 12])


def test_store_dir_loads_with_from_pretrained(installed, model_store):
    from transformers import AutoImageProcessor, DepthAnythingForDepthEstimation

    from models import store

    entry = store.get(NAME)
    assert entry.tag == installed
    assert (entry.kind, entry.family, entry.weights, entry.variant) == ("depth", "depth", "random-init", "v1-small")
    model = DepthAnythingForDepthEstimation.from_pretrained(entry.path)
    assert sum(p.numel() for p in model.parameters()) == pytest.approx(24.8e6, rel=0.005)
    processor = AutoImageProcessor.from_pretrained(entry.path)
    saved = json.loads((entry.path / "preprocessor_config.json").read_text())
    assert saved["size"] == {"height": 518, "width": 518}
    assert saved["keep_aspect_ratio"] is True and saved["ensure_multiple_of"] == 14
    assert saved["resample"] == 3  # bicubic
    assert saved["image_mean"] == pytest.approx([0.485, 0.456, 0.406])
    assert saved["image_std"] == pytest.approx([0.229, 0.224, 0.225])
    # 548x342 → the side that changes least is fitted to 518, the other rounded to a multiple of 14
    pixels = processor(images=np.zeros((342, 548, 3), np.uint8), return_tensors="pt")["pixel_values"]
    assert tuple(pixels.shape) == (1, 3, 322, 518)


def test_import_pretrained_offline_is_a_clear_error_and_leaves_the_store_alone(model_store):
    from models import store
    from scripts.importers import depth

    before = set(store.installed())
    with pytest.raises(RuntimeError, match="hf download depth-anything/Depth-Anything-V2-Small-hf"):
        depth.import_pretrained("depth-anything-v2-small")
    with pytest.raises(RuntimeError, match="not a directory"):
        depth.import_pretrained("depth-anything-v2-small", local_path="/nonexistent/dir")
    assert set(store.installed()) == before


def test_import_pretrained_from_a_local_directory(model_store, installed, v2_placeholder, tmp_path):
    from models import store
    from scripts.importers import depth

    # A hub-style snapshot without preprocessor_config.json: the known preprocessing is filled in.
    local = tmp_path / "snapshot"
    model = v2_placeholder
    model.save_pretrained(local)
    depth.import_pretrained("depth-anything-v2-small", local_path=str(local))
    entry = store.get("depth-anything-v2-small")
    assert entry.weights == "pretrained" and entry.source == f"file:{local}"
    assert (entry.path / "preprocessor_config.json").exists()
    from transformers import DepthAnythingForDepthEstimation

    loaded = DepthAnythingForDepthEstimation.from_pretrained(entry.path)
    key = "head.conv3.weight"
    assert torch.equal(loaded.state_dict()[key], model.state_dict()[key])


# ---------------------------------------------------------------- engine


def test_messi_depth_has_the_input_size(messi, messi_depth):
    assert messi.shape[:2] == (342, 548)
    assert messi_depth.shape == (342, 548) and messi_depth.dtype == np.float32
    assert np.isfinite(messi_depth).all()
    assert messi_depth.std() > 1e-3 * np.abs(messi_depth).max()  # not constant


def test_basketball_depth_has_the_input_size(engine):
    image = cv2.imread(str(MEDIA / "basketball1.png"))
    depth = engine.estimate([{"model": NAME, "image": image}])[0]["depth"]
    assert depth.shape == (480, 640) and depth.dtype == np.float32
    assert np.isfinite(depth).all() and depth.std() > 1e-3 * np.abs(depth).max()


def test_engine_equals_the_hf_pipeline_on_the_same_weights(engine, messi_depth):
    """The library's own path: ``pipeline('depth-estimation')`` on the RGB file, which runs the saved
    processor, the model and ``post_process_depth_estimation`` to the input size."""
    from PIL import Image
    from transformers import pipeline

    from models import store

    pipe = pipeline("depth-estimation", model=str(store.get(NAME).path), device="cpu")
    result = pipe(Image.open(MEDIA / "messi5.jpg"))
    reference = result["predicted_depth"].numpy()
    assert reference.shape == messi_depth.shape
    _close(messi_depth, reference)
    # and the sign: what the pipeline renders bright (its "depth" image, larger = nearer) is our larger
    rendered = np.asarray(result["depth"], dtype=np.float32)
    assert np.corrcoef(rendered.ravel(), messi_depth.ravel())[0, 1] > 0.99


def test_batching_gives_the_same_maps_as_one_at_a_time(engine):
    basketball = cv2.imread(str(MEDIA / "basketball1.png"))
    # Wide crops keep the forward passes cheap (42 x 518 and 84 x 518 after preprocessing): two of one
    # shape, batched together, and one of another shape in between, which gets its own batch.
    wide_a, thin, wide_b = basketball[100:160], basketball[200:300], basketball[300:360]
    assert engine.preprocess(NAME, wide_a).shape == engine.preprocess(NAME, wide_b).shape
    assert engine.preprocess(NAME, thin).shape != engine.preprocess(NAME, wide_a).shape
    items = [{"model": NAME, "image": img} for img in (wide_a, thin, wide_b)]
    batched = engine.estimate(items)
    for item, result in zip(items, batched, strict=True):
        single = engine.estimate([item])[0]["depth"]
        assert result["depth"].shape == item["image"].shape[:2]
        _close(result["depth"], single)
    assert not np.allclose(batched[0]["depth"], batched[2]["depth"])  # different crops, different maps


def test_engine_refuses_unknown_models_and_bad_images(engine):
    with pytest.raises(KeyError):
        engine.estimate([{"model": "depth-anything-large", "image": np.zeros((20, 20, 3), np.uint8)}])
    with pytest.raises(ValueError):
        engine.estimate([{"model": NAME, "image": np.zeros((20, 20, 3), np.float32)}])
    with pytest.raises(ValueError):
        engine.estimate([{"model": NAME, "image": np.zeros((20, 20), np.uint8)}])
    assert engine.estimate([]) == []


def test_bentoml_service_wraps_the_engine(engine):
    import asyncio

    from runners.depth import DepthRunner

    api = DepthRunner.apis["estimate"]
    assert api.batchable and api.max_batch_size == 16
    assert DepthRunner.config["resources"] == {"gpu": 1}
    runner = DepthRunner.inner()  # the class BentoML instantiates, built from the same store
    assert NAME in runner.engine.models
    item = {"model": NAME, "image": cv2.imread(str(MEDIA / "messi5.jpg"))[:60]}  # cheap: 518 x 56
    served = asyncio.run(runner.estimate([item]))
    # within 1e-4 of the map's range, not bit for bit: the runner ran in a worker thread (asyncio.to_thread),
    # whose torch thread count need not be this thread's (DepthEngine.estimate does not pin it), and the
    # runner's start set this process's CPU budget after `engine` was built
    _close(served[0]["depth"], engine.estimate([item])[0]["depth"])
