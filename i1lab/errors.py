"""User-facing errors: one line, naming what is wrong and where."""

from __future__ import annotations

from dataclasses import dataclass


class I1labError(Exception):
    """An error the CLI prints as a single line (no traceback) before exiting non-zero."""


@dataclass(frozen=True)
class Location:
    """A position inside a source file (1-based line and column)."""

    file: str
    line: int
    col: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}"


class SpecError(I1labError):
    """A problem in a study or run spec, reported as ``file:line:col: key: message``."""

    def __init__(self, message: str, *, key: str = "", where: Location | None = None) -> None:
        self.message = message
        self.key = key
        self.where = where
        super().__init__(self.render())

    def render(self) -> str:
        parts = []
        if self.where is not None:
            parts.append(str(self.where))
        if self.key:
            parts.append(self.key)
        parts.append(self.message)
        return ": ".join(parts)
