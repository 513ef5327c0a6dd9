"""Aggregation test vectors for GenEval's summary (docs/benchmarks.md §1.4, §1.5)."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest

from evals.geneval_score import TagScore, format_summary, summarize


def rec(tag: str, correct: bool, prompt: str | None = None) -> dict[str, Any]:
    prompt = prompt or f"a photo of a {tag}"
    meta = json.dumps({"tag": tag, "include": [{"class": "square", "count": 1}], "prompt": prompt})
    return {
        "filename": "x.png",
        "tag": tag,
        "prompt": prompt,
        "correct": correct,
        "reason": "",
        "metadata": meta,
        "details": "{}",
    }


def test_headline_is_unweighted_mean_of_tags_not_pooled() -> None:
    records = [rec("a", True)] + [rec("b", ok) for ok in (True, False, False)]
    summary = summarize(records)
    assert summary.per_tag == {"a": TagScore(1, 1, 1.0), "b": TagScore(1, 3, 1 / 3)}
    assert summary.headline == pytest.approx(2 / 3, abs=1e-12)
    assert summary.pct_correct_images == 0.5  # pooled: 2 of 4, differs from the headline
    assert format_summary(summary).endswith("Overall score (avg. over tasks): 0.66667\n")


def test_missing_tag_drops_out_of_the_mean() -> None:
    fractions = {"single_object": 1.0, "two_object": 0.5, "counting": 0.0, "colors": 1.0, "position": 0.5}
    records = []
    for tag, frac in fractions.items():
        records += [rec(tag, True)] * int(frac * 2) + [rec(tag, False)] * (2 - int(frac * 2))
    summary = summarize(records)
    assert list(summary.per_tag) == list(fractions)  # no color_attr
    assert summary.headline == pytest.approx(3.0 / 5, abs=1e-12)  # denominator 5, not 6
    assert summary.headline != pytest.approx(3.0 / 6)


def test_correct_prompts_use_any_image_per_metadata_string() -> None:
    records = [
        rec("colors", False, "p1"),
        rec("colors", True, "p1"),  # p1 counts: any image correct
        rec("colors", False, "p2"),
        rec("colors", False, "p2"),  # p2 does not
        rec("colors", False, "p3"),
        rec("colors", False, "p3"),
    ]
    summary = summarize(records)
    assert summary.total_prompts == 3
    assert summary.pct_correct_prompts == pytest.approx(1 / 3)
    assert summary.pct_correct_images == pytest.approx(1 / 6)


def test_prompts_group_by_exact_metadata_string() -> None:
    a = rec("colors", True, "p")
    b = dict(a, metadata=a["metadata"].replace(", ", ",", 1))  # same content, different string
    assert summarize([a, b]).total_prompts == 2


def test_tags_in_first_appearance_order() -> None:
    records = [rec("position", True), rec("colors", False), rec("position", False), rec("counting", True)]
    assert list(summarize(records).per_tag) == ["position", "colors", "counting"]


def test_headline_matches_numpy_mean_in_tag_order() -> None:
    rng = np.random.default_rng(3)
    records = [rec(f"t{int(rng.integers(6))}", bool(rng.random() < 0.37)) for _ in range(997)]
    summary = summarize(records)
    expected = np.mean(np.asarray([s.fraction for s in summary.per_tag.values()]))
    assert summary.headline == float(expected)


def test_exact_printed_text() -> None:
    records = [
        rec("single_object", True, "p1"),
        rec("single_object", True, "p1"),
        rec("single_object", False, "p1"),
        rec("counting", False, "p2"),
        rec("counting", False, "p2"),
        rec("colors", True, "p3"),
    ]
    expected = (
        "Summary\n"
        "=======\n"
        "Total images: 6\n"
        "Total prompts: 3\n"
        "% correct images: 50.00%\n"
        "% correct prompts: 66.67%\n"
        "\n"
        "Task breakdown\n"
        "==============\n"
        "single_object    = 66.67% (2 / 3)\n"
        "counting         = 0.00% (0 / 2)\n"
        "colors           = 100.00% (1 / 1)\n"
        "\n"
        "Overall score (avg. over tasks): 0.55556\n"
    )
    assert format_summary(summarize(records)) == expected


def test_empty_input_is_rejected() -> None:
    with pytest.raises(ValueError):
        summarize([])
