"""PRISM-Bench judge files (docs/benchmarks.md §3.3): ``<out>/<alignment|aesthetic>/<category>/<j>.jsonl``,
each one pretty-printed JSON object (the parsed reply). Also i1lab's raw-reply lines
``{"eval_type", "category", "index", "reply", "judge"}`` (§6)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path

from evals import jsonio
from evals.prism.prompts import EVAL_ORDER
from evals.prism.score import EVAL_TYPES, NOT_SAVED, UNREADABLE, PrismRecord, read_score, record_from_reply


def record_path(out: Path, eval_type: str, category: str, j: int) -> Path:
    return out / eval_type / category / f"{j}.jsonl"


class PrismFileError(ValueError):
    """A malformed PRISM-Bench judge file; the message is one line ``path[:line]: [field: ]what is wrong``."""


def read_judge_dir(
    out: Path,
    *,
    num_images: int = 100,
    categories: Sequence[str] = EVAL_ORDER,
    judge: str = "official",
    strict: bool = True,
) -> list[PrismRecord]:
    """Every record file the official summary would read (files with j ≥ `num_images` are ignored).

    With `strict` (the default) a file the official evaluator cannot have written raises
    `PrismFileError`: one that is not JSON (cut short, empty), one whose value makes the official summary
    crash (a bare number, boolean or string: ``"score" in data`` raises TypeError), a ``*.jsonl`` whose
    name is not a record id (`<category>/<j>.jsonl`, j < `num_images`), or a folder without any record.
    Records the official evaluator does write and its summary drops (no ``score``, a string score, a
    list) stay, and are dropped exactly as it drops them. Without `strict`, unreadable files are
    kept as `UNREADABLE` (dropped, as the official summary does)."""
    records = []
    for eval_type in EVAL_TYPES:
        for category in categories:
            for j in range(num_images):
                path = record_path(out, eval_type, category, j)
                if not path.exists():
                    continue
                text = jsonio.read_text(path)
                try:
                    value = jsonio.loads(text)
                except json.JSONDecodeError as exc:
                    if strict:
                        what = "empty file" if not text.strip() else f"not valid JSON ({exc.msg})"
                        raise PrismFileError(f"{path}:{exc.lineno}: {what}") from None
                    value = UNREADABLE
                if strict and value is not UNREADABLE and read_score(value)[0] == "fatal":
                    raise PrismFileError(
                        f"{path}:1: score: the record is a {type(value).__name__}, not an object "
                        "(the official summary crashes on it with a TypeError)"
                    )
                records.append(PrismRecord(eval_type, category, j, value, judge))
    if strict:
        known = {record_path(out, r.eval_type, r.category, r.index) for r in records}
        for eval_type in EVAL_TYPES:
            for path in sorted((out / eval_type).glob("**/*.jsonl")):
                if path not in known:
                    raise PrismFileError(
                        f"{path}: unknown record id (expected {eval_type}/<category>/<j>.jsonl with a "
                        f"category of {', '.join(categories)} and 0 <= j < {num_images})"
                    )
        if not records:
            raise PrismFileError(f"{out}: no PRISM record files (<alignment|aesthetic>/<category>/<j>.jsonl)")
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


REPLY_FIELDS = (("eval_type", str), ("category", str), ("index", int), ("reply", str))


def read_replies(path: Path) -> list[PrismRecord]:
    """Raw-reply lines → records, through the official parse. A malformed line (not a JSON object, a
    missing or mistyped field, an unknown eval type, category or index) raises `PrismFileError`."""
    from evals.jsonio import read_jsonl_rows

    try:
        rows = read_jsonl_rows(path)
    except ValueError as exc:  # not JSON, not an object, or no line at all: already one line
        raise PrismFileError(str(exc)) from None
    out = []
    for n, row in rows:
        for name, kind in REPLY_FIELDS:
            if name not in row:
                raise PrismFileError(f"{path}:{n}: {name}: missing")
            if not isinstance(row[name], kind) or isinstance(row[name], bool):
                raise PrismFileError(
                    f"{path}:{n}: {name}: must be {'an integer' if kind is int else 'a string'}, "
                    f"got {json.dumps(row[name])[:40]}"
                )
        if row["eval_type"] not in EVAL_TYPES:
            raise PrismFileError(f"{path}:{n}: eval_type: unknown {row['eval_type']!r}")
        if row["category"] not in EVAL_ORDER:
            raise PrismFileError(f"{path}:{n}: category: unknown {row['category']!r}")
        if not 0 <= row["index"] < 100:
            raise PrismFileError(f"{path}:{n}: index: {row['index']} is not a prompt of its category (0-99)")
        judge = str(row.get("judge", "unknown"))
        out.append(record_from_reply(row["eval_type"], row["category"], row["index"], row["reply"], judge))
    return out


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
