"""Thin bridge from the CLI to ``evals``: score a benchmark's official (or i1lab) output files.

``i1lab score BENCH PATH [--json]`` calls `score_path`; the detection, import and exact aggregation
live in `evals.scoring`.
"""

from __future__ import annotations

import json
from pathlib import Path

from evals.scoring import ScoreReport, canonical, score_output

__all__ = ["report_json", "score_path", "score_report"]


def score_report(bench: str, path: Path, benchmarks_dir: Path | None = None) -> ScoreReport:
    """The full report (headline name, metrics, judge, printed text, source file)."""
    return score_output(canonical(bench), path, benchmarks_dir)


def score_path(
    bench: str, path: Path, benchmarks_dir: Path | None = None
) -> tuple[str, dict[str, float], str, str]:
    """``(headline_name, metrics, judge, printed)`` for the output files at `path`.

    `metrics[headline_name]` is the headline; `printed` is the official printout. Raises
    FileNotFoundError (naming the expected file) or ValueError for unknown benchmarks and formats.
    """
    report = score_report(bench, path, benchmarks_dir)
    return report.headline_name, report.metrics, report.judge, report.printed


def report_json(bench: str, path: Path, benchmarks_dir: Path | None = None) -> str:
    """The ``--json`` form: benchmark, judge, headline name and value, metrics, source."""
    r = score_report(bench, path, benchmarks_dir)
    return json.dumps(
        {
            "benchmark": r.bench,
            "judge": r.judge,
            "headline": r.headline_name,
            "value": r.headline,
            "metrics": r.metrics,
            "source": str(r.source),
        },
        indent=2,
    )
