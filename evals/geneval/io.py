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

from evals import jsonio
from evals.geneval.decide import make_record
from evals.geneval_score import GenEvalRecord

RECORD_KEYS = ("filename", "tag", "prompt", "correct", "reason", "metadata", "details")


class ResultsFileError(ValueError):
    """A malformed GenEval results file; the message is one line ``path:line: field: what is wrong``."""


TEXT_KEYS = ("filename", "tag", "prompt", "reason")


def _json_object(path: Path, n: int, text: str, what: str) -> dict[str, Any]:
    try:
        value = jsonio.loads(text)
    except json.JSONDecodeError as exc:
        raise ResultsFileError(
            f"{path}:{n}: {what}not valid JSON ({exc.msg} at column {exc.colno})"
        ) from None
    if not isinstance(value, dict):
        raise ResultsFileError(f"{path}:{n}: {what}expected a JSON object, got {type(value).__name__}")
    return value


def read_results(path: Path, metadatas: Sequence[Mapping[str, Any]] | None = None) -> list[GenEvalRecord]:
    """Rows of an official `results.jsonl` (blank lines ignored). Every malformed row raises
    `ResultsFileError` naming the file, the line and the field: a line that is not a JSON object, a
    missing column, a column of the wrong type (`correct` must be a boolean, `metadata`/`details` JSON
    strings of objects), and, when the ORIGINAL `metadatas` are given, a `metadata` that is none of
    them or a `tag` that is not its metadata's. An empty file is an error too."""
    known = {json.dumps(m, sort_keys=True) for m in metadatas} if metadatas is not None else None
    rows: list[GenEvalRecord] = []
    for n, line in enumerate(jsonio.read_text(path).splitlines(), 1):
        if not line.strip():
            continue
        raw = _json_object(path, n, line, "")
        for key in RECORD_KEYS:
            if key not in raw:
                raise ResultsFileError(f"{path}:{n}: {key}: missing (not a GenEval results row)")
        for key in TEXT_KEYS:
            if not isinstance(raw[key], str):
                raise ResultsFileError(f"{path}:{n}: {key}: must be a string, got {type(raw[key]).__name__}")
        if not isinstance(raw["correct"], bool):
            raise ResultsFileError(
                f"{path}:{n}: correct: must be true or false, got {json.dumps(raw['correct'])[:40]}"
            )
        decoded = {}
        for key in ("metadata", "details"):
            if not isinstance(raw[key], str):
                raise ResultsFileError(
                    f"{path}:{n}: {key}: must be a JSON string, got {type(raw[key]).__name__}"
                )
            decoded[key] = _json_object(path, n, raw[key], f"{key}: ")
        meta = decoded["metadata"]
        if known is not None and json.dumps(meta, sort_keys=True) not in known:
            raise ResultsFileError(
                f"{path}:{n}: metadata: unknown prompt {str(meta.get('prompt', raw['metadata']))[:60]!r} "
                "(not a line of GenEval's evaluation_metadata.jsonl)"
            )
        if meta.get("tag") != raw["tag"]:
            raise ResultsFileError(
                f"{path}:{n}: tag: {raw['tag']!r} is not its metadata's tag {meta.get('tag')!r}"
            )
        rows.append(
            {
                "filename": raw["filename"],
                "tag": raw["tag"],
                "prompt": raw["prompt"],
                "correct": raw["correct"],
                "reason": raw["reason"],
                "metadata": raw["metadata"],
                "details": raw["details"],
            }
        )
    if not rows:
        raise ResultsFileError(f"{path}: empty file (no results rows)")
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
