"""GenEval per-sample files: the official `results.jsonl` and i1lab's detection judgements (§1.3, §6).

`results.jsonl` is written by pandas (``to_json(orient="records", lines=True)``), which escapes ``/``
as ``\\/``; `metadata` and `details` are JSON *strings*. A judgement line is
``{"folder_idx", "k", "detections": {class: [[x1, y1, x2, y2, score], ...]}, "colors": {class: [...]},
"judge"}`` with colours per kept box in kept order.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from evals.geneval.decide import make_record
from evals.geneval_score import GenEvalRecord

RECORD_KEYS = ("filename", "tag", "prompt", "correct", "reason", "metadata", "details")


def read_results(path: Path) -> list[GenEvalRecord]:
    """Rows of an official `results.jsonl` (blank lines ignored); raises ValueError on a row that lacks
    a column or whose `metadata`/`details` is not a JSON string."""
    rows: list[GenEvalRecord] = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        raw = json.loads(line)
        missing = [k for k in RECORD_KEYS if k not in raw]
        if missing:
            raise ValueError(f"{path}:{n}: not a GenEval results row, missing {missing}")
        for key in ("metadata", "details"):
            if not isinstance(raw[key], str):
                raise ValueError(f"{path}:{n}: {key!r} must be a JSON string, got {type(raw[key]).__name__}")
            json.loads(raw[key])
        rows.append(
            {
                "filename": str(raw["filename"]),
                "tag": str(raw["tag"]),
                "prompt": str(raw["prompt"]),
                "correct": bool(raw["correct"]),
                "reason": str(raw["reason"]),
                "metadata": raw["metadata"],
                "details": raw["details"],
            }
        )
    return rows


def write_results(records: Iterable[Mapping[str, Any]], path: Path) -> Path:
    """Write rows exactly as the official evaluator does (pandas JSON lines)."""
    import pandas as pd

    path.parent.mkdir(parents=True, exist_ok=True)
    frame = pd.DataFrame([dict(r) for r in records], columns=list(RECORD_KEYS))
    with path.open("w") as fp:
        frame.to_json(fp, orient="records", lines=True)
    return path


def records_from_judgements(
    judgements: Iterable[Mapping[str, Any]],
    metadatas: Sequence[Mapping[str, Any]],
    *,
    root: str = ".",
    classnames: Sequence[str] | None = None,
) -> list[GenEvalRecord]:
    """Apply the official decision to stored detection judgements (metadata from the ORIGINAL file,
    line `folder_idx`); filenames are ``<root>/<idx:05d>/samples/<k:05d>.png``."""
    out = []
    for j in judgements:
        idx, k = int(j["folder_idx"]), int(j["k"])
        name = j.get("filename") or f"{root}/{idx:05d}/samples/{k:05d}.png"
        out.append(make_record(name, metadatas[idx], j["detections"], j.get("colors"), classnames=classnames))
    return out
