"""LongText-Bench `results.jsonl` (docs/benchmarks.md §5.3): ``{image, prompt, ocr_gt: [str], ocr_results}``.

The official `summary_scores.py` overwrites that file with normalised fields (`ocr_gt` becomes a
string); such a file is detected (`rewritten`), and scoring still uses the ORIGINAL `text` lists
looked up by prompt id, which gives the first run's score (normalisation is idempotent).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from evals.jsonio import read_jsonl
from evals.longtext.layout import prompt_id_of
from evals.longtext.score import LongTextRecord, normalize


def read_results(
    path: Path, gt: Mapping[int, Sequence[str]] | None = None, *, judge: str = "official"
) -> tuple[list[LongTextRecord], bool]:
    """Records and whether the file was already rewritten by the official summary. When `gt` is given,
    a list-valued `ocr_gt` that differs from the original text raises ValueError."""
    records = []
    rewritten = False
    for n, row in enumerate(read_jsonl(path), 1):
        pid = prompt_id_of(str(row["image"]))
        ocr_gt = row.get("ocr_gt")
        if isinstance(ocr_gt, str):
            rewritten = True
            if gt is not None and pid in gt and normalize(" ".join(gt[pid])) != ocr_gt:
                raise ValueError(f"{path}:{n}: ocr_gt does not match prompt {pid} of the original file")
        elif gt is not None and ocr_gt is not None and pid in gt and list(ocr_gt) != list(gt[pid]):
            raise ValueError(f"{path}:{n}: ocr_gt does not match prompt {pid} of the original file")
        records.append(
            LongTextRecord(str(row["image"]), pid, str(row["ocr_results"]), str(row.get("judge", judge)))
        )
    return records, rewritten


def write_results(
    records: Iterable[LongTextRecord], prompts: Mapping[int, tuple[str, Sequence[str]]], path: Path
) -> Path:
    """Official-format lines; `prompts` maps prompt_id → (prompt, text list)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as f:
        for rec in records:
            prompt, text = prompts[rec.prompt_id]
            row = {"image": rec.image, "prompt": prompt, "ocr_gt": list(text), "ocr_results": rec.ocr_results}
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    return path
