"""Score a benchmark's per-sample output files: detect the format, import, aggregate, print.

`score_output(bench, path)` hands the files to the benchmark's own scorer (`evals.benchmark.Benchmark.score`;
each package's docstring names the files it accepts; a directory is searched for them). Ground truth,
questions and categories always come from the ORIGINAL prompt files. The judge name is read from the
records (``"judge"``), and is ``official`` for the official tools' own files.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from evals import jsonio
from evals.benchmark import OFFICIAL as OFFICIAL
from evals.benchmark import canonical as canonical
from evals.benchmark import lookup

__all__ = ["OFFICIAL", "Dir", "ScoreReport", "canonical", "first_row", "judge_of", "pick", "score_output"]

Dir = str | os.PathLike[str] | None
UNKNOWN: Final = "unknown"


@dataclass(frozen=True)
class ScoreReport:
    """One benchmark's numbers from one judge: `metrics[headline_name]` is the headline."""

    bench: str
    headline_name: str
    metrics: dict[str, float]
    judge: str
    printed: str
    source: Path

    @property
    def headline(self) -> float:
        return self.metrics[self.headline_name]


def judge_of(rows: list[dict[str, Any]], default: str = OFFICIAL) -> str:
    """The judge names the records carry, joined by ``+``; ``default`` when none does."""
    names = sorted({str(r["judge"]) for r in rows if r.get("judge")})
    return "+".join(names) if names else default


def pick(path: Path, names: tuple[str, ...], bench: str) -> Path:
    """``path`` if it is a file, else the first file in it matching one of ``names`` (glob patterns)."""
    if path.is_file():
        return path
    if not path.is_dir():
        raise FileNotFoundError(f"{bench}: {path} does not exist")
    for name in names:
        for candidate in sorted(path.glob(name)):
            if candidate.is_file():
                return candidate
    raise FileNotFoundError(f"{bench}: none of {', '.join(names)} in {path}")


def first_row(path: Path) -> dict[str, Any]:
    """The first JSON object line of a JSON-lines file."""
    for n, line in enumerate(jsonio.read_text(path).splitlines(), 1):
        if line.strip():
            try:
                row = jsonio.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}:{n}: not valid JSON ({exc.msg} at column {exc.colno})") from None
            if not isinstance(row, dict):
                raise ValueError(f"{path}:{n}: expected a JSON object, got {type(row).__name__}")
            return row
    raise ValueError(f"{path}: empty file (no JSON object lines)")


def score_output(bench: str, path: str | os.PathLike[str], directory: Dir = None) -> ScoreReport:
    """Import `path` for `bench` and aggregate it exactly (see the module docstring)."""
    return lookup(canonical(bench)).score(Path(path), directory)
