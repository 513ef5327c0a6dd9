"""CVTG-2K per-image files and the official aggregate output JSON.

Two per-image JSON-lines formats, told apart line by line:

* i1lab judgements (`CvtgJudgement.to_json`, rows with ``type``), written by i1lab's OCR and VLM judges;
* the official OCR stage's per-image output (rows with ``image``): what `unified_metrics_eval.py` read
  for one image, ``{image, ocr | ocr_error, clipscore, vqascore, aesthetic_score}``.
  - ``image``: the path under the result folder, ``<type>/<area>/<file>`` (a longer path: its last
    three parts); the stem is the prompt index.
  - ``ocr``: PaddleOCR's ``.ocr(path, cls=True)`` return value, a list of pages, each None (no text)
    or ``[[box, [text, confidence]], ...]`` with box = four ``[x, y]`` points; a single page (or
    None) is accepted too. The official post-processing then applies: every line's text, lowercased
    and split on whitespace (`evals.cvtg.score`).
  - ``ocr_error``: the message of an OCR call that raised (the official per-image fallback: every GT
    word counts, correct 0, NED 0.0).
  - ``clipscore``: the value `compute_clip_score_batch` gave this file (the evaluator then keys it by
    stem, so of two files with one stem the later's counts for both); ``vqascore``: VQAScore's value
    (float32, as the evaluator averages it); ``aesthetic_score``: the aesthetic head's value. Absent or
    null: that judge was unavailable (the official 0.0).

Rows follow the evaluator's listing order. A malformed line raises a one-line ValueError naming the
file, the line, the image and the field.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from numbers import Real
from pathlib import Path, PurePosixPath
from typing import Any

from evals import jsonio
from evals.cvtg.layout import EXTENSIONS
from evals.cvtg.prompts import AREAS, TYPES
from evals.cvtg.score import CvtgJudgement, CvtgSummary, results_json
from evals.jsonio import read_jsonl_rows, write_jsonl

SCORES = ("clipscore", "vqascore", "aesthetic_score")


def _is_line(x: Any) -> bool:
    return (
        isinstance(x, list)
        and len(x) == 2
        and isinstance(x[1], list)
        and bool(x[1])
        and isinstance(x[1][0], str)
    )


def _number(x: Any) -> bool:
    return isinstance(x, Real) and not isinstance(x, bool)


def ocr_lines(result: Any) -> tuple[str, ...]:
    """The recognised line texts of a PaddleOCR ``.ocr()`` result (or of one page), in order; raises
    ValueError describing the first malformed part."""
    if result is None:
        return ()
    if not isinstance(result, list):
        raise ValueError(f"must be PaddleOCR's list of pages, got {type(result).__name__}")
    pages = [result] if result and _is_line(result[0]) else result
    lines: list[str] = []
    for p, page in enumerate(pages):
        if page is None:
            continue
        if not isinstance(page, list):
            raise ValueError(f"page {p} must be a list of [box, [text, confidence]] or null")
        for n, line in enumerate(page):
            where = f"page {p} line {n}"
            if not (isinstance(line, list) and len(line) == 2):
                raise ValueError(f"{where} must be [box, [text, confidence]]")
            box, rec = line
            if not (
                isinstance(box, list)
                and len(box) == 4
                and all(isinstance(pt, list) and len(pt) == 2 and all(_number(c) for c in pt) for pt in box)
            ):
                raise ValueError(f"{where}: box must be 4 [x, y] points, got {json.dumps(box)[:60]}")
            if not (isinstance(rec, list) and len(rec) == 2 and isinstance(rec[0], str) and _number(rec[1])):
                raise ValueError(f"{where}: expected [text, confidence], got {json.dumps(rec)[:60]}")
            lines.append(rec[0])
    return tuple(lines)


def _per_image(path: Path, n: int, row: dict[str, Any]) -> CvtgJudgement:
    where = f"{path}:{n}"
    image = row["image"]
    if not isinstance(image, str):
        raise ValueError(f"{where}: field 'image' must be a string, got {type(image).__name__}")
    parts = PurePosixPath(image.replace("\\", "/")).parts
    if len(parts) < 3:
        raise ValueError(f"{where}: field 'image' must be <type>/<area>/<file>, got {image!r}")
    type_, area, name = parts[-3:]
    where = f"{where}: image {image}"
    if type_ not in TYPES:
        raise ValueError(
            f"{where}: field 'image': unknown type {type_!r} (expected one of {', '.join(TYPES)})"
        )
    if area not in {str(a) for a in AREAS}:
        raise ValueError(f"{where}: field 'image': unknown area {area!r} (expected one of {AREAS})")
    if not name.lower().endswith(EXTENSIONS):
        raise ValueError(f"{where}: field 'image': not a .png/.jpg/.jpeg file")
    has_ocr, has_error = "ocr" in row, "ocr_error" in row
    if has_ocr == has_error:
        raise ValueError(f"{where}: needs exactly one of the fields 'ocr' and 'ocr_error'")
    if has_error and not isinstance(row["ocr_error"], str):
        raise ValueError(f"{where}: field 'ocr_error' must be a string")
    try:
        lines = ocr_lines(row["ocr"]) if has_ocr else None
    except ValueError as exc:
        raise ValueError(f"{where}: field 'ocr': {exc}") from None
    values: dict[str, float | None] = {}
    for key in SCORES:
        value = row.get(key)
        if value is not None and not _number(value):
            raise ValueError(f"{where}: field '{key}' must be a number or null, got {json.dumps(value)[:40]}")
        values[key] = None if value is None else float(value)
    return CvtgJudgement(
        type=type_,
        area=int(area),
        index=PurePosixPath(name).stem,
        ocr_lines=lines,
        ocr_error=has_error,
        clipscore=values["clipscore"],
        vqascore=values["vqascore"],
        aesthetic=values["aesthetic_score"],
        judge=str(row.get("judge", "official")),
        filename=image,
    )


def _judgement(path: Path, n: int, row: dict[str, Any]) -> CvtgJudgement:
    try:
        j = CvtgJudgement.from_json(row)
    except KeyError as exc:
        raise ValueError(f"{path}:{n}: missing field {exc}") from None
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{path}:{n}: {str(exc).splitlines()[0]}") from None
    if j.type not in TYPES or j.area not in AREAS:
        raise ValueError(f"{path}:{n}: unknown type/area {j.type!r}/{j.area!r}")
    return j


def read_judgements(path: Path) -> list[CvtgJudgement]:
    """Judgements from either per-image format (see the module docstring), in file order."""
    out = []
    for n, row in read_jsonl_rows(path):
        if "type" in row:
            out.append(_judgement(path, n, row))
        elif "image" in row:
            out.append(_per_image(path, n, row))
        else:
            raise ValueError(
                f"{path}:{n}: missing field 'image' (official per-image row) or 'type' (i1lab judgement)"
            )
    return out


def write_judgements(judgements: Iterable[CvtgJudgement], path: Path) -> Path:
    return write_jsonl((j.to_json() for j in judgements), path)


def write_results_json(summary: CvtgSummary, path: Path) -> Path:
    path.write_text(json.dumps(results_json(summary), indent=2), encoding="utf-8")
    return path


def read_results_json(path: Path) -> dict[str, Any]:
    """The official output (`overall_results`, `area_results`); raises ValueError for other JSON."""
    try:
        data = jsonio.loads(jsonio.read_text(path))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
    if not isinstance(data, dict) or "overall_results" not in data:
        raise ValueError(f"{path}: not a CVTG-2K results file (no 'overall_results')")
    return data
