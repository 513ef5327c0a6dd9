"""Partial specs with provenance: nested dicts whose every path remembers its source location.

Study files are built by stacking layers (a base file, the files it extends, a profile, a grid cell,
an axis value). Each layer may set a whole subtree; the last layer to set a path wins, and errors found
later point at the layer that set the offending value.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

from i1lab.errors import Location, SpecError
from i1lab.spec.yamlpos import PathKey, locate


@dataclass
class Layer:
    data: dict[str, Any] = field(default_factory=dict)
    where: dict[PathKey, Location] = field(default_factory=dict)

    def copy(self) -> Layer:
        return Layer(copy.deepcopy(self.data), dict(self.where))

    def locate(self, path: PathKey) -> Location | None:
        return locate(self.where, path)


def sub_where(where: dict[PathKey, Location], prefix: PathKey) -> dict[PathKey, Location]:
    """The entries of ``where`` below ``prefix``, re-rooted at it."""
    n = len(prefix)
    return {k[n:]: v for k, v in where.items() if k[:n] == prefix}


def _drop_under(where: dict[PathKey, Location], path: PathKey) -> None:
    n = len(path)
    for key in [k for k in where if k[:n] == path and len(k) > n]:
        del where[key]


def split_dotted(data: Any, where: dict[PathKey, Location], path: PathKey = ()) -> Any:
    """Expand ``{"model.size": x}`` into ``{"model": {"size": x}}`` recursively, keeping locations."""
    if not isinstance(data, dict):
        return data
    out: dict[str, Any] = {}
    # the locations below each key, gathered in one pass (one scan per key is quadratic in a wide mapping)
    n = len(path)
    below: dict[Any, dict[PathKey, Location]] = {}
    for k, v in where.items():
        if len(k) > n and k[:n] == path:
            below.setdefault(k[n], {})[k[n + 1 :]] = v
    for key, value in data.items():
        parts = str(key).split(".")
        if any(not p for p in parts):
            raise SpecError("empty segment in dotted key", key=str(key), where=where.get((*path, key)))
        loc = where.get((*path, key))
        inner = below.get(key, {})
        value = split_dotted(value, {(*path, *parts, *k): v for k, v in inner.items()}, (*path, *parts))
        target = out
        for part in parts[:-1]:
            node = target.setdefault(part, {})
            if not isinstance(node, dict):
                raise SpecError("key set twice, as a value and as a mapping", key=str(key), where=loc)
            target = node
        if parts[-1] in target and isinstance(target[parts[-1]], dict) and isinstance(value, dict):
            target[parts[-1]] = merge_dicts(target[parts[-1]], value)
        else:
            target[parts[-1]] = value
        for k, v in inner.items():
            where[(*path, *parts, *k)] = v
        if loc is not None:
            for i in range(1, len(parts) + 1):
                where.setdefault((*path, *parts[:i]), loc)
    return out


def merge_dicts(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge_dicts(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def merge(base: Layer, over: Layer) -> Layer:
    """Deep-merge ``over`` onto ``base``: mappings merge, any other value replaces the subtree."""
    where = dict(base.where)

    def walk(b: Any, o: Any, path: PathKey) -> Any:
        if isinstance(o, dict) and isinstance(b, dict):
            out = dict(b)
            for key, value in o.items():
                out[key] = walk(b.get(key), value, (*path, key))
            return out
        _drop_under(where, path)
        return copy.deepcopy(o)

    data = walk(base.data, over.data, ())
    where.update(over.where)
    return Layer(data, where)


def set_path(layer: Layer, path: tuple[str, ...], value: Any, loc: Location | None) -> None:
    """Replace the subtree at ``path`` by ``value`` (no merging), recording ``loc`` for all of it."""
    node = layer.data
    for part in path[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = {}
            node[part] = child
        node = child
    node[path[-1]] = copy.deepcopy(value)
    _drop_under(layer.where, path)
    if loc is not None:
        layer.where[path] = loc
