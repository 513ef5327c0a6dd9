"""Per-image decision with GenEval's rules (docs/benchmarks.md §1.3 steps 2, 4 and 5).

`judge` = `detect` (the pixel detector) → `filter_detections` (step 2) → `evaluate` (steps 4–5).
`filter_detections` and `evaluate` are pure and accept hand-made detections, so the decision logic can
be tested without images. Failure reasons use GenEval's wording.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

import numpy as np
import numpy.typing as npt

from evals.shapes.detect import Detection, detect
from evals.shapes.geometry import relative_position
from evals.shapes.metadata import PromptMeta
from evals.shapes.palette import COLOR_NAMES

SCORE_THRESHOLD: Final = 0.3
COUNTING_SCORE_THRESHOLD: Final = 0.9
"""Used for every class of a counting image, excluded class included (§1.5)."""
MAX_OBJECTS: Final = 16


@dataclass(frozen=True)
class Judgement:
    """Outcome for one image.

    `reason` is GenEval's newline-joined failure reasons ("" when correct); `details` maps class →
    kept boxes ``[x1, y1, x2, y2, score]`` exactly like GenEval's `details` column; `colors` gives the
    colour of each kept box (the judgement §6 recommends storing).
    """

    correct: bool
    reason: str
    details: dict[str, list[list[float]]] = field(default_factory=dict)
    colors: dict[str, list[str]] = field(default_factory=dict)


def score_threshold(tag: str) -> float:
    """0.3, or 0.9 when the tag is "counting" (§1.3 step 2)."""
    return COUNTING_SCORE_THRESHOLD if tag == "counting" else SCORE_THRESHOLD


def filter_detections(detections: Mapping[str, Sequence[Detection]], tag: str) -> dict[str, list[Detection]]:
    """§1.3 step 2: keep scores strictly above the threshold (compared in float32), sort by score
    descending, keep at most 16 per class, no NMS. Classes left empty are dropped, as in GenEval.

    GenEval's tie order is whatever `np.argsort` gives; here ties keep their input order.
    """
    threshold = np.float32(score_threshold(tag))
    kept: dict[str, list[Detection]] = {}
    for cls, dets in detections.items():
        above = [det for det in dets if np.float32(det.score) > threshold]
        above.sort(key=lambda det: -np.float32(det.score))
        if above:
            kept[cls] = above[:MAX_OBJECTS]
    return kept


def _color_reason(color: str, cls: str, count: int, colors: list[str]) -> str:
    breakdown = ", ".join(f"{colors.count(c)} {c}" for c in COLOR_NAMES if c in colors)
    return f"expected {color} {cls}>={count}, found {colors.count(color)} {color}; and {breakdown}"


def evaluate(kept: Mapping[str, Sequence[Detection]], meta: PromptMeta) -> tuple[bool, str]:
    """§1.3 steps 4–5 on filtered detections: includes AND-ed, excludes OR-ed, colour and position
    judged on the top-`count` detections only. Returns ``(correct, reason)``."""
    correct = True
    reasons: list[str] = []
    groups: list[list[Detection] | None] = []
    for req in meta["include"]:
        cls, count = req["class"], req["count"]
        found = list(kept.get(cls, []))[:count]
        matched = True
        if len(found) < count:
            matched = False
            reasons.append(f"expected {cls}>={count}, found {len(found)}")
        else:
            if "color" in req:
                colors = [det.color for det in found]
                if colors.count(req["color"]) < count:
                    matched = False
                    reasons.append(_color_reason(req["color"], cls, count, colors))
            if "position" in req and matched:
                relation, target_index = req["position"]
                target = groups[target_index]
                if target is None:
                    matched = False
                    reasons.append(f"no target for {cls} to be {relation}")
                else:
                    matched = _check_position(found, target, cls, relation, reasons)
        correct = correct and matched
        groups.append(found if matched else None)
    for banned in meta.get("exclude", []):
        cls = banned["class"]
        present = len(kept.get(cls, []))
        if present >= banned["count"]:
            correct = False
            reasons.append(f"expected {cls}<{banned['count']}, found {present}")
    return correct, "\n".join(reasons)


def _check_position(
    found: list[Detection], target: list[Detection], cls: str, relation: str, reasons: list[str]
) -> bool:
    """Every found object must bear `relation` to every target object; the first miss is reported."""
    for obj in found:
        for other in target:
            held = relative_position(obj.box, other.box)
            if relation not in held:
                reasons.append(f"expected {cls} {relation} target, found {' and '.join(held)} target")
                return False
    return True


def judge_detections(detections: Mapping[str, Sequence[Detection]], meta: PromptMeta) -> Judgement:
    """Steps 2, 4 and 5 on raw detections."""
    kept = filter_detections(detections, meta["tag"])
    correct, reason = evaluate(kept, meta)
    details = {cls: [det.row() for det in dets] for cls, dets in kept.items()}
    colors = {cls: [det.color for det in dets] for cls, dets in kept.items()}
    return Judgement(correct, reason, details, colors)


def judge(image: npt.ArrayLike, meta: PromptMeta) -> Judgement:
    """Judge one RGB image against one metadata line."""
    return judge_detections(detect(image), meta)
