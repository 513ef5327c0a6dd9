"""Scenes: palette, deterministic hard-edged rendering, non-overlap, sampling coverage, captions."""

from __future__ import annotations

import itertools
from collections import Counter

import numpy as np
import pytest

from evals.shapes import COLORS, SHAPES, Obj, Scene, caption, parse_prompt, render, sample_scene
from evals.shapes.captions import shape_groups
from evals.shapes.detect import COLOR_TOLERANCE
from evals.shapes.geometry import relative_position
from evals.shapes.judge import judge
from evals.shapes.palette import BACKGROUND
from evals.shapes.raster import pixel_box, shape_mask

SIDES = (16, 24, 32)
GENEVAL_COLORS = ["red", "orange", "yellow", "green", "blue", "purple", "pink", "brown", "black", "white"]


def scenes(n: int, seed0: int = 0) -> list[Scene]:
    return [sample_scene(np.random.default_rng(seed0 + i)) for i in range(n)]


def test_palette_is_genevals_and_well_separated() -> None:
    assert list(COLORS) == GENEVAL_COLORS
    refs = [*COLORS.values(), BACKGROUND]
    closest = min(np.linalg.norm(np.subtract(a, b)) for a, b in itertools.combinations(refs, 2))
    assert closest > 100 > COLOR_TOLERANCE
    assert SHAPES == ("square", "circle", "triangle")


@pytest.mark.parametrize("side", SIDES)
def test_render_is_deterministic(side: int) -> None:
    for scene in scenes(20):
        first, second = render(scene, side), render(scene, side)
        assert first.dtype == np.uint8 and first.shape == (side, side, 3)
        assert np.array_equal(first, second)
    assert sample_scene(np.random.default_rng(7)) == sample_scene(np.random.default_rng(7))


@pytest.mark.parametrize("side", SIDES)
def test_objects_do_not_overlap_or_touch(side: int) -> None:
    for scene in scenes(200):
        image = render(scene, side)
        masks = []
        for obj in scene.objects:
            x, y, n = pixel_box(obj, side)
            assert min(x, y) >= 0 and max(x, y) + n <= side
            full = np.zeros((side, side), dtype=bool)
            full[y : y + n, x : x + n] = shape_mask(obj.shape, n, n)
            assert (image[full] == COLORS[obj.color]).all()
            masks.append(full)
        for a, b in itertools.combinations(masks, 2):
            grown = a.copy()  # 4-neighbour dilation: touching objects would share an edge
            grown[1:] |= a[:-1]
            grown[:-1] |= a[1:]
            grown[:, 1:] |= a[:, :-1]
            grown[:, :-1] |= a[:, 1:]
            assert not (grown & b).any()
        background = ~np.logical_or.reduce(masks) if masks else np.ones((side, side), bool)
        assert (image[background] == BACKGROUND).all()


def test_render_rejects_overlap_and_out_of_frame() -> None:
    with pytest.raises(ValueError, match="overlap"):
        render(Scene((Obj("square", "red", 0.4, 0.5, 0.3), Obj("circle", "blue", 0.6, 0.5, 0.3))), 16)
    with pytest.raises(ValueError, match="frame"):
        render(Scene((Obj("square", "red", 0.05, 0.5, 0.3),)), 16)


def test_hard_edges_only_palette_colours() -> None:
    allowed = {*COLORS.values(), BACKGROUND}
    for scene in scenes(50):
        pixels = {tuple(int(v) for v in p) for p in render(scene, 24).reshape(-1, 3)}
        assert pixels <= allowed


def test_object_sizes_at_16px() -> None:
    sides = [pixel_box(obj, 16)[2] for scene in scenes(500) for obj in scene.objects]
    assert min(sides) >= 4 and max(sides) <= 7
    assert {4, 5, 6, 7} <= set(sides)


def test_sampling_covers_the_structures() -> None:
    kinds: Counter[str] = Counter()
    for scene in scenes(600):
        groups = shape_groups(scene)
        if len(scene.objects) == 1:
            kinds["single"] += 1
        elif len(groups) == 2:
            a, b = scene.objects
            assert a.shape != b.shape
            kinds[f"pair {relative_position(_box(a), _box(b))}"] += 1
        else:
            assert len({(o.shape, o.color) for o in scene.objects}) == 1
            kinds[f"count {len(scene.objects)}"] += 1
    expected = {"single", "count 2", "count 3", "count 4"}
    expected |= {f"pair {(rel,)}" for rel in ("left of", "right of", "above", "below")}
    assert expected <= set(kinds), kinds
    assert sum(kinds.values()) == 600


def _box(obj: Obj) -> tuple[float, float, float, float]:
    x, y, n = pixel_box(obj, 32)
    return (x, y, x + n, y + n)


def test_max_objects_and_kinds() -> None:
    rng = np.random.default_rng(1)
    assert all(len(sample_scene(rng, max_objects=2).objects) <= 2 for _ in range(200))
    assert all(len(sample_scene(rng, max_objects=1).objects) == 1 for _ in range(50))
    assert all(len(sample_scene(rng, kinds=("count",)).objects) >= 2 for _ in range(50))
    with pytest.raises(ValueError):
        sample_scene(rng, max_objects=1, kinds=("pair",))


def test_short_captions_parse_back_to_the_scene() -> None:
    tags: Counter[str] = Counter()
    for i, scene in enumerate(scenes(300, seed0=1000)):
        rng = np.random.default_rng(i)
        meta = parse_prompt(caption(scene, "short", rng))
        tags[meta["tag"]] += 1
        groups = dict(shape_groups(scene))
        assert sorted(c["class"] for c in meta["include"]) == sorted(groups)
        for clause in meta["include"]:
            objs = groups[clause["class"]]
            assert clause["count"] == len(objs)
            if "color" in clause:
                assert all(o.color == clause["color"] for o in objs)
        if meta["tag"] == "counting":
            only = meta["include"][0]
            assert meta.get("exclude") == [{"class": only["class"], "count": only["count"] + 1}]
        for side in SIDES:
            verdict = judge(render(scene, side), meta)
            assert verdict.correct, (meta["prompt"], side, verdict.reason)
    assert set(tags) == {"single_object", "two_object", "counting", "colors", "position", "color_attr"}


def test_long_captions_describe_the_same_content() -> None:
    number = {2: "two", 3: "three", 4: "four"}
    for i, scene in enumerate(scenes(200, seed0=5000)):
        text = caption(scene, "long", np.random.default_rng(i)).lower()
        assert "grey background" in text
        for obj in scene.objects:
            assert obj.color in text and obj.shape in text
        other = set(COLORS) - {obj.color for obj in scene.objects}
        assert not any(f" {c} " in f" {text} " for c in other)
        groups = shape_groups(scene)
        if len(groups) == 1 and len(scene.objects) > 1:
            assert text.startswith(number[len(scene.objects)])
        assert len(text.split()) > len(caption(scene, "short", np.random.default_rng(i)).split())


def test_caption_rejects_unknown_style() -> None:
    with pytest.raises(ValueError):
        caption(scenes(1)[0], "medium", np.random.default_rng(0))  # type: ignore[arg-type]
