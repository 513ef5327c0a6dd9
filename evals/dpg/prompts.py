"""DPG-Bench's prompt list `dpg_bench.json` (docs/benchmarks.md §2.1): 1065 ``[item_id, prompt]`` pairs;
the list index is the generation folder index."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Final

from evals import jsonio
from evals.benchdir import benchmarks_dir, require

PROMPTS_FILE: Final = Path("dpg") / "dpg_bench.json"
N_PROMPTS: Final = 1065


def parse_prompts(text: str) -> list[tuple[str, str]]:
    pairs = jsonio.loads(text)
    out = []
    for pair in pairs:
        item_id, prompt = pair
        out.append((str(item_id), str(prompt)))
    ids = [i for i, _ in out]
    if len(set(ids)) != len(ids):
        raise ValueError("dpg_bench.json has duplicate item ids")
    return out


def load_prompts(directory: str | os.PathLike[str] | None = None) -> list[tuple[str, str]]:
    """``(item_id, prompt)`` in file order."""
    path = require(benchmarks_dir(directory) / PROMPTS_FILE, "dpg", "prompt list")
    return jsonio.parsed(path, parse_prompts)
