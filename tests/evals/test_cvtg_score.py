"""CVTG-2K aggregation test vectors (docs/benchmarks.md §4.1, §4.4, §4.5)."""

from __future__ import annotations

import numpy as np
import pytest

from evals.cvtg import CvtgJudgement, format_summary, gt_words, levenshtein, ned, ocr_stats, summarize


def test_gt_words_from_single_quotes_keep_punctuation_and_duplicates() -> None:
    prompt = (
        "A sign reading 'OPEN. Now' next to a board with 'Tacos, 24/7' and a mug 'it’s OPEN.' \"NOT THIS\""
    )
    assert gt_words(prompt) == ["open.", "now", "tacos,", "24/7", "it’s", "open."]
    assert gt_words('a rewrite says "OPEN"') == []  # double quotes are not ground truth


def test_levenshtein() -> None:
    assert levenshtein("kitten", "sitting") == 3
    assert levenshtein("", "abc") == 3
    assert levenshtein("flaw", "lawn") == 2


def test_membership_not_multiset() -> None:
    total, correct, _ = ocr_stats(["sale", "sale", "now"], ["SALE"])
    assert (total, correct) == (3, 2)  # the duplicated GT word counts twice though read once


def test_ned_uses_difflib_best_match_not_min_levenshtein() -> None:
    _, _, neds = ocr_stats(["sale"], ["seal salt"])
    # difflib prefers "seal" (Lev 2); the minimum-Levenshtein word would be "salt" (Lev 1)
    assert neds == [1 - 2 / (4 + 1e-5)]
    assert neds[0] != pytest.approx(1 - 1 / (4 + 1e-5))


def test_ned_ties_go_to_the_lexicographically_greatest_candidate() -> None:
    _, _, neds = ocr_stats(["ab"], ["ay axx"])
    _, _, swapped = ocr_stats(["ab"], ["axx ay"])
    assert neds == swapped == [ned("ab", "ay")]


def test_empty_ocr_gives_tiny_nonzero_ned_and_error_gives_zero() -> None:
    total, correct, neds = ocr_stats(["open"], [])
    assert (total, correct) == (1, 0)
    assert neds == [1 - 4 / (4 + 1e-5)] and 0 < neds[0] < 1e-5
    assert ocr_stats(["open", "now"], None, error=True) == (2, 0, [0.0, 0.0])
    assert ocr_stats(["open", "now"], None) == (0, 0, [])  # no OCR judge: nothing counted


def test_no_punctuation_stripping() -> None:
    assert ocr_stats(["open."], ["open"])[1] == 0
    assert ocr_stats(["open"], ["OPEN"])[1] == 1


PROMPTS = {
    ("CVTG", 2): {"0": "a sign 'OPEN NOW'", "1": "a mug 'HOT'"},
    ("CVTG-Style", 3): {"0": "a board 'A B C D E F'"},
}


def j(type_: str, area: int, index: str, lines: list[str] | None, **kw: float | None) -> CvtgJudgement:
    return CvtgJudgement(type_, area, index, None if lines is None else tuple(lines), **kw)  # type: ignore[arg-type]


def test_micro_word_accuracy_over_cells_and_weighted_scores() -> None:
    judgements = [
        j("CVTG", 2, "0", ["open now"], clipscore=0.8, vqascore=0.5, aesthetic=5.0),
        j("CVTG", 2, "1", ["cold"], clipscore=0.6, vqascore=0.25, aesthetic=4.0),
        j("CVTG-Style", 3, "0", ["a b"], clipscore=0.2, vqascore=0.75, aesthetic=6.0),
        j("CVTG-Style", 3, "7", ["x"], clipscore=100.0),  # no prompt 7: skipped entirely
    ]
    s = summarize(judgements, PROMPTS)
    assert [(a.type, a.area, a.correct_words, a.total_words) for a in s.areas] == [
        ("CVTG", 2, 2, 3),
        ("CVTG-Style", 3, 2, 6),
    ]
    assert s.headline == 4 / 9  # micro; the mean of the two cells would be (2/3 + 1/3) / 2 = 0.5
    assert s.areas[0].clipscore == pytest.approx(0.7)
    # image-count weighted: (0.7 · 2 + 0.2 · 1) / 3
    assert s.clipscore == pytest.approx((0.7 * 2 + 0.2) / 3)
    assert s.aesthetic_score == pytest.approx(5.0)
    assert s.total_images == 3
    assert s.skipped == ("CVTG-Style/3/7",)
    assert s.per_category == {"CVTG/2": 2 / 3, "CVTG-Style/3": 2 / 6}


def test_vqa_is_averaged_in_float32() -> None:
    values = [0.1, 0.2, 0.7, 0.3]
    judgements = [j("CVTG", 2, "0", ["open"], vqascore=v) for v in values]
    s = summarize(judgements, PROMPTS)
    expected = np.mean([np.float32(v) for v in values])
    assert s.areas[0].vqascore == expected and isinstance(s.areas[0].vqascore, np.float32)
    assert float(expected) != float(np.mean(values))


def test_duplicate_stems_both_count_and_share_the_later_clipscore() -> None:
    judgements = [
        j("CVTG", 2, "0", ["open now"], clipscore=0.2, filename="0.png"),
        j("CVTG", 2, "0", ["open"], clipscore=0.6, filename="0.jpg"),
    ]
    s = summarize(judgements, PROMPTS)
    assert s.areas[0].total_images == 2 and s.areas[0].total_words == 4 and s.areas[0].correct_words == 3
    assert s.areas[0].clipscore == pytest.approx(0.6)


def test_missing_judges_count_as_zero() -> None:
    s = summarize([j("CVTG", 2, "0", ["open now"]), j("CVTG", 2, "1", ["hot"], clipscore=1.0)], PROMPTS)
    assert s.clipscore == 0.5 and s.vqascore == 0.0


def test_empty_cell_folder_prints_zeros() -> None:
    s = summarize([j("CVTG", 2, "0", ["open now"])], PROMPTS, cells=[("CVTG", 2), ("CVTG-Style", 3)])
    assert s.areas[1].total_images == 0 and s.areas[1].word_accuracy == 0.0
    assert s.headline == 1.0


def test_printed_text() -> None:
    s = summarize([j("CVTG", 2, "0", ["open"], clipscore=0.5, vqascore=0.25, aesthetic=5.5)], PROMPTS)
    n = 1 - 4 / (4 + 1e-5)  # "now" vs "open": Lev 4
    block = (
        "Word Accuracy: 0.5000\n"
        f"NED: {(1 - 0 / (4 + 1e-5) + n) / 2:.4f}\n"
        "CLIPScore: 0.5000\nVQAScore: 0.2500\nAesthetic Score: 5.5000\n"
    )
    assert (
        format_summary(s) == "\n=== CVTG Area 2 Results ===\n" + block + "\n=== Overall Results ===\n" + block
    )
