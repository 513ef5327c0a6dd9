"""Navigating the RunSpec schema by dotted path, and turning Pydantic errors into located one-liners."""

from __future__ import annotations

import difflib
import types
import typing
from typing import Any, Union

from pydantic import BaseModel, ValidationError

from i1lab.errors import SpecError
from i1lab.spec.yamlpos import PathKey


def _model_types(annotation: Any) -> list[type[BaseModel]]:
    """The Pydantic model classes inside an annotation (through Optional/Union/Annotated)."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _model_types(typing.get_args(annotation)[0])
    if origin in (Union, types.UnionType):
        found: list[type[BaseModel]] = []
        for arg in typing.get_args(annotation):
            found.extend(_model_types(arg))
        return found
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return []


def field_names(model: type[BaseModel]) -> list[str]:
    return list(model.model_fields)


def resolve(root: type[BaseModel], dotted: str) -> type[BaseModel] | None:
    """Check that ``dotted`` names a field of ``root``; return the model owning its last segment.

    Raises ``KeyError`` with a did-you-mean message when a segment does not exist.
    """
    model: type[BaseModel] | None = root
    owner: type[BaseModel] | None = None
    parts = dotted.split(".")
    for i, part in enumerate(parts):
        if model is None:
            raise KeyError(f"{'.'.join(parts[:i])} has no sub-fields, so {dotted!r} does not exist")
        if part not in model.model_fields:
            raise KeyError(f"unknown field {part!r}{did_you_mean(part, field_names(model))}")
        owner = model
        inner = _model_types(model.model_fields[part].annotation)
        model = inner[0] if len(inner) == 1 else None
    return owner


def did_you_mean(word: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else f"; expected one of: {', '.join(choices)}"


def _owner_at(root: type[BaseModel], loc: tuple[Any, ...]) -> type[BaseModel] | None:
    model: type[BaseModel] | None = root
    for part in loc:
        if model is None:
            return None
        if isinstance(part, int) or part not in model.model_fields:
            continue  # list index or union tag: stay on the same model
        inner = _model_types(model.model_fields[part].annotation)
        model = inner[0] if inner else None
    return model


def located_error(
    exc: ValidationError,
    root: type[BaseModel],
    locate: typing.Callable[[PathKey], Any],
    prefix: PathKey = (),
) -> SpecError:
    """The first error of ``exc`` as a :class:`SpecError` pointing at the file position of its key."""
    err = exc.errors()[0]
    loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and ("[" in p or p.startswith("function-"))))
    key = ".".join(str(p) for p in loc)
    message = str(err["msg"])
    if message.startswith("Value error, "):
        message = message[len("Value error, ") :]
    if err["type"] == "extra_forbidden" and loc:
        owner = _owner_at(root, loc[:-1])
        if owner is not None:
            message = f"unknown key{did_you_mean(str(loc[-1]), field_names(owner))}"
    elif err["type"] not in ("missing",) and "input" in err and not isinstance(err["input"], dict | list):
        message = f"{message} (got {err['input']!r})"
    return SpecError(message, key=key, where=locate((*prefix, *loc)))
