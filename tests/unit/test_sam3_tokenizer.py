"""The CLIP tokenizer SAM 3's text encoder calls: ids identical to ultralytics' CLIP fork."""

from __future__ import annotations

import gzip
import importlib.util
import sys
from pathlib import Path

import pytest

from nets.sam3_tokenizer import (
    CONTEXT_LENGTH,
    clip_module_for_sam3,
    make_tokenizer,
    real_clip_available,
    simple_tokenizer_class,
)

PROMPTS = ["a photo of a cat", "person", "ball", "yellow school bus", "Person  WITH a   red hat!", "café 42"]
SOT, EOT = 49406, 49407


def vocabulary() -> dict[str, int]:
    """The CLIP encoder table rebuilt from open_clip's vocabulary file, independently of any tokenizer code."""
    spec = importlib.util.find_spec("open_clip")
    path = Path(spec.submodule_search_locations[0]) / "bpe_simple_vocab_16e6.txt.gz"
    merges = gzip.open(path).read().decode("utf-8").split("\n")[1 : 49152 - 256 - 2 + 1]
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    extra = [b for b in range(256) if b not in printable]
    byte_chars = [chr(b) for b in printable] + [chr(256 + n) for n in range(len(extra))]
    vocab = byte_chars + [c + "</w>" for c in byte_chars] + ["".join(m.split()) for m in merges]
    return {token: index for index, token in enumerate(vocab)}


@pytest.fixture(scope="module")
def tokenizer():
    return make_tokenizer()


def ids(tokenizer, text: str) -> list[int]:
    row = tokenizer([text], context_length=CONTEXT_LENGTH)[0].tolist()
    return row[: row.index(EOT) + 1]


def test_known_clip_ids(tokenizer):
    assert ids(tokenizer, "a photo of a cat") == [49406, 320, 1125, 539, 320, 2368, 49407]


@pytest.mark.parametrize("word", ["person", "ball", "dog", "car", "bus"])
def test_whole_word_ids_come_from_the_vocabulary_file(tokenizer, word):
    table = vocabulary()
    assert ids(tokenizer, word) == [SOT, table[f"{word}</w>"], EOT]
    assert ids(tokenizer, word.upper()) == [SOT, table[f"{word}</w>"], EOT]  # CLIP lower-cases


def test_shape_padding_and_truncation_as_the_text_encoder_uses_them(tokenizer):
    out = tokenizer(["person", "ball " * 60], context_length=CONTEXT_LENGTH)
    assert tuple(out.shape) == (2, CONTEXT_LENGTH)
    assert out[0, 3:].eq(0).all()  # padding is 0 (the encoder's mask is ``tokenized != 0``)
    assert out[1, 0] == SOT and out[1, -1] == EOT  # truncated, end token kept


@pytest.mark.skipif(not real_clip_available(), reason="ultralytics' CLIP fork is not installed (git-only)")
def test_identical_ids_to_the_real_clip_package():
    from clip.simple_tokenizer import SimpleTokenizer as RealTokenizer
    from open_clip.tokenizer import SimpleTokenizer as OpenClipTokenizer

    real, ours = RealTokenizer(), OpenClipTokenizer()
    for prompt in PROMPTS:
        assert ours([prompt], context_length=CONTEXT_LENGTH).tolist() == real(
            [prompt], context_length=CONTEXT_LENGTH
        ).tolist()


def test_shim_exists_only_inside_the_block():
    had_clip = "clip" in sys.modules
    with clip_module_for_sam3():
        import clip

        assert clip.simple_tokenizer.SimpleTokenizer is simple_tokenizer_class()
    if not real_clip_available():
        assert ("clip" in sys.modules) == had_clip
        with pytest.raises(ImportError):
            import clip  # noqa: F401, F811
