"""The environment variables i1lab reads, checked once when the command starts (``check_environment``).

A malformed value is one line naming the variable (``$NAME: what is wrong``), before anything is read or
written, instead of a traceback deep inside the command (or a path that means something else on a Ray
worker whose working folder is not the submitter's). An empty value counts as unset, as everywhere in
i1lab. What is checked:

- every variable: no NUL byte or other control character, at most `MAX_CHARS` characters;
- folders (`PATH_VARS`): absolute (``~`` is expanded first) where they are forwarded to other processes
  (`ABSOLUTE_VARS`); ``I1LAB_BENCHMARK_FOLDERS`` is a list of them joined by ``os.pathsep``;
- database URLs (``I1LAB_DATABASE_URL``): a SQLAlchemy URL of SQLite or PostgreSQL;
- ``MLFLOW_TRACKING_URI``: a URL of a scheme MLflow stores runs at, or a local path;
- ``I1LAB_MLFLOW_UI_URL``: an ``http(s)://`` URL with a host (the dashboard links to it);
- numbers (``I1LAB_LEASE_SECONDS``, ``I1LAB_WORKER_THREADS``): finite and within their range.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping

from i1lab.errors import I1labError

MAX_CHARS = 4096

#: Folders; those forwarded to Ray workers (whose working folder differs) must be absolute.
PATH_VARS = ("I1LAB_HOME", "I1LAB_DATA_DIR", "I1LAB_JUDGES_DIR", "I1LAB_WEIGHTS_DIR", "I1LAB_BENCHMARKS_DIR")
ABSOLUTE_VARS = frozenset({"I1LAB_DATA_DIR", "I1LAB_JUDGES_DIR", "I1LAB_WEIGHTS_DIR", "I1LAB_BENCHMARKS_DIR"})
LIST_VARS = ("I1LAB_BENCHMARK_FOLDERS",)
#: XDG says a relative value is invalid; i1lab's caches live under it.
XDG_VARS = ("XDG_CACHE_HOME",)
DATABASE_SCHEMES = re.compile(r"^(sqlite|postgresql|postgres)(\+[a-z0-9_]+)?://", re.IGNORECASE)
MLFLOW_SCHEMES = frozenset(
    {"http", "https", "file", "sqlite", "postgresql", "mysql", "mssql", "databricks", "databricks-uc"}
)
URL_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*):")
#: (minimum, maximum) of the numeric variables.
LEASE_SECONDS = ("I1LAB_LEASE_SECONDS", 0.0, 86_400.0)
WORKER_THREADS = ("I1LAB_WORKER_THREADS", 1, 4096)


class EnvironmentVariableError(I1labError):
    """A malformed environment variable (one line naming it)."""


def _fail(name: str, message: str) -> EnvironmentVariableError:
    return EnvironmentVariableError(f"${name}: {message}")


def _shown(value: str) -> str:
    return repr(value[:60] + ("..." if len(value) > 60 else ""))


def _text(name: str, value: str) -> None:
    if len(value) > MAX_CHARS:
        raise _fail(name, f"{len(value)} characters (at most {MAX_CHARS})")
    bad = next((ch for ch in value if ord(ch) < 32 or ord(ch) == 127), None)
    if bad is not None:
        what = "a NUL byte" if bad == "\x00" else f"the control character {bad!r}"
        raise _fail(name, f"holds {what} at position {value.index(bad) + 1}")
    if any(0xD800 <= ord(ch) <= 0xDFFF for ch in value):  # bytes that were not valid in the locale
        raise _fail(name, "is not valid text in this locale's encoding")


def _folder(name: str, value: str, *, absolute: bool) -> None:
    expanded = os.path.expanduser(value)
    if absolute and not os.path.isabs(expanded):
        raise _fail(name, f"{_shown(value)} is a relative path; give an absolute one")


def _database(name: str, value: str) -> None:
    if not DATABASE_SCHEMES.match(value):
        raise _fail(
            name,
            f"{_shown(value)} is not a database URL i1lab uses "
            "(sqlite:///PATH or postgresql[+driver]://USER@HOST/DB)",
        )
    if value.lower().startswith("sqlite") and not re.match(r"^sqlite(\+\w+)?:///", value, re.IGNORECASE):
        raise _fail(name, f"{_shown(value)}: a SQLite URL is sqlite:///PATH (three slashes)")


def _mlflow(name: str, value: str) -> None:
    m = URL_SCHEME.match(value)
    if m is None or len(m.group(1)) == 1:  # no scheme: a local folder (C: is a drive, not a scheme)
        return
    scheme = m.group(1).lower().split("+", 1)[0]
    if scheme not in MLFLOW_SCHEMES:
        known = ", ".join(sorted(MLFLOW_SCHEMES))
        raise _fail(name, f"{_shown(value)}: unsupported scheme {scheme!r} (one of {known}, or a path)")
    if scheme in ("http", "https") and not re.match(r"^https?://[^/\s?#]+", value, re.IGNORECASE):
        raise _fail(name, f"{_shown(value)} has no host")


def _web_url(name: str, value: str) -> None:
    if not re.match(r"^https?://[^/\s?#\"'<>]+", value, re.IGNORECASE):
        raise _fail(name, f"{_shown(value)} is not an http(s):// URL with a host")
    if any(ch in value for ch in "\"'<> "):
        raise _fail(name, f"{_shown(value)} holds a character a URL may not (quote, angle bracket, space)")


def _number(name: str, value: str, low: float, high: float, *, whole: bool) -> None:
    try:
        number = int(value.strip()) if whole else float(value.strip())
    except ValueError:
        kind = "a whole number" if whole else "a number"
        raise _fail(name, f"{_shown(value)} is not {kind}") from None
    if whole:
        ok, allowed = low <= number <= high, f"from {low:g} to {high:g}"
    else:
        ok, allowed = math.isfinite(number) and low < number <= high, f"above {low:g}, at most {high:g}"
    if not ok:
        raise _fail(name, f"{_shown(value)} is out of range ({allowed})")


def check_environment(env: Mapping[str, str] | None = None) -> None:
    """Raise `EnvironmentVariableError` for the first malformed variable i1lab reads (module docstring)."""
    env = os.environ if env is None else env

    def get(name: str) -> str | None:
        value = env.get(name)
        if not value:
            return None
        _text(name, value)
        return value

    for name in PATH_VARS:
        if (value := get(name)) is not None:
            _folder(name, value, absolute=name in ABSOLUTE_VARS)
    for name in XDG_VARS:
        if (value := get(name)) is not None:
            _folder(name, value, absolute=True)
    for name in LIST_VARS:
        if (value := get(name)) is not None:
            for entry in filter(None, value.split(os.pathsep)):
                _folder(name, entry, absolute=True)
    if (value := get("I1LAB_DATABASE_URL")) is not None:
        _database("I1LAB_DATABASE_URL", value)
    if (value := get("MLFLOW_TRACKING_URI")) is not None:
        _mlflow("MLFLOW_TRACKING_URI", value)
    if (value := get("I1LAB_MLFLOW_UI_URL")) is not None:
        _web_url("I1LAB_MLFLOW_UI_URL", value)
    name, low, high = LEASE_SECONDS
    if (value := get(name)) is not None:
        _number(name, value, low, high, whole=False)
    name, lo, hi = WORKER_THREADS
    if (value := get(name)) is not None:
        _number(name, value, lo, hi, whole=True)
    if (value := get("I1LAB_JOB_PYTHON")) is not None:
        _folder("I1LAB_JOB_PYTHON", value, absolute=True)
