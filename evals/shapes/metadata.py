"""GenEval-shaped prompt metadata (docs/benchmarks.md §1.1).

A metadata line is ``{"tag", "include", ["exclude"], "prompt"}`` (GenEval's key order); an include
clause is ``{"class", "count", ["color"], ["position": [relation, index]]}`` and an exclude clause
``{"class", "count"}``. As in GenEval's `evaluation_metadata.jsonl`, "exclude" is present only on
counting lines. In memory a position is a ``(relation, index)`` tuple; JSON writes it as a list.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Final, NotRequired, TypedDict

Clause = TypedDict(
    "Clause",
    {"class": str, "count": int, "color": NotRequired[str], "position": NotRequired[tuple[str, int]]},
)
"""An include clause (the key "class" is a Python keyword, hence the functional syntax)."""

ExcludeClause = TypedDict("ExcludeClause", {"class": str, "count": int})


class PromptMeta(TypedDict):
    """One line of the metadata file."""

    tag: str
    include: list[Clause]
    exclude: NotRequired[list[ExcludeClause]]
    prompt: str


TAGS: Final[tuple[str, ...]] = ("single_object", "two_object", "counting", "colors", "position", "color_attr")
"""GenEval's six tags in file order (§1.1)."""

RELATIONS: Final[tuple[str, ...]] = ("left of", "right of", "above", "below")
"""Relation names, in the order GenEval tests them (§1.3.5)."""


def clause(cls: str, count: int, color: str | None = None, position: tuple[str, int] | None = None) -> Clause:
    """Build an include clause with GenEval's key order."""
    out: Clause = {"class": cls, "count": count}
    if color is not None:
        out["color"] = color
    if position is not None:
        out["position"] = position
    return out


def make_meta(
    tag: str, include: list[Clause], prompt: str, exclude: list[ExcludeClause] | None = None
) -> PromptMeta:
    """Build a metadata line with GenEval's key order (exclude only when non-empty)."""
    if exclude:
        return {"tag": tag, "include": include, "exclude": exclude, "prompt": prompt}
    return {"tag": tag, "include": include, "prompt": prompt}


def meta_to_json(meta: PromptMeta) -> str:
    """`json.dumps` of the line, as GenEval stores it in `results.jsonl["metadata"]` (§1.3)."""
    return json.dumps(meta)


def _int(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{what} must be an integer, got {value!r}")
    return value


def _str(value: Any, what: str) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{what} must be a string, got {value!r}")
    return value


def normalize_meta(raw: Mapping[str, Any]) -> PromptMeta:
    """Validate a decoded JSON line and return it as a `PromptMeta` (positions become tuples)."""
    include: list[Clause] = []
    for item in raw["include"]:
        position = None
        if "position" in item:
            rel, index = item["position"]
            position = (_str(rel, "relation"), _int(index, "position index"))
        color = _str(item["color"], "color") if "color" in item else None
        include.append(clause(_str(item["class"], "class"), _int(item["count"], "count"), color, position))
    exclude: list[ExcludeClause] = [
        {"class": _str(item["class"], "class"), "count": _int(item["count"], "count")}
        for item in raw.get("exclude", [])
    ]
    return make_meta(_str(raw["tag"], "tag"), include, _str(raw["prompt"], "prompt"), exclude)


def meta_from_json(text: str) -> PromptMeta:
    """Inverse of `meta_to_json`."""
    return normalize_meta(json.loads(text))
