"""YAML loading that remembers where every key and value came from.

Study files are merged from several documents (``extends:`` chains, profiles, axis values), so each
value carries a :class:`~i1lab.errors.Location`. Errors found later by Pydantic are mapped back to the
file, line and column of the key that caused them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from i1lab.errors import Location, SpecError

PathKey = tuple[str | int, ...]


@dataclass
class Doc:
    """A parsed YAML document: plain data plus the source location of every path in it."""

    data: Any
    where: dict[PathKey, Location] = field(default_factory=dict)
    file: str = "<string>"

    def locate(self, path: PathKey) -> Location | None:
        return locate(self.where, path)


def locate(where: dict[PathKey, Location], path: PathKey) -> Location | None:
    """The location of ``path`` or of its deepest ancestor that has one."""
    for n in range(len(path), -1, -1):
        loc = where.get(tuple(path[:n]))
        if loc is not None:
            return loc
    return None


def _loc(node: yaml.Node, file: str) -> Location:
    return Location(file, node.start_mark.line + 1, node.start_mark.column + 1)


def _build(
    node: yaml.Node, loader: yaml.SafeLoader, file: str, path: PathKey, where: dict[PathKey, Location]
) -> Any:
    if isinstance(node, yaml.MappingNode):
        out: dict[str, Any] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                raise SpecError("mapping keys must be plain strings", where=_loc(key_node, file))
            key = str(loader.construct_object(key_node))
            if key == "<<":
                raise SpecError(
                    "YAML merge keys (<<) are not supported; use extends:", where=_loc(key_node, file)
                )
            if key in out:
                raise SpecError(
                    "duplicate key", key=".".join(map(str, (*path, key))), where=_loc(key_node, file)
                )
            where[(*path, key)] = _loc(key_node, file)
            out[key] = _build(value_node, loader, file, (*path, key), where)
        return out
    if isinstance(node, yaml.SequenceNode):
        items = []
        for i, item in enumerate(node.value):
            where[(*path, i)] = _loc(item, file)
            items.append(_build(item, loader, file, (*path, i), where))
        return items
    return loader.construct_object(node, deep=True)


def parse(text: str, file: str = "<string>") -> Doc:
    """Parse YAML text into a :class:`Doc`; syntax errors become one-line :class:`SpecError`."""
    try:
        loader = yaml.SafeLoader(text)
    except yaml.reader.ReaderError as exc:
        before = text[: exc.position]
        at = Location(file, before.count("\n") + 1, len(before) - (before.rfind("\n") + 1) + 1)
        raise SpecError(f"invalid YAML: {exc.reason} (character #x{exc.character:04x})", where=at) from None
    try:
        node = loader.get_single_node()
        where: dict[PathKey, Location] = {}
        if node is None:
            return Doc({}, where, file)
        where[()] = _loc(node, file)
        data = _build(node, loader, file, (), where)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        loc = Location(file, mark.line + 1, mark.column + 1) if mark else None
        problem = exc.problem or exc.context or "invalid YAML"
        raise SpecError(f"invalid YAML: {problem}", where=loc) from None
    except yaml.YAMLError as exc:
        raise SpecError(f"invalid YAML: {exc}", where=Location(file, 1, 1)) from None
    finally:
        loader.dispose()
    return Doc(data, where, file)


def load(path: Path) -> Doc:
    """Read and parse a YAML file."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError(f"file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError(f"cannot read {path}: {exc}") from None
    return parse(text, str(path))
