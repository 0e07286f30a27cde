"""RAFT: placeholders of torchvision's architectures, the store round trip, and the engine against
torchvision's own preset transform + model on the same weights. Small frames, few iterations (CPU)."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("torchvision")

H, W = 128, 160  # RAFT's floor is 128 a side (its correlation pyramid), multiples of 8


@pytest.fixture(scope="module")
def engine(model_store):
    from runners.flow import FlowEngine
    from scripts.importers import flow as importer

    importer.import_placeholder("raft-large")
    importer.import_placeholder("raft-small")
    return FlowEngine.from_store(device="cpu")


def _frames(seed: int, height: int = H, width: int = W, shift: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """A smooth random texture and the same texture moved ``shift`` pixels right."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, (height // 8 + 2, width // 8 + 2, 3)).astype(np.float32)
    big = np.kron(coarse, np.ones((8, 8, 1), np.float32))
    frame = np.clip(big[: height, : width + shift] + rng.normal(0, 8, (height, width + shift, 3)), 0, 255)
    frame = frame.astype(np.uint8)
    return np.ascontiguousarray(frame[:, shift:]), np.ascontiguousarray(frame[:, :width])


# ---------------------------------------------------------------- importer


@pytest.mark.parametrize(("name", "constructor"), [("raft-large", "raft_large"), ("raft-small", "raft_small")])
def test_placeholder_is_torchvisions_architecture_and_seeded(name, constructor):
    import torchvision.models.optical_flow as of

    from scripts.importers.flow import build_placeholder

    model = build_placeholder(name)
    reference = getattr(of, constructor)(weights=None)
    assert list(model.state_dict()) == list(reference.state_dict())
    assert all(a.shape == b.shape for a, b in zip(model.state_dict().values(), reference.state_dict().values(),
                                                  strict=True))
    again = build_placeholder(name)
    state = model.state_dict()
    assert all(torch.equal(value, again.state_dict()[key]) for key, value in state.items())
    assert not torch.equal(state["feature_encoder.convnormrelu.0.weight"],
                           reference.state_dict()["feature_encoder.convnormrelu.0.weight"])  # really seeded


def test_store_holds_a_state_dict_and_the_variant(engine, model_store):
    from torchvision.models.optical_flow import raft_large

    from models import store

    entry = store.get("raft-large")
    assert (entry.kind, entry.family, entry.weights, entry.variant) == ("flow", "flow", "random-init", "large")
    assert store.get("raft-small").variant == "small"
    model = raft_large(weights=None)
    model.load_state_dict(torch.load(entry.path / "raft.pt", weights_only=True), strict=True)
    assert sum(p.numel() for p in model.parameters()) == 5_257_536


def test_import_pretrained_offline_is_a_clear_error(model_store):
    from models import store
    from scripts.importers import flow as importer

    before = store.installed()
    with pytest.raises(RuntimeError, match=r"download\.pytorch\.org/models/raft_small"):
        importer.import_pretrained("raft-small")
    assert store.installed() == before


def test_import_pretrained_from_a_local_file(model_store, tmp_path):
    from models import store
    from scripts.importers import flow as importer

    model = importer.build_model("small")
    # The layout a DataParallel training script saves: nested and with "module." prefixes.
    nested = {"state_dict": {f"module.{k}": v for k, v in model.state_dict().items()}}
    good = tmp_path / "raft_small_finetuned.pth"
    torch.save(nested, good)
    before = store.get("raft-small").tag if "raft-small" in store.installed() else None
    tag = importer.import_pretrained("raft-small", local_path=str(good))
    entry = store.get("raft-small")
    assert entry.tag == tag != before and entry.weights == "pretrained" and entry.source == f"file:{good}"
    saved = torch.load(entry.path / "raft.pt", weights_only=True)
    assert all(torch.equal(v, saved[k]) for k, v in model.state_dict().items())
    # weights of the other architecture: refused, nothing stored
    wrong = tmp_path / "large.pth"
    torch.save(importer.build_model("large").state_dict(), wrong)
    with pytest.raises(RuntimeError, match="not torchvision's raft_small layout"):
        importer.import_pretrained("raft-small", local_path=str(wrong))
    assert store.get("raft-small").tag == tag


# ---------------------------------------------------------------- engine


def test_flow_has_the_frame_size(engine):
    frame0, frame1 = _frames(0)
    result = engine.flow([{"model": "raft-large", "frame0": frame0, "frame1": frame1, "iters": 2}])
    flow = result[0]["flow"]
    assert flow.shape == (H, W, 2) and flow.dtype == np.float32
    assert np.isfinite(flow).all() and flow.std() > 0


def test_engine_equals_torchvision_on_the_same_weights(engine, model_store):
    """Reference: torchvision's own preset (``Raft_Large_Weights.DEFAULT.transforms()``, no download) on RGB
    tensors, then ``raft_large`` called directly; its last prediction, channels (dx, dy) moved last."""
    from torchvision.models.optical_flow import Raft_Large_Weights, raft_large

    from models import store

    frame0, frame1 = _frames(1)
    ours = engine.flow([{"model": "raft-large", "frame0": frame0, "frame1": frame1, "iters": 2}])[0]["flow"]

    model = raft_large(weights=None).eval()
    model.load_state_dict(torch.load(store.get("raft-large").path / "raft.pt", weights_only=True))
    to_tensor = lambda bgr: torch.from_numpy(bgr[..., ::-1].copy()).permute(2, 0, 1)[None]  # noqa: E731
    image0, image1 = Raft_Large_Weights.DEFAULT.transforms()(to_tensor(frame0), to_tensor(frame1))
    assert float(image0.min()) >= -1 and float(image0.max()) <= 1
    with torch.inference_mode():
        reference = model(image0, image1, num_flow_updates=2)[-1][0].permute(1, 2, 0).numpy()
    np.testing.assert_allclose(ours, reference, rtol=0, atol=1e-4 * np.abs(reference).max())


def test_batching_gives_the_same_flow_as_one_at_a_time(engine):
    pairs = [_frames(2), _frames(3, height=136), _frames(4)]  # two of one size (batched) and another
    items = [{"model": "raft-small", "frame0": a, "frame1": b, "iters": 2} for a, b in pairs]
    items.append({"model": "raft-small", "frame0": pairs[0][0], "frame1": pairs[0][1], "iters": 1})
    batched = engine.flow(items)
    for item, result in zip(items[:3], batched[:3], strict=True):
        single = engine.flow([item])[0]["flow"]
        assert result["flow"].shape == item["frame0"].shape[:2] + (2,)
        np.testing.assert_allclose(result["flow"], single, rtol=0, atol=1e-4 * np.abs(single).max())
    assert not np.allclose(batched[0]["flow"], batched[3]["flow"])  # iters really reached the model


def test_default_iterations_are_twelve(engine, monkeypatch):
    seen = []

    class Spy(torch.nn.Module):
        def forward(self, image0, image1, num_flow_updates):
            seen.append(num_flow_updates)
            return [torch.zeros(image0.shape[0], 2, *image0.shape[-2:])]

    monkeypatch.setitem(engine.models, "raft-small", Spy())
    frame0, frame1 = _frames(5)
    engine.flow([{"model": "raft-small", "frame0": frame0, "frame1": frame1}])
    engine.flow([{"model": "raft-small", "frame0": frame0, "frame1": frame1, "iters": 5}])
    assert seen == [12, 5]


@pytest.mark.parametrize(("change", "error"), [
    ({"frame0": np.zeros((130, 160, 3), np.uint8), "frame1": np.zeros((130, 160, 3), np.uint8)}, "divisible by 8"),
    ({"frame0": np.zeros((128, 164, 3), np.uint8), "frame1": np.zeros((128, 164, 3), np.uint8)}, "divisible by 8"),
    ({"frame0": np.zeros((64, 160, 3), np.uint8), "frame1": np.zeros((64, 160, 3), np.uint8)}, "at least 128"),
    ({"frame1": np.zeros((136, 160, 3), np.uint8)}, "differ in size"),
    ({"frame1": np.zeros((128, 160, 3), np.float32)}, "uint8"),
    ({"iters": 0}, "iters"),
    ({"iters": 2.5}, "iters"),
])
def test_bad_items_are_value_errors(engine, change, error):
    item = {"model": "raft-large", "frame0": np.zeros((H, W, 3), np.uint8), "frame1": np.zeros((H, W, 3), np.uint8)}
    with pytest.raises(ValueError, match=error):
        engine.flow([{**item, **change}])


def test_unknown_model_is_a_key_error(engine):
    frame0, frame1 = _frames(0)
    with pytest.raises(KeyError):
        engine.flow([{"model": "raft-huge", "frame0": frame0, "frame1": frame1}])
    assert engine.flow([]) == []


def test_bentoml_service_wraps_the_engine(engine, monkeypatch):
    import asyncio

    import runners.common
    from runners.flow import FlowRunner

    api = FlowRunner.apis["flow"]
    assert api.batchable and api.max_batch_size == 8
    assert FlowRunner.config["resources"] == {"gpu": 1}
    lowered = []  # the flow runner lowers its process's priority on a CPU: here that process is pytest, so record it
    monkeypatch.setattr(runners.common, "lower_priority", lambda *args: lowered.append(args))
    runner = FlowRunner.inner()  # the class BentoML instantiates, built from the same store
    assert lowered == [()]  # a background family on a CPU host
    assert set(runner.engine.models) == {"raft-large", "raft-small"}
    frame0, frame1 = _frames(6)
    # raft-large: raft-small's store entry is replaced by a test above, after `engine` was built
    item = {"model": "raft-large", "frame0": frame0, "frame1": frame1, "iters": 1}
    served = asyncio.run(runner.flow([item]))
    # within 1e-4 of the largest flow, not bit for bit: the runner ran in a worker thread (asyncio.to_thread),
    # whose torch thread count need not be this thread's (FlowEngine.flow does not pin it), and the runner's
    # start set this process's CPU budget after `engine` was built
    single = engine.flow([item])[0]["flow"]
    np.testing.assert_allclose(served[0]["flow"], single, rtol=0, atol=1e-4 * np.abs(single).max())
