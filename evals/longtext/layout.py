"""LongText-Bench image layout (docs/benchmarks.md §5.2).

Generation writes ``<root>/<row:04d>_<k>.png``; `process.py` renames them ``<prompt_id>_<k>.png``. The
evaluator globs ``*.png`` (sorted) and takes the prompt id from the file name before the first "_"
(or before "." when there is none); an unknown id raises KeyError.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy.typing as npt

from evals.imageio import save_png
from evals.longtext.prompts import LongTextPrompt


def image_path(root: Path, prompt_id: int, k: int) -> Path:
    return root / f"{prompt_id}_{k}.png"


def generation_path(root: Path, row: int, k: int) -> Path:
    return root / f"{row:04d}_{k}.png"


def prompt_id_of(name: str) -> int:
    """The evaluator's rule on a file name."""
    fname = name.replace("\\", "/").split("/")[-1]
    return int(fname.split("_")[0]) if "_" in fname else int(fname.split(".")[0])


def write_images(
    root: Path, prompts: Sequence[LongTextPrompt], images: Sequence[Sequence[npt.ArrayLike]]
) -> list[Path]:
    """``<prompt_id>_<k>.png`` for ``images[row][k]``."""
    if len(images) != len(prompts):
        raise ValueError(f"{len(images)} image lists for {len(prompts)} prompts")
    return [
        save_png(img, image_path(root, p.prompt_id, k))
        for p, imgs in zip(prompts, images, strict=True)
        for k, img in enumerate(imgs)
    ]


def walk(root: Path, prompts_by_id: Mapping[int, Any]) -> list[tuple[int, Path]]:
    """``(prompt_id, path)`` in the evaluator's order (sorted ``*.png``); KeyError on an unknown id."""
    out = []
    for path in sorted(root.glob("*.png"), key=str):
        pid = prompt_id_of(path.name)
        if pid not in prompts_by_id:
            raise KeyError(pid)
        out.append((pid, path))
    return out
