"""DPG-Bench per-question answers: ``{"item_id", "crop", "proposition_id", "answer", "judge"}`` lines; the
official `dpg-bench_*_results.txt` (per-image lines and the report) and `*_results_detail.txt`."""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from evals import jsonio
from evals.dpg.questions import QuestionSet
from evals.dpg.score import answers_from_records, item_key
from evals.jsonio import read_jsonl, write_jsonl


def read_answers(path: Path) -> tuple[dict[str, dict[tuple[int, int], str]], set[str]]:
    """Answers grouped by item, and the set of judge names found in the file."""
    rows = read_jsonl(path)
    return answers_from_records(rows), {str(r.get("judge", "unknown")) for r in rows}


def write_answers(records: Iterable[Mapping[str, Any]], path: Path) -> Path:
    return write_jsonl(records, path)


class DpgFileError(ValueError):
    """A malformed official DPG-Bench output; the message is one line ``path:line: field: what is wrong``."""


def _number(path: Path, n: int, field: str, text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise DpgFileError(f"{path}:{n}: {field}: {text.strip()[:40]!r} is not a number") from None


def read_results_txt(path: Path, items: Collection[str] | None = None) -> tuple[dict[str, float], str]:
    """The metrics and the report section of an official `dpg-bench_*_results.txt` (docs §2.4).

    Each per-image line ``<image path>, <crop score>, ..., <image score>`` is checked (numbers; the
    image score is the mean of its crop scores; with `items`, its item id must be one of them), and so
    is the report: every category value and the ``DPG-Bench score`` must be numbers, and the score
    must be the mean of the per-image scores × 100 (1e-9 relative: multi-process runs sum in another
    order). Anything else raises `DpgFileError`, one line naming the file, the line and the field."""
    from evals.dpg.benchmark import parse_printout

    text = jsonio.read_text(path)
    lines = text.splitlines()
    if not text.strip():
        raise DpgFileError(f"{path}: empty file (no per-image lines, no report)")
    report_at = next((i for i, line in enumerate(lines) if line.startswith("Model: ")), None)
    if report_at is None:
        report_at = next(
            (i for i, line in enumerate(lines) if line.startswith("L1 category scores:")), len(lines)
        )
    image_scores: list[float] = []
    for n, line in enumerate(lines[:report_at], 1):
        if not line.strip() or line.startswith("Failed filename: "):  # the printout's, if pasted in
            continue
        name, sep, rest = line.partition(", ")
        values = rest.split(", ") if sep else []
        if len(values) < 2:
            raise DpgFileError(
                f"{path}:{n}: image line: expected '<image>, <crop scores>, <image score>', got {line[:60]!r}"
            )
        crops = [_number(path, n, f"crop score {k}", v) for k, v in enumerate(values[:-1])]
        score = _number(path, n, "image score", values[-1])
        if sum(crops) / len(crops) != score:
            raise DpgFileError(f"{path}:{n}: image score: {score!r} is not the mean of its crop scores")
        if items is not None and item_key(name) not in items:
            raise DpgFileError(
                f"{path}:{n}: image: unknown item id {item_key(name)!r} (not in the question table)"
            )
        image_scores.append(score)
    section = ""
    headline_at = 0
    for n, line in enumerate(lines[report_at:], report_at + 1):
        if line.startswith(("L1 category scores:", "L2 category scores:")):
            section = line[:2]
        elif line.startswith("\t") and section:
            name, sep, value = line[1:].rpartition(": ")
            if not sep:
                raise DpgFileError(
                    f"{path}:{n}: {section} category: expected '<name>: <score>', got {line!r}"
                )
            _number(path, n, f"{section} category {name!r}", value)
        elif line.startswith("DPG-Bench score:"):
            _number(path, n, "DPG-Bench score", line.split(":", 1)[1])
            headline_at = n
        else:
            section = ""
    if not headline_at:
        raise DpgFileError(f"{path}:{len(lines)}: DPG-Bench score: missing (the report is cut short)")
    metrics, printed = parse_printout(text)
    if image_scores:
        expected = float(np.mean(image_scores) * 100)
        if abs(metrics["dpg_score"] - expected) > 1e-9 * max(1.0, abs(expected)):
            raise DpgFileError(
                f"{path}:{headline_at}: DPG-Bench score: {metrics['dpg_score']!r} is not the mean of the "
                f"{len(image_scores)} image scores × 100 ({expected!r})"
            )
    return metrics, printed


_CROP = re.compile(r"^(?P<image>.*?), \((?P<x>\d+), (?P<y>\d+), \d+, \d+\), (?P<rest>.*)$")


def read_detail_txt(
    path: Path, questions: QuestionSet
) -> tuple[list[str], dict[str, dict[tuple[int, int], str]]]:
    """Image names (in file order) and answers ``{item: {(crop k, proposition id): answer}}`` from an
    official `*_results_detail.txt` (``<image>, (x0, y0, x1, y1), <question>, <answer>`` per line).

    The line's question is matched to the item's questions in CSV order (the official write order),
    so commas inside questions are not ambiguous. A malformed line raises `DpgFileError`."""
    names: list[str] = []
    answers: dict[str, dict[tuple[int, int], str]] = {}
    position: dict[tuple[str, int], int] = {}
    seen: set[str] = set()
    for n, line in enumerate(jsonio.read_text(path).splitlines(), 1):
        if not line.strip():
            continue
        m = _CROP.match(line)
        if m is None:
            raise DpgFileError(
                f"{path}:{n}: crop: expected '<image>, (x0, y0, x1, y1), <question>, <answer>'"
            )
        image, key = m["image"], item_key(m["image"])
        item = questions.get(key)
        if item is None:
            raise DpgFileError(f"{path}:{n}: image: unknown item id {key!r} (not in the question table)")
        crop = (int(m["x"]) > 0) + 2 * (int(m["y"]) > 0)
        i = position.get((image, crop), 0)
        qids = list(item)
        if i >= len(qids):
            raise DpgFileError(f"{path}:{n}: question: item {key!r} has only {len(qids)} questions per crop")
        qid = qids[i]
        prefix = item[qid].question + ", "
        if not m["rest"].startswith(prefix):
            raise DpgFileError(
                f"{path}:{n}: question: expected {item[qid].question!r} (proposition {qid} of {key!r})"
            )
        position[(image, crop)] = i + 1
        if image not in seen:
            seen.add(image)
            names.append(image)
        answers.setdefault(key, {})[(crop, qid)] = m["rest"][len(prefix) :]
    if not names:
        raise DpgFileError(f"{path}: empty file (no answer lines)")
    return names, answers
