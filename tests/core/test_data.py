"""The data layer: deterministic batches by step, mixing weights, caption choice."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from i1lab.data.mixing import mixing_weights
from i1lab.data.pipeline import BatchStream, example_dataset
from i1lab.spec.run import DataSpec


def shapes_data(**kw: object) -> DataSpec:
    sources = [
        {"name": "a", "kind": "shapes", "count": 9000, "group": "real"},
        {"name": "b", "kind": "shapes", "count": 3000, "group": "synthetic"},
        {"name": "c", "kind": "shapes", "count": 1000, "group": "text"},
    ]
    return DataSpec.model_validate({"sources": sources, "resolution": 16, **kw})


def test_weights_by_strategy() -> None:
    assert mixing_weights(shapes_data()) == pytest.approx({"a": 9 / 13, "b": 3 / 13, "c": 1 / 13})
    assert mixing_weights(shapes_data(mixing={"strategy": "equal"})) == pytest.approx(
        {"a": 1 / 3, "b": 1 / 3, "c": 1 / 3}
    )
    capped = mixing_weights(shapes_data(mixing={"strategy": "capped", "cap": 2000}))
    assert capped == pytest.approx({"a": 0.4, "b": 0.4, "c": 0.2})
    assert mixing_weights(shapes_data(remove=["real"])) == pytest.approx({"b": 0.75, "c": 0.25})
    assert mixing_weights(shapes_data(keep=["a", "c"], subset_count=1000)) == pytest.approx(
        {"a": 0.5, "c": 0.5}
    )


def test_batches_are_a_pure_function_of_step() -> None:
    data = shapes_data()
    one, two = BatchStream(data, 8, seed=3), BatchStream(data, 8, seed=3)
    for step in (0, 7, 123):
        a, b = one[step], two[step]
        assert a["image"].shape == (8, 16, 16, 3) and a["image"].dtype == np.uint8
        assert np.array_equal(a["image"], b["image"]) and list(a["caption"]) == list(b["caption"])
    assert not np.array_equal(one[0]["image"], one[1]["image"])
    other_seed = BatchStream(data, 8, seed=4)
    assert not np.array_equal(one[5]["image"], other_seed[5]["image"])


def test_caption_fraction_selects_long_or_short() -> None:
    short = example_dataset(shapes_data(long_caption_fraction=0.0), seed=0)
    long = example_dataset(shapes_data(long_caption_fraction=1.0), seed=0)
    short_words = np.mean([len(short[i]["caption"].split()) for i in range(50)])
    long_words = np.mean([len(long[i]["caption"].split()) for i in range(50)])
    assert long_words > 2 * short_words


def test_mixture_frequencies_follow_weights() -> None:
    data = shapes_data(mixing={"strategy": "capped", "cap": 2000})
    stream = example_dataset(data, seed=0)
    counts = Counter(stream[i]["source"] for i in range(2000))
    assert counts["a"] / 2000 == pytest.approx(0.4, abs=0.03) and counts["c"] / 2000 == pytest.approx(
        0.2, abs=0.03
    )
    assert len(stream[0]["caption"]) > 0
