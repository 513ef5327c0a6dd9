"""PRISM-Bench judge files (docs/benchmarks.md §3.3): ``<out>/<alignment|aesthetic>/<category>/<j>.jsonl``,
each one pretty-printed JSON object (the parsed reply). Also i1lab's raw-reply lines
``{"eval_type", "category", "index", "reply", "judge"}`` (§6)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path

from evals.jsonio import read_jsonl
from evals.prism.prompts import EVAL_ORDER
from evals.prism.score import EVAL_TYPES, NOT_SAVED, UNREADABLE, PrismRecord, record_from_reply


def record_path(out: Path, eval_type: str, category: str, j: int) -> Path:
    return out / eval_type / category / f"{j}.jsonl"


def read_judge_dir(
    out: Path, *, num_images: int = 100, categories: Sequence[str] = EVAL_ORDER, judge: str = "official"
) -> list[PrismRecord]:
    """Every record file the official summary would read (files with j ≥ `num_images` are ignored)."""
    records = []
    for eval_type in EVAL_TYPES:
        for category in categories:
            for j in range(num_images):
                path = record_path(out, eval_type, category, j)
                if not path.exists():
                    continue
                try:
                    value = json.loads(path.read_text(encoding="utf-8"))
                except json.JSONDecodeError:
                    value = UNREADABLE
                records.append(PrismRecord(eval_type, category, j, value, judge))
    return records


def write_record(out: Path, record: PrismRecord) -> Path | None:
    """Save a record as the official evaluator does (nothing for a not-saved one)."""
    if record.value is NOT_SAVED or record.value is UNREADABLE:
        return None
    path = record_path(out, record.eval_type, record.category, record.index)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as f:
        json.dump(record.value, f, ensure_ascii=False, indent=4)
    return path


def read_replies(path: Path) -> list[PrismRecord]:
    """Raw-reply lines → records, through the official parse."""
    return [
        record_from_reply(
            str(r["eval_type"]),
            str(r["category"]),
            int(r["index"]),
            str(r["reply"]),
            str(r.get("judge", "unknown")),
        )
        for r in read_jsonl(path)
    ]


def write_replies(records: Iterable[tuple[str, str, int, str, str]], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as f:
        for eval_type, category, index, reply, judge in records:
            row = {
                "eval_type": eval_type,
                "category": category,
                "index": index,
                "reply": reply,
                "judge": judge,
            }
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    return path
