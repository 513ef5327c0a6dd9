"""Scene description types: resolution-independent objects on a grey canvas.

Coordinates are fractions of the image side, so one `Scene` renders at 16, 24, 32 px or any other
size (see `evals.shapes.raster`). Validation happens at construction.
"""

from __future__ import annotations

from dataclasses import dataclass

from evals.shapes.palette import COLORS, SHAPES


@dataclass(frozen=True)
class Obj:
    """One flat-coloured shape.

    `cx`, `cy` are the centre and `size` the side of its square bounding box, all as fractions of the
    image side; y grows downwards (image convention, as in GenEval's boxes, docs/benchmarks.md §1.3.5).
    """

    shape: str
    color: str
    cx: float
    cy: float
    size: float

    def __post_init__(self) -> None:
        if self.shape not in SHAPES:
            raise ValueError(f"unknown shape {self.shape!r}; expected one of {SHAPES}")
        if self.color not in COLORS:
            raise ValueError(f"unknown colour {self.color!r}; expected one of {tuple(COLORS)}")
        if not 0.0 < self.size <= 1.0:
            raise ValueError(f"size must be in (0, 1], got {self.size}")

    @property
    def extent(self) -> tuple[float, float, float, float]:
        """Fractional box (x1, y1, x2, y2)."""
        half = self.size / 2
        return (self.cx - half, self.cy - half, self.cx + half, self.cy + half)


@dataclass(frozen=True)
class Scene:
    """An ordered tuple of objects; drawing order is tuple order (objects never overlap anyway)."""

    objects: tuple[Obj, ...]

    def __post_init__(self) -> None:
        if not isinstance(self.objects, tuple):
            raise TypeError("Scene.objects must be a tuple")
