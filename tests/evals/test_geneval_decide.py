"""GenEval's per-image decision from raw detections (docs/benchmarks.md §1.3, quirks §1.5)."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest

from evals.geneval import decide, filter_boxes, make_record, records_from_judgements, relations, summarize


def meta(
    tag: str, include: list[dict[str, Any]], exclude: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    out: dict[str, Any] = {"tag": tag, "include": include}
    if exclude:
        out["exclude"] = exclude
    out["prompt"] = f"prompt for {tag} {json.dumps(include)}"
    return out


def box(x: float, y: float = 0.0, size: float = 10.0, score: float = 0.95) -> list[float]:
    return [x, y, x + size, y + size, score]


SINGLE = meta("single_object", [{"class": "dog", "count": 1}])
THREE_DOGS = meta("counting", [{"class": "dog", "count": 3}], [{"class": "dog", "count": 4}])
RED_CAR = meta("colors", [{"class": "car", "count": 1, "color": "red"}])
CAT_RIGHT_OF_DOG = meta(
    "position", [{"class": "dog", "count": 1}, {"class": "cat", "count": 1, "position": ["right of", 0]}]
)


def test_threshold_is_strict_and_compared_in_float32() -> None:
    # 0.30000001 > 0.3 in float64, but rounds to float32(0.3), which is not > float32(0.3).
    assert not make_record("a.png", SINGLE, {"dog": [box(0, score=0.30000001)]})["correct"]
    assert not make_record("a.png", SINGLE, {"dog": [box(0, score=0.3)]})["correct"]
    assert make_record("a.png", SINGLE, {"dog": [box(0, score=0.3000001)]})["correct"]


def test_counting_threshold_applies_to_every_class_including_the_excluded_one() -> None:
    three_and_a_weak_fourth = {"dog": [box(0), box(20), box(40), box(60, score=0.85)]}
    # at 0.9 the fourth dog is not kept, so the exclude clause (dog < 4) holds
    assert make_record("a.png", THREE_DOGS, three_and_a_weak_fourth)["correct"]
    # the same detections under a non-counting tag keep it (threshold 0.3) and fail the exclude
    as_two_object = dict(THREE_DOGS, tag="two_object")
    rec = make_record("a.png", as_two_object, three_and_a_weak_fourth)
    assert not rec["correct"] and rec["reason"] == "expected dog<4, found 4"
    # a 0.5 dog in a counting image does not count towards the include either
    rec = make_record("a.png", THREE_DOGS, {"dog": [box(0), box(20), box(40, score=0.5)]})
    assert not rec["correct"] and rec["reason"] == "expected dog>=3, found 2"


def test_colour_uses_only_the_top_count_detections() -> None:
    two_cars = {"car": [box(0, score=0.9), box(20, score=0.8)]}
    assert make_record("a.png", RED_CAR, two_cars, {"car": ["red", "blue"]})["correct"]
    rec = make_record("a.png", RED_CAR, two_cars, {"car": ["blue", "red"]})
    assert not rec["correct"]
    assert rec["reason"] == "expected red car>=1, found 0 red; and 1 blue"


def test_extra_unrelated_objects_never_fail_an_image() -> None:
    two = meta("two_object", [{"class": "dog", "count": 1}, {"class": "cat", "count": 1}])
    crowded = {"dog": [box(0), box(20)], "cat": [box(40)], "person": [box(60)] * 5}
    assert make_record("a.png", two, crowded)["correct"]


def test_position_formula_uses_unrevised_norm_and_no_plus_one() -> None:
    target = box(0)  # centre (5, 5), 10 × 10
    assert relations(box(20), target) == {"right of"}  # offset 20, revised 18 → 0.9
    # offset 4, revised 4 − 0.1·(10+10) = 2; divided by |offset| = 4 → exactly 0.5 → no relation
    # (dividing by the revised norm would give 1.0 → "right of")
    assert relations(box(4), target) == set()
    assert relations(box(20, 20), target) == {"right of", "below"}  # 18/28.28 = 0.636 on both axes
    assert relations(box(0), target) == set()  # identical centres: the empty set
    # a 10-wide box is x2 − x1 = 10 wide: offset 5.5, revised 3.5, 3.5/5.5 = 0.636 → right of
    assert relations(box(5.5), target) == {"right of"}


def test_position_decision_and_reasons() -> None:
    assert make_record("a.png", CAT_RIGHT_OF_DOG, {"dog": [box(0)], "cat": [box(20)]})["correct"]
    rec = make_record("a.png", CAT_RIGHT_OF_DOG, {"dog": [box(20)], "cat": [box(0)]})
    assert rec["reason"] == "expected cat right of target, found left of target"
    rec = make_record("a.png", CAT_RIGHT_OF_DOG, {"dog": [box(0)], "cat": [box(0)]})
    assert rec["reason"] == "expected cat right of target, found  target"
    rec = make_record("a.png", CAT_RIGHT_OF_DOG, {"cat": [box(20)]})
    assert rec["reason"] == "expected dog>=1, found 0\nno target for cat to be right of"


def test_position_only_checks_the_top_count_objects() -> None:
    # a lower-scored second cat on the wrong side does not matter
    dets = {"dog": [box(0)], "cat": [box(20, score=0.9), box(-30, score=0.5)]}
    assert make_record("a.png", CAT_RIGHT_OF_DOG, dets)["correct"]


def test_kept_boxes_order_follows_numpy_argsort_reversed() -> None:
    kept = filter_boxes({"car": [box(0, score=0.8), box(20, score=0.8), box(40, score=0.9)]}, "colors")
    # ascending argsort of [0.8, 0.8, 0.9] is [0, 1, 2]; reversed → [2, 1, 0]: ties come out reversed
    assert kept["car"][:, 0].tolist() == [40.0, 20.0, 0.0]
    rec = make_record(
        "a.png", RED_CAR, {"car": [box(0, score=0.8), box(20, score=0.8)]}, {"car": ["red", "blue"]}
    )
    assert rec["correct"]  # the first kept box is raw box 1, whose colour is the first one listed


def test_at_most_16_kept_and_no_nms() -> None:
    same_place = {"dog": [box(0, score=0.5 + i / 100) for i in range(20)]}
    kept = filter_boxes(same_place, "single_object")
    assert kept["dog"].shape == (16, 5)
    assert float(kept["dog"][0, 4]) == pytest.approx(0.69)


def test_details_are_float32_values_in_detector_class_order() -> None:
    rec = make_record(
        "a.png",
        SINGLE,
        {"zebra": [box(0, score=0.7)], "dog": [box(1, score=0.31)]},
        classnames=["dog", "cat", "zebra"],
    )
    details = json.loads(rec["details"])
    assert list(details) == ["dog", "zebra"]
    assert details["dog"][0][4] == float(np.float32(0.31)) != 0.31
    assert rec["metadata"] == json.dumps(SINGLE)


def test_missing_colour_judgement_is_an_error() -> None:
    with pytest.raises(ValueError, match="colour judgement missing"):
        make_record("a.png", RED_CAR, {"car": [box(0)]}, {})


def test_judgements_to_headline() -> None:
    metas = [SINGLE, THREE_DOGS, RED_CAR]
    judgements = [
        {"folder_idx": 0, "k": 0, "detections": {"dog": [box(0)]}, "colors": {}},
        {"folder_idx": 0, "k": 1, "detections": {}, "colors": {}},
        {"folder_idx": 1, "k": 0, "detections": {"dog": [box(0), box(20), box(40), box(60, score=0.85)]}},
        {"folder_idx": 2, "k": 0, "detections": {"car": [box(0)]}, "colors": {"car": ["red"]}},
        {"folder_idx": 2, "k": 1, "detections": {"car": [box(0)]}, "colors": {"car": ["pink"]}},
        {"folder_idx": 2, "k": 2, "detections": {"car": [box(0)]}, "colors": {"car": ["pink"]}},
    ]
    records = records_from_judgements(judgements, metas, root="out")
    assert records[0]["filename"] == "out/00000/samples/00000.png"
    assert [r["correct"] for r in records] == [True, False, True, True, False, False]
    summary = summarize(records)
    # tags: single_object 1/2, counting 1/1, colors 1/3 → (0.5 + 1 + 1/3) / 3
    assert summary.headline == pytest.approx((0.5 + 1 + 1 / 3) / 3, abs=1e-12)
    assert summary.pct_correct_prompts == 1.0


def test_decide_accepts_prefiltered_boxes() -> None:
    kept = filter_boxes({"dog": [box(0)]}, "single_object")
    assert decide(kept, {}, SINGLE) == (True, "")
