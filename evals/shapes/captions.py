"""Training captions for scenes: "short" (exactly the benchmark prompt grammar) and "long".

Short captions are produced by building GenEval clauses from the scene and writing them with the
benchmark's own templates (`phrasing.sentence`), so `prompts.parse_prompt` reads them back into
clauses the scene satisfies. The rng decides whether colours are named (the single_object,
two_object, counting and position prompts of docs/benchmarks.md §1.1 name none) and whether a pair is
described with "and" or with a relation.
"""

from __future__ import annotations

from typing import Final, Literal

import numpy as np

from evals.shapes.geometry import RELATION_RATIO, position_ratios
from evals.shapes.metadata import RELATIONS, Clause, clause
from evals.shapes.objects import Obj, Scene
from evals.shapes.palette import BACKGROUND_NAME, PLURALS
from evals.shapes.phrasing import NUMBER_WORDS, sentence

CaptionStyle = Literal["short", "long"]

RELATION_MARGIN: Final = 0.15
"""A relation is named in a caption only when its ratio clears 0.5 by this much (fractional boxes),
so pixel rounding at 16 px cannot flip it."""

_RELATION_WORDS: Final = {
    "left of": "to the left of",
    "right of": "to the right of",
    "above": "above",
    "below": "below",
}


def shape_groups(scene: Scene) -> list[tuple[str, list[Obj]]]:
    """Objects grouped by shape, groups in order of first appearance."""
    groups: dict[str, list[Obj]] = {}
    for obj in scene.objects:
        groups.setdefault(obj.shape, []).append(obj)
    return list(groups.items())


def group_color(objs: list[Obj]) -> str | None:
    """The colour shared by all objects, or None when they differ."""
    colors = {obj.color for obj in objs}
    return colors.pop() if len(colors) == 1 else None


def clear_relations(subject: Obj, target: Obj) -> tuple[str, ...]:
    """Relations of `subject` to `target` (GenEval's test, §1.3.5) that hold with `RELATION_MARGIN`."""
    ratios = position_ratios(subject.extent, target.extent)
    if ratios is None:
        return ()
    dx, dy = ratios
    bound = RELATION_RATIO + RELATION_MARGIN
    held = (dx < -bound, dx > bound, dy < -bound, dy > bound)
    return tuple(rel for rel, ok in zip(RELATIONS, held, strict=True) if ok)


def short_clauses(scene: Scene, rng: np.random.Generator) -> list[Clause]:
    """The include clauses a short caption states (one or two shape groups)."""
    groups = shape_groups(scene)
    if not 1 <= len(groups) <= 2:
        raise ValueError(f"short captions describe one or two shape groups, got {len(groups)}")
    with_color = bool(rng.random() < 0.5)

    def make(shape: str, objs: list[Obj], position: tuple[str, int] | None = None) -> Clause:
        color = group_color(objs) if with_color else None
        return clause(shape, len(objs), color, position)

    if len(groups) == 1:
        return [make(*groups[0])]
    singles = all(len(objs) == 1 for _, objs in groups)
    if singles and rng.random() < 0.5:
        subject_index = int(rng.integers(2))
        (s_shape, s_objs), (t_shape, t_objs) = groups[subject_index], groups[1 - subject_index]
        relations = clear_relations(s_objs[0], t_objs[0])
        if relations:
            relation = relations[int(rng.integers(len(relations)))]
            return [make(t_shape, t_objs), make(s_shape, s_objs, (relation, 0))]
    first = int(rng.integers(2))
    return [make(*groups[first]), make(*groups[1 - first])]


def size_word(obj: Obj) -> str:
    if obj.size < 0.3:
        return "small"
    return "medium-sized" if obj.size < 0.37 else "large"


def where(obj: Obj) -> str:
    """Position in the frame, e.g. "in the top-left corner of the frame"."""
    col = 0 if obj.cx < 0.4 else (2 if obj.cx > 0.6 else 1)
    row = 0 if obj.cy < 0.4 else (2 if obj.cy > 0.6 else 1)
    table = (
        ("in the top-left corner", "at the top", "in the top-right corner"),
        ("on the left side", "in the centre", "on the right side"),
        ("in the bottom-left corner", "at the bottom", "in the bottom-right corner"),
    )
    return f"{table[row][col]} of the frame"


def _describe(obj: Obj) -> str:
    return f"a {size_word(obj)} {obj.color} {obj.shape} {where(obj)}"


def long_caption(scene: Scene, rng: np.random.Generator) -> str:
    """A wordier description of the same content: sizes, places in the frame, the background."""
    background = f"a plain {BACKGROUND_NAME} background"
    groups = shape_groups(scene)
    if not scene.objects:
        return f"An empty picture: just {background}."
    if len(groups) == 1 and len(groups[0][1]) > 1:
        shape, objs = groups[0]
        color = group_color(objs)
        head = f"{NUMBER_WORDS[len(objs)].capitalize()} {color + ' ' if color else ''}{PLURALS[shape]}"
        parts = [f"a {size_word(o)}{'' if color else ' ' + o.color} one {where(o)}" for o in objs]
        lead = ("{} on {}: {}.", "{} against {}, {}.")[int(rng.integers(2))]
        return lead.format(head, background, "; ".join(parts))
    described = [_describe(obj) for obj in scene.objects]
    body = described[0] if len(described) == 1 else ", ".join(described[:-1]) + " and " + described[-1]
    templates = ("{} on {}.", "This picture shows {} against {}.", "On {}: {}.")
    pick = int(rng.integers(len(templates)))
    text = templates[pick].format(background, body) if pick == 2 else templates[pick].format(body, background)
    text = text[0].upper() + text[1:]
    if len(scene.objects) == 2 and len(groups) == 2:
        a, b = scene.objects
        relations = clear_relations(a, b)
        if relations:
            text += f" The {a.shape} is {_RELATION_WORDS[relations[0]]} the {b.shape}."
    return text


def caption(scene: Scene, style: CaptionStyle, rng: np.random.Generator) -> str:
    """A caption of `scene`: "short" in benchmark-prompt form, or "long"."""
    if style == "short":
        return sentence(short_clauses(scene, rng))
    if style == "long":
        return long_caption(scene, rng)
    raise ValueError(f"unknown caption style {style!r}")
