"""LongText-Bench `results.jsonl` (docs/benchmarks.md §5.3): ``{image, prompt, ocr_gt: [str], ocr_results}``.

Each record is scored against its OWN ``ocr_gt``, as the official `summary_scores.py` does; the prompt
id in the image name only feeds i1lab's non-official breakdowns (and may be absent from the prompt
file, or unparsable).

The official summary overwrites the file with normalised fields: ``ocr_gt`` and ``ocr_results`` become
normalised strings and ``match_word_count``, ``gt_word_count`` and ``text_accuray`` are added. Such a
record (`rewritten`) is scored from its normalised strings, taken as they are (normalisation is
idempotent): this gives exactly the score the summary printed when it wrote the file, and the
recorded counts must agree with it. Re-running the official summary on that file would instead join
the characters of the GT string with spaces and print another number; i1lab does not reproduce that.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from evals.jsonio import read_jsonl_rows
from evals.longtext.layout import prompt_id_of
from evals.longtext.score import LongTextRecord, match_counts


def _prompt_id(image: str) -> int | None:
    try:
        return prompt_id_of(image)
    except ValueError:
        return None


def _record(path: Path, n: int, row: dict[str, Any], judge: str) -> tuple[LongTextRecord, bool]:
    where = f"{path}:{n}"
    for name in ("image", "ocr_gt", "ocr_results"):
        if name not in row:
            raise ValueError(f"{where}: missing field '{name}'")
    image, ocr_gt, ocr = row["image"], row["ocr_gt"], row["ocr_results"]
    if not isinstance(image, str):
        raise ValueError(f"{where}: field 'image' must be a string, got {type(image).__name__}")
    if not isinstance(ocr, str):
        raise ValueError(
            f"{where}: image {image}: field 'ocr_results' must be a string, got {type(ocr).__name__}"
        )
    rewritten = isinstance(ocr_gt, str)
    if rewritten:
        texts: tuple[str, ...] = (ocr_gt,)
    elif isinstance(ocr_gt, list) and all(isinstance(t, str) for t in ocr_gt):
        texts = tuple(ocr_gt)
    else:
        raise ValueError(
            f"{where}: image {image}: field 'ocr_gt' must be a list of strings (or the summary's "
            f"normalised string), got {json.dumps(ocr_gt)[:60]}"
        )
    matched, total = match_counts(texts, ocr)
    if total == 0:
        raise ValueError(f"{where}: image {image}: field 'ocr_gt' has no words after normalisation")
    if rewritten:
        for name, value in (("match_word_count", matched), ("gt_word_count", total)):
            if name in row and row[name] != value:
                raise ValueError(
                    f"{where}: image {image}: field '{name}' is {row[name]!r}, but the record's "
                    f"normalised strings give {value}"
                )
    rec = LongTextRecord(image, _prompt_id(image), ocr, str(row.get("judge", judge)), texts)
    return rec, rewritten


def read_results(path: Path, *, judge: str = "official") -> tuple[list[LongTextRecord], bool]:
    """Records (each with its own GT) and whether any was rewritten by the official summary. A
    malformed line raises a one-line ValueError naming the file, the line and the field."""
    records = []
    rewritten = False
    for n, row in read_jsonl_rows(path):
        rec, was = _record(path, n, row, judge)
        records.append(rec)
        rewritten |= was
    return records, rewritten


def write_results(
    records: Iterable[LongTextRecord], prompts: Mapping[int, tuple[str, Sequence[str]]], path: Path
) -> Path:
    """Official-format lines; `prompts` maps prompt_id → (prompt, text list)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as f:
        for rec in records:
            if rec.prompt_id is None:
                raise ValueError(f"{rec.image}: no prompt id")
            prompt, text = prompts[rec.prompt_id]
            row = {"image": rec.image, "prompt": prompt, "ocr_gt": list(text), "ocr_results": rec.ocr_results}
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    return path
