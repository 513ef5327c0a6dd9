"""PRISM-Bench's prompt set (docs/benchmarks.md §3.1): ``captions/en/<category>.jsonl``, 7 × 100 prompts."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Final

from evals import jsonio
from evals.benchdir import benchmarks_dir, require

CATEGORIES: Final[tuple[str, ...]] = (
    "affection",
    "composition",
    "entity",
    "imagination",
    "long_text",
    "style",
    "text_rendering",
)
"""Alphabetical: the order of `prism.json` and of `process.py`'s ``category[i // 100]``."""

EVAL_ORDER: Final[tuple[str, ...]] = (
    "imagination",
    "entity",
    "text_rendering",
    "style",
    "affection",
    "composition",
    "long_text",
)
"""The official evaluator's category order (report order, pooled-mean order)."""

PER_CATEGORY: Final = 100
CAPTIONS_DIR: Final = Path("prism") / "captions"


def caption_path(
    category: str, directory: str | os.PathLike[str] | None = None, *, language: str = "en"
) -> Path:
    return benchmarks_dir(directory) / CAPTIONS_DIR / language / f"{category}.jsonl"


def parse_captions(text: str) -> list[str]:
    """The `prompt` of every JSON line that has one (the official loader skips other lines)."""
    out = []
    for line in text.splitlines():
        if not line.strip():
            continue
        data = jsonio.loads(line)
        if "prompt" in data:
            out.append(str(data["prompt"]))
    return out


def load_prompts(
    directory: str | os.PathLike[str] | None = None, *, language: str = "en"
) -> dict[str, list[str]]:
    """category → its prompts in file order (index j = image ``<category>/<j>.png``), alphabetical."""
    out = {}
    for category in CATEGORIES:
        path = require(caption_path(category, directory, language=language), "prism", f"{category} captions")
        out[category] = jsonio.parsed(path, parse_captions)
    return out


def flat_prompts(prompts: dict[str, list[str]]) -> list[tuple[str, int, str]]:
    """``(category, j, prompt)`` in the flat generation order (alphabetical categories): image i of the
    flat folder is category ``CATEGORIES[i // 100]``, index ``i % 100``."""
    return [(c, j, p) for c in CATEGORIES for j, p in enumerate(prompts[c])]
