"""GenEval's image layout and folder walk (docs/benchmarks.md §1.2).

Written: ``<root>/<idx:05d>/metadata.jsonl`` (that prompt's line) and ``samples/<k:05d>.png`` — both
the upstream evaluator (per-folder metadata) and i1's (central file indexed by folder name) read it.

Walk (both evaluators): only sub-folders whose name is all digits (`str.isdigit`); inside
``samples/`` every regular file whose name matches ``\\d+\\.png`` *anchored at the start only*
(``re.match``), so ``7.png.bak`` counts; order is the directory listing's.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy.typing as npt

from evals.imageio import save_png

SAMPLE_PATTERN = re.compile(r"\d+\.png")


def folder_name(idx: int) -> str:
    return f"{idx:05d}"


def sample_path(root: Path, idx: int, k: int) -> Path:
    """``<root>/<idx:05d>/samples/<k:05d>.png``."""
    return root / folder_name(idx) / "samples" / f"{k:05d}.png"


def write_prompt_folder(root: Path, idx: int, metadata: Mapping[str, Any]) -> Path:
    """``<root>/<idx:05d>/metadata.jsonl`` holding the prompt's metadata line."""
    folder = root / folder_name(idx)
    (folder / "samples").mkdir(parents=True, exist_ok=True)
    path = folder / "metadata.jsonl"
    path.write_text(json.dumps(metadata) + "\n", encoding="utf-8")
    return path


def write_images(
    root: Path, metadatas: Sequence[Mapping[str, Any]], images: Sequence[Sequence[npt.ArrayLike]]
) -> list[Path]:
    """The official layout for ``images[i][k]`` (prompt i = metadata line i, sample k); returns the
    sample paths in prompt-then-sample order."""
    if len(images) != len(metadatas):
        raise ValueError(f"{len(images)} image lists for {len(metadatas)} prompts")
    paths = []
    for idx, (meta, samples) in enumerate(zip(metadatas, images, strict=True)):
        write_prompt_folder(root, idx, meta)
        paths += [save_png(image, sample_path(root, idx, k)) for k, image in enumerate(samples)]
    return paths


@dataclass(frozen=True)
class FoundImage:
    """One image the official walk evaluates: its prompt folder name and path."""

    folder: str
    path: Path

    @property
    def index(self) -> int:
        """The metadata line i1's evaluator uses (``int(folder)``)."""
        return int(self.folder)


def walk(root: Path) -> list[FoundImage]:
    """The official discovery rules, in directory-listing order. A digit folder without ``samples/``
    raises FileNotFoundError, as the official script does."""
    found = []
    for sub in os.listdir(root):
        folder = root / sub
        if not (folder.is_dir() and sub.isdigit()):
            continue
        for name in os.listdir(folder / "samples"):
            path = folder / "samples" / name
            if path.is_file() and SAMPLE_PATTERN.match(name):
                found.append(FoundImage(sub, path))
    return found


def metadata_for(
    image: FoundImage, metadatas: Sequence[Mapping[str, Any]] | None = None
) -> Mapping[str, Any]:
    """The image's metadata: i1's rule (``metadatas[int(folder)]``, IndexError past the end) when the
    central list is given, else upstream's (the folder's own `metadata.jsonl`)."""
    if metadatas is not None:
        return metadatas[image.index]
    return dict(json.loads((image.path.parent.parent / "metadata.jsonl").read_text(encoding="utf-8")))
