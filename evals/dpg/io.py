"""DPG-Bench per-question answers: ``{"item_id", "crop", "proposition_id", "answer", "judge"}`` lines."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from evals.dpg.score import answers_from_records
from evals.jsonio import read_jsonl, write_jsonl


def read_answers(path: Path) -> tuple[dict[str, dict[tuple[int, int], str]], set[str]]:
    """Answers grouped by item, and the set of judge names found in the file."""
    rows = read_jsonl(path)
    return answers_from_records(rows), {str(r.get("judge", "unknown")) for r in rows}


def write_answers(records: Iterable[Mapping[str, Any]], path: Path) -> Path:
    return write_jsonl(records, path)
