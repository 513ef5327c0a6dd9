"""GenEval's prompt set (docs/benchmarks.md §1.1): `evaluation_metadata.jsonl` and `object_names.txt`.

Metadata lines are kept as the decoded JSON objects, untouched, so ``json.dumps(line)`` is exactly the
string the official evaluator stores in `results.jsonl["metadata"]` (and groups prompts by).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Final

from evals import jsonio
from evals.benchdir import benchmarks_dir, require

METADATA_FILE: Final = Path("geneval") / "evaluation_metadata.jsonl"
OBJECT_NAMES_FILE: Final = Path("geneval") / "object_names.txt"
N_PROMPTS: Final = 553

TAG_RANGES: Final[dict[str, range]] = {
    "single_object": range(0, 80),
    "two_object": range(80, 179),
    "counting": range(179, 259),
    "colors": range(259, 353),
    "position": range(353, 453),
    "color_attr": range(453, 553),
}
"""Contiguous line ranges of the six tags in the official file (§1.1)."""

Metadata = dict[str, Any]


def metadata_path(directory: str | os.PathLike[str] | None = None) -> Path:
    return benchmarks_dir(directory) / METADATA_FILE


def parse_metadata(text: str) -> list[Metadata]:
    """One decoded object per non-empty line."""
    return [jsonio.loads(line) for line in text.splitlines() if line.strip()]


def load_metadata(directory: str | os.PathLike[str] | None = None) -> list[Metadata]:
    """The 553 metadata lines, in file order (the line index is the image-folder index)."""
    path = require(metadata_path(directory), "geneval", "prompt metadata")
    return jsonio.parsed(path, parse_metadata)


def load_object_names(directory: str | os.PathLike[str] | None = None) -> list[str]:
    """The 80 COCO class names; their order is the detector's class index (§1.1)."""
    path = require(benchmarks_dir(directory) / OBJECT_NAMES_FILE, "geneval", "detector class names")
    return [line.strip() for line in jsonio.read_text(path).splitlines()]
