"""SAM 3 builders: FULL_ARCH is ultralytics' model exactly; the checkpoint layout round-trips through
ultralytics' own loader; the uninitialised text parameters are filled (no NaN)."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from nets import sam3_arch  # noqa: E402
from nets.sam3_tokenizer import clip_module_for_sam3, make_tokenizer  # noqa: E402


def layout(module) -> dict:
    return {k: (tuple(v.shape), v.dtype) for k, v in module.state_dict().items()}


def test_full_arch_is_ultralytics_sam3(tmp_path):
    from ultralytics.models.sam.build_sam3 import build_interactive_sam3, build_sam3_image_model

    empty = tmp_path / "empty.pt"
    torch.save({}, empty)
    with sam3_arch.parameters_on_meta():
        ours = sam3_arch.build_detector(sam3_arch.FULL_ARCH, make_tokenizer())
        our_tracker = sam3_arch.build_tracker(sam3_arch.FULL_ARCH)
        with clip_module_for_sam3():
            theirs = build_sam3_image_model(str(empty))
        their_tracker = build_interactive_sam3(str(empty), with_backbone=False)
    assert layout(ours) == layout(theirs)
    assert layout(our_tracker) == layout(their_tracker)
    assert sam3_arch.count_params(ours) == 848_179_510
    assert sam3_arch.count_params(our_tracker) == 11_743_362


@pytest.fixture(scope="module")
def reduced():
    torch.manual_seed(0)
    detector = sam3_arch.build_detector(sam3_arch.REDUCED_ARCH, make_tokenizer())
    tracker = sam3_arch.build_tracker(sam3_arch.REDUCED_ARCH)
    sam3_arch.init_uninitialised_(detector, seed=0)
    return detector, tracker


def test_reduced_is_small(reduced):
    detector, tracker = reduced
    assert 20e6 < sam3_arch.count_params(detector) < 40e6
    assert sam3_arch.count_params(tracker) < 10e6


def test_checkpoint_round_trips_through_ultralytics_loader(reduced, tmp_path):
    detector, tracker = reduced
    path = tmp_path / "sam3.pt"
    torch.save(sam3_arch.checkpoint_state(detector, tracker), path)
    torch.manual_seed(123)  # different random weights before loading
    loaded_detector, loaded_tracker = sam3_arch.build_from_checkpoint(sam3_arch.REDUCED_ARCH, path)
    for ours, loaded in ((detector, loaded_detector), (tracker, loaded_tracker)):
        expected, got = ours.state_dict(), loaded.state_dict()
        assert expected.keys() == got.keys()
        mismatched = [k for k in expected if not torch.equal(expected[k], got[k])]
        assert not mismatched, mismatched[:5]


def test_text_parameters_are_initialised_deterministically(reduced):
    detector, _ = reduced
    encoder = detector.backbone.language_backbone.encoder
    other = sam3_arch.build_detector(sam3_arch.REDUCED_ARCH, make_tokenizer()).backbone.language_backbone.encoder
    other.positional_embedding.data.fill_(float("nan"))  # what torch.empty may hold
    sam3_arch.init_uninitialised_(_wrap(other), seed=0)
    assert torch.equal(other.positional_embedding, encoder.positional_embedding)
    assert torch.isfinite(encoder.positional_embedding).all() and encoder.positional_embedding.std() > 0
    with torch.inference_mode():
        mask, memory, embeds = detector.backbone.language_backbone(["person", "a ball"])
    assert torch.isfinite(memory).all() and torch.isfinite(embeds).all()
    assert mask.shape == (2, 32) and memory.shape == (32, 2, sam3_arch.D_MODEL)


def _wrap(module):
    wrapper = torch.nn.Module()
    wrapper.inner = module
    return wrapper
