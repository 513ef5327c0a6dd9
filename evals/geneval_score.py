"""GenEval aggregation (docs/benchmarks.md §1.4, quirks §1.5): per-image records → summary → printed text.

Pure functions, no I/O; shared by the synthetic "shapes" benchmark and the real GenEval. A record is
one row of GenEval's `results.jsonl` (§1.3): ``filename, tag, prompt, correct, reason, metadata``
(the metadata line as a JSON string) and ``details`` (a JSON string).

Reproduced on purpose:

* the headline is the UNWEIGHTED mean of per-tag fractions of correct images, over the tags present
  (a tag with no images drops out: the denominator becomes 5, not 6);
* tags are listed in first-appearance order;
* a prompt (grouped by its exact metadata string) counts as correct when ANY of its images is;
* the mean is numpy's, over tags in first-appearance order (bit-exact with the official script).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple, TypedDict

import numpy as np


class GenEvalRecord(TypedDict):
    """One judged image, as GenEval's `results.jsonl` stores it."""

    filename: str
    tag: str
    prompt: str
    correct: bool
    reason: str
    metadata: str
    details: str


class TagScore(NamedTuple):
    """Correct images, images, and their ratio for one tag."""

    correct: int
    total: int
    fraction: float


@dataclass(frozen=True)
class GenEvalSummary:
    """The numbers `summary_scores.py` prints.

    `pct_correct_images` and `pct_correct_prompts` are fractions in [0, 1] (printed as percentages);
    `headline` is "Overall score (avg. over tasks)".
    """

    total_images: int
    total_prompts: int
    pct_correct_images: float
    pct_correct_prompts: float
    per_tag: dict[str, TagScore]
    headline: float


def summarize(records: Iterable[Mapping[str, Any]]) -> GenEvalSummary:
    """Aggregate per-image records (only `tag`, `correct` and `metadata` are read).

    Raises ValueError on an empty input (the official script would print NaN).
    """
    images = 0
    correct_images = 0
    prompt_ok: dict[str, bool] = {}
    tag_counts: dict[str, list[int]] = {}
    for record in records:
        ok = bool(record["correct"])
        images += 1
        correct_images += ok
        key = str(record["metadata"])
        prompt_ok[key] = prompt_ok.get(key, False) or ok
        counts = tag_counts.setdefault(str(record["tag"]), [0, 0])
        counts[0] += ok
        counts[1] += 1
    if images == 0:
        raise ValueError("no records to summarise")
    per_tag = {tag: TagScore(c, t, c / t) for tag, (c, t) in tag_counts.items()}
    headline = float(np.mean(np.asarray([score.fraction for score in per_tag.values()], dtype=np.float64)))
    return GenEvalSummary(
        total_images=images,
        total_prompts=len(prompt_ok),
        pct_correct_images=correct_images / images,
        pct_correct_prompts=sum(prompt_ok.values()) / len(prompt_ok),
        per_tag=per_tag,
        headline=headline,
    )


def format_summary(summary: GenEvalSummary) -> str:
    """Exactly what GenEval's `summary_scores.py` prints (§1.4), newline-terminated lines."""
    lines = [
        "Summary",
        "=======",
        f"Total images: {summary.total_images}",
        f"Total prompts: {summary.total_prompts}",
        f"% correct images: {summary.pct_correct_images:.2%}",
        f"% correct prompts: {summary.pct_correct_prompts:.2%}",
        "",
        "Task breakdown",
        "==============",
    ]
    lines += [f"{tag:<16} = {s.fraction:.2%} ({s.correct} / {s.total})" for tag, s in summary.per_tag.items()]
    lines += ["", f"Overall score (avg. over tasks): {summary.headline:.5f}"]
    return "\n".join(lines) + "\n"
