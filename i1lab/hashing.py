"""Canonical content hashes of runs.

A run is identified by what determines its result: the fully resolved spec with every default written
out, minus fields marked non-semantic (names, labels, evaluation bookkeeping, resources). Key order,
YAML formatting and where the spec file lives cannot change the hash; any semantic field does.
"""

from __future__ import annotations

import functools
import hashlib
import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel

HASH_VERSION = "1"


#: model class -> its semantic field names, each with its default when the field is left out of the hash
#: at that default (``json_schema_extra={"omit_default": True}``: a knob added later does not change the
#: identity of runs that leave it at its default)
_FIELDS: dict[type[BaseModel], tuple[tuple[str, Any, bool], ...]] = {}


def _semantic_fields(cls: type[BaseModel]) -> tuple[tuple[str, Any, bool], ...]:
    names = _FIELDS.get(cls)
    if names is None:
        fields = []
        for name, info in cls.model_fields.items():
            extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
            if extra.get("semantic") is False:
                continue
            fields.append((name, info.default, bool(extra.get("omit_default"))))
        names = _FIELDS[cls] = tuple(fields)
    return names


def _semantic(model: BaseModel) -> dict[str, Any]:
    out = {}
    for name, default, omit in _semantic_fields(type(model)):
        value = getattr(model, name)
        if not (omit and value == default):
            out[name] = _value(value)
    return out


def _value(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return _semantic(value)
    if isinstance(value, list | tuple):
        return [_value(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _value(v) for k, v in value.items()}
    if isinstance(value, float) and value.is_integer():
        return value  # json writes 1.0, never 1: ints and floats stay distinct by field type
    return value


def semantic_view(model: BaseModel) -> dict[str, Any]:
    """The nested dict of semantic fields of a spec model (defaults included)."""
    return _semantic(model)


def canonical_json(data: Any) -> str:
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)


def _content(view: dict[str, Any]) -> str:
    payload = HASH_VERSION + ":" + canonical_json(view)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def _training(view: dict[str, Any]) -> str:
    payload = HASH_VERSION + ":train:" + canonical_json({k: view[k] for k in TRAINING_SECTIONS if k in view})
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def content_hash(model: BaseModel) -> str:
    """SHA-256 (hex) of the canonical JSON of the semantic view, prefixed by the hash scheme version."""
    return _content(semantic_view(model))


TRAINING_SECTIONS = ("model", "diffusion", "data", "train")


def training_hash(model: BaseModel) -> str:
    """Hash of the sections that decide the trained weights (not sampling): runs that differ only in
    how they sample share one training, i.e. one work directory and one set of checkpoints."""
    return _training(semantic_view(model))


def run_hashes(model: BaseModel) -> tuple[str, str]:
    """``(content_hash, training_hash)`` of a spec, from one semantic view."""
    view = semantic_view(model)
    return _content(view), _training(view)


#: Files up to this size are hashed whole by `fingerprint_folder`; larger ones by size, head and tail.
WHOLE_FILE = 16 << 20
EDGE = 1 << 20


@functools.cache
def _folder_digest(path: str, stats: tuple[tuple[str, int, float], ...]) -> str:
    h = hashlib.sha256()
    for rel, size, _ in stats:
        h.update(f"{rel}\0{size}\0".encode())
        with (Path(path) / rel).open("rb") as fh:
            if size <= WHOLE_FILE:
                h.update(fh.read())
            else:
                h.update(fh.read(EDGE))
                fh.seek(size - EDGE)
                h.update(fh.read(EDGE))
    return h.hexdigest()[:16]


def fingerprint_folder(path: Path) -> str:
    """A model folder's fingerprint (16 hex digits): every file's name and size, the bytes of files up to
    16 MiB and the first and last MiB of larger ones; cached while no file's size or time changes."""
    files = sorted(p for p in Path(path).rglob("*") if p.is_file())
    stats = tuple((str(p.relative_to(path)), p.stat().st_size, p.stat().st_mtime) for p in files)
    return _folder_digest(str(path), stats)
