"""Hard-edged rasterisation of scenes (no anti-aliasing, so the pixel judge can be exact).

Every object occupies an n×n pixel box. A pixel belongs to the shape when its centre falls inside
the ideal shape scaled to the box:

* square: the whole box (fill ratio 1.0);
* circle: the inscribed disc (fill 0.75–0.89 for n ≥ 4, tending to π/4);
* triangle: the right triangle below the main diagonal, right angle at the bottom-left
  (fill (n+1)/(2n): 0.625 at n = 4, tending to 0.5).

The judge (docs/benchmarks.md §1.6: "synthetic coloured shapes with an oracle detector") classifies shapes
by these fill ratios and scores them against the same templates (`shape_mask`).
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from evals.shapes.objects import Obj, Scene
from evals.shapes.palette import BACKGROUND, COLORS

MIN_RESOLUTION = 16
"""Smallest image side at which the judge is guaranteed to read rendered scenes exactly."""


def shape_mask(shape: str, width: int, height: int) -> npt.NDArray[np.bool_]:
    """Boolean (height, width) mask of `shape` fitted to a width×height pixel box (pixel-centre test)."""
    if width < 1 or height < 1:
        raise ValueError("box must be at least 1×1")
    xs = (np.arange(width, dtype=np.float64) + 0.5) / width
    ys = (np.arange(height, dtype=np.float64) + 0.5) / height
    gx, gy = np.meshgrid(xs, ys)
    if shape == "square":
        return np.ones((height, width), dtype=np.bool_)
    if shape == "circle":
        return np.asarray((gx - 0.5) ** 2 + (gy - 0.5) ** 2 <= 0.25, dtype=np.bool_)
    if shape == "triangle":
        return np.asarray(gx <= gy, dtype=np.bool_)
    raise ValueError(f"unknown shape {shape!r}")


def pixel_box(obj: Obj, size: int) -> tuple[int, int, int]:
    """Top-left corner (x, y) and side n, in pixels, of `obj` rendered in a size×size image.

    n = round(obj.size · size) (halves round up), and the box is centred on the rounded centre;
    each box edge is within 0.75 px of its ideal fractional position.
    """
    n = max(1, math.floor(obj.size * size + 0.5))
    x = math.floor(obj.cx * size - n / 2 + 0.5)
    y = math.floor(obj.cy * size - n / 2 + 0.5)
    return x, y, n


def _separated(a: tuple[int, int, int], b: tuple[int, int, int]) -> bool:
    """True when the two pixel boxes leave at least one background pixel between them on some axis."""
    ax, ay, an = a
    bx, by, bn = b
    return ax + an < bx or bx + bn < ax or ay + an < by or by + bn < ay


def render(scene: Scene, size: int) -> npt.NDArray[np.uint8]:
    """Render `scene` as a uint8 (size, size, 3) RGB array on the grey background.

    Deterministic and hard-edged. Raises ValueError when an object leaves the frame or when two
    objects' boxes overlap or touch (a one-pixel gap keeps same-coloured objects separate components).
    """
    if size < 1:
        raise ValueError("size must be positive")
    image = np.empty((size, size, 3), dtype=np.uint8)
    image[...] = BACKGROUND
    boxes = [pixel_box(obj, size) for obj in scene.objects]
    for i, (x, y, n) in enumerate(boxes):
        if x < 0 or y < 0 or x + n > size or y + n > size:
            raise ValueError(f"object {i} ({scene.objects[i]}) leaves the {size}px frame")
        for j in range(i):
            if not _separated(boxes[i], boxes[j]):
                raise ValueError(f"objects {j} and {i} overlap or touch at {size}px")
    for obj, (x, y, n) in zip(scene.objects, boxes, strict=True):
        window = image[y : y + n, x : x + n]
        window[shape_mask(obj.shape, n, n)] = COLORS[obj.color]
    return image
