"""The exact pixel "detector": the CPU stand-in for Mask2Former + CLIP colour (docs/benchmarks.md §1.3
steps 1 and 3, §1.6).

1. Each pixel takes its nearest reference colour (10 palette colours + background) when that colour
   is closer than `COLOR_TOLERANCE`; otherwise it is unassigned.
2. Pixels of each palette colour form 4-connected components; components smaller than
   `MIN_AREA_FRACTION` of the image are ignored.
3. Each component is one detection: box ``[x1, y1, x2, y2]`` (x2, y2 exclusive, so width = pixel
   count), its colour, and its class from the fill ratio of its box (square ≥ 0.944 > circle ≥ 0.6875
   > triangle; rendered shapes fill 1.0, 0.75–0.89 and 0.5–0.625, see `raster`).
4. Score = colour purity × template IoU × aspect ratio, in (0, 1]; exactly 1.0 for rendered objects:
   * colour purity: mean over the component of ``1 − (d / COLOR_TOLERANCE)²``;
   * template IoU: IoU of the component with the ideal mask of its class fitted to its box;
   * aspect: ``min(w, h) / max(w, h)`` (all shapes of the domain have square boxes).

The score plays the detector confidence's role, so §1.3 step 2 thresholds it (0.3, or 0.9 for
counting).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt

from evals.shapes.components import label_components
from evals.shapes.palette import COLOR_NAMES, SHAPES, reference_colors
from evals.shapes.raster import shape_mask

COLOR_TOLERANCE: Final = 64.0
"""Largest Euclidean RGB distance at which a pixel still counts as a palette/background colour."""
MIN_AREA_FRACTION: Final = 0.02
"""Components with fewer pixels than this share of the image are ignored (5.12 px at 16 px)."""
SQUARE_MIN_FILL: Final = 0.944
CIRCLE_MIN_FILL: Final = 0.6875
MIN_SCORE: Final = 1e-6
"""Scores are clamped to at least this, so every detection's score lies in (0, 1]."""


@dataclass(frozen=True)
class Detection:
    """One detected object."""

    shape: str
    color: str
    box: tuple[float, float, float, float]
    score: float
    area: int
    fill: float

    def row(self) -> list[float]:
        """``[x1, y1, x2, y2, score]`` as in GenEval's `details` (§1.3)."""
        return [*self.box, self.score]


def classify_fill(fill: float) -> str:
    """Shape class from the fill ratio of the bounding box."""
    if fill >= SQUARE_MIN_FILL:
        return "square"
    if fill >= CIRCLE_MIN_FILL:
        return "circle"
    return "triangle"


def _as_rgb(image: npt.ArrayLike) -> npt.NDArray[np.float32]:
    array = np.asarray(image)
    if array.ndim != 3 or array.shape[2] not in (3, 4):
        raise ValueError(f"expected an (H, W, 3) RGB image, got shape {array.shape}")
    return array[..., :3].astype(np.float32)


def _nearest(rgb: npt.NDArray[np.float32]) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
    """Index of the nearest reference colour (−1 when none is within tolerance) and its distance."""
    refs = reference_colors()
    dist = np.sqrt(((rgb[:, :, None, :] - refs[None, None, :, :]) ** 2).sum(axis=-1))
    index = dist.argmin(axis=-1)
    best = np.take_along_axis(dist, index[..., None], axis=-1)[..., 0]
    return np.where(best < COLOR_TOLERANCE, index, -1), best


def _detection(color: str, mask: npt.NDArray[np.bool_], dist: npt.NDArray[np.float32]) -> Detection:
    ys, xs = np.nonzero(mask)
    x1, x2, y1, y2 = int(xs.min()), int(xs.max()) + 1, int(ys.min()), int(ys.max()) + 1
    width, height = x2 - x1, y2 - y1
    area = int(xs.size)
    fill = area / (width * height)
    shape = classify_fill(fill)
    local = mask[y1:y2, x1:x2]
    template = shape_mask(shape, width, height)
    iou = np.logical_and(local, template).sum() / np.logical_or(local, template).sum()
    purity = float(np.mean(1.0 - (dist[mask].astype(np.float64) / COLOR_TOLERANCE) ** 2))
    aspect = min(width, height) / max(width, height)
    score = max(MIN_SCORE, min(1.0, purity * float(iou) * aspect))
    return Detection(shape, color, (float(x1), float(y1), float(x2), float(y2)), score, area, fill)


def detect(image: npt.ArrayLike) -> dict[str, list[Detection]]:
    """All components above the minimum area, per shape class, sorted by score (descending, stable:
    ties keep palette order, then raster order). Every class of `SHAPES` is a key."""
    rgb = _as_rgb(image)
    height, width = rgb.shape[:2]
    min_area = MIN_AREA_FRACTION * height * width
    index, dist = _nearest(rgb)
    found: dict[str, list[Detection]] = {shape: [] for shape in SHAPES}
    for color_index, color in enumerate(COLOR_NAMES):
        color_mask = index == color_index
        if color_mask.sum() < min_area:
            continue
        labels, count = label_components(color_mask)
        areas = np.bincount(labels.ravel(), minlength=count + 1)
        for label in range(1, count + 1):
            if areas[label] >= min_area:
                det = _detection(color, labels == label, dist)
                found[det.shape].append(det)
    for dets in found.values():
        dets.sort(key=lambda det: -det.score)
    return found
