"""CVTG-2K image layout (docs/benchmarks.md §4.2).

Generation writes ``<root>/<i:05d>.png`` (i = position in `CVTG-2K.json`: CVTG 2–5 then CVTG-Style
2–5); `process.py` moves each to ``<root>/<type>/<area>/<index>.png`` (no padding). The evaluator takes
every file of ``<type>/<area>/`` whose lowercased name ends in .png/.jpg/.jpeg and whose stem is a
prompt index (listing order); a missing cell folder is skipped.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Final

import numpy.typing as npt

from evals.cvtg.prompts import AREAS, TYPES, CvtgPrompt
from evals.imageio import save_png

EXTENSIONS: Final = (".png", ".jpg", ".jpeg")


def image_path(root: Path, type_: str, area: int, index: int | str) -> Path:
    return root / type_ / str(area) / f"{index}.png"


def flat_path(root: Path, i: int) -> Path:
    return root / f"{i:05d}.png"


def write_images(root: Path, prompts: Sequence[CvtgPrompt], images: Sequence[npt.ArrayLike]) -> list[Path]:
    """The evaluator's layout, one image per prompt."""
    if len(images) != len(prompts):
        raise ValueError(f"{len(images)} images for {len(prompts)} prompts")
    return [
        save_png(img, image_path(root, p.type, p.area, p.index))
        for p, img in zip(prompts, images, strict=True)
    ]


def walk(root: Path, prompts: dict[tuple[str, int], dict[str, str]]) -> list[tuple[str, int, str, Path]]:
    """``(type, area, stem, path)`` of every image the evaluator scores, cells in official order, files
    in listing order; cells without a folder are absent."""
    found = []
    for type_ in TYPES:
        for area in AREAS:
            folder = root / type_ / str(area)
            if not folder.is_dir() or (type_, area) not in prompts:
                continue
            table = prompts[(type_, area)]
            for name in os.listdir(folder):
                stem = Path(name).stem
                if name.lower().endswith(EXTENSIONS) and stem in table:
                    found.append((type_, area, stem, folder / name))
    return found


def cells(root: Path) -> list[tuple[str, int]]:
    """The (type, area) folders that exist under `root`."""
    return [(t, a) for t in TYPES for a in AREAS if (root / t / str(a)).is_dir()]
