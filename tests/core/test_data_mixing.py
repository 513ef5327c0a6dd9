"""Mixing, subsetting and caption choice deliver the frequencies they promise (docs/design-space.md §11).

Each statistical check draws N = 10,000 examples and allows 3 standard deviations of an independent
draw, ``3·sqrt(p(1-p)/N)`` (at most 0.015): the bound an honest random sampler meets with probability
~0.997. (Grain's weighted interleave is deterministic and lands far inside it.)
"""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path

import pytest

from i1lab.data.mixing import mixing_weights
from i1lab.data.pipeline import example_dataset, example_ids
from i1lab.data.subset import nested_subset
from i1lab.spec.run import DataSpec
from tests.core.test_data_sources import write_shards

N = 10_000


def tolerance(p: float, n: int = N) -> float:
    return 3 * math.sqrt(p * (1 - p) / n)


def data(**kw: object) -> DataSpec:
    sources = [
        {"name": "a", "count": 9000, "group": "real"},
        {"name": "b", "count": 3000, "group": "synthetic", "family": "textured"},
        {"name": "c", "count": 1000, "group": "text", "family": "words"},
    ]
    return DataSpec.model_validate({"sources": sources, "resolution": 16, **kw})


def draws(spec: DataSpec, seed: int = 0, n: int = N) -> list[tuple[str, int]]:
    names = [s.name for s in spec.kept_sources()]
    ids = example_ids(spec, seed)
    return [(names[ids[i][0]], ids[i][1]) for i in range(n)]


def assert_frequencies(spec: DataSpec, expected: dict[str, float], seed: int = 0) -> list[tuple[str, int]]:
    got = draws(spec, seed)
    counts = Counter(name for name, _ in got)
    assert set(counts) == {k for k, v in expected.items() if v > 0}
    for name, p in expected.items():
        assert abs(counts[name] / N - p) <= tolerance(p), (name, counts[name] / N, p)
    return got


@pytest.mark.parametrize(
    ("kw", "expected"),
    [
        ({}, {"a": 9 / 13, "b": 3 / 13, "c": 1 / 13}),  # count-proportional
        ({"mixing": {"strategy": "equal"}}, {"a": 1 / 3, "b": 1 / 3, "c": 1 / 3}),
        ({"mixing": {"strategy": "capped", "cap": 2000}}, {"a": 0.4, "b": 0.4, "c": 0.2}),
        ({"mixing": {"strategy": "capped", "cap": 500}}, {"a": 1 / 3, "b": 1 / 3, "c": 1 / 3}),
        ({"mixing": {"strategy": "equal"}, "remove": ["synthetic"]}, {"a": 0.5, "b": 0.0, "c": 0.5}),
        ({"keep": ["a", "b"]}, {"a": 0.75, "b": 0.25, "c": 0.0}),
    ],
)
def test_strategies_deliver_their_frequencies(kw: dict[str, object], expected: dict[str, float]) -> None:
    spec = data(**kw)
    assert mixing_weights(spec) == pytest.approx({k: v for k, v in expected.items() if v > 0})
    got = assert_frequencies(spec, expected)
    # other seeds reorder the stream, not its proportions
    assert draws(spec, seed=5)[:50] != got[:50]
    assert_frequencies(spec, expected, seed=5)


def test_subset_caps_unique_images_and_visits_them_evenly() -> None:
    spec = data(subset_count=200)
    # count-proportional over the effective counts min(count, 200): all equal
    got = assert_frequencies(spec, {"a": 1 / 3, "b": 1 / 3, "c": 1 / 3})
    for name in "abc":
        visits = Counter(i for n, i in got if n == name)
        assert len(visits) == 200  # exactly N unique images, every one of them visited
        assert max(visits.values()) - min(visits.values()) <= 1  # each epoch visits each image once
    # a subset larger than a source leaves it whole
    big = draws(data(subset_count=5000, mixing={"strategy": "equal"}))
    assert len({i for n, i in big if n == "c"}) == 1000
    a_draws = [i for n, i in big if n == "a"]
    assert len(set(a_draws)) == len(a_draws) < 5000  # within its first epoch: no image twice
    assert set(a_draws) <= set(nested_subset("a", 9000).members(5000))


def test_subsets_are_nested_exact_and_independent_of_the_seed() -> None:
    def unique(n: int, seed: int) -> set[int]:
        return {i for name, i in draws(data(subset_count=n, keep=["a"]), seed, n=4 * n) if name == "a"}

    small, medium, large = unique(50, 0), unique(200, 1), unique(800, 2)
    assert (len(small), len(medium), len(large)) == (50, 200, 800)
    assert small < medium < large
    assert unique(200, 7) == medium
    perm = nested_subset("a", 9000)
    assert set(perm.members(200)) == medium and set(perm.members(50)) == small
    for total in (1, 2, 3, 1000, 4097):
        assert sorted(nested_subset("x", total).members(total)) == list(range(total))
    # different sources take different subsets
    assert set(nested_subset("b", 9000).members(200)) != medium


def test_captions_are_drawn_per_visit_with_the_long_fraction(tmp_path: Path) -> None:
    write_shards(tmp_path / "wds", shards=2, per_shard=10, captions=4)
    spec = DataSpec.model_validate(
        {
            "sources": [
                {"name": "w", "kind": "webdataset", "path": str(tmp_path / "wds/*.tar"), "count": 20}
            ],
            "resolution": 16,
            "long_caption_fraction": 0.3,
        }
    )
    ds = example_dataset(spec, seed=0)
    examples = (ds[i] for i in range(N))
    picked = [(int(ex["index"]), str(ex["caption"])) for ex in examples]
    longs = [c for _, c in picked if c.startswith("long")]
    assert abs(len(longs) / N - 0.3) <= tolerance(0.3)
    variants = Counter(c.rsplit(" ", 1)[1] for c in longs)
    for v in ("v0", "v1", "v2", "v3"):
        assert abs(variants[v] / len(longs) - 0.25) <= tolerance(0.25, len(longs)), variants
    for index, c in picked:  # the caption belongs to the image it came with
        assert c.split()[1] == str(index)
    per_image = {index: {c for i, c in picked if i == index} for index in range(20)}
    assert all(len(cs) >= 4 for cs in per_image.values())  # re-drawn on each visit
    only_short = DataSpec.model_validate({**spec.model_dump(), "long_caption_fraction": 0.0})
    ds0 = example_dataset(only_short, seed=0)
    assert all(ds0[i]["caption"].startswith("short") for i in range(200))
