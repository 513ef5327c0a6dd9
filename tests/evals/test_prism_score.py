"""PRISM-Bench reply parsing and aggregation test vectors (docs/benchmarks.md §3.3–3.5)."""

from __future__ import annotations

import pytest

from evals.prism import (
    EVAL_ORDER,
    NOT_SAVED,
    UNREADABLE,
    PrismRecord,
    format_summary,
    parse_reply,
    read_score,
    record_from_reply,
    summarize,
)


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        ('```json\n{"justification": "fine", "score": 8,}\n```', {"justification": "fine", "score": 8}),
        ('{"justification": "x",\n "score": 6,\n}', {"justification": "x", "score": 6}),
        ("{justification: 'lenient', score: 7}", {"justification": "lenient", "score": 7}),  # demjson3
        (
            '{"justification": "a, ]", "score": 5}',
            {"justification": "a]", "score": 5},
        ),  # comma deleted in a string
        ("9", 9),
        ('"the score is 9"', "the score is 9"),
        ('[{"score": 9}]', [{"score": 9}]),
    ],
)
def test_saved_values(reply: str, expected: object) -> None:
    assert parse_reply(reply) == expected


@pytest.mark.parametrize(
    "reply",
    ["", "0", "false", "{}", "[]", '""', "null", "Score: 9", '```\n{"score": 8}\n```'],  # last: no "json" tag
)
def test_not_saved(reply: str) -> None:
    assert parse_reply(reply) is NOT_SAVED


@pytest.mark.parametrize(
    ("value", "status", "score"),
    [
        ({"score": 7}, "ok", 7),
        ({"score": 7.5}, "ok", 7.5),
        ({"score": True}, "ok", True),  # a boolean counts as 1
        ({"score": 12}, "ok", 12),  # no range check
        ({"score": "9"}, "dropped", None),
        ({"justification": "no score"}, "dropped", None),
        ([{"score": 9}], "dropped", None),
        ("no number here", "dropped", None),
        (9, "fatal", None),  # the official summary raises TypeError
        (True, "fatal", None),
        ("the score is 9", "fatal", None),
    ],
)
def test_read_score(value: object, status: str, score: object) -> None:
    assert read_score(value) == (status, score)


def rec(eval_type: str, category: str, j: int, score: object) -> PrismRecord:
    return PrismRecord(eval_type, category, j, {"justification": "", "score": score})


def test_pooled_means_drop_missing_and_bad_records() -> None:
    records = [
        rec("alignment", "entity", 0, 10),
        rec("alignment", "entity", 1, 6),
        rec("aesthetic", "entity", 0, 8),
        rec("alignment", "style", 0, 2),
        rec("aesthetic", "style", 0, "9"),  # dropped, not zero
        PrismRecord("aesthetic", "style", 1, UNREADABLE),  # dropped
        record_from_reply("aesthetic", "style", 2, "9"),  # fatal: flagged and excluded
        record_from_reply("aesthetic", "style", 3, "```\n{}\n```"),  # not saved → absent
        rec("alignment", "style", 100, 0),  # index ≥ num_images: ignored
    ]
    s = summarize(records)
    assert s.alignment_by_category["entity"] == 8.0
    assert s.aesthetic_by_category["entity"] == 8.0
    assert s.combined_by_category["entity"] == 8.0
    assert s.alignment_by_category["style"] == 2.0
    assert s.aesthetic_by_category["style"] == 0.0  # empty list averages to 0.0 …
    assert s.overall_aesthetic == 8.0  # … but adds nothing to the pooled numbers
    assert s.overall_alignment == 6.0
    assert s.headline == 26 / 4  # pooled over 4 scores, not the mean of category means (5.0)
    assert s.headline_100 == 65.0
    assert s.dropped == (("aesthetic", "style", 0), ("aesthetic", "style", 1))
    assert s.fatal == (("aesthetic", "style", 2),)
    assert s.counts == {"alignment": 3, "aesthetic": 1}


def test_headline_equals_mean_of_category_means_with_complete_data() -> None:
    records = [
        rec(t, c, j, (j * 7 + len(c) + (t == "aesthetic")) % 11)
        for t in ("alignment", "aesthetic")
        for c in EVAL_ORDER
        for j in range(3)
    ]
    s = summarize(records, num_images=3)
    assert s.headline == pytest.approx(sum(s.combined_by_category.values()) / 7, abs=1e-12)


def test_exact_report_text() -> None:
    records = [rec("alignment", "imagination", 0, 7), rec("aesthetic", "imagination", 0, True)]
    text = format_summary(summarize(records, categories=("imagination", "text_rendering")))
    rule = "=" * 60
    expected = "\n".join(
        [
            rule,
            "          EVALUATION SUMMARY REPORT",
            rule,
            "\n--- (1 & 4) Average Scores by Sub-Part ---\n",
            "Category: Imagination",
            "  - Alignment Average: 7.00",
            "  - Aesthetic Average: 1.00",
            "  - Combined Average:  4.00\n",
            "Category: Text_rendering",
            "  - Alignment Average: 0.00",
            "  - Aesthetic Average: 0.00",
            "  - Combined Average:  0.00\n",
            "\n" + "-" * 60 + "\n",
            "--- Overall Average Scores ---\n",
            "(2) Overall Alignment Average: 7.00",
            "(3) Overall Aesthetic Average: 1.00",
            "\n" + rule + "\n",
            "(5) FINAL COMBINED AVERAGE SCORE: 4.00",
            rule,
        ]
    )
    assert text == expected


def test_report_lists_categories_in_official_order() -> None:
    text = format_summary(summarize([rec("alignment", "style", 0, 5)]))
    order = [line.split(": ")[1] for line in text.splitlines() if line.startswith("Category: ")]
    assert order == [
        "Imagination",
        "Entity",
        "Text_rendering",
        "Style",
        "Affection",
        "Composition",
        "Long_text",
    ]
