"""``i1lab query``: find runs by spec fields and status.

The filter language (this version): comparisons ``FIELD OP VALUE`` joined by ``and``. FIELD is a dotted
spec path (``model.adapter.type``) or ``status``; OP is one of ``= != < <= > >=``; VALUE is a number,
``true``/``false``, or a word or quoted string. Values are always bound parameters, never SQL text.
"""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import and_, exists, select

from i1lab.errors import I1labError
from i1lab.registry import Registry
from i1lab.registry.schema import RunFieldRow, RunRow

TOKEN = re.compile(r"\s*(?:(?P<op><=|>=|!=|=|<|>)|(?P<str>'[^']*'|\"[^\"]*\")|(?P<word>[^\s=!<>'\"]+))")
OPS = {"=": "__eq__", "!=": "__ne__", "<": "__lt__", "<=": "__le__", ">": "__gt__", ">=": "__ge__"}


def _tokens(expr: str) -> list[tuple[str, str]]:
    pos, out = 0, []
    while pos < len(expr):
        if expr[pos:].strip() == "":
            break
        m = TOKEN.match(expr, pos)
        if not m or m.end() == pos:
            raise I1labError(f"query: cannot read {expr[pos:]!r} at character {pos + 1}")
        kind = m.lastgroup or "word"
        text = m.group(kind)
        out.append((kind, text[1:-1] if kind == "str" else text))
        pos = m.end()
    return out


def parse(expr: str) -> list[tuple[str, str, Any]]:
    toks = _tokens(expr)
    conds = []
    i = 0
    while i < len(toks):
        if i + 2 >= len(toks) + 0 and len(toks) - i < 3:
            raise I1labError(f"query: incomplete comparison at {' '.join(t for _, t in toks[i:])!r}")
        (k1, field), (k2, op), (k3, raw) = toks[i : i + 3]
        if k1 != "word" or k2 != "op" or k3 == "op":
            raise I1labError(f"query: expected FIELD OP VALUE, got {field!r} {op!r} {raw!r}")
        value: Any = raw
        if k3 == "word":
            if raw in ("true", "false"):
                value = raw == "true"
            else:
                try:
                    value = float(raw)
                except ValueError:
                    value = raw
        conds.append((field, op, value))
        i += 3
        if i < len(toks):
            if toks[i] != ("word", "and"):
                raise I1labError(f"query: expected 'and', got {toks[i][1]!r}")
            i += 1
            if i == len(toks):
                raise I1labError("query: nothing after 'and'")
    return conds


def run_query(expr: str, registry: Registry | None = None) -> list[dict[str, Any]]:
    registry = registry or Registry()
    clauses = []
    for field, op, value in parse(expr):
        if field == "status":
            clauses.append(getattr(RunRow.status, OPS[op])(str(value)))
            continue
        cmp: Any
        if isinstance(value, float):
            cmp = getattr(RunFieldRow.value_num, OPS[op])(value)
        else:
            text = ("true" if value else "false") if isinstance(value, bool) else str(value)
            cmp = getattr(RunFieldRow.value_text, OPS[op])(text)
        clauses.append(exists().where(RunFieldRow.run_id == RunRow.id, RunFieldRow.key == field, cmp))
    with registry.session() as s:
        rows = s.scalars(select(RunRow).where(and_(*clauses)).order_by(RunRow.id)).all()
        return [
            {"id": r.id, "name": r.spec.get("name"), "hash": r.hash[:12], "status": r.status, "step": r.step}
            for r in rows
        ]
