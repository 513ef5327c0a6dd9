"""YAML loading that remembers where every key and value came from, within hard bounds.

Study files are merged from several documents (``extends:`` chains, profiles, axis values), so each
value carries a :class:`~i1lab.errors.Location`. Errors found later by Pydantic are mapped back to the
file, line and column of the key that caused them.

Study files are shared and pulled from other repositories, so the loader bounds what YAML can do before
any Python object is built: the composer below counts nodes as the parser's events arrive (an alias
counts as the whole node it names, so a "billion laughs" bomb stops after a few events), tracks depth,
refuses recursive aliases and non-standard tags, and caps scalar sizes; the bytes are checked before
decoding (UTF-8 only). Every violation is one :class:`SpecError` line ``file:line:col: message``. A
study and the files it ``extends`` share one :class:`Budget`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from yaml.composer import Composer
from yaml.constructor import SafeConstructor
from yaml.events import AliasEvent, MappingStartEvent, ScalarEvent, SequenceStartEvent, StreamEndEvent
from yaml.resolver import Resolver

from i1lab.errors import Location, SpecError

try:  # libyaml's parser emits the events; the bounded composer below stays in Python
    from yaml._yaml import CParser as _Parser

    _FAST = True
except ImportError:  # pragma: no cover - PyYAML built without libyaml
    _FAST = False

PathKey = tuple[str | int, ...]

MAX_DOCUMENT_BYTES = 1024 * 1024
"""Bytes of a study file and the files it extends, together."""
MAX_DOCUMENTS = 1
"""YAML documents per file."""
MAX_DEPTH = 64
"""Nesting of lists and mappings (aliases count at the depth they are used)."""
MAX_NODES = 50_000
"""Scalars, lists and mappings of a study and the files it extends, an alias counting as all it names."""
MAX_SCALAR_CHARS = 64 * 1024
"""Characters of one scalar (a key or a value)."""
MAX_INT_CHARS = 100
"""Characters of an integer as written, checked before it is parsed."""
MAX_INT = 2**63
"""Integers must be strictly between -MAX_INT and MAX_INT."""
MAX_EXTENDS_DEPTH = 16
"""Files in an ``extends:`` chain below the study itself."""
TOO_BIG = f"more than {MAX_DOCUMENT_BYTES} bytes of YAML in the study file and the files it extends"
ALLOWED_TAGS = frozenset(
    f"tag:yaml.org,2002:{name}" for name in ("str", "int", "float", "bool", "null", "seq", "map")
)
"""Explicit tags a study file may write (``!!str`` and the like); any other tag is refused."""


@dataclass
class Budget:
    """What a study and its ``extends`` chain may still use."""

    bytes: int = MAX_DOCUMENT_BYTES
    nodes: int = MAX_NODES


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


def _at(mark: Any, file: str) -> Location:
    return Location(file, mark.line + 1, mark.column + 1)


def _loc(node: yaml.Node, file: str) -> Location:
    return _at(node.start_mark, file)


class _BoundedComposer(Composer):
    """PyYAML's composer, refusing what a study file has no use for as each event arrives."""

    file: str
    budget: Budget
    # the parser's, further along the method order
    check_event: Callable[..., bool]
    get_event: Callable[[], Any]
    peek_event: Callable[[], Any]

    def _bound_init(self, file: str, budget: Budget) -> None:
        Composer.__init__(self)
        self.file = file
        self.budget = budget
        self._depth = 0
        self._deepest = 0
        self._sizes: dict[int, tuple[int, int]] = {}  # id(anchored node) -> (nodes, height) once closed

    def _count(self, n: int, mark: Any) -> None:
        self.budget.nodes -= n
        if self.budget.nodes < 0:
            raise SpecError(
                f"too many YAML nodes (more than {MAX_NODES}, aliases counted as what they name)",
                where=_at(mark, self.file),
            )

    def _reach(self, depth: int, mark: Any) -> None:
        if depth > MAX_DEPTH:
            raise SpecError(f"nested deeper than {MAX_DEPTH} levels", where=_at(mark, self.file))
        self._deepest = max(self._deepest, depth)

    def get_single_node(self) -> Any:
        self.get_event()  # STREAM-START
        document = None
        if not self.check_event(StreamEndEvent):
            document = self.compose_document()
        if not self.check_event(StreamEndEvent):
            event = self.get_event()
            raise SpecError(
                f"a study file holds {MAX_DOCUMENTS} YAML document; found another (remove the '---')",
                where=_at(event.start_mark, self.file),
            )
        self.get_event()  # STREAM-END
        return document

    def compose_node(self, parent: Any, index: Any) -> Any:
        event = self.peek_event()
        if isinstance(event, AliasEvent):
            target = self.anchors.get(event.anchor)
            if target is not None:
                size = self._sizes.get(id(target))
                if size is None:
                    raise SpecError(
                        f"recursive alias *{event.anchor}: it names a node that contains it",
                        where=_at(event.start_mark, self.file),
                    )
                self._count(size[0], event.start_mark)
                self._reach(self._depth + size[1], event.start_mark)
            return super().compose_node(parent, index)
        tag = getattr(event, "tag", None)
        if tag is not None and tag != "!" and tag not in ALLOWED_TAGS:
            raise SpecError(
                f"YAML tag {tag!r} is not allowed (only str, int, float, bool, null, seq, map)",
                where=_at(event.start_mark, self.file),
            )
        if isinstance(event, ScalarEvent) and len(event.value) > MAX_SCALAR_CHARS:
            raise SpecError(
                f"a scalar of {len(event.value)} characters (at most {MAX_SCALAR_CHARS})",
                where=_at(event.start_mark, self.file),
            )
        self._count(1, event.start_mark)
        nested = isinstance(event, SequenceStartEvent | MappingStartEvent)
        if not nested:
            node = super().compose_node(parent, index)
            if event.anchor is not None:
                self._sizes[id(node)] = (1, 0)
            return node
        self._depth += 1
        self._reach(self._depth, event.start_mark)
        before, deepest = self.budget.nodes, self._deepest
        self._deepest = self._depth
        try:
            node = super().compose_node(parent, index)
        finally:
            height = self._deepest - self._depth + 1
            self._deepest = max(deepest, self._deepest)
            self._depth -= 1
        if event.anchor is not None:
            self._sizes[id(node)] = (before - self.budget.nodes + 1, height)
        return node


def _construct_int(loader: Any, node: yaml.ScalarNode) -> int:
    file = getattr(loader, "file", "<string>")
    if len(node.value) > MAX_INT_CHARS:
        raise SpecError(
            f"an integer of {len(node.value)} characters (at most {MAX_INT_CHARS})", where=_loc(node, file)
        )
    value: int = SafeConstructor.construct_yaml_int(loader, node)
    if not -MAX_INT < value < MAX_INT:
        raise SpecError("an integer out of range (|n| must be below 2**63)", where=_loc(node, file))
    return value


if _FAST:

    class _Loader(_BoundedComposer, _Parser, SafeConstructor, Resolver):
        def __init__(self, text: str, file: str, budget: Budget) -> None:
            _Parser.__init__(self, text)
            SafeConstructor.__init__(self)
            Resolver.__init__(self)
            self._bound_init(file, budget)

else:  # pragma: no cover

    class _Loader(  # type: ignore[no-redef]
        yaml.reader.Reader,
        yaml.scanner.Scanner,
        yaml.parser.Parser,
        _BoundedComposer,
        SafeConstructor,
        Resolver,
    ):
        def __init__(self, text: str, file: str, budget: Budget) -> None:
            yaml.reader.Reader.__init__(self, text)
            yaml.scanner.Scanner.__init__(self)
            yaml.parser.Parser.__init__(self)
            SafeConstructor.__init__(self)
            Resolver.__init__(self)
            self._bound_init(file, budget)


_Loader.add_constructor("tag:yaml.org,2002:int", _construct_int)


def _build(node: yaml.Node, loader: Any, file: str, path: PathKey, where: dict[PathKey, Location]) -> Any:
    if isinstance(node, yaml.MappingNode):
        out: dict[str, Any] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                raise SpecError("mapping keys must be plain strings", where=_loc(key_node, file))
            key = (
                "<<" if key_node.tag == "tag:yaml.org,2002:merge" else str(loader.construct_object(key_node))
            )
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


def _offset_location(data: bytes, offset: int, file: str) -> Location:
    """The 1-based line and column of a byte offset into UTF-8 (or nearly UTF-8) bytes."""
    before = data[:offset]
    line_start = before.rfind(b"\n") + 1
    col = len(before[line_start:].decode("utf-8", errors="replace")) + 1
    return Location(file, before.count(b"\n") + 1, col)


def decode(data: bytes, file: str = "<string>") -> str:
    """UTF-8 bytes (a leading BOM allowed) as text, or a one-line :class:`SpecError` naming the bad byte."""
    if data[:2] in (b"\xff\xfe", b"\xfe\xff"):
        raise SpecError("the file is UTF-16: save it as UTF-8", where=Location(file, 1, 1))
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        bad = data[exc.start]
        raise SpecError(
            f"not UTF-8: byte 0x{bad:02x} at offset {exc.start} ({exc.reason})",
            where=_offset_location(data, exc.start, file),
        ) from None


def parse(text: str, file: str = "<string>", budget: Budget | None = None) -> Doc:
    """Parse YAML text into a :class:`Doc`; syntax errors and exceeded bounds become one-line
    :class:`SpecError`."""
    budget = budget or Budget()
    try:
        encoded = text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise SpecError(
            f"invalid text: {exc.reason} at character {exc.start}", where=Location(file, 1, 1)
        ) from None
    if len(encoded) > budget.bytes:
        raise SpecError(TOO_BIG, where=Location(file, 1, 1))
    budget.bytes -= len(encoded)
    loader = None
    try:
        loader = _Loader(text, file, budget)
        node = loader.get_single_node()
        where: dict[PathKey, Location] = {}
        if node is None:
            return Doc({}, where, file)
        where[()] = _loc(node, file)
        data = _build(node, loader, file, (), where)
    except yaml.reader.ReaderError as exc:
        at = (
            _offset_location(encoded, exc.position, file)
            if _FAST
            else _char_location(text, exc.position, file)
        )
        character = exc.character if isinstance(exc.character, int) else ord(str(exc.character)[:1] or "\0")
        raise SpecError(f"invalid YAML: {exc.reason} (character #x{character:04x})", where=at) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        loc = _at(mark, file) if mark else None
        problem = exc.problem or exc.context or "invalid YAML"
        raise SpecError(f"invalid YAML: {problem}", where=loc) from None
    except yaml.YAMLError as exc:
        message = " ".join(str(exc).split())
        raise SpecError(f"invalid YAML: {message}", where=Location(file, 1, 1)) from None
    except RecursionError:  # bounded depth makes this unreachable; kept as a last line of defence
        raise SpecError(f"nested deeper than {MAX_DEPTH} levels", where=Location(file, 1, 1)) from None
    finally:
        if loader is not None:
            loader.dispose()
    return Doc(data, where, file)


def _char_location(text: str, position: int, file: str) -> Location:
    before = text[:position]
    return Location(file, before.count("\n") + 1, len(before) - (before.rfind("\n") + 1) + 1)


def load(path: Path, budget: Budget | None = None) -> Doc:
    """Read and parse a YAML file, reading no more bytes than the budget allows."""
    budget = budget or Budget()
    try:
        with path.open("rb") as f:
            data = f.read(budget.bytes + 1)
    except FileNotFoundError:
        raise SpecError(f"file not found: {path}") from None
    except OSError as exc:
        raise SpecError(f"cannot read {path}: {exc.strerror or exc}") from None
    if len(data) > budget.bytes:
        raise SpecError(TOO_BIG, where=Location(str(path), 1, 1))
    return parse(decode(data, str(path)), str(path), budget)
