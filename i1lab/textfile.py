"""Reading a text file that came from outside (an ``import-results`` file, a reference config): a regular
file of at most a given size, decoded as UTF-8, each refusal one line naming the file (and, for a bad byte,
its line and column). The benchmarks' own outputs go through ``evals.jsonio.read_text`` (evals imports
nothing of i1lab)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from i1lab.errors import I1labError


def read_utf8(path: Path, limit: int, error: type[I1labError] = I1labError) -> str:
    """The UTF-8 text of ``path``, or ``error`` (one line) when it is not a regular file, is larger than
    ``limit`` bytes (checked before reading, and again on what was read) or is not UTF-8."""
    try:
        with Path(path).open("rb") as f:
            info = os.fstat(f.fileno())
            if not stat.S_ISREG(info.st_mode):
                raise error(f"{path}: not a regular file")
            if info.st_size > limit:
                raise error(f"{path}: {info.st_size} bytes (at most {limit})")
            raw = f.read(limit + 1)
    except OSError as exc:
        raise error(f"{path}: cannot read ({exc.strerror or exc})") from None
    if len(raw) > limit:
        raise error(f"{path}: more than {limit} bytes")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        col = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        raise error(f"{path}:{line}: not UTF-8 (byte 0x{raw[exc.start]:02x} at column {col})") from None
