"""JSON-lines helpers for per-sample judgement files, and the bounded reads every benchmark output goes
through (`read_text`, `loads`): a file over `MAX_FILE_BYTES`, a line over `MAX_LINE_CHARS`, bytes that
are not UTF-8 or JSON nested deeper than `MAX_JSON_DEPTH` are a one-line ValueError naming the file and
the line, before anything else is read."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

#: Bounds of a benchmark output file (the official ones are a few MB at most).
MAX_FILE_BYTES = 256 * 2**20
MAX_LINE_CHARS = 16 * 2**20
MAX_JSON_DEPTH = 64


class InputFileError(ValueError):
    """A benchmark output that is too large, not UTF-8 or nested too deeply (one line, naming the file)."""


def read_text(path: Path, limit: int = MAX_FILE_BYTES) -> str:
    """The UTF-8 text of ``path``: refused, in one line naming the file (and the line of a bad byte),
    when larger than ``limit`` bytes, not a regular file, or not UTF-8; a line longer than
    `MAX_LINE_CHARS` is refused too."""
    try:
        with Path(path).open("rb") as f:
            info = os.fstat(f.fileno())
            if not (info.st_mode & 0o170000) == 0o100000:
                raise InputFileError(f"{path}: not a regular file")
            if info.st_size > limit:
                raise InputFileError(f"{path}: {info.st_size} bytes, more than the {limit} bytes allowed")
            raw = f.read(limit + 1)
    except OSError as exc:
        raise InputFileError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if len(raw) > limit:
        raise InputFileError(f"{path}: more than the {limit} bytes allowed")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        col = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        raise InputFileError(
            f"{path}:{line}: not UTF-8 (byte 0x{raw[exc.start]:02x} at column {col})"
        ) from None
    start = 0
    number = 1
    while True:  # the longest line, without splitting the text
        end = text.find("\n", start)
        stop = len(text) if end < 0 else end
        if stop - start > MAX_LINE_CHARS:
            raise InputFileError(f"{path}:{number}: a line of more than {MAX_LINE_CHARS} characters")
        if end < 0:
            return text
        start, number = end + 1, number + 1


def json_depth(value: Any) -> int:
    """How deeply a decoded JSON value nests (a scalar: 0), without recursion."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            items: Iterable[Any] = item.values()
        elif isinstance(item, list):
            items = item
        else:
            continue
        depth += 1
        if depth > deepest:
            deepest = depth
        stack.extend((child, depth) for child in items if isinstance(child, dict | list))
    return deepest


def loads(text: str, max_depth: int = MAX_JSON_DEPTH, **kwargs: Any) -> Any:
    """``json.loads`` whose nesting is bounded: deeper than ``max_depth`` (or than the interpreter's
    recursion allows) is a `json.JSONDecodeError` like any other malformed JSON."""
    try:
        value = json.loads(text, **kwargs)
    except RecursionError:
        raise json.JSONDecodeError(f"nested deeper than {max_depth} levels", text[:1], 0) from None
    if isinstance(value, dict | list) and json_depth(value) > max_depth:
        raise json.JSONDecodeError(f"nested deeper than {max_depth} levels", text[:1], 0)
    return value


def parsed(path: Path, parse: Callable[..., T], *args: Any) -> T:
    """``parse(read_text(path), *args)``, its malformed JSON a one-line `InputFileError` naming the file."""
    try:
        return parse(read_text(path), *args)
    except json.JSONDecodeError as exc:
        raise InputFileError(f"{path}: not valid JSON ({exc.msg})") from None


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """One decoded object per non-blank line."""
    return [loads(line) for line in read_text(path).splitlines() if line.strip()]


def write_jsonl(rows: Iterable[Mapping[str, Any]], path: Path) -> Path:
    """One compact JSON object per line (UTF-8, non-ASCII kept), creating parent folders."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(dict(row), ensure_ascii=False) + "\n")
    return path


def read_jsonl_rows(path: Path) -> list[tuple[int, dict[str, Any]]]:
    """``(line number, object)`` for each non-blank line; a line that is not a JSON object, or a file
    without any, raises a one-line ValueError naming the file and the line."""
    rows = []
    for n, line in enumerate(read_text(path).splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = loads(line)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}:{n}: not valid JSON ({exc.msg} at column {exc.colno})") from None
        if not isinstance(row, dict):
            raise ValueError(f"{path}:{n}: expected a JSON object, got {type(row).__name__}")
        rows.append((n, row))
    if not rows:
        raise ValueError(f"{path}: empty file (no JSON lines)")
    return rows
