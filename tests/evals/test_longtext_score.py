"""LongText-Bench clean-up and aggregation test vectors (docs/benchmarks.md §5.3–5.5)."""

from __future__ import annotations

import pytest

from evals.longtext import (
    LongTextRecord,
    clean_ocr_output,
    format_summary,
    match_counts,
    normalize,
    summarize,
)


def test_cleanup_bug_removes_only_the_last_keyword_with_its_period() -> None:
    text = "addCriterion FRESH\nNo text recognized.\nBREWS No text recognized"
    assert clean_ocr_output(text) == "addCriterion FRESH\n\nBREWS No text recognized"
    assert clean_ocr_output("No text recognized.") == ""


def test_normalisation_character_set() -> None:
    assert normalize("WELL-KNOWN it's  Señor\tCafé ÉTÉ 中文, 3:15!") == "wellknown its seor café été 中文 315"
    assert normalize("  a \n b  ") == "a b"
    assert normalize("Ab 中文", "zh") == "Ab中文"


def test_multiset_intersection() -> None:
    assert match_counts(["a a b"], "a b b c d") == (2, 3)
    assert match_counts(["a", "b"], "A, B.") == (2, 2)  # GT list joined with spaces; punctuation deleted
    assert match_counts(["it's"], "its") == (1, 1)


def test_surviving_no_text_recognized_can_match() -> None:
    ocr = clean_ocr_output("No text recognized")
    assert match_counts(["NO TEXT here"], ocr) == (2, 3)


def test_micro_average_and_breakdowns() -> None:
    gt = {1: ["hello"], 2: ["one two three"]}
    cats = {1: ("sign", "short"), 2: ("poster", "long")}
    records = [
        LongTextRecord("1_0.png", 1, "hello"),
        LongTextRecord("2_0.png", 2, "nothing"),
        LongTextRecord("2_1.png", 2, "two"),
    ]
    s = summarize(records, gt, categories=cats)
    assert (s.matched, s.total, s.images) == (2, 7, 3)
    assert s.headline == 2 / 7  # not the mean of per-image accuracies
    assert s.headline != pytest.approx((1 + 0 + 1 / 3) / 3)
    assert s.by_category == {"sign": 1.0, "poster": 1 / 6}
    assert s.by_length == {"short": 1.0, "long": 1 / 6}
    assert format_summary(s) == "Text Score: 0.2857\n"
    assert all(k.startswith(("text_score", "nonofficial/")) for k in s.metrics())


def test_own_gt_first_unknown_prompt_without_gt_and_empty_gt_raise() -> None:
    own = LongTextRecord("9_0.png", 9, "b", ocr_gt=("a b",))
    s = summarize([own, LongTextRecord("1_0.png", 1, "a")], {1: ["a"]}, categories={1: ("sign", "short")})
    assert (s.matched, s.total) == (2, 3) and s.by_category == {"sign": 1.0}  # id 9: headline only
    with pytest.raises(ValueError, match="no ground truth"):
        summarize([LongTextRecord("9_0.png", 9, "x")], {1: ["a"]})
    with pytest.raises(ZeroDivisionError):
        summarize([LongTextRecord("1_0.png", 1, "x")], {1: ["!!"]})
