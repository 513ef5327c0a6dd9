"""How a run's spec is written for filtering: flattened keys (``run_fields``) with a text and a number
per value, and the columns derived from a resolved spec."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

TEXT_CAP = 512  # characters of a field's text kept for filtering (index entries must stay small)


def flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}``; lists stay values."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten(value, dotted + "."))
        else:
            out[dotted] = value
    return out


_FIELD_TEXTS: dict[Any, str] = {}  # (type, value) -> field_text: a study's runs share most values


def field_text(value: Any) -> str:
    """How a spec value is written in ``run_fields.value_text`` (and how query values are matched)."""
    try:
        key: Any = (
            (list, tuple((type(x), x) for x in value)) if isinstance(value, list) else (type(value), value)
        )
        text = _FIELD_TEXTS.get(key)
    except TypeError:  # not hashable (a list of lists or mappings)
        return _field_text(value)
    if text is None:
        if len(_FIELD_TEXTS) > 100_000:
            _FIELD_TEXTS.clear()
        text = _FIELD_TEXTS[key] = _field_text(value)
    return text


def _field_text(value: Any) -> str:
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, int | float):
        text = json.dumps(value)
    elif isinstance(value, str):
        text = value
    elif value is None:
        text = "null"
    else:
        text = json.dumps(value, sort_keys=True)
    return text[:TEXT_CAP]


FIELD_COLUMNS = ("run_id", "key", "value_text", "value_num")


def field_values(run_id: int, key: str, value: Any) -> tuple[int, str, str, float | None]:
    """A ``run_fields`` row's values, in ``FIELD_COLUMNS`` order."""
    num: float | None = None
    if isinstance(value, bool | int | float):
        num = float(value)
    return (run_id, key, field_text(value), num)


def field_row(run_id: int, key: str, value: Any) -> dict[str, Any]:
    return dict(zip(FIELD_COLUMNS, field_values(run_id, key, value), strict=True))


def chips_of(accelerator: str) -> int | None:
    """``tpu-v6e-64`` -> 64, ``gpu:8`` -> 8, ``cpu`` -> 1; None when unreadable."""
    try:
        if accelerator.startswith("tpu-"):
            return int(accelerator.rsplit("-", 1)[1])
        _, _, n = accelerator.partition(":")
        return int(n or 1)
    except ValueError:
        return None


def run_facts(spec: Mapping[str, Any]) -> dict[str, Any]:
    """Columns derived from a resolved spec: lineage and the accelerator it asks for."""
    data = spec.get("data") if isinstance(spec.get("data"), Mapping) else {}
    resources = spec.get("resources") if isinstance(spec.get("resources"), Mapping) else {}
    assert isinstance(data, Mapping) and isinstance(resources, Mapping)
    resume = data.get("resume_from")
    resolution = data.get("resolution")
    accelerator = resources.get("accelerator")
    return {
        "resumed_from": resume if isinstance(resume, str) else None,
        "resolution": resolution
        if isinstance(resolution, int) and not isinstance(resolution, bool)
        else None,
        "accelerator": accelerator if isinstance(accelerator, str) else None,
        "chips": chips_of(accelerator) if isinstance(accelerator, str) else None,
    }
