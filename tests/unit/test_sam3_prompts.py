"""SAM 3 prompt parsing and the COCO RLE encoder (checked by decoding it back)."""

from __future__ import annotations

import numpy as np
import pytest

from media.masks import coco_counts, polygon_to_rle, runs_of
from vocab.concepts import parse_concepts
from vocab.errors import ApiError


def rle_counts(mask: np.ndarray) -> str:
    """COCO's compressed RLE string of a binary mask, as the SAM answers' ``mask_rle`` encodes it."""
    return coco_counts(runs_of(mask))


@pytest.mark.parametrize(
    "prompt, expected",
    [
        ("person, bicycle", ["person", "bicycle"]),
        ("  person ,,  bicycle  ", ["person", "bicycle"]),
        ("", ["person"]),
        (" , ,", ["person"]),
        ([], ["person"]),
        ("Person, person, PERSON, dog", ["Person", "dog"]),
        (["red  car", "dog, cat"], ["red car", "dog", "cat"]),
        ("traffic\tlight", ["traffic light"]),
    ],
)
def test_prompts_are_trimmed_deduplicated_and_default_to_person(prompt, expected):
    assert parse_concepts(prompt, max_concepts=16) == expected


def test_too_many_concepts_or_too_long_is_400():
    with pytest.raises(ApiError) as info:
        parse_concepts(", ".join(f"thing{i}" for i in range(17)), max_concepts=16)
    assert info.value.status == 400 and "16" in info.value.message
    assert len(parse_concepts(", ".join(f"thing{i}" for i in range(16)), max_concepts=16)) == 16
    with pytest.raises(ApiError):
        parse_concepts("x" * 101, max_concepts=16)


def rle_decode(counts: str, height: int, width: int) -> np.ndarray:
    """pycocotools' rleFrString + rleDecode, written from the C source, for checking the encoder."""
    runs, p = [], 0
    while p < len(counts):
        x, k, more = 0, 0, True
        while more:
            c = ord(counts[p]) - 48
            x |= (c & 0x1F) << (5 * k)
            more = bool(c & 0x20)
            p += 1
            k += 1
            if not more and (c & 0x10):
                x |= -1 << (5 * k)
        if len(runs) > 2:
            x += runs[-2]
        runs.append(x)
    flat, value = [], 0
    for run in runs:
        flat.extend([value] * run)
        value = 1 - value
    return np.array(flat, dtype=np.uint8).reshape((width, height)).T


@pytest.mark.parametrize("seed", range(5))
def test_rle_round_trips_random_masks(seed):
    rng = np.random.default_rng(seed)
    mask = (rng.random((37, 53)) > rng.random()).astype(np.uint8)
    assert np.array_equal(rle_decode(rle_counts(mask), 37, 53), mask)


def test_rle_known_values_and_polygon():
    assert rle_counts(np.zeros((2, 2), np.uint8)) == "4"  # one run of 4 zeros: chr(4 + 48)
    assert rle_counts(np.ones((2, 2), np.uint8)) == "04"  # zero zeros, then 4 ones
    rle = polygon_to_rle(np.array([[2, 2], [8, 2], [8, 6], [2, 6]]), width=10, height=8)
    assert rle["size"] == [8, 10]
    mask = rle_decode(rle["counts"], 8, 10)
    assert mask[4, 5] == 1 and mask[0, 0] == 0 and mask.sum() == 7 * 5
