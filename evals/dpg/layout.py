"""DPG-Bench image layout (docs/benchmarks.md §2.2).

Generation: ``<root>/<idx:05d>/samples/<k:05d>.png`` for k = 0..3 (idx = position in
`dpg_bench.json`). `process.py`: the 4 samples pasted into a 2W × 2H grid (k = 0 top-left,
1 top-right, 2 bottom-left, 3 bottom-right) saved as ``<root>/processed/<item_id>.png``. The scorer
crops R × R tiles back in the same order and looks every file of the folder up by its name up to the
first "." (directory-listing order).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Final

import numpy as np
import numpy.typing as npt

from evals.imageio import as_uint8_rgb, save_png

PROCESSED: Final = "processed"
IMAGES_PER_PROMPT: Final = 4


def sample_path(root: Path, idx: int, k: int) -> Path:
    return root / f"{idx:05d}" / "samples" / f"{k:05d}.png"


def grid_path(root: Path, item_id: str) -> Path:
    return root / PROCESSED / f"{item_id}.png"


def stitch_2x2(images: Sequence[npt.ArrayLike]) -> npt.NDArray[np.uint8]:
    """Paste 4 images into a 2×2 grid (size of the first; k = 0 TL, 1 TR, 2 BL, 3 BR)."""
    if len(images) != IMAGES_PER_PROMPT:
        raise ValueError(f"Expected 4 images, got {len(images)}")
    arrays = [as_uint8_rgb(img) for img in images]
    h, w = arrays[0].shape[:2]
    canvas = np.zeros((2 * h, 2 * w, 3), dtype=np.uint8)
    for k, img in enumerate(arrays):
        r, c = divmod(k, 2)
        tile = img[:h, :w]
        canvas[r * h : r * h + tile.shape[0], c * w : c * w + tile.shape[1]] = tile
    return canvas


def crop_boxes(resolution: int, pic_num: int = IMAGES_PER_PROMPT) -> list[tuple[int, int, int, int]]:
    """The scorer's crop boxes ``(left, top, right, bottom)``, first `pic_num` of TL, TR, BL, BR."""
    r = resolution
    return [(0, 0, r, r), (r, 0, 2 * r, r), (0, r, r, 2 * r), (r, r, 2 * r, 2 * r)][:pic_num]


def crop_tiles(
    grid: npt.ArrayLike, resolution: int, pic_num: int = IMAGES_PER_PROMPT
) -> list[npt.NDArray[np.uint8]]:
    """Crop the tiles back out like the official scorer (PIL crop semantics: outside is black)."""
    array = as_uint8_rgb(grid)
    out = []
    for left, top, right, bottom in crop_boxes(resolution, pic_num):
        tile = np.zeros((bottom - top, right - left, 3), dtype=np.uint8)
        part = array[top:bottom, left:right]
        tile[: part.shape[0], : part.shape[1]] = part
        out.append(tile)
    return out


def write_images(
    root: Path,
    prompts: Sequence[tuple[str, str]],
    images: Sequence[Sequence[npt.ArrayLike]],
    *,
    grids: bool = True,
) -> list[Path]:
    """Per-prompt samples and (with `grids`) the 2×2 grids; returns the grid paths (or sample paths)."""
    if len(images) != len(prompts):
        raise ValueError(f"{len(images)} image lists for {len(prompts)} prompts")
    out = []
    for idx, ((item_id, _), samples) in enumerate(zip(prompts, images, strict=True)):
        paths = [save_png(img, sample_path(root, idx, k)) for k, img in enumerate(samples)]
        if grids:
            out.append(save_png(stitch_2x2(samples), grid_path(root, item_id)))
        else:
            out += paths
    return out


def walk(processed: Path) -> list[str]:
    """Every entry of the scored folder, in listing order (the official script tries each one)."""
    return list(os.listdir(processed))
