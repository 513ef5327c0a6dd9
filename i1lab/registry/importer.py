"""``i1lab import-results FILE.jsonl``: results of runs trained elsewhere, comparable with ours.

One JSON object per line::

    {"study": "adapter_size", "name": "mlp", "baseline": true,
     "spec": {"model.adapter.type": "mlp", "train.lr": 0.0001},
     "params": 2100000000,
     "scores": [{"benchmark": "geneval", "metric": "overall", "value": 0.61, "step": 500000,
                 "judge": "mask2former"}]}

``study``, ``name`` and ``spec`` are required; ``baseline`` (default false), ``params`` and ``scores``
(default none) are optional, and so is a score's ``judge`` (default ``imported``). Spec keys are dotted
paths (nested objects are accepted too); the run's hash is the SHA-256 of the canonical JSON of the nested
spec, so the same spec imported twice is one run. Blank lines are skipped.

Imported runs have status ``imported`` and join their study beside any trained members: ``i1lab compare``
and ``i1lab query`` treat them like the others. Each non-baseline line is compared with the study's
baseline of the same seed (``name#seed=N``), else its first baseline.

Every line is checked before anything is written, and everything is written in one transaction: a bad
line is one error ``FILE:LINE: message`` and leaves the registry as it was. The file is bounded before
it is parsed (it may come from anywhere): at most `MAX_FILE_BYTES` of UTF-8, `MAX_LINES` lines of at most
`MAX_LINE_CHARS` characters, JSON nested at most `MAX_DEPTH` deep, no key given twice in an object,
strings of at most `MAX_TEXT` characters, at most `MAX_SPEC_KEYS` spec keys and `MAX_SCORES` scores per
line, finite numbers (no NaN or infinity anywhere) and integers below 2**63 in magnitude.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from i1lab.errors import I1labError
from i1lab.hashing import canonical_json
from i1lab.registry import Registry
from i1lab.registry.fields import flatten
from i1lab.registry.imports import ImportConflict, ImportedRun, ImportedScore
from i1lab.textfile import read_utf8

LINE_KEYS = {"study", "name", "baseline", "spec", "params", "scores"}
#: Bounds of an import file (module docstring).
MAX_FILE_BYTES = 64 * 2**20
MAX_LINE_CHARS = 1 * 2**20
MAX_LINES = 100_000
MAX_DEPTH = 16
MAX_TEXT = 4096
MAX_SPEC_KEYS = 1_000
MAX_SCORES = 10_000
MAX_INT = 2**63 - 1
SCORE_KEYS = {"benchmark", "metric", "value", "step", "judge"}
DEFAULT_JUDGE = "imported"


class ImportSummary(BaseModel):
    lines: int
    runs: int
    studies: list[str]
    scores: int


class LineError(I1labError):
    pass


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number JSON allows")


def _int(text: str) -> int:
    if len(text.lstrip("-")) > 19:
        raise ValueError(f"the integer {text[:40]}... has {len(text)} characters (at most 19 digits)")
    value = int(text)
    if abs(value) > MAX_INT:
        raise ValueError(f"the integer {text} is out of range (at most 2**63 - 1 in magnitude)")
    return value


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"key {key[:80]!r} is given twice in one object")
        out[key] = value
    return out


def _check_tree(value: Any, *, depth: int = 0, finite: bool = True) -> None:
    """Depth, string sizes and (with ``finite``) finite numbers of a decoded value (iteratively: no
    recursion on hostile input)."""
    stack: list[tuple[Any, int]] = [(value, depth)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, float):
            if finite and not math.isfinite(item):
                raise ValueError(f"the number {item} is out of range (numbers must be finite)")
            continue
        if isinstance(item, str):
            if len(item) > MAX_TEXT:
                raise ValueError(f"a string of {len(item)} characters (at most {MAX_TEXT})")
            if not item.isascii():
                try:
                    item.encode("utf-8")
                except UnicodeEncodeError:
                    raise ValueError(f"the string {item[:40]!r} holds a lone surrogate (not text)") from None
            continue
        if isinstance(item, dict):
            children: list[Any] = [*item, *item.values()]
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth >= MAX_DEPTH:
            raise ValueError(f"nested deeper than {MAX_DEPTH} levels")
        stack.extend((child, depth + 1) for child in children)


def unflatten(spec: dict[str, Any]) -> dict[str, Any]:
    """``{"a.b": 1, "a.c": 2}`` -> ``{"a": {"b": 1, "c": 2}}`` (nested objects are read as dotted keys);
    a key given twice, or both a value and a section, is an error."""
    flat: dict[str, Any] = {}
    for key, value in spec.items():
        items = flatten(value, key + ".") if isinstance(value, dict) else {key: value}
        for k, v in items.items():
            if k in flat:
                raise ValueError(f"spec key {k!r} is given twice")
            flat[k] = v
    out: dict[str, Any] = {}
    for key in sorted(flat):  # a section's own key sorts before the keys inside it
        parts = key.split(".")
        if any(not p.strip() for p in parts):
            raise ValueError(f"spec key {key!r} has an empty part")
        node = out
        for i, part in enumerate(parts[:-1]):
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ValueError(
                    f"spec key {key!r} goes inside {'.'.join(parts[: i + 1])!r}, which is a value"
                )
            node = child
        if parts[-1] in node:
            raise ValueError(f"spec key {key!r} is both a value and a section")
        node[parts[-1]] = flat[key]
    return out


def spec_hash(spec: dict[str, Any]) -> str:
    """SHA-256 (hex) of the canonical JSON of a nested spec: the identity of an imported run."""
    return hashlib.sha256(canonical_json(spec).encode("utf-8")).hexdigest()


def _text(obj: dict[str, Any], key: str, what: str = "") -> str:
    value = obj.get(key)
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{what}{key!r} must be a non-empty string (got {json.dumps(value)[:60]})")
    if any(not ch.isprintable() for ch in value):
        raise ValueError(f"{what}{key!r} contains an unprintable character")
    return value


def _score(item: Any, index: int) -> ImportedScore:
    where = f"scores[{index}]: "
    if not isinstance(item, dict):
        raise ValueError(f"{where}must be an object with benchmark, metric, value, step")
    unknown = sorted(set(item) - SCORE_KEYS)
    if unknown:
        raise ValueError(f"{where}unknown key {unknown[0]!r} (allowed: {', '.join(sorted(SCORE_KEYS))})")
    value, step = item.get("value"), item.get("step")
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{where}'value' must be a finite number (got {json.dumps(value)[:60]})")
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        raise ValueError(f"{where}'step' must be a whole number >= 0 (got {json.dumps(step)[:60]})")
    judge = _text(item, "judge", where) if "judge" in item else DEFAULT_JUDGE
    return ImportedScore(
        benchmark=_text(item, "benchmark", where),
        metric=_text(item, "metric", where),
        judge=judge,
        step=step,
        value=float(value),
    )


def parse_line(text: str, line: int) -> ImportedRun:
    if len(text) > MAX_LINE_CHARS:
        raise ValueError(f"a line of {len(text)} characters (at most {MAX_LINE_CHARS})")
    try:
        obj = json.loads(
            text,
            parse_constant=_reject_constant,
            parse_int=_int,
            object_pairs_hook=_no_duplicates,
        )
    except json.JSONDecodeError as exc:
        raise ValueError(f"not valid JSON ({exc.msg} at column {exc.colno})") from None
    except ValueError as exc:
        raise ValueError(f"not valid JSON ({exc})") from None
    except RecursionError:
        raise ValueError(f"not valid JSON (nested deeper than {MAX_DEPTH} levels)") from None
    if not isinstance(obj, dict):
        raise ValueError("each line must be a JSON object")
    for key, value in obj.items():  # a score's value is checked (and named) with its score
        _check_tree(value, depth=1, finite=key != "scores")
    unknown = sorted(set(obj) - LINE_KEYS)
    if unknown:
        raise ValueError(f"unknown key {unknown[0]!r} (allowed: {', '.join(sorted(LINE_KEYS))})")
    baseline = obj.get("baseline", False)
    if not isinstance(baseline, bool):
        raise ValueError(f"'baseline' must be true or false (got {json.dumps(baseline)[:60]})")
    spec = obj.get("spec")
    if not isinstance(spec, dict) or not spec:
        raise ValueError("'spec' must be a non-empty object of dotted keys")
    if len(spec) > MAX_SPEC_KEYS:
        raise ValueError(f"'spec' has {len(spec)} keys (at most {MAX_SPEC_KEYS})")
    params = obj.get("params")
    if params is not None and (isinstance(params, bool) or not isinstance(params, int) or params < 0):
        raise ValueError(f"'params' must be a whole number >= 0 (got {json.dumps(params)[:60]})")
    raw_scores = obj.get("scores", [])
    if not isinstance(raw_scores, list):
        raise ValueError("'scores' must be a list")
    if len(raw_scores) > MAX_SCORES:
        raise ValueError(f"'scores' has {len(raw_scores)} entries (at most {MAX_SCORES})")
    scores = [_score(item, i) for i, item in enumerate(raw_scores)]
    seen: dict[tuple[str, str, str, int], int] = {}
    for i, sc in enumerate(scores):
        key = (sc.benchmark, sc.metric, sc.judge, sc.step)
        if key in seen:
            raise ValueError(
                f"scores[{i}] repeats scores[{seen[key]}] ({sc.benchmark}/{sc.metric} at step {sc.step})"
            )
        seen[key] = i
    nested = unflatten(spec)
    return ImportedRun(
        line=line,
        study=_text(obj, "study"),
        name=_text(obj, "name"),
        baseline=baseline,
        spec=nested,
        hash=spec_hash(nested),
        params=params,
        scores=scores,
    )


def read_results(path: Path) -> list[ImportedRun]:
    """Every line of the file, checked; the first bad line raises ``FILE:LINE: message``."""
    text = read_utf8(path, MAX_FILE_BYTES, LineError)
    runs: list[ImportedRun] = []
    where: dict[tuple[str, str], int] = {}
    for number, line in enumerate(text.split("\n"), start=1):
        if number > MAX_LINES:
            raise LineError(f"{path}:{number}: more than {MAX_LINES} lines")
        if not line.strip():
            continue
        try:
            run = parse_line(line, number)
        except ValueError as exc:
            raise LineError(f"{path}:{number}: {exc}") from None
        first = where.setdefault((run.study, run.name), number)
        if first != number:
            raise LineError(f"{path}:{number}: {run.study}/{run.name} is already on line {first}")
        runs.append(run)
    if not runs:
        raise I1labError(f"{path}: no results (the file has no JSON lines)")
    return runs


def import_results(path: Path, registry: Registry | None = None) -> ImportSummary:
    """Check every line, then record all of them in one transaction."""
    runs = read_results(path)
    registry = registry or Registry()
    try:
        registry.record_imported(runs)
    except ImportConflict as exc:
        raise LineError(f"{path}:{exc.line}: {exc.detail}") from None
    return ImportSummary(
        lines=len(runs),
        runs=len({r.hash for r in runs}),
        studies=sorted({r.study for r in runs}),
        scores=sum(len(r.scores) for r in runs),
    )
