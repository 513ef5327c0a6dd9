"""GenEval's per-image decision from raw detections (docs/benchmarks.md §1.3 steps 2, 4, 5).

Input is the judgement §6 recommends storing: per class, the detector's raw boxes
``[x1, y1, x2, y2, score]`` (any order, any score), and, for classes named by a colour clause, the
colour of each *kept* box in kept order (only the first `count` are ever read). The output is the
official `results.jsonl` row. Reproduced on purpose:

* boxes are kept when ``float32(score) > float32(threshold)``; the threshold is 0.3, or 0.9 for EVERY
  class when the tag is "counting" (the excluded class included);
* kept boxes are ordered with ``np.argsort(scores)[::-1]`` exactly like the official script (so ties
  come out in reverse index order for small arrays) and cut to 16 — no NMS (overlap threshold 1.0);
* colour and position read only the top-`count` boxes of a class; extra boxes never fail an image,
  only exclude clauses do;
* the position test is the official offset formula on float32 boxes (`position_ratios`);
* failure reasons use the official wording; the relations of a position failure are joined in the
  iteration order of a Python set, as the official script does.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from evals.geneval_score import GenEvalRecord
from evals.shapes.geometry import position_ratios
from evals.shapes.palette import COLOR_NAMES

THRESHOLD: Final = 0.3
COUNTING_THRESHOLD: Final = 0.9
MAX_OBJECTS: Final = 16
COLORS: Final = COLOR_NAMES
"""The ten colour names in the official classifier's order (used in colour-failure reasons)."""

Boxes = npt.NDArray[np.float32]


def _boxes(raw: Any) -> Boxes:
    array = np.asarray(raw, dtype=np.float32)
    if array.size == 0:
        return np.zeros((0, 5), dtype=np.float32)
    if array.ndim != 2 or array.shape[1] != 5:
        raise ValueError(f"boxes must be rows [x1, y1, x2, y2, score], got shape {array.shape}")
    return array


def filter_boxes(
    detections: Mapping[str, Any],
    tag: str,
    *,
    classnames: Sequence[str] | None = None,
    threshold: float = THRESHOLD,
    counting_threshold: float = COUNTING_THRESHOLD,
    max_objects: int = MAX_OBJECTS,
) -> dict[str, Boxes]:
    """§1.3 step 2: kept boxes per class (float32 rows, best first); classes left empty are absent.

    Classes are visited in `classnames` order when given (the detector's class order, which is the
    key order of the official `details`), else in the order of `detections`.
    """
    confidence = np.float32(counting_threshold if tag == "counting" else threshold)
    order = list(classnames) if classnames is not None else list(detections)
    kept: dict[str, Boxes] = {}
    for cls in order:
        if cls not in detections:
            continue
        boxes = _boxes(detections[cls])
        ordering = np.argsort(boxes[:, 4])[::-1]
        ordering = ordering[boxes[ordering, 4] > confidence][:max_objects]
        if ordering.size:
            kept[cls] = boxes[ordering]
    return kept


def relations(box_a: Sequence[float], box_b: Sequence[float]) -> set[str]:
    """The relations A bears to B (a set, filled in the official order)."""
    ratios = position_ratios(box_a, box_b)
    found: set[str] = set()
    if ratios is None:
        return found
    dx, dy = ratios
    if dx < -0.5:
        found.add("left of")
    if dx > 0.5:
        found.add("right of")
    if dy < -0.5:
        found.add("above")
    if dy > 0.5:
        found.add("below")
    return found


def _colors_of(colors: Mapping[str, Sequence[str]], cls: str, n: int) -> list[str]:
    got = list(colors.get(cls, []))[:n]
    if len(got) < n:
        raise ValueError(f"colour judgement missing: need {n} colour(s) for {cls!r}, got {len(got)}")
    return got


def decide(
    kept: Mapping[str, Boxes], colors: Mapping[str, Sequence[str]], metadata: Mapping[str, Any]
) -> tuple[bool, str]:
    """§1.3 step 4 on filtered boxes: ``(correct, reason)``."""
    correct = True
    reasons: list[str] = []
    groups: list[Boxes | None] = []
    for req in metadata.get("include", []):
        cls, count = req["class"], req["count"]
        found = kept.get(cls, np.zeros((0, 5), np.float32))[:count]
        matched = True
        if len(found) < count:
            correct = matched = False
            reasons.append(f"expected {cls}>={count}, found {len(found)}")
        else:
            if "color" in req:
                got = _colors_of(colors, cls, len(found))
                want = req["color"]
                if got.count(want) < count:
                    correct = matched = False
                    breakdown = ", ".join(f"{got.count(c)} {c}" for c in COLORS if c in got)
                    reasons.append(
                        f"expected {want} {cls}>={count}, found {got.count(want)} {want}; and {breakdown}"
                    )
            if "position" in req and matched:
                relation, target_index = req["position"]
                target = groups[target_index]
                if target is None:
                    correct = matched = False
                    reasons.append(f"no target for {cls} to be {relation}")
                else:
                    for obj in found:
                        for other in target:
                            held = relations(obj, other)
                            if relation not in held:
                                correct = matched = False
                                reasons.append(
                                    f"expected {cls} {relation} target, found {' and '.join(held)} target"
                                )
                                break
                        if not matched:
                            break
        groups.append(found if matched else None)
    for req in metadata.get("exclude", []):
        cls = req["class"]
        present = len(kept.get(cls, ()))
        if present >= req["count"]:
            correct = False
            reasons.append(f"expected {cls}<{req['count']}, found {present}")
    return correct, "\n".join(reasons)


def details_json(kept: Mapping[str, Boxes]) -> str:
    """The official `details` column: class → kept float32 rows as Python floats."""
    return json.dumps({cls: [row.tolist() for row in boxes] for cls, boxes in kept.items()})


def make_record(
    filename: str,
    metadata: Mapping[str, Any],
    detections: Mapping[str, Any],
    colors: Mapping[str, Sequence[str]] | None = None,
    *,
    classnames: Sequence[str] | None = None,
) -> GenEvalRecord:
    """Steps 2 and 4 on raw detections → one `results.jsonl` row (the official evaluator's dict)."""
    kept = filter_boxes(detections, metadata["tag"], classnames=classnames)
    correct, reason = decide(kept, colors or {}, metadata)
    return {
        "filename": filename,
        "tag": metadata["tag"],
        "prompt": metadata["prompt"],
        "correct": correct,
        "reason": reason,
        "metadata": json.dumps(metadata),
        "details": details_json(kept),
    }
