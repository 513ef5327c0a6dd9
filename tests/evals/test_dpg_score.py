"""DPG-Bench aggregation test vectors (docs/benchmarks.md §2.4, quirks §2.5)."""

from __future__ import annotations

import numpy as np
import pytest

from evals.dpg import DpgCsvError, format_summary, parse_csv, score_image, summarize

HEADER = (
    "item_id,text,keywords,proposition_id,dependency,category_broad,category_detailed,tuple,"
    "question_natural_language\n"
)


def row(item: str, qid: int, dep: str, tup: str, question: str = "") -> str:
    question = question or f"is {item} {qid} there?"
    return f'{item},text of {item},kw,{qid},"{dep}",b,d,"{tup}","{question}"\n'


CSV = HEADER + "".join(
    [
        row("x", 1, "0", "entity - whole (x)"),  # the first data row: never asked
        row("x", 2, "1", "entity - whole (x2)"),  # depends on it → image x fails
        row("p", 1, "0", "entity - whole (cat)"),
        row("p", 2, "1", "attribute - color (cat, black)", "is the cat black, really?"),
        row("p", 3, "2", "relation - spatial (cat, mat, on)"),
        row("p", 4, "1,2", "entity - whole (mat)"),
        row("q", 1, "0", "other - count (q, 2)"),
        row("q", 2, "1", "other - text (q)"),
        row("r", 1, "0", "entity - whole (r)"),
        row("r", 2, "1,9", "relation - spatial (r, s, near)"),  # 9 is not a question of r
        row("q", 1, "0", "other - count (q, 2)"),  # a second block of q replaces the first
        row("s", 1, "0", "entity - whole (s)"),
        row("s", 2, "1,9", "relation - spatial (s, t, near)"),
    ]
)

P_ANSWERS = {
    0: {1: "yes", 2: "no", 3: "yes", 4: "yes"},  # 2 zeroes 3 and 4 → 1/4
    1: {1: "yes", 2: "yes", 3: "yes", 4: "yes"},  # 1
    2: {1: "Yes", 2: "yes", 3: "yes", 4: "yes"},  # "Yes" ≠ yes; zeroing cascades 1 → 2 → 3 → 0
    3: {1: "yes", 2: "yes", 3: "yes", 4: "yes."},  # "yes." ≠ yes → 3/4
}


def answers() -> dict[str, dict[tuple[int, int], str]]:
    out: dict[str, dict[tuple[int, int], str]] = {
        "p": {(k, q): a for k, qs in P_ANSWERS.items() for q, a in qs.items()},
        "q": {(k, q): ("yes" if q == 1 else "no") for k in range(4) for q in (1, 2)},
        # r: parent 1 is always "no", so the loop breaks before it reaches the unknown parent 9
        "r": {(k, q): ("no" if q == 1 else "yes") for k in range(4) for q in (1, 2)},
        # s: parent 1 is "yes" in crop 0, so the lookup of parent 9 fails → image dropped
        "s": {(k, q): "yes" for k in range(4) for q in (1, 2)},
        "x": {(k, 2): "yes" for k in range(4)},
    }
    return out


def test_question_table_rules() -> None:
    qs = parse_csv(CSV)
    assert list(qs["x"]) == [2]  # first row skipped
    assert list(qs["q"]) == [1]  # the later block replaced the earlier one
    assert qs["p"][4].parents == (1, 2)
    assert qs["p"][2].question == "is the cat black, really?"
    assert qs["p"][3].l2 == "relation - spatial"


def test_image_score_with_exact_yes_and_cascading_zeroing() -> None:
    qs = parse_csv(CSV)
    result = score_image("p.png", qs["p"], answers()["p"])
    assert result.crop_scores == (0.25, 1.0, 0.0, 0.75)
    assert result.score == 0.5
    assert result.last_raw == {1: 1.0, 2: 1.0, 3: 1.0, 4: 0.0}  # raw, last crop


def test_summary_headline_categories_and_failures() -> None:
    qs = parse_csv(CSV)
    names = ["p.png", "x.png", "q.png", "r.png", "s.png", "dpg-bench_1_results.txt"]
    summary = summarize(qs, answers(), names)
    assert [r.item_id for r in summary.images] == ["p", "q", "r"]
    assert [name for name, _ in summary.failed] == ["x.png", "s.png", "dpg-bench_1_results.txt"]
    # images weigh the same: p 0.5, q 1.0 (one question after replacement), r 0.0
    assert summary.headline == pytest.approx(50.0, abs=1e-12)
    # categories: raw answers of the last crop, pooled over images
    assert summary.l2 == {
        "attribute - color": 100.0,
        "entity - whole": pytest.approx(100 / 3),  # p1 yes, p4 "yes.", r1 no
        "other - count": 100.0,
        "relation - spatial": 100.0,  # p3 yes, r2 yes (raw: its zeroing is ignored here)
    }
    assert summary.l1 == {
        "attribute": 100.0,
        "entity": pytest.approx(100 / 3),
        "other": 100.0,
        "relation": 100.0,
    }
    assert list(summary.l2) == sorted(summary.l2)


def test_headline_is_not_the_pooled_question_mean() -> None:
    qs = parse_csv(CSV)
    summary = summarize(qs, answers(), ["p.png", "q.png"])
    assert summary.headline == pytest.approx(75.0)  # (0.5 + 1.0) / 2, not 8 of 17 questions


def test_printed_text() -> None:
    qs = parse_csv(CSV)
    summary = summarize(qs, answers(), ["q.png", "p.png"])
    text = format_summary(summary)
    lines = text.splitlines()
    assert lines[0] == "L1 category scores:"
    l1_block = lines[1 : lines.index("L2 category scores:")]
    assert sorted(l1_block) == [
        "\tattribute: 100.0",
        f"\tentity: {np.mean([1.0, 0.0]) * 100}",
        "\tother: 100.0",
        "\trelation: 100.0",
    ]
    assert lines[lines.index("L2 category scores:") + 1] == "\tattribute - color: 100.0"
    assert text.endswith("DPG-Bench score: 75.0\n")
    failed = format_summary(summarize(qs, answers(), ["x.png", "q.png"]))
    assert failed.startswith("Failed filename: x.png KeyError: 1")


def test_dependency_read_as_numbers_crashes_like_the_official_script() -> None:
    single = HEADER + row("a", 1, "0", "entity - whole (a)") + row("a", 2, "1", "entity - whole (b)")
    with pytest.raises(DpgCsvError, match="dependency"):
        parse_csv(single.replace('"0"', "0").replace('"1"', "1"))
    assert list(parse_csv(single + row("a", 3, "1,2", "entity - whole (c)"))["a"]) == [2, 3]


def test_numeric_item_ids_never_match_file_names() -> None:
    text = (
        HEADER
        + row("7", 1, "0", "e - w (a)")
        + row("8", 1, "0", "e - w (a)")
        + row("8", 2, "1,1", "e - w (b)")
    )
    qs = parse_csv(text)
    assert list(qs) == [8]  # pandas parsed the ids as integers
    summary = summarize(qs, {"8": {(k, q): "yes" for k in range(4) for q in (1, 2)}}, ["8.png"])
    assert summary.images == () and summary.failed[0][0] == "8.png"


def test_missing_answer_drops_the_image() -> None:
    qs = parse_csv(CSV)
    partial = answers()
    del partial["p"][(3, 4)]
    summary = summarize(qs, partial, ["p.png", "q.png"])
    assert [r.item_id for r in summary.images] == ["q"]
    assert summary.headline == 100.0
