"""Scenes of the "shapes" domain: palette, object types, rendering, sampling and captions.

This is the training-data side of the synthetic GenEval (docs/benchmarks.md §1.6): flat-coloured squares,
circles and triangles on a grey canvas, in the structures GenEval probes (§1.1): single objects,
pairs (with colour attributes and left/right/above/below arrangements) and counts of 2–4 identical
objects.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np

from evals.shapes.captions import CaptionStyle, caption
from evals.shapes.layout import place_group, place_pair, place_single
from evals.shapes.objects import Obj, Scene
from evals.shapes.palette import BACKGROUND, BACKGROUND_NAME, COLORS, SHAPES
from evals.shapes.raster import MIN_RESOLUTION, pixel_box, render, shape_mask

__all__ = [
    "BACKGROUND",
    "BACKGROUND_NAME",
    "COLORS",
    "MIN_RESOLUTION",
    "SHAPES",
    "CaptionStyle",
    "Obj",
    "Scene",
    "SceneKind",
    "caption",
    "pixel_box",
    "random_color",
    "random_shape",
    "render",
    "sample_scene",
    "shape_mask",
]

SceneKind = Literal["single", "pair", "count"]
"""single: one object; pair: two objects of different shapes side by side or stacked; count: 2–4
objects of one shape and one colour."""


def random_color(rng: np.random.Generator) -> str:
    names = tuple(COLORS)
    return names[int(rng.integers(len(names)))]


def random_shape(rng: np.random.Generator) -> str:
    return SHAPES[int(rng.integers(len(SHAPES)))]


def sample_scene(
    rng: np.random.Generator,
    *,
    max_objects: int = 4,
    kinds: Sequence[SceneKind] = ("single", "pair", "count"),
    weights: Sequence[float] | None = None,
) -> Scene:
    """Draw one training scene.

    `kinds` (with optional `weights`, default uniform) picks the structure; kinds needing more than
    `max_objects` objects are dropped, and counts are drawn uniformly from 2…min(4, max_objects).
    All objects are non-overlapping and readable by the judge at any side ≥ 16 px (`layout`).
    """
    if max_objects < 1:
        raise ValueError("max_objects must be at least 1")
    table = list(zip(kinds, weights if weights is not None else [1.0] * len(kinds), strict=True))
    allowed = [(kind, w) for kind, w in table if kind == "single" or max_objects >= 2]
    if not allowed:
        raise ValueError(f"no kind of {tuple(kinds)} fits max_objects={max_objects}")
    probs = np.asarray([w for _, w in allowed], dtype=np.float64)
    kind = allowed[int(rng.choice(len(allowed), p=probs / probs.sum()))][0]
    if kind == "single":
        cx, cy, size = place_single(rng)
        return Scene((Obj(random_shape(rng), random_color(rng), cx, cy, size),))
    if kind == "pair":
        first, second = (SHAPES[int(i)] for i in rng.permutation(len(SHAPES))[:2])
        orientation: Literal["horizontal", "vertical"] = "horizontal" if rng.random() < 0.5 else "vertical"
        slots = place_pair(rng, orientation)
        if rng.random() < 0.5:
            slots = (slots[1], slots[0])
        objs = (Obj(first, random_color(rng), *slots[0]), Obj(second, random_color(rng), *slots[1]))
        return Scene(objs)
    if kind == "count":
        count = int(rng.integers(2, min(4, max_objects) + 1))
        shape, color = random_shape(rng), random_color(rng)
        return Scene(tuple(Obj(shape, color, *slot) for slot in place_group(rng, count)))
    raise ValueError(f"unknown scene kind {kind!r}")
