"""Colour palette and shape classes of the synthetic "shapes" domain.

The ten colour names are GenEval's (docs/benchmarks.md §1.1), in GenEval's order, which is also the
order used in colour-failure reasons (§1.3 step 4). The RGB values are chosen so that every pair,
background included, is at least 105 apart in Euclidean RGB distance; the pixel judge
(`evals.shapes.detect`) assigns each pixel to its nearest reference colour.
"""

from __future__ import annotations

from typing import Final

import numpy as np
import numpy.typing as npt

COLORS: Final[dict[str, tuple[int, int, int]]] = {
    "red": (220, 20, 30),
    "orange": (255, 130, 0),
    "yellow": (255, 235, 0),
    "green": (20, 160, 40),
    "blue": (20, 60, 220),
    "purple": (130, 30, 170),
    "pink": (255, 120, 190),
    "brown": (120, 60, 20),
    "black": (10, 10, 10),
    "white": (250, 250, 250),
}
"""GenEval's ten colour names (§1.1) mapped to flat RGB values."""

COLOR_NAMES: Final[tuple[str, ...]] = tuple(COLORS)

BACKGROUND: Final[tuple[int, int, int]] = (128, 128, 128)
"""Mid grey; its nearest palette colour (purple) is about 107 away."""

BACKGROUND_NAME: Final[str] = "grey"

SHAPES: Final[tuple[str, ...]] = ("square", "circle", "triangle")
"""The detector's "classes" (GenEval's COCO names, §1.1, in this domain)."""

PLURALS: Final[dict[str, str]] = {"square": "squares", "circle": "circles", "triangle": "triangles"}


def reference_colors() -> npt.NDArray[np.float32]:
    """The palette followed by the background, as a float32 array of shape (11, 3)."""
    rows = [*COLORS.values(), BACKGROUND]
    return np.asarray(rows, dtype=np.float32)
