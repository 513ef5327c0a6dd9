"""PRISM-Bench image layout (docs/benchmarks.md §3.2).

Generation writes ``<root>/<i:05d>.png`` (i < 700, alphabetical categories); `process.py` moves image
i to ``<root>/<CATEGORIES[i // 100]>/<i % 100>.png``. The evaluator reads
``<images>/<category>/<j>.png`` for j < `num_images`.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy.typing as npt

from evals.imageio import save_png
from evals.prism.prompts import CATEGORIES, EVAL_ORDER, PER_CATEGORY


def image_path(root: Path, category: str, j: int) -> Path:
    """``<root>/<category>/<j>.png`` (no padding)."""
    return root / category / f"{j}.png"


def flat_path(root: Path, i: int) -> Path:
    return root / f"{i:05d}.png"


def processed_location(i: int) -> tuple[str, int]:
    """Where `process.py` moves flat image i."""
    return CATEGORIES[i // PER_CATEGORY], i % PER_CATEGORY


def write_images(root: Path, images: dict[str, Sequence[npt.ArrayLike]]) -> list[Path]:
    """The evaluator's layout for ``images[category][j]``."""
    return [
        save_png(img, image_path(root, cat, j)) for cat, imgs in images.items() for j, img in enumerate(imgs)
    ]


def walk(root: Path, *, num_images: int = PER_CATEGORY) -> Iterator[tuple[str, int, Path]]:
    """The images the evaluator judges, in its order (categories in `EVAL_ORDER`, j ascending);
    missing images are skipped like the official loop does."""
    for category in EVAL_ORDER:
        for j in range(num_images):
            path = image_path(root, category, j)
            if path.exists():
                yield category, j, path
