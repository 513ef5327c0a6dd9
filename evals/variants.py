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

import os
import re
from pathlib import Path
from typing import Any, Final

from evals.benchdir import benchmarks_dir, read_text, require
from evals.benchmark import lookup

VARIANTS_DIR: Final = Path("prompt_variants")
REWRITES: Final = ("original", "simple_rewrite", "complex_rewrite")
REPEATED = re.compile(r"repeated(\d+)")


def variant_names(bench: str) -> list[str]:
    """The shipped variant names of a benchmark (any ``repeated<N>`` also works)."""
    return lookup(bench).variant_names()


def repeat(prompts: list[str], n: int) -> list[str]:
    """Each prompt repeated `n` times, joined by single spaces."""
    if n < 1:
        raise ValueError(f"repeat count must be ≥ 1, got {n}")
    return [" ".join([p] * n) for p in prompts]


def variant_path(bench: str, variant: str, directory: str | os.PathLike[str] | None = None) -> Path:
    """The file of a shipped variant (the benchmark's `variant_files`, or its rule for ``repeated<N>``)."""
    return lookup(bench).variant_path(variant, benchmarks_dir(directory) / VARIANTS_DIR)


def load_keyed(
    bench: str, variant: str = "original", directory: str | os.PathLike[str] | None = None
) -> tuple[list[Any], list[str]]:
    """``(keys, prompts)`` of a shipped variant file (keys: line index, DPG id, CVTG key, prompt id)."""
    path = require(variant_path(bench, variant, directory), "prompt_variants", f"{bench} {variant} prompts")
    return lookup(bench).read_variant(read_text(path), path)


def load_variant(
    bench: str, variant: str = "original", directory: str | os.PathLike[str] | None = None
) -> list[str]:
    """Generation prompts of `variant`, aligned with the original order (see the module docstring)."""
    m = REPEATED.fullmatch(variant)
    if m:
        n = int(m.group(1))
        try:
            path: Path | None = variant_path(bench, variant, directory)
        except ValueError:
            path = None  # not shipped: computed from the original prompts
        if path is not None and path.is_file():
            return lookup(bench).read_variant(read_text(path), path)[1]
        return repeat(load_variant(bench, "original", directory), n)
    keys, prompts = load_keyed(bench, variant, directory)
    if variant != "original":
        original_keys, original = load_keyed(bench, "original", directory)
        if keys != original_keys or len(prompts) != len(original):
            raise ValueError(f"{bench} {variant}: keys or length differ from the original prompt list")
    return prompts
