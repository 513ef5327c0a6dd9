"""`score_images`: GenEval-style records (docs/benchmarks.md §1.3) and their summary (§1.4)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from evals.geneval_score import format_summary
from evals.shapes import NAME, Obj, Scene, parse_prompt, prompts, render, scene_for_prompt, score_images


def test_records_follow_geneval_results_jsonl() -> None:
    meta = parse_prompt("a photo of a red circle")
    good = render(Scene((Obj("circle", "red", 0.5, 0.5, 0.4),)), 16)
    bad = render(Scene((Obj("circle", "blue", 0.5, 0.5, 0.4),)), 16)
    records, summary = score_images([(meta, good), (meta, bad)])
    assert NAME == "shapes"
    assert [r["filename"] for r in records] == ["00000/samples/00000.png", "00000/samples/00001.png"]
    first, second = records
    assert list(first) == ["filename", "tag", "prompt", "correct", "reason", "metadata", "details"]
    assert (first["tag"], first["prompt"], first["correct"], first["reason"]) == (
        "colors",
        "a photo of a red circle",
        True,
        "",
    )
    assert first["metadata"] == json.dumps(meta)
    x1, y1, x2, y2, score = json.loads(first["details"])["circle"][0]
    assert (x2 - x1, y2 - y1, score) == (6.0, 6.0, 1.0)
    assert second["correct"] is False and second["reason"].startswith("expected red circle>=1")
    assert (summary.total_images, summary.total_prompts, summary.pct_correct_prompts) == (2, 1, 1.0)
    assert summary.headline == 0.5


def test_half_right_generator() -> None:
    """Perfect images for even prompts, blank for odd ones: per-tag fractions and the headline."""
    metas = prompts()
    rng = np.random.default_rng(0)
    blank = render(Scene(()), 24)
    items = [(m, render(scene_for_prompt(m, rng), 24) if i % 2 == 0 else blank) for i, m in enumerate(metas)]
    records, summary = score_images(items)
    assert [r["correct"] for r in records] == [i % 2 == 0 for i in range(len(metas))]
    expected: dict[str, tuple[int, int]] = {}
    for i, m in enumerate(metas):
        c, t = expected.get(m["tag"], (0, 0))
        expected[m["tag"]] = (c + (i % 2 == 0), t + 1)
    assert {tag: (s.correct, s.total) for tag, s in summary.per_tag.items()} == expected
    assert summary.headline == pytest.approx(np.mean([c / t for c, t in expected.values()]), abs=1e-12)
    assert "Overall score (avg. over tasks): " in format_summary(summary)


def test_filenames_must_match() -> None:
    meta = prompts()[0]
    image = render(Scene(()), 16)
    records, _ = score_images([(meta, image)], filenames=["7/samples/3.png"])
    assert records[0]["filename"] == "7/samples/3.png"
    with pytest.raises(ValueError):
        score_images([(meta, image)], filenames=[])
