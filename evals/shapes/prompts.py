"""The benchmark prompt set, GenEval-shaped (docs/benchmarks.md §1.1), its JSONL file, a prompt parser,
and the "perfect generator" `scene_for_prompt`.

With three shapes some tags have few distinct prompts; like GenEval the set has no duplicates, so a
tag holds ``min(n_per_tag, available)`` prompts: single_object 3, two_object 6, counting 9,
colors 30, position 24, color_attr 540 available. Prompts are chosen per tag with a seeded rng and
listed in canonical order, tags in GenEval's file order.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from evals.shapes.layout import Orientation, Placement, place_group, place_pair
from evals.shapes.metadata import (
    RELATIONS,
    TAGS,
    Clause,
    ExcludeClause,
    PromptMeta,
    clause,
    make_meta,
    normalize_meta,
)
from evals.shapes.objects import Obj, Scene
from evals.shapes.palette import COLORS, SHAPES
from evals.shapes.phrasing import parse_sentence, sentence
from evals.shapes.scene import random_color

__all__ = [
    "COUNTS",
    "candidates",
    "counting_exclude",
    "infer_tag",
    "load_metadata_jsonl",
    "parse_prompt",
    "prompts",
    "scene_for_prompt",
    "write_metadata_jsonl",
]

COUNTS = (2, 3, 4)
"""GenEval's counting prompts use N ∈ {2, 3, 4} (§1.1)."""


def counting_exclude(item: Clause) -> list[ExcludeClause]:
    """The exclude clause GenEval pairs with a count-N include: same class, count N + 1."""
    return [{"class": item["class"], "count": item["count"] + 1}]


def _pairs() -> list[tuple[str, str]]:
    return list(itertools.permutations(SHAPES, 2))


def candidates(tag: str) -> list[list[Clause]]:
    """Every distinct include list of a tag, in canonical order."""
    if tag == "single_object":
        return [[clause(s, 1)] for s in SHAPES]
    if tag == "two_object":
        return [[clause(a, 1), clause(b, 1)] for a, b in _pairs()]
    if tag == "counting":
        return [[clause(s, n)] for s in SHAPES for n in COUNTS]
    if tag == "colors":
        return [[clause(s, 1, c)] for s in SHAPES for c in COLORS]
    if tag == "position":
        return [[clause(b, 1), clause(a, 1, position=(r, 0))] for a, b in _pairs() for r in RELATIONS]
    if tag == "color_attr":
        colour_pairs = list(itertools.permutations(COLORS, 2))
        return [[clause(a, 1, ca), clause(b, 1, cb)] for a, b in _pairs() for ca, cb in colour_pairs]
    raise ValueError(f"unknown tag {tag!r}")


def _meta(tag: str, include: list[Clause]) -> PromptMeta:
    exclude = counting_exclude(include[0]) if tag == "counting" else None
    return make_meta(tag, include, sentence(include), exclude)


def prompts(n_per_tag: int = 8, seed: int = 0) -> list[PromptMeta]:
    """The fixed prompt set: up to `n_per_tag` distinct prompts for each of the six tags."""
    if n_per_tag < 1:
        raise ValueError("n_per_tag must be positive")
    out: list[PromptMeta] = []
    for tag_index, tag in enumerate(TAGS):
        pool = candidates(tag)
        chosen = list(range(len(pool)))
        if n_per_tag < len(pool):
            rng = np.random.default_rng([seed, tag_index])
            chosen = sorted(int(i) for i in rng.choice(len(pool), size=n_per_tag, replace=False))
        out.extend(_meta(tag, pool[i]) for i in chosen)
    return out


def infer_tag(include: list[Clause]) -> str:
    """The GenEval tag whose structure (§1.1) an include list has."""
    if len(include) == 1:
        if include[0]["count"] > 1:
            return "counting"
        return "colors" if "color" in include[0] else "single_object"
    if any("position" in item for item in include):
        return "position"
    return "color_attr" if all("color" in item for item in include) else "two_object"


def parse_prompt(text: str) -> PromptMeta:
    """Parse a prompt (or short caption) back into a metadata line, tag and exclude included."""
    include = parse_sentence(text)
    return _meta(infer_tag(include), include)


def write_metadata_jsonl(path: str | Path, metas: Sequence[PromptMeta] | None = None) -> None:
    """Write one JSON line per prompt (default: `prompts()`), like `evaluation_metadata.jsonl`."""
    rows = prompts() if metas is None else metas
    with Path(path).open("w", encoding="utf-8") as fh:
        fh.writelines(json.dumps(meta) + "\n" for meta in rows)


def load_metadata_jsonl(path: str | Path) -> list[PromptMeta]:
    """Read a metadata JSONL file (blank lines skipped); positions come back as tuples."""
    with Path(path).open(encoding="utf-8") as fh:
        return [normalize_meta(json.loads(line)) for line in fh if line.strip()]


def _pair_slots(rng: np.random.Generator, include: list[Clause]) -> list[Placement]:
    """Slots for a two-clause prompt, in include order; a position clause gets its relation."""
    subject = include[1]
    if "position" in subject:
        relation = subject["position"][0]
        if relation not in RELATIONS:
            raise ValueError(f"unknown relation {relation!r}")
        orientation: Orientation = "horizontal" if relation in ("left of", "right of") else "vertical"
        first, second = place_pair(rng, orientation)
        subject_first = relation in ("left of", "above")
        return [second, first] if subject_first else [first, second]
    kinds: tuple[Orientation, ...] = ("horizontal", "vertical", "diagonal", "antidiagonal")
    first, second = place_pair(rng, kinds[int(rng.integers(len(kinds)))])
    return [first, second] if rng.random() < 0.5 else [second, first]


def scene_for_prompt(meta: PromptMeta, rng: np.random.Generator) -> Scene:
    """A scene that satisfies `meta` (the perfect generator): exactly the included objects, uncoloured
    clauses painted a random colour (one colour per clause), no distractors.

    Supports at most four objects, and positions only in two single-object clauses.
    """
    include = meta["include"]
    if len(include) == 2 and all(item["count"] == 1 for item in include):
        slots = _pair_slots(rng, include)
    else:
        if any("position" in item for item in include):
            raise ValueError("positions are supported between two single objects only")
        slots = place_group(rng, sum(item["count"] for item in include))
    objects: list[Obj] = []
    remaining = iter(slots)
    for item in include:
        color = item.get("color") or random_color(rng)
        objects.extend(Obj(item["class"], color, *next(remaining)) for _ in range(item["count"]))
    scene = Scene(tuple(objects))
    for req in meta.get("exclude", []):
        present = sum(obj.shape == req["class"] for obj in scene.objects)
        if present >= req["count"]:
            raise ValueError(
                f"prompt is unsatisfiable: includes {present} {req['class']}, excludes {req['count']}"
            )
    return scene
