"""Malicious and malformed filters: each is rejected with a one-line error or read as values; the SQL
never contains text from the filter, and the registry's tables survive every one of them."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, inspect, select
from sqlalchemy.dialects import postgresql, sqlite

from i1lab.errors import I1labError
from i1lab.registry import PlannedMember, Registry, ScoreRecord
from i1lab.registry.query import And, Compare, Compiler, In, Node, Not, Number, Or, parse, runs_frame
from i1lab.registry.schema import Base, RunFieldRow, RunRow, ScoreRow

INJECTION = "'; DROP TABLE runs; --"
FRAGMENTS = [
    "'",
    '"',
    "\\",
    ";",
    "--",
    "/*",
    "*/",
    " ",
    "(",
    ")",
    ",",
    "=",
    "!=",
    "<",
    ">=",
    "and",
    "or",
    "not",
    "in",
    "AND",
    "Or",
    "null",
    "true",
    "1",
    "-2.5e3",
    "1e309",
    "0x10",
    "name",
    "status",
    "study",
    "hash",
    "id",
    "model.adapter.type",
    "train.lr",
    "score:geneval/overall",
    "score:g/m@j",
    "DROP TABLE runs",
    "DELETE FROM scores",
    "UNION SELECT * FROM run_fields",
    "SELECT",
    "runs",
    "sqlite_master",
    "%",
    "_",
    "?",
    ":param_1",
    "$1",
    "é",
    "名前",
    "🙂",
    "\u202e",
    "\x00",
    "\n",
    "\t",
    INJECTION,
]
filters = st.one_of(
    st.lists(st.sampled_from(FRAGMENTS), min_size=1, max_size=12).map("".join),
    st.lists(st.sampled_from(FRAGMENTS), min_size=1, max_size=12).map(" ".join),
    st.text(max_size=40),
    st.builds(
        lambda f, op, v, q: f"{f} {op} {q}{v}{q}",
        st.sampled_from(
            ["name", "model.adapter.type", "study", "status", "train.lr", "score:geneval/overall"]
        ),
        st.sampled_from(["=", "!=", "<", ">=", "in"]),
        st.text(max_size=20),
        st.sampled_from(["'", '"', ""]),
    ),
)


def normalized(node: Node) -> Node:
    """The same filter with every value replaced by a neutral one of the same kind."""
    if isinstance(node, And):
        return And(tuple(normalized(n) for n in node.items))
    if isinstance(node, Or):
        return Or(tuple(normalized(n) for n in node.items))
    if isinstance(node, Not):
        return Not(normalized(node.item))

    def neutral(v: object) -> object:
        if isinstance(v, Number):
            return Number("1")
        if isinstance(v, str):
            return "v"
        return v

    if isinstance(node, In):
        return In(node.field, tuple(neutral(v) for v in node.values), node.pos)  # type: ignore[misc]
    return Compare(node.field, node.op, neutral(node.value), node.pos)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def reg(tmp_path_factory: pytest.TempPathFactory) -> Registry:
    path: Path = tmp_path_factory.mktemp("fuzz") / "registry.db"
    return build(f"sqlite:///{path}")


def build(url: str) -> Registry:
    registry = Registry(url)

    def spec(adapter: str) -> dict[str, object]:
        return {
            "model": {"adapter": {"type": adapter}},
            "train": {"lr": 1e-4},
            "data": {"captioner": INJECTION},
        }

    ids = registry.record_plan(
        "fuzz",
        [
            PlannedMember(
                name=name,
                label=name,
                hash=ch * 64,
                is_baseline=name == "baseline",
                baseline="baseline",
                varied={},
                spec=spec(adapter),
                total_steps=1,
            )
            for name, ch, adapter in (
                ("baseline", "a", "mlp"),
                (INJECTION, "b", "transformer"),
                ("名前 🙂", "c", "é"),
            )
        ],
    )
    registry.add_scores(
        [
            ScoreRecord(run_id=rid, step=1, benchmark="geneval", metric="overall", judge="j", value=0.5)
            for rid in ids.values()
        ]
    )
    return registry


def state(reg: Registry) -> tuple[set[str], int, int, int]:
    with reg.session() as s:
        return (
            set(inspect(reg.engine).get_table_names()),
            s.scalar(select(func.count()).select_from(RunRow)) or 0,
            s.scalar(select(func.count()).select_from(RunFieldRow)) or 0,
            s.scalar(select(func.count()).select_from(ScoreRow)) or 0,
        )


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(expr=filters)
def test_fuzzed_filters_are_rejected_or_bound_as_values(reg: Registry, expr: str) -> None:
    before = state(reg)
    try:
        node = parse(expr)
        Compiler().validate(node)
    except I1labError as exc:
        message = str(exc)
        assert message.startswith("query: column ") and "\n" not in message and "\r" not in message
        return
    # The SQL text depends on the filter's structure only: values never reach it.
    for dialect in (sqlite.dialect(), postgresql.dialect()):
        sql = str(Compiler().ids(node).compile(dialect=dialect))
        assert sql == str(Compiler().ids(normalized(node)).compile(dialect=dialect))
    try:
        frame = runs_frame(expr, ["geneval/overall"], registry=reg)
    except I1labError as exc:  # an unknown field, found against the registry's keys
        assert "\n" not in str(exc) and "unknown field" in str(exc)
    else:
        assert set(frame["name"]) <= {"baseline", INJECTION, "名前 🙂"}
    assert state(reg) == before


INJECTIONS = [
    (f'name = "{INJECTION}"', [INJECTION]),
    ("name = '\\'; DROP TABLE runs; --'", [INJECTION]),
    (f'data.captioner = "{INJECTION}"', ["baseline", INJECTION, "名前 🙂"]),
    ("name = '名前 🙂' or model.adapter.type = é", ["名前 🙂"]),
    ("name in ('x', \"'; DROP TABLE runs; --\") and score:geneval/overall >= 0.5", [INJECTION]),
    ("study = \"fuzz' OR '1'='1\"", []),
    ("name = 'baseline' -- or 1 = 1", None),
    ("name = baseline; DROP TABLE runs", None),
    ("name = baseline /* */", None),
    ("status = \"queued' OR 'x'='x\"", None),
    ("(name = baseline or name = '名前 🙂') and not score:geneval/overall < 0.5", ["baseline", "名前 🙂"]),
]


@pytest.mark.parametrize(("expr", "expected"), INJECTIONS)
def test_injection_attempts(reg: Registry, expr: str, expected: list[str] | None) -> None:
    attempt(reg, expr, expected)


def test_injection_attempts_on_postgresql(postgres_url: str) -> None:
    registry = build(postgres_url)
    for expr, expected in INJECTIONS:
        attempt(registry, expr, expected)
    frame = runs_frame(
        "model.adapter.type in (mlp, transformer)", ["geneval/overall"], at_step=1, registry=registry
    )
    assert sorted(frame["name"]) == sorted(["baseline", INJECTION]) and frame["geneval/overall"].tolist() == [
        0.5,
        0.5,
    ]


def attempt(reg: Registry, expr: str, expected: list[str] | None) -> None:
    before = state(reg)
    if expected is None:
        with pytest.raises(I1labError) as info:
            runs_frame(expr, registry=reg)
        assert str(info.value).startswith("query: column ") and "\n" not in str(info.value)
    else:
        assert sorted(runs_frame(expr, registry=reg)["name"]) == sorted(expected)
    assert state(reg) == before
    assert before[0] >= {t.name for t in Base.metadata.sorted_tables}
