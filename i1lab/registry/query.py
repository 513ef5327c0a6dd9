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
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from sqlalchemy import (
    Column,
    ColumnElement,
    Integer,
    MetaData,
    Select,
    Table,
    and_,
    case,
    exists,
    func,
    insert,
    intersect,
    literal,
    not_,
    or_,
    select,
    union,
)
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import aliased
from sqlalchemy.sql import operators

from i1lab.errors import I1labError
from i1lab.registry import vectors
from i1lab.registry.db import fetch_rows
from i1lab.registry.fields import TEXT_CAP, field_text
from i1lab.registry.records import STATUSES
from i1lab.registry.schema import (
    FieldKeyRow,
    RunFieldRow,
    RunRow,
    ScoreKeyRow,
    ScoreRow,
    ScoreSummaryRow,
    ScoreVectorRow,
    StudyRow,
    StudyRunRow,
)

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
MAX_FILTER_CHARS = 10_000  # characters of a filter
MAX_FILTER_DEPTH = 16  # nested parentheses and 'not's (each nests a subquery; SQLite's parser stack is small)
MAX_FILTER_TERMS = 256  # comparisons in a filter (each is a subquery)
MAX_LITERAL_CHARS = 1_024  # characters of a value or field name (text fields keep 512)
MAX_IN_VALUES = 1_000  # values of one 'in (...)' list


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
    if len(expr) > MAX_FILTER_CHARS:
        raise QueryError(
            f"the filter has {len(expr)} characters (at most {MAX_FILTER_CHARS})", MAX_FILTER_CHARS
        )
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
            if pos - start > MAX_LITERAL_CHARS + 2:
                raise QueryError(f"a string of more than {MAX_LITERAL_CHARS} characters", start)
            out.append(Token("string", "".join(chars), start))
        else:
            m = WORD_CHARS.match(expr, pos)
            assert m is not None  # every other character starts a word
            word = m.group()
            if len(word) > MAX_LITERAL_CHARS:
                raise QueryError(f"a word of {len(word)} characters (at most {MAX_LITERAL_CHARS})", pos)
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
        self.depth = 0
        self.terms = 0

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
        # (a or (b or c)) is a or b or c: one union, not one subquery per parenthesis
        flat = tuple(i for item in items for i in (item.items if isinstance(item, Or) else (item,)))
        return flat[0] if len(flat) == 1 else Or(flat)

    def and_expr(self) -> Node:
        items = [self.not_expr()]
        while self.keyword("and"):
            self.next()
            items.append(self.not_expr())
        flat = tuple(i for item in items for i in (item.items if isinstance(item, And) else (item,)))
        return flat[0] if len(flat) == 1 else And(flat)

    def nested(self, tok: Token) -> None:
        self.depth += 1
        if self.depth > MAX_FILTER_DEPTH:
            raise QueryError(f"nested deeper than {MAX_FILTER_DEPTH} levels of '(' and 'not'", tok.pos)

    def not_expr(self) -> Node:
        if self.keyword("not"):
            self.nested(self.next())
            node: Node = Not(self.not_expr())
            self.depth -= 1
            return node
        if self.tok.kind == "lparen":
            opened = self.next()
            self.nested(opened)
            node = self.or_expr()
            self.depth -= 1
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
        self.terms += 1
        if self.terms > MAX_FILTER_TERMS:
            raise QueryError(f"more than {MAX_FILTER_TERMS} comparisons in one filter", tok.pos)
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
            comma = self.next()
            if len(values) >= MAX_IN_VALUES:
                raise QueryError(f"more than {MAX_IN_VALUES} values in one 'in' list", comma.pos)
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


LIST_VS_CHECK = 6  # listing a leaf's index range vs checking a candidate by key: cost ratio
PROBE = 100_000  # index entries a selectivity probe counts at most (a covering-index count: ~0.1 µs each)


@dataclass(frozen=True)
class LeafSQL:
    """A leaf as SQL: the run-id column of its table and the conditions on that table."""

    run_id: Any
    conds: list[ColumnElement[bool]]


class Compiler:
    """AST -> SQL: ``ids(node)`` is a ``SELECT`` of the matching run ids; every value is a bound parameter.

    Plan: in a conjunction one *driver* (the most selective leaf, found with bounded ``count`` probes
    when a session is given) lists candidate ids from its index, and every other conjunct is checked
    per candidate with a primary-key lookup (``EXISTS``). Cost follows the smallest leaf, not the
    number of runs. Disjunctions of leaves are unions; negations are checked per run."""

    def __init__(
        self,
        at_step: AtStep = "latest",
        known_fields: Iterable[str] | None = None,
        session: Any | None = None,
    ) -> None:
        self.at_step = at_step
        self.known = set(known_fields) if known_fields is not None else None
        self.session = session

    # --- sets of ids --------------------------------------------------------------------------------
    def ids(self, node: Node) -> Select[Any]:
        if isinstance(node, And):
            return self.and_ids(node.items)
        if isinstance(node, Or):
            if all(self.drivable(n) for n in node.items):
                return select(union(*(self.ids(n) for n in node.items)).subquery().c[0])
            return select(RunRow.id).where(self.check(node, RunRow.id))
        if isinstance(node, Not):
            return select(RunRow.id).where(not_(self.check(node.item, RunRow.id)))
        leaf = self.leaf(node)
        query: Select[Any] = select(leaf.run_id).where(*leaf.conds)
        return query

    def and_ids(self, items: Sequence[Node]) -> Select[Any]:
        candidates = [n for n in items if self.drivable(n)]
        if not candidates:
            return select(RunRow.id).where(*(self.check(n, RunRow.id) for n in items))
        counts = self.probe(candidates)
        order = sorted(candidates, key=lambda n: counts.get(id(n), PROBE + 1))
        # Leaves whose index ranges are cheaper to list and intersect than to check per candidate
        # (listing an index entry costs about a sixth of a per-run lookup); the rest are checked.
        listed, total = [order[0]], self.total_runs(counts)
        first = counts.get(id(order[0]))
        estimate = float(first) if first is not None else None
        for n in order[1:]:
            size = counts.get(id(n))
            if estimate is None or size is None or not total or size > LIST_VS_CHECK * estimate:
                break
            listed.append(n)
            estimate = estimate * size / total  # as if the leaves were independent
        ids = self.ids(listed[0]) if len(listed) == 1 else intersect(*(self.ids(n) for n in listed))
        d = ids.subquery()
        rid = d.c[0]
        # the most selective checks first: a candidate that fails one is not looked up further
        rest = sorted((n for n in items if n not in listed), key=lambda n: counts.get(id(n), PROBE + 1))
        return select(rid).where(*(self.check(n, rid) for n in rest))

    def total_runs(self, counts: dict[int, int]) -> int | None:
        """How many runs the registry holds (only asked when a plan has counts to weigh)."""
        if self.session is None or len(counts) < 2:
            return None
        return int(self.session.scalar(select(func.max(RunRow.id))) or 0)

    def drivable(self, node: Node) -> bool:
        """Can list its ids from an index (positive leaves on indexed columns, and/or of such)?"""
        if isinstance(node, And):
            return any(self.drivable(n) for n in node.items)
        if isinstance(node, Or):
            return all(self.drivable(n) for n in node.items)
        if isinstance(node, Not):
            return False
        return node.field.kind != "run" or node.field.name in ("status", "hash", "id")

    def probe(self, candidates: list[Node]) -> dict[int, int]:
        """id(leaf) -> how many runs it matches, for the candidate leaves whose count is known: each is
        counted up to ``LIST_VS_CHECK`` times the smallest count seen so far (enough to pick the driver,
        decide which leaves to intersect and order the checks; a tiny leaf keeps every later probe tiny);
        a leaf with more is left out. Nothing without a session: then the first candidate drives."""
        if self.session is None or len(candidates) == 1:
            return {}
        counts: dict[int, int] = {}
        bound = PROBE
        for n in candidates:
            if isinstance(n, Compare | In):
                probe = select(func.count()).select_from(self.ids(n).limit(bound + 1).subquery())
                found = int(self.session.scalar(probe) or 0)
                if found > bound:
                    continue
                counts[id(n)] = found
                bound = min(bound, max(LIST_VS_CHECK * found, 1))
        return counts

    # --- per-run checks -----------------------------------------------------------------------------
    def check(self, node: Node, rid: Any) -> ColumnElement[bool]:
        if isinstance(node, And):
            return and_(*(self.check(n, rid) for n in node.items))
        if isinstance(node, Or):
            return or_(*(self.check(n, rid) for n in node.items))
        if isinstance(node, Not):
            return not_(self.check(node.item, rid))
        if node.field.kind == "run" and rid is RunRow.id:
            return and_(*self.leaf(node, plain_runs=True).conds)
        leaf = self.leaf(node, lookup=True)
        return exists(select(literal(1)).where(leaf.run_id == rid, *leaf.conds))

    # --- leaves -------------------------------------------------------------------------------------
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

    def validate(self, node: Node) -> None:
        """Raise the first error of the filter (unknown fields, wrong value types) in reading order."""
        if isinstance(node, And | Or):
            for n in node.items:
                self.validate(n)
        elif isinstance(node, Not):
            self.validate(node.item)
        else:
            self.leaf(node)

    def leaf(self, node: Compare | In, plain_runs: bool = False, lookup: bool = False) -> LeafSQL:
        """The leaf's table and conditions. ``lookup``: for checking given runs one by one -- the value
        comparison is then written so that no value index can serve it (``x + 0``, ``x || ''``), which
        leaves the planner one choice, the run's primary-key lookup."""
        field = node.field
        op, values = ("in", node.values) if isinstance(node, In) else (node.op, (node.value,))
        if op not in ("=", "in") and any(v is None or isinstance(v, bool) for v in values):
            raise QueryError(f"true, false and null compare only with = , != or in (got {op!r})", node.pos)
        if field.kind == "spec":
            self.check_spec_field(field)
            return self.spec_leaf(field, op, values, lookup)
        if field.kind == "member":
            sr, st = aliased(StudyRunRow), aliased(StudyRow)
            texts = [self.text(v) for v in values]
            if field.name == "study":
                ids = select(st.id).where(self.cmp(st.name, op, texts))
                return LeafSQL(sr.run_id, [sr.study_id.in_(ids)])
            return LeafSQL(sr.run_id, [self.cmp(sr.name, op, texts)])
        if field.kind == "run":
            runs = RunRow if plain_runs else aliased(RunRow)
            return LeafSQL(runs.id, [self.run_cond(runs, field, op, values, node.pos)])
        return self.score_leaf(field, op, values, node.pos, lookup)

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

    def spec_leaf(self, field: Field, op: str, values: Sequence[Value], lookup: bool) -> LeafSQL:
        f = aliased(RunFieldRow)
        nums = [v for v in values if isinstance(v, float)]
        texts = [field_text(v)[:TEXT_CAP] for v in values if not isinstance(v, float)]
        conds = []
        if nums:
            conds.append(self.cmp(f.value_num + 0 if lookup else f.value_num, op, nums))
        if texts:
            conds.append(self.cmp(f.value_text.concat("") if lookup else f.value_text, op, texts))
        return LeafSQL(f.run_id, [f.key == field.name, or_(*conds)])

    def run_cond(
        self, runs: Any, field: Field, op: str, values: Sequence[Value], pos: int
    ) -> ColumnElement[bool]:
        column: Any = getattr(runs, field.name)
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

    def score_leaf(self, field: Field, op: str, values: Sequence[Value], pos: int, lookup: bool) -> LeafSQL:
        if any(not isinstance(v, float) for v in values):
            raise QueryError(f"score:{field.name} compares with numbers", pos)
        if self.at_step in ("latest", "best"):
            t = aliased(ScoreSummaryRow)
            value: Any = t.latest_value if self.at_step == "latest" else t.best_value
            value = value + 0 if lookup else value
            conds = [t.benchmark == field.benchmark, t.metric == field.metric, self.cmp(value, op, values)]
            if field.judge is not None:
                conds.append(t.judge == field.judge)
            return LeafSQL(t.run_id, conds)
        sc = aliased(ScoreRow)
        conds = [
            sc.benchmark == field.benchmark,
            sc.metric == field.metric,
            sc.step == self.at_step,
            self.cmp(sc.value + 0 if lookup else sc.value, op, values),
        ]
        if field.judge is not None:
            conds.append(sc.judge == field.judge)
        return LeafSQL(sc.run_id, conds)


def spec_fields(node: Node) -> list[Field]:
    if isinstance(node, And | Or):
        return [f for n in node.items for f in spec_fields(n)]
    if isinstance(node, Not):
        return spec_fields(node.item)
    return [node.field] if node.field.kind == "spec" else []


def compile_filter(
    expr: str | None,
    at_step: AtStep = "latest",
    known_fields: Iterable[str] | None = None,
    session: Any | None = None,
) -> Select[Any]:
    """``SELECT`` of the ids of the runs matching a filter ("" or None: every run)."""
    if expr is None or not expr.strip():
        return select(RunRow.id)
    node = parse(expr)
    compiler = Compiler(at_step, known_fields, session)
    compiler.validate(node)
    return compiler.ids(node)


def run_ids_query(registry: Registry, expr: str | None, at_step: AtStep = "latest") -> Select[Any]:
    """``SELECT`` of the ids of the runs matching a filter, with spec fields checked against the
    registry's known keys and the plan chosen with selectivity probes. An id may appear more than once
    (a run in two matching studies, a score under two judges): callers keep distinct ids."""
    with registry.session() as s:
        known: list[str] | None = None
        node = parse(expr) if expr and expr.strip() else None
        if node is not None and spec_fields(node):
            names = list({f.name for f in spec_fields(node)})
            found = {k for (k,) in s.execute(select(FieldKeyRow.key).where(FieldKeyRow.key.in_(names)))}
            if len(found) != len(names):
                known = [k for (k,) in s.execute(select(FieldKeyRow.key))]
        return compile_filter(expr, at_step, known, s)


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
    import numpy as np
    import pandas as pd

    from i1lab.registry import Registry

    # Everything given is read before the registry is opened: a refused filter creates nothing.
    if expr and expr.strip():
        parse(expr)
    at = parse_at_step(at_step) if isinstance(at_step, str) else at_step
    refs = [parse_metric(m) for m in metrics]
    registry = registry or Registry()
    base_cols = ["id", "study", "name", "hash", "status", "step", "params", "imported"]
    try:
        run_ids, rows, first, slots, values = _fetch_frame(registry, expr, at, refs, limit)
    except OperationalError as exc:  # a filter nested beyond what the database's SQL parser takes
        reason = str(exc.orig or exc).splitlines()[0] if str(exc.orig or exc) else "error"
        if not any(s in reason for s in ("stack overflow", "too large", "too many", "too deep")):
            raise
        raise I1labError(f"query: the filter is too complex for the database ({reason})") from None
    firsts = [first.get(r) for r in run_ids]
    columns: dict[str, Any] = {
        "id": run_ids,
        "study": [f[3] if f else None for f in firsts],
        "name": [f[2] if f else None for f in firsts],
        "hash": [r[1] for r in rows],
        "status": [r[2] for r in rows],
        "step": [r[3] for r in rows],
        "params": [r[4] for r in rows],
        "imported": [bool(r[5]) for r in rows],
    }
    titles: list[str] = []
    for i, ref in enumerate(refs):
        # a metric's column per judge that scored some of these runs (one plain column when asked
        # with a judge or when a single judge did)
        judges = sorted(judge for j, (k, judge) in enumerate(slots) if k == i and has_values(values[:, j]))
        single = bool(ref.judge) or len(judges) <= 1
        for judge in judges or [""]:
            title = ref.title if single else f"{ref.title}@{judge}"
            if title in titles:
                continue
            titles.append(title)
            col = slots.index((i, judge)) if (i, judge) in slots else None
            columns[title] = values[:, col] if col is not None else np.full(len(run_ids), np.nan)
    return pd.DataFrame(columns, columns=[*base_cols, *titles])


def _fetch_frame(
    registry: Registry, expr: str | None, at: AtStep, refs: list[MetricRef], limit: int | None
) -> tuple[list[Any], list[Any], dict[int, tuple[int, int, str, str]], Any, Any]:
    """The filter's runs, their first memberships and their metric columns (``runs_frame``'s queries)."""
    matching = run_ids_query(registry, expr, at).subquery()
    picked: Select[Any] = select(matching.c[0])
    if limit is not None:
        picked = picked.distinct().order_by(matching.c[0]).limit(limit)
    chosen = Table(
        f"i1lab_frame_{uuid.uuid4().hex[:12]}",
        MetaData(),
        Column("id", Integer, primary_key=True),
        prefixes=["TEMPORARY"],
    )
    with registry.session() as session:
        s = session.connection()
        # The filter runs once, into a temporary table of distinct ids that the other queries join;
        # their rows are fetched as plain tuples (thousands of rows: no per-row objects).
        chosen.create(s)
        try:
            s.execute(insert_distinct(s, chosen, picked))
            if s.dialect.name == "postgresql":
                # a fresh temporary table has no statistics: PostgreSQL would plan the joins below for
                # thousands of ids and hash-scan whole tables for one; it measures the table instead
                s.exec_driver_sql(f"ANALYZE {chosen.name}")  # our generated name, not input
            listed = select(chosen.c.id)  # joined as IN (...): SQLite then seeks each id by key
            runs = select(RunRow.id, RunRow.hash, RunRow.status, RunRow.step, RunRow.params, RunRow.imported)
            rows = fetch_rows(s, runs.where(RunRow.id.in_(listed)).order_by(RunRow.id))
            sr = StudyRunRow
            members = select(sr.run_id, sr.study_id, sr.position, sr.name, StudyRow.name).join(StudyRow)
            first: dict[int, tuple[int, int, str, str]] = {}  # run -> its first membership
            for rid, study_id, position, name, study in fetch_rows(s, members.where(sr.run_id.in_(listed))):
                held = first.get(rid)
                if held is None or (study_id, position) < held[:2]:
                    first[rid] = (study_id, position, name, study)
            run_ids = [r[0] for r in rows]
            slots, values = _metric_columns(s, refs, at, listed, run_ids)
        finally:
            chosen.drop(s)
    return run_ids, rows, first, slots, values


def insert_distinct(conn: Any, table: Table, ids: Select[Any]) -> Any:
    """``INSERT INTO table (id) SELECT ...`` that skips ids already there (the filter may repeat one)."""
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return pg_insert(table).from_select(["id"], ids).on_conflict_do_nothing()
    return insert(table).from_select(["id"], ids).prefix_with("OR IGNORE", dialect="sqlite")


def has_values(column: Any) -> bool:
    import numpy as np

    return bool(len(column)) and not bool(np.isnan(column).all())


def metric_matrix(run_ids: list[int], width: int, pivot: list[tuple[Any, ...]]) -> Any:
    """A float matrix, one row per run id (sorted ascending) and one column per value slot, NaN where
    a run has no value; ``pivot`` holds rows ``(run id, value, value, ...)`` for some of the runs."""
    import numpy as np

    out = np.full((len(run_ids), width), np.nan)
    if pivot and width:
        got = np.array(pivot, dtype=np.float64)  # None -> NaN
        where = np.searchsorted(np.asarray(run_ids, dtype=np.int64), got[:, 0].astype(np.int64))
        out[where] = got[:, 1:]
    return out


def _metric_columns(
    s: Any,
    refs: Sequence[MetricRef],
    at: AtStep,
    listed: Select[Any],
    run_ids: list[int],
) -> tuple[list[tuple[int, str]], Any]:
    """The value slots ``(ref index, judge)`` -- a column per judge of each metric, from the ``score_keys``
    catalogue -- and a matrix of the scores at ``at``, a row per run of ``run_ids`` (the ids ``listed``
    selects) and a column per slot.

    At a step the values come from the checkpoints' score vectors (one packed value per run); at the
    latest or best step, from one pivoted query over the score summaries (a run's lie together)."""
    catalogue = [
        tuple(k) for k in s.execute(select(ScoreKeyRow.benchmark, ScoreKeyRow.metric, ScoreKeyRow.judge))
    ]
    judges: dict[tuple[str, str], list[str]] = {}
    for bench, metric, judge in sorted(catalogue, key=lambda k: k[2]):
        judges.setdefault((bench, metric), []).append(judge)
    slots: list[tuple[int, str]] = []  # (ref index, judge) per value column
    for k, ref in enumerate(refs):
        for judge in judges.get((ref.benchmark, ref.metric), []):
            if ref.judge is None or judge == ref.judge:
                slots.append((k, judge))
    if not slots:
        return [], metric_matrix(run_ids, 0, [])
    if not isinstance(at, str):
        key_ids = {key: vectors.key_id(*key) for key in catalogue}
        if len(set(key_ids.values())) == len(key_ids):  # else (never seen: 64-bit ids) the pivot below
            v = ScoreVectorRow
            rows = fetch_rows(s, select(v.run_id, v.entries).where(v.run_id.in_(listed), v.step == at))
            wanted = [key_ids[(refs[k].benchmark, refs[k].metric, judge)] for k, judge in slots]
            return slots, vectors.matrix(run_ids, wanted, rows)
    table: Any
    if at in ("latest", "best"):
        table = ScoreSummaryRow
        value: Any = table.latest_value if at == "latest" else table.best_value
        step_cond: list[ColumnElement[bool]] = []
    else:
        table, value = ScoreRow, ScoreRow.value
        step_cond = [ScoreRow.step == at]
    columns: list[Any] = [table.run_id]
    for k, judge in slots:
        ref = refs[k]
        hit = and_(table.benchmark == ref.benchmark, table.metric == ref.metric)
        if len(judges[(ref.benchmark, ref.metric)]) > 1:
            hit = and_(hit, table.judge == judge)
        columns.append(func.max(case((hit, value))))
    query = select(*columns).where(table.run_id.in_(listed), *step_cond).group_by(table.run_id)
    return slots, metric_matrix(run_ids, len(slots), fetch_rows(s, query))


def run_query(expr: str, registry: Registry | None = None) -> list[dict[str, Any]]:
    """The matching runs as plain records (``id``, ``study``, ``name``, ``hash``, ``status``, ...)."""
    frame = runs_frame(expr, registry=registry)
    return [{k: plain(v) for k, v in rec.items()} for rec in frame.to_dict("records")]


def plain(value: Any) -> Any:
    """numpy / pandas scalars -> Python ones (NaN -> None) for JSON and CSV."""
    if value is None:
        return None
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and value != value:
        return None
    return value
