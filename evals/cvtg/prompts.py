"""CVTG-2K's prompt set (docs/benchmarks.md §4.1): ``cvtg-2k/prompts/<type>/<area>.json``.

Ground-truth words (Q): every non-greedy match between ASCII single quotes of the ORIGINAL prompt,
lowercased and split on whitespace; punctuation and duplicates stay.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from evals import jsonio
from evals.benchdir import benchmarks_dir, require

TYPES: Final[tuple[str, ...]] = ("CVTG", "CVTG-Style")
AREAS: Final[tuple[int, ...]] = (2, 3, 4, 5)
PROMPTS_DIR: Final = Path("cvtg-2k") / "prompts"
QUOTED = re.compile(r"'(.*?)'")


@dataclass(frozen=True)
class CvtgPrompt:
    """One prompt: `index` is the image stem inside ``<type>/<area>/``."""

    type: str
    area: int
    index: int
    prompt: str
    carrier_list: tuple[str, ...]
    sentence_list: tuple[str, ...]

    @property
    def key(self) -> str:
        """``<type>_<area>_<index>``, the key of `CVTG-2K.json`."""
        return f"{self.type}_{self.area}_{self.index}"

    @property
    def gt_words(self) -> list[str]:
        return gt_words(self.prompt)


def gt_words(prompt: str) -> list[str]:
    """The official ground truth: single-quoted spans, lowercased, split on whitespace."""
    words: list[str] = []
    for match in QUOTED.findall(prompt):
        words.extend(match.lower().split())
    return words


def prompt_file(type_: str, area: int, directory: str | os.PathLike[str] | None = None) -> Path:
    return benchmarks_dir(directory) / PROMPTS_DIR / type_ / f"{area}.json"


def parse_prompt_file(text: str, type_: str, area: int) -> list[CvtgPrompt]:
    data = jsonio.loads(text)
    return [
        CvtgPrompt(
            type_,
            area,
            int(item["index"]),
            str(item["prompt"]),
            tuple(item.get("carrier_list", ())),
            tuple(item.get("sentence_list", ())),
        )
        for item in data.get("data_list", [])
    ]


def load_prompts(directory: str | os.PathLike[str] | None = None) -> list[CvtgPrompt]:
    """All 2000 prompts in the official order: CVTG areas 2–5, then CVTG-Style areas 2–5."""
    out = []
    for type_ in TYPES:
        for area in AREAS:
            path = require(prompt_file(type_, area, directory), "cvtg", f"{type_} area {area} prompts")
            out += jsonio.parsed(path, parse_prompt_file, type_, area)
    return out


def prompt_table(prompts: list[CvtgPrompt]) -> dict[tuple[str, int], dict[str, str]]:
    """(type, area) → {str(index): prompt}, the official lookup by image stem."""
    table: dict[tuple[str, int], dict[str, str]] = {}
    for p in prompts:
        table.setdefault((p.type, p.area), {})[str(p.index)] = p.prompt
    return table
