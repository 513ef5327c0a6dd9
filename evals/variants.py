"""Generation-side prompt variants (`shared/benchmarks/prompt_variants/`, see its README).

Variants are GENERATION inputs only; scoring always reads the original benchmark files. Each variant
is returned as a list of prompts aligned with the benchmark's original order:

* GenEval: metadata line order; DPG: `dpg_bench.json` order; PRISM: flat order (alphabetical
  categories, 100 each); CVTG-2K: `CVTG-2K.json` order (CVTG 2–5, then CVTG-Style 2–5);
  LongText: `text_prompts.jsonl` row order.

Names: ``original``, ``simple_rewrite``, ``complex_rewrite`` (i1's final evaluation) and
``repeated<N>``: each prompt repeated N times joined by single spaces. GenEval ships repeats for
N ∈ {4, 8, 12, 16, 20, 24}; any other N (or benchmark) is computed from the original prompts.
Keyed variants (DPG ids, CVTG keys, LongText prompt ids) are checked against the original keys.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any, Final

from evals.benchdir import benchmarks_dir, read_text, require

VARIANTS_DIR: Final = Path("prompt_variants")
BENCHES: Final = ("geneval", "dpg", "prism", "cvtg", "longtext")
REWRITES: Final = ("original", "simple_rewrite", "complex_rewrite")
REPEATED = re.compile(r"repeated(\d+)")

FILES: Final[dict[str, dict[str, str]]] = {
    "geneval": {
        "original": "geneval.jsonl",
        "simple_rewrite": "geneval_simple_rewrite.txt.gz",
        "complex_rewrite": "geneval_complex_rewrite.jsonl.gz",
    },
    "dpg": {
        "original": "dpg.json",
        "simple_rewrite": "dpg_simple_rewrite.json.gz",
        "complex_rewrite": "dpg_complex_rewrite.json.gz",
    },
    "prism": {
        "original": "prism.json",
        "simple_rewrite": "prism_simple_rewrite.json.gz",
        "complex_rewrite": "prism_complex_rewrite.json.gz",
    },
    "cvtg": {
        "original": "CVTG-2K.json",
        "simple_rewrite": "CVTG-2K_simple_rewrite.json.gz",
        "complex_rewrite": "CVTG-2K_complex_rewrite.json.gz",
    },
    "longtext": {
        "original": "longtext.jsonl",
        "simple_rewrite": "longtext_simple_rewrite.jsonl.gz",
        "complex_rewrite": "longtext_complex_rewrite.jsonl.gz",
    },
}


def variant_names(bench: str) -> list[str]:
    """The shipped variant names of a benchmark (any ``repeated<N>`` also works)."""
    names = list(REWRITES)
    if bench == "geneval":
        names += [f"repeated{n}" for n in (4, 8, 12, 16, 20, 24)]
    return names


def repeat(prompts: list[str], n: int) -> list[str]:
    """Each prompt repeated `n` times, joined by single spaces."""
    if n < 1:
        raise ValueError(f"repeat count must be ≥ 1, got {n}")
    return [" ".join([p] * n) for p in prompts]


def variant_path(bench: str, variant: str, directory: str | os.PathLike[str] | None = None) -> Path:
    base = benchmarks_dir(directory) / VARIANTS_DIR
    m = REPEATED.fullmatch(variant)
    if m and bench == "geneval":
        return base / f"geneval_repeated{int(m.group(1))}.txt.gz"
    if bench not in FILES:
        raise ValueError(f"unknown benchmark {bench!r}; expected one of {BENCHES}")
    if variant not in FILES[bench]:
        raise ValueError(f"unknown variant {variant!r} for {bench}; expected one of {variant_names(bench)}")
    return base / FILES[bench][variant]


def _keyed(bench: str, text: str, path: Path) -> tuple[list[Any], list[str]]:
    """(keys, prompts) of one variant file."""
    if bench == "geneval":
        if path.name.endswith((".txt", ".txt.gz")):
            lines = text.split("\n")
            if lines and lines[-1] == "":
                lines.pop()
            return list(range(len(lines))), lines
        rows = [json.loads(line) for line in text.splitlines() if line.strip()]
        return list(range(len(rows))), [str(r["prompt"]) for r in rows]
    if bench in ("dpg", "cvtg"):
        pairs = json.loads(text)
        return [str(k) for k, _ in pairs], [str(p) for _, p in pairs]
    if bench == "prism":
        flat = json.loads(text)
        return list(range(len(flat))), [str(p) for p in flat]
    rows = [json.loads(line) for line in text.splitlines() if line.strip()]
    return [int(r["prompt_id"]) for r in rows], [str(r["prompt"]) for r in rows]


def load_keyed(
    bench: str, variant: str = "original", directory: str | os.PathLike[str] | None = None
) -> tuple[list[Any], list[str]]:
    """``(keys, prompts)`` of a shipped variant file (keys: line index, DPG id, CVTG key, prompt id)."""
    path = require(variant_path(bench, variant, directory), "prompt_variants", f"{bench} {variant} prompts")
    return _keyed(bench, read_text(path), path)


def load_variant(
    bench: str, variant: str = "original", directory: str | os.PathLike[str] | None = None
) -> list[str]:
    """Generation prompts of `variant`, aligned with the original order (see the module docstring)."""
    m = REPEATED.fullmatch(variant)
    if m:
        n = int(m.group(1))
        path = variant_path(bench, variant, directory) if bench == "geneval" else None
        if path is not None and path.is_file():
            return _keyed(bench, read_text(path), path)[1]
        return repeat(load_variant(bench, "original", directory), n)
    keys, prompts = load_keyed(bench, variant, directory)
    if variant != "original":
        original_keys, original = load_keyed(bench, "original", directory)
        if keys != original_keys or len(prompts) != len(original):
            raise ValueError(f"{bench} {variant}: keys or length differ from the original prompt list")
    return prompts
