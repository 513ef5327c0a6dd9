"""GenEval's relative-position test (docs/benchmarks.md §1.3 step 5).

Boxes are ``(x1, y1, x2, y2)`` with y growing downwards; width is ``x2 − x1`` (no +1). The arithmetic
is done in float32 because GenEval's boxes are the detector's float32 arrays.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

import numpy as np

from evals.shapes.metadata import RELATIONS

POSITION_THRESHOLD: Final = 0.1
"""Share of the summed box dimensions removed from the centre offset (GenEval's default)."""
EMPTY_EPS: Final = 1e-3
RELATION_RATIO: Final = 0.5

Box = tuple[float, float, float, float]


def position_ratios(box_a: Sequence[float], box_b: Sequence[float]) -> tuple[float, float] | None:
    """``revised / ‖offset‖`` per axis for A relative to B, or None when both revised components
    are below 1e-3 in magnitude (the "empty set" case, which also covers identical centres)."""
    boxes = np.asarray([box_a[:4], box_b[:4]], dtype=np.float32).reshape(2, 2, 2)
    center_a, center_b = boxes.mean(axis=1)
    dim_a, dim_b = boxes[:, 1, :] - boxes[:, 0, :]
    offset = center_a - center_b
    revised = np.maximum(np.abs(offset) - POSITION_THRESHOLD * (np.abs(dim_a) + np.abs(dim_b)), 0) * np.sign(
        offset
    )
    if bool(np.all(np.abs(revised) < EMPTY_EPS)):
        return None
    dx, dy = revised / np.linalg.norm(offset)
    return float(dx), float(dy)


def relative_position(box_a: Sequence[float], box_b: Sequence[float]) -> tuple[str, ...]:
    """The relations A bears to B (target), in `RELATIONS` order; several can hold at once.

    dx < −0.5 → "left of", dx > 0.5 → "right of", dy < −0.5 → "above", dy > 0.5 → "below".
    GenEval returns a set; the fixed order here only makes failure reasons reproducible.
    """
    ratios = position_ratios(box_a, box_b)
    if ratios is None:
        return ()
    dx, dy = ratios
    held = (dx < -RELATION_RATIO, dx > RELATION_RATIO, dy < -RELATION_RATIO, dy > RELATION_RATIO)
    return tuple(rel for rel, ok in zip(RELATIONS, held, strict=True) if ok)
