"""Random, non-overlapping placements of 1–4 objects (fractions of the image side).

Guarantees, for every image side S ≥ 16 (`raster.MIN_RESOLUTION`):

* boxes stay at least `BORDER` inside the frame, so rounding (≤ 0.75 px per edge, see
  `raster.pixel_box`) never pushes them out;
* boxes in different grid cells are `GAP` apart along the separating axis, i.e. ≥ 2.4 px − 1.5 px of
  rounding at 16 px, so at least one background pixel always separates them;
* pairs laid out side by side (or one above the other) have their other coordinate within
  2·`PAIR_JITTER` of each other, so GenEval's relative-position test (docs/benchmarks.md §1.3.5) gives the
  intended relation with a wide margin (ratio ≥ 0.75 against the 0.5 threshold).
"""

from __future__ import annotations

from typing import Final, Literal

import numpy as np

BORDER: Final = 0.05
GAP: Final = 0.15
SIZE_MIN: Final = 0.25
"""4 px at 16 px, 6 px at 24 px, 8 px at 32 px."""
SIZE_MAX_SINGLE: Final = 0.4375
"""7 px at 16 px."""
CELL: Final = (1.0 - 2 * BORDER - GAP) / 2
"""Side of a cell of the 2×2 grid (0.375, i.e. 6 px at 16 px); the largest size of an object in a
multi-object scene."""
PAIR_JITTER: Final = 0.1

Placement = tuple[float, float, float]
"""(cx, cy, size) as fractions of the image side."""
Orientation = Literal["horizontal", "vertical", "diagonal", "antidiagonal"]

_LOW: Final = (BORDER, BORDER + CELL)
_HIGH: Final = (1.0 - BORDER - CELL, 1.0 - BORDER)
_FULL: Final = (BORDER, 1.0 - BORDER)


def _size(rng: np.random.Generator, high: float) -> float:
    return float(rng.uniform(SIZE_MIN, high))


def _coord(rng: np.random.Generator, span: tuple[float, float], size: float) -> float:
    lo, hi = span[0] + size / 2, span[1] - size / 2
    return float(rng.uniform(lo, hi)) if hi > lo else (lo + hi) / 2


def place_single(rng: np.random.Generator) -> Placement:
    """One object anywhere in the frame, size in [SIZE_MIN, SIZE_MAX_SINGLE]."""
    size = _size(rng, SIZE_MAX_SINGLE)
    return (_coord(rng, _FULL, size), _coord(rng, _FULL, size), size)


def place_in_cells(rng: np.random.Generator, cells: list[tuple[int, int]]) -> list[Placement]:
    """One object per (column, row) cell of the 2×2 grid, each jittered inside its cell."""
    spans = (_LOW, _HIGH)
    out: list[Placement] = []
    for col, row in cells:
        size = _size(rng, CELL)
        out.append((_coord(rng, spans[col], size), _coord(rng, spans[row], size), size))
    return out


def place_pair(rng: np.random.Generator, orientation: Orientation) -> tuple[Placement, Placement]:
    """Two objects; the first is left of / above the second (or top-left/bottom-left for diagonals).

    For "horizontal" and "vertical", the cross-axis coordinates differ by at most 2·PAIR_JITTER.
    """
    if orientation in ("diagonal", "antidiagonal"):
        cells = [(0, 0), (1, 1)] if orientation == "diagonal" else [(0, 1), (1, 0)]
        first, second = place_in_cells(rng, cells)
        return first, second
    sizes = (_size(rng, CELL), _size(rng, CELL))
    along = [_coord(rng, span, s) for span, s in zip((_LOW, _HIGH), sizes, strict=True)]
    biggest = max(sizes)
    base = _coord(rng, (_FULL[0] + PAIR_JITTER, _FULL[1] - PAIR_JITTER), biggest)
    across = [base + float(rng.uniform(-PAIR_JITTER, PAIR_JITTER)) for _ in sizes]
    if orientation == "horizontal":
        a, b = ((along[i], across[i], sizes[i]) for i in range(2))
    else:
        a, b = ((across[i], along[i], sizes[i]) for i in range(2))
    return a, b


def place_group(rng: np.random.Generator, count: int) -> list[Placement]:
    """`count` (1–4) objects in distinct cells of the 2×2 grid (one object: anywhere)."""
    if count == 1:
        return [place_single(rng)]
    if count == 2:
        kinds: tuple[Orientation, ...] = ("horizontal", "vertical", "diagonal", "antidiagonal")
        return list(place_pair(rng, kinds[int(rng.integers(len(kinds)))]))
    if count in (3, 4):
        cells = [(0, 0), (1, 0), (0, 1), (1, 1)]
        order = rng.permutation(4)[:count]
        return place_in_cells(rng, [cells[int(i)] for i in sorted(order)])
    raise ValueError(f"can place 1–4 objects, not {count}")
