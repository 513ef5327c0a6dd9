"""CVTG-2K per-image judgement files (JSON lines of `CvtgJudgement.to_json`) and the official
aggregate output JSON."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from evals.cvtg.score import CvtgJudgement, CvtgSummary, results_json
from evals.jsonio import read_jsonl, write_jsonl


def read_judgements(path: Path) -> list[CvtgJudgement]:
    return [CvtgJudgement.from_json(row) for row in read_jsonl(path)]


def write_judgements(judgements: Iterable[CvtgJudgement], path: Path) -> Path:
    return write_jsonl((j.to_json() for j in judgements), path)


def write_results_json(summary: CvtgSummary, path: Path) -> Path:
    path.write_text(json.dumps(results_json(summary), indent=2), encoding="utf-8")
    return path


def read_results_json(path: Path) -> dict[str, Any]:
    """The official output (`overall_results`, `area_results`); raises ValueError for other JSON."""
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict) or "overall_results" not in data:
        raise ValueError(f"{path}: not a CVTG-2K results file (no 'overall_results')")
    return data
