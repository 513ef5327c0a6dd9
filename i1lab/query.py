"""``i1lab query``: find runs by their spec, state, studies and scores.

The filter language::

    expr       := or_expr
    or_expr    := and_expr ("or" and_expr)*
    and_expr   := not_expr ("and" not_expr)*
    not_expr   := "not" not_expr | "(" expr ")" | comparison
    comparison := FIELD OP VALUE | FIELD ["not"] "in" "(" VALUE ("," VALUE)* ")"
    OP         := "=" | "!=" | "<" | "<=" | ">" | ">="

FIELD is a dotted spec path (``model.adapter.type``, ``train.lr``), one of ``status``, ``study``,
``name``, ``hash``, ``id``, ``step``, ``params``, ``imported``, or ``score:BENCHMARK/METRIC`` with an
optional ``@JUDGE`` (``score:geneval/overall``, ``score:cvtg/word_accuracy@paddleocr``). VALUE is a
number, ``true``/``false``/``null``, a bare word (``transformer``, ``tpu-v6e-8``) or a quoted string
(``'a b'`` or ``"a b"``, backslash escapes the quote). Keywords are case-insensitive.

Meaning:

* a spec comparison holds when the run has the field and its value compares: numbers against the
  field's number, anything else against its text (``true``/``false``/``null`` as written; lists and
  objects as sorted JSON; only the first 512 characters of a text are kept);
* ``study`` / ``name`` hold when any membership of the run matches (a run can be in several studies);
  ``hash`` compares the full hash (``hash = abc123...`` or a prefix with ``hash >= 'ab' and hash < 'ac'``);
* ``score:...`` compares the run's score for that benchmark/metric (by any judge unless ``@judge``) at
  the chosen step: the latest checkpoint (default), a given step, or the best over steps;
* ``a != v`` is ``not (a = v)`` and ``a not in (...)`` is ``not (a in (...))``: runs without the field
  match them.

The parser builds an AST; the compiler turns it into SQLAlchemy expressions where every value is a
bound parameter. No text from the filter ever becomes SQL. Errors are one line with the 1-based column.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from sqlalchemy import ColumnElement, Select, and_, false, not_, or_, select
from sqlalchemy.sql import operators

from i1lab.errors import I1labError
from i1lab.registry.schema import (
    FieldKeyRow,
    RunFieldRow,
    RunRow,
    ScoreRow,
    ScoreSummaryRow,
    StudyRow,
    StudyRunRow,
)
from i1lab.registry.store import STATUSES, TEXT_CAP, field_text

if TYPE_CHECKING:
    import pandas as pd

    from i1lab.registry import Registry


class Number(float):
    """A number as written in the filter (``raw``), so a text field can compare with the same text."""

    raw: str

    def __new__(cls, raw: str) -> Number:
        out = super().__new__(cls, raw)
        out.raw = raw
        return out


Value = str | float | bool | None
AtStep = int | Literal["latest", "best"]
COMPARE_OPS = ("=", "!=", "<", "<=", ">", ">=")
KEYWORDS = ("and", "or", "not", "in", "true", "false", "null")
RUN_COLUMNS = ("status", "hash", "id", "step", "params", "imported")
MEMBER_FIELDS = ("study", "name")
OPERATOR = {
    "=": operators.eq,
    "!=": operators.ne,
    "<": operators.lt,
    "<=": operators.le,
    ">": operators.gt,
    ">=": operators.ge,
}
SPEC_PATH = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z0-9_]+)*\Z")
SCORE_FIELD = re.compile(r"score:(?P<bench>[A-Za-z0-9_.\-]+)/(?P<metric>[^@\s]+?)(?:@(?P<judge>[^@\s]+))?\Z")
NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?\Z")
WORD_CHARS = re.compile(r"[^\s()=!<>,'\"]+")


class QueryError(I1labError):
    """A filter that cannot be read: one line naming the column."""

    def __init__(self, message: str, pos: int) -> None:
        super().__init__(f"query: column {pos + 1}: {message}")
        self.pos = pos


# --- tokens ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Token:
    kind: Literal["op", "lparen", "rparen", "comma", "string", "word", "end"]
    text: str  # a string's value (unescaped), a word as written, an operator
    pos: int

    def describe(self) -> str:
        if self.kind == "end":
            return "the end of the filter"
        if self.kind == "string":
            return f"the string {self.text!r}"
        return repr(self.text)


def tokenize(expr: str) -> list[Token]:
    out: list[Token] = []
    pos, n = 0, len(expr)
    while pos < n:
        ch = expr[pos]
        if ch.isspace():
            pos += 1
        elif ch in "(),":
            kind: Any = {"(": "lparen", ")": "rparen", ",": "comma"}[ch]
            out.append(Token(kind, ch, pos))
            pos += 1
        elif ch in "=!<>":
            two = expr[pos : pos + 2]
            if two in ("<=", ">=", "!="):
                out.append(Token("op", two, pos))
                pos += 2
            elif two == "==":
                raise QueryError("use '=' to compare, not '=='", pos)
            elif ch == "!":
                raise QueryError("'!' must be followed by '=' (or use 'not')", pos)
            else:
                out.append(Token("op", ch, pos))
                pos += 1
        elif ch in "'\"":
            start, pos, chars = pos, pos + 1, []
            while True:
                if pos >= n:
                    raise QueryError(f"unterminated string (opened with {ch})", start)
                c = expr[pos]
                if c == "\\" and pos + 1 < n and expr[pos + 1] in (ch, "\\"):
                    chars.append(expr[pos + 1])
                    pos += 2
                elif c == ch:
                    pos += 1
                    break
                else:
                    chars.append(c)
                    pos += 1
            out.append(Token("string", "".join(chars), start))
        else:
            m = WORD_CHARS.match(expr, pos)
            assert m is not None  # every other character starts a word
            word = m.group()
            bad = next((c for c in word if not c.isprintable()), None)
            if bad is not None:
                raise QueryError(f"unprintable character {bad!r}", pos + word.index(bad))
            out.append(Token("word", word, pos))
            pos = m.end()
    out.append(Token("end", "", n))
    return out


# --- the AST ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Field:
    kind: Literal["spec", "run", "member", "score"]
    name: str  # spec path, run column, "study"/"name", or "benchmark/metric"
    pos: int
    benchmark: str = ""
    metric: str = ""
    judge: str | None = None


@dataclass(frozen=True)
class Compare:
    field: Field
    op: str
    value: Value
    pos: int


@dataclass(frozen=True)
class In:
    field: Field
    values: tuple[Value, ...]
    pos: int


@dataclass(frozen=True)
class Not:
    item: Node


@dataclass(frozen=True)
class And:
    items: tuple[Node, ...]


@dataclass(frozen=True)
class Or:
    items: tuple[Node, ...]


Node = Compare | In | Not | And | Or


def parse_field(text: str, pos: int) -> Field:
    low = text.lower()
    if low in RUN_COLUMNS:
        return Field("run", low, pos)
    if low in MEMBER_FIELDS:
        return Field("member", low, pos)
    if low.startswith("score:"):
        m = SCORE_FIELD.match(text)
        if m is None:
            raise QueryError(f"a score field is score:BENCHMARK/METRIC[@JUDGE], got {text!r}", pos)
        return Field(
            "score",
            f"{m['bench']}/{m['metric']}",
            pos,
            benchmark=m["bench"],
            metric=m["metric"],
            judge=m["judge"],
        )
    if low in KEYWORDS:
        raise QueryError(f"expected a field, got the keyword {text!r}", pos)
    if not SPEC_PATH.match(text):
        raise QueryError(
            f"{text!r} is not a field (a dotted spec path like model.adapter.type, status, study, name, "
            "hash, id, step, params, imported, or score:BENCHMARK/METRIC[@JUDGE])",
            pos,
        )
    return Field("spec", text, pos)


class Parser:
    def __init__(self, expr: str) -> None:
        self.tokens = tokenize(expr)
        self.i = 0

    @property
    def tok(self) -> Token:
        return self.tokens[self.i]

    def next(self) -> Token:
        tok = self.tokens[self.i]
        self.i += 1
        return tok

    def keyword(self, word: str) -> bool:
        return self.tok.kind == "word" and self.tok.text.lower() == word

    def parse(self) -> Node:
        if self.tok.kind == "end":
            raise QueryError('empty filter (e.g. "model.adapter.type = transformer")', 0)
        node = self.or_expr()
        if self.tok.kind != "end":
            tok = self.tok
            if tok.kind == "rparen":
                raise QueryError("')' without a matching '('", tok.pos)
            raise QueryError(f"expected 'and', 'or' or the end, got {tok.describe()}", tok.pos)
        return node

    def or_expr(self) -> Node:
        items = [self.and_expr()]
        while self.keyword("or"):
            self.next()
            items.append(self.and_expr())
        return items[0] if len(items) == 1 else Or(tuple(items))

    def and_expr(self) -> Node:
        items = [self.not_expr()]
        while self.keyword("and"):
            self.next()
            items.append(self.not_expr())
        return items[0] if len(items) == 1 else And(tuple(items))

    def not_expr(self) -> Node:
        if self.keyword("not"):
            self.next()
            return Not(self.not_expr())
        if self.tok.kind == "lparen":
            opened = self.next()
            node = self.or_expr()
            if self.tok.kind != "rparen":
                raise QueryError(
                    f"expected ')' to close the '(' at column {opened.pos + 1}, got {self.tok.describe()}",
                    self.tok.pos,
                )
            self.next()
            return node
        return self.comparison()

    def comparison(self) -> Node:
        tok = self.next()
        if tok.kind != "word":
            raise QueryError(f"expected a field, got {tok.describe()}", tok.pos)
        field = parse_field(tok.text, tok.pos)
        negate = False
        if self.keyword("not"):
            self.next()
            negate = True
            if not self.keyword("in"):
                raise QueryError(f"expected 'in' after 'not', got {self.tok.describe()}", self.tok.pos)
        if self.keyword("in"):
            start = self.next()
            node: Node = In(field, self.value_list(), start.pos)
            return Not(node) if negate else node
        op = self.next()
        if op.kind != "op":
            raise QueryError(
                f"expected an operator (= != < <= > >= in) after {tok.text!r}, got {op.describe()}", op.pos
            )
        node = Compare(field, op.text, self.value(), op.pos)
        return Not(Compare(field, "=", node.value, op.pos)) if op.text == "!=" else node

    def value_list(self) -> tuple[Value, ...]:
        opened = self.next()
        if opened.kind != "lparen":
            raise QueryError(f"expected '(' after 'in', got {opened.describe()}", opened.pos)
        values = [self.value()]
        while self.tok.kind == "comma":
            self.next()
            values.append(self.value())
        if self.tok.kind != "rparen":
            raise QueryError(f"expected ',' or ')' in the list, got {self.tok.describe()}", self.tok.pos)
        self.next()
        return tuple(values)

    def value(self) -> Value:
        tok = self.next()
        if tok.kind == "string":
            return tok.text
        if tok.kind != "word":
            raise QueryError(f"expected a value, got {tok.describe()}", tok.pos)
        low = tok.text.lower()
        if low in ("true", "false"):
            return low == "true"
        if low == "null":
            return None
        if low in ("and", "or", "not", "in"):
            raise QueryError(
                f"expected a value, got the keyword {tok.text!r} (quote it to mean the word)", tok.pos
            )
        if NUMBER.match(tok.text):
            return Number(tok.text)
        return tok.text


def parse(expr: str) -> Node:
    """The AST of a filter, or a :class:`QueryError` naming the column."""
    return Parser(expr).parse()


# --- compiling to SQL ------------------------------------------------------------------------------
def parse_at_step(text: str | int | None) -> AtStep:
    if text is None:
        return "latest"
    if isinstance(text, int):
        return text
    if text in ("latest", "best"):
        return text  # type: ignore[return-value]
    if text.isdigit():
        return int(text)
    raise I1labError(f"--at-step must be a step number, latest or best (got {text!r})")


class Compiler:
    """AST -> a boolean SQLAlchemy expression over ``runs`` (every value a bound parameter)."""

    def __init__(self, at_step: AtStep = "latest", known_fields: Iterable[str] | None = None) -> None:
        self.at_step = at_step
        self.known = set(known_fields) if known_fields is not None else None

    def compile(self, node: Node) -> ColumnElement[bool]:
        if isinstance(node, And):
            return and_(*(self.compile(n) for n in node.items))
        if isinstance(node, Or):
            return or_(*(self.compile(n) for n in node.items))
        if isinstance(node, Not):
            return not_(self.compile(node.item))
        if isinstance(node, In):
            return self.leaf(node.field, "in", node.values, node.pos)
        return self.leaf(node.field, node.op, (node.value,), node.pos)

    def check_spec_field(self, field: Field) -> None:
        if self.known is None or field.name in self.known:
            return
        inside = sorted(k for k in self.known if k.startswith(field.name + "."))
        if inside:
            shown = ", ".join(inside[:6]) + (", ..." if len(inside) > 6 else "")
            raise QueryError(f"{field.name!r} is a section, not a field; its fields: {shown}", field.pos)
        close = difflib.get_close_matches(field.name, sorted(self.known), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise QueryError(f"unknown field {field.name!r}{hint}", field.pos)

    def leaf(self, field: Field, op: str, values: Sequence[Value], pos: int) -> ColumnElement[bool]:
        if op not in ("=", "in") and any(v is None or isinstance(v, bool) for v in values):
            raise QueryError(f"true, false and null compare only with = , != or in (got {op!r})", pos)
        if field.kind == "spec":
            self.check_spec_field(field)
            return self.spec_leaf(field, op, values)
        if field.kind == "member":
            column = StudyRow.name if field.name == "study" else StudyRunRow.name
            sub = select(StudyRunRow.run_id).where(self.cmp(column, op, [self.text(v) for v in values]))
            if field.name == "study":
                sub = sub.join(StudyRow, StudyRow.id == StudyRunRow.study_id)
            return RunRow.id.in_(sub)
        if field.kind == "run":
            return self.run_leaf(field, op, values, pos)
        return self.score_leaf(field, op, values, pos)

    @staticmethod
    def text(value: Value) -> str:
        if isinstance(value, Number):
            return value.raw
        return field_text(value)

    @staticmethod
    def cmp(column: Any, op: str, values: Sequence[Any]) -> ColumnElement[bool]:
        if op == "in":
            return column.in_(list(values))
        return OPERATOR[op](column, values[0])

    def spec_leaf(self, field: Field, op: str, values: Sequence[Value]) -> ColumnElement[bool]:
        nums = [v for v in values if isinstance(v, float)]
        texts = [field_text(v) for v in values if not isinstance(v, float)]
        conds = []
        if nums:
            conds.append(self.cmp(RunFieldRow.value_num, op, nums))
        if texts:
            conds.append(self.cmp(RunFieldRow.value_text, op, [t[:TEXT_CAP] for t in texts]))
        sub = select(RunFieldRow.run_id).where(RunFieldRow.key == field.name, or_(*conds))
        return RunRow.id.in_(sub)

    def run_leaf(self, field: Field, op: str, values: Sequence[Value], pos: int) -> ColumnElement[bool]:
        column: Any = getattr(RunRow, field.name)
        if field.name in ("id", "step", "params"):
            if any(not isinstance(v, float) for v in values):
                raise QueryError(f"{field.name} compares with numbers", pos)
            return self.cmp(column, op, values)
        if field.name == "imported":
            if any(not isinstance(v, bool) for v in values) or op not in ("=", "in"):
                raise QueryError("imported compares with true or false (imported = true)", pos)
            return self.cmp(column, op, values)
        texts = [self.text(v) for v in values]
        if field.name == "status":
            for v in texts:
                if v not in STATUSES:
                    close = difflib.get_close_matches(v, STATUSES, n=1)
                    hint = f"did you mean {close[0]!r}? " if close else ""
                    raise QueryError(f"unknown status {v!r} ({hint}statuses: {', '.join(STATUSES)})", pos)
        return self.cmp(column, op, texts)

    def score_leaf(self, field: Field, op: str, values: Sequence[Value], pos: int) -> ColumnElement[bool]:
        if any(not isinstance(v, float) for v in values):
            raise QueryError(f"score:{field.name} compares with numbers", pos)
        where: list[ColumnElement[bool]]
        if self.at_step in ("latest", "best"):
            t = ScoreSummaryRow
            value = t.latest_value if self.at_step == "latest" else t.best_value
            where = [t.benchmark == field.benchmark, t.metric == field.metric, self.cmp(value, op, values)]
            if field.judge is not None:
                where.append(t.judge == field.judge)
            return RunRow.id.in_(select(t.run_id).where(*where))
        where = [
            ScoreRow.benchmark == field.benchmark,
            ScoreRow.metric == field.metric,
            ScoreRow.step == self.at_step,
            self.cmp(ScoreRow.value, op, values),
        ]
        if field.judge is not None:
            where.append(ScoreRow.judge == field.judge)
        return RunRow.id.in_(select(ScoreRow.run_id).where(*where))


def spec_fields(node: Node) -> list[Field]:
    if isinstance(node, And | Or):
        return [f for n in node.items for f in spec_fields(n)]
    if isinstance(node, Not):
        return spec_fields(node.item)
    return [node.field] if node.field.kind == "spec" else []


def compile_filter(
    expr: str | None, at_step: AtStep = "latest", known_fields: Iterable[str] | None = None
) -> ColumnElement[bool]:
    """The SQL condition on ``runs`` for a filter ("" or None: every run)."""
    if expr is None or not expr.strip():
        return not_(false())
    return Compiler(at_step, known_fields).compile(parse(expr))


def run_ids_query(registry: Registry, expr: str | None, at_step: AtStep = "latest") -> Select[tuple[int]]:
    """``SELECT runs.id WHERE <filter>``, with spec fields checked against the registry's known keys."""
    known: list[str] | None = None
    if expr and expr.strip():
        node = parse(expr)
        if spec_fields(node):
            with registry.session() as s:
                names = list({f.name for f in spec_fields(node)})
                found = {k for (k,) in s.execute(select(FieldKeyRow.key).where(FieldKeyRow.key.in_(names)))}
                known = (
                    None if len(found) == len(names) else [k for (k,) in s.execute(select(FieldKeyRow.key))]
                )
    query: Select[Any] = select(RunRow.id).where(compile_filter(expr, at_step, known))
    return query


# --- results ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class MetricRef:
    benchmark: str
    metric: str
    judge: str | None

    @property
    def title(self) -> str:
        return f"{self.benchmark}/{self.metric}" + (f"@{self.judge}" if self.judge else "")


def parse_metric(text: str) -> MetricRef:
    m = SCORE_FIELD.match(text if text.startswith("score:") else f"score:{text}")
    if m is None:
        raise I1labError(f"--metric must be BENCHMARK/METRIC[@JUDGE], e.g. geneval/overall (got {text!r})")
    return MetricRef(m["bench"], m["metric"], m["judge"])


def runs_frame(
    expr: str | None = None,
    metrics: Sequence[str] = (),
    at_step: AtStep | str = "latest",
    registry: Registry | None = None,
    limit: int | None = None,
) -> pd.DataFrame:
    """Runs matching a filter as a DataFrame, one row per run (ordered by id).

    Columns: ``id``, ``study`` and ``name`` (the run's first membership), ``hash``, ``status``, ``step``,
    ``params``, ``imported``, then one column per requested metric (``BENCHMARK/METRIC``, or
    ``BENCHMARK/METRIC@JUDGE`` when the metric was asked with a judge or several judges scored it) with the
    score at ``at_step``: a step number, ``latest`` (each run's last scored step) or ``best``."""
    import pandas as pd

    from i1lab.registry import Registry

    registry = registry or Registry()
    at = parse_at_step(at_step) if isinstance(at_step, str) else at_step
    refs = [parse_metric(m) for m in metrics]
    ids = run_ids_query(registry, expr, at).order_by(RunRow.id)
    if limit is not None:
        ids = ids.limit(limit)
    wanted = ids.subquery()
    base_cols = ["id", "study", "name", "hash", "status", "step", "params", "imported"]
    with registry.session() as s:
        rows = s.execute(
            select(RunRow.id, RunRow.hash, RunRow.status, RunRow.step, RunRow.params, RunRow.imported)
            .where(RunRow.id.in_(select(wanted.c.id)))
            .order_by(RunRow.id)
        ).all()
        first: dict[int, tuple[str | None, str | None]] = {}
        for rid, study_name, member_name in s.execute(
            select(StudyRunRow.run_id, StudyRow.name, StudyRunRow.name)
            .join(StudyRow, StudyRow.id == StudyRunRow.study_id)
            .where(StudyRunRow.run_id.in_(select(wanted.c.id)))
            .order_by(StudyRunRow.study_id.desc(), StudyRunRow.position.desc())
        ):
            first[rid] = (study_name, member_name)
        scores: dict[tuple[int, str], float] = {}
        titles: list[str] = []
        for ref in refs:
            found = _metric_values(s, ref, at, wanted)
            judges = sorted({j for (_, j) in found})
            for (rid, judge), value in found.items():
                title = ref.title if ref.judge or len(judges) <= 1 else f"{ref.title}@{judge}"
                scores[(rid, title)] = value
            for title in (
                [ref.title] if ref.judge or len(judges) <= 1 else [f"{ref.title}@{j}" for j in judges]
            ):
                if title not in titles:
                    titles.append(title)
    records = []
    for rid, digest, status, step, params, imported in rows:
        study, name = first.get(rid, (None, None))
        rec: dict[str, Any] = {
            "id": rid,
            "study": study,
            "name": name,
            "hash": digest,
            "status": status,
            "step": step,
            "params": params,
            "imported": bool(imported),
        }
        for title in titles:
            rec[title] = scores.get((rid, title))
        records.append(rec)
    frame = pd.DataFrame.from_records(records, columns=[*base_cols, *titles])
    return frame.astype({t: "float64" for t in titles})


def _metric_values(s: Any, ref: MetricRef, at: AtStep, wanted: Any) -> dict[tuple[int, str], float]:
    """(run id, judge) -> the score of ``ref`` at ``at`` for the runs in ``wanted``."""
    if at in ("latest", "best"):
        t = ScoreSummaryRow
        value = t.latest_value if at == "latest" else t.best_value
        q = select(t.run_id, t.judge, value).where(
            t.benchmark == ref.benchmark, t.metric == ref.metric, t.run_id.in_(select(wanted.c.id))
        )
        if ref.judge:
            q = q.where(t.judge == ref.judge)
    else:
        q = select(ScoreRow.run_id, ScoreRow.judge, ScoreRow.value).where(
            ScoreRow.benchmark == ref.benchmark,
            ScoreRow.metric == ref.metric,
            ScoreRow.step == at,
            ScoreRow.run_id.in_(select(wanted.c.id)),
        )
        if ref.judge:
            q = q.where(ScoreRow.judge == ref.judge)
    return {(rid, judge): float(v) for rid, judge, v in s.execute(q)}


def run_query(expr: str, registry: Registry | None = None) -> list[dict[str, Any]]:
    """The matching runs as plain records (``id``, ``study``, ``name``, ``hash``, ``status``, ...)."""
    frame = runs_frame(expr, registry=registry)
    return [{k: _plain(v) for k, v in rec.items()} for rec in frame.to_dict("records")]


def _plain(value: Any) -> Any:
    """numpy / pandas scalars -> Python ones (NaN -> None) for JSON and CSV."""
    if value is None:
        return None
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and value != value:
        return None
    return value
