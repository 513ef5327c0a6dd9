"""LongText-Bench's prompt set (docs/benchmarks.md §5.1): `longtext/text_prompts.jsonl`, 160 English lines."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from evals import jsonio
from evals.benchdir import benchmarks_dir, require

PROMPTS_FILE: Final = Path("longtext") / "text_prompts.jsonl"
N_PROMPTS: Final = 160


@dataclass(frozen=True)
class LongTextPrompt:
    """One line; `row` is its line index (the generation file name's first field)."""

    row: int
    prompt_id: int
    category: str
    length: str
    prompt: str
    text: tuple[str, ...]
    text_length: int | None


def parse_prompts(text: str) -> list[LongTextPrompt]:
    out = []
    for row, line in enumerate(x for x in text.splitlines() if x.strip()):
        d = jsonio.loads(line)
        out.append(
            LongTextPrompt(
                row=row,
                prompt_id=int(d["prompt_id"]),
                category=str(d.get("category", "")),
                length=str(d.get("length", "")),
                prompt=str(d["prompt"]),
                text=tuple(str(t) for t in d["text"]),
                text_length=d.get("text_length"),
            )
        )
    ids = [p.prompt_id for p in out]
    if len(set(ids)) != len(ids):
        raise ValueError("text_prompts.jsonl has duplicate prompt ids")
    return out


def load_prompts(directory: str | os.PathLike[str] | None = None) -> list[LongTextPrompt]:
    path = require(benchmarks_dir(directory) / PROMPTS_FILE, "longtext", "English prompts")
    return jsonio.parsed(path, parse_prompts)
