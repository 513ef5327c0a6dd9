"""The query language: grammar, meaning of every operator and field, step selection, one-line errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from i1lab.errors import I1labError
from i1lab.registry import PlannedMember, Registry, ScoreRecord, vectors
from i1lab.registry.query import (
    And,
    Compare,
    Compiler,
    In,
    Not,
    Or,
    QueryError,
    parse,
    run_query,
    runs_frame,
    tokenize,
)


def spec(adapter: str, blocks: int, lr: float, res: int = 256, **extra: object) -> dict[str, object]:
    return {
        "name": "x",
        "model": {"adapter": {"type": adapter, "blocks": blocks}, "adaln": True, "hidden": None},
        "train": {"lr": lr, "seed": 0},
        "data": {"resolution": res, "remove": ["laion"], "captioner": extra.get("captioner", "qwen")},
        "resources": {"accelerator": "tpu-v6e-8"},
    }


RUNS = {
    # name: (hash char, spec)
    "baseline": ("a", spec("mlp", 1, 1e-4)),
    "tf1": ("b", spec("transformer", 1, 1e-4)),
    "tf2": ("c", spec("transformer", 2, 2e-4, 512)),
    "tf3": ("d", spec("transformer", 3, 4e-4, captioner="it's; DROP TABLE runs; --")),
}


@pytest.fixture
def reg(home: Path) -> Registry:
    registry = Registry()
    members = [
        PlannedMember(
            name=name,
            label=name,
            hash=ch * 64,
            is_baseline=name == "baseline",
            baseline="baseline",
            varied={},
            spec=sp,
            total_steps=100,
        )
        for name, (ch, sp) in RUNS.items()
    ]
    ids = registry.record_plan("adapters", members)
    registry.record_plan("other", [members[0].model_copy(update={"name": "base"})])
    registry.set_status(ids["tf1"], "running")
    registry.set_status(ids["tf1"], "finished")
    values = {  # run -> (step 50, step 100) geneval/overall by judge j1
        "baseline": (0.40, 0.50),
        "tf1": (0.70, 0.55),  # best at 50, latest lower
        "tf2": (0.45, 0.65),
        "tf3": (0.30, 0.35),
    }
    scores = [
        ScoreRecord(run_id=ids[n], step=st, benchmark="geneval", metric="overall", judge="j1", value=v)
        for n, pair in values.items()
        for st, v in zip((50, 100), pair, strict=True)
    ]
    scores.append(
        ScoreRecord(run_id=ids["tf2"], step=100, benchmark="geneval", metric="overall", judge="j2", value=0.9)
    )
    registry.add_scores(scores)
    return registry


def names(reg: Registry, expr: str, at_step: str = "latest") -> list[str]:
    frame = runs_frame(expr, at_step=at_step, registry=reg)
    return sorted(frame["name"])


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        ("model.adapter.type = transformer", ["tf1", "tf2", "tf3"]),
        ("model.adapter.type != transformer", ["baseline"]),
        ("model.adapter.blocks > 1", ["tf2", "tf3"]),
        ("model.adapter.blocks >= 2 and train.lr < 4e-4", ["tf2"]),
        ("train.lr <= 0.0002", ["baseline", "tf1", "tf2"]),
        ("train.lr = 1e-4 or data.resolution = 512", ["baseline", "tf1", "tf2"]),
        ("model.adapter.blocks in (1, 3)", ["baseline", "tf1", "tf3"]),
        ("model.adapter.blocks not in (1, 3)", ["tf2"]),
        ("not (model.adapter.type = mlp or model.adapter.blocks = 3)", ["tf1", "tf2"]),
        ("NOT model.adapter.type = mlp AND model.adapter.blocks = 1", ["tf1"]),
        # and binds tighter than or
        (
            "model.adapter.blocks = 3 or model.adapter.blocks = 1 and train.lr = 1e-4",
            ["baseline", "tf1", "tf3"],
        ),
        ("(model.adapter.blocks = 3 or model.adapter.blocks = 1) and train.lr = 1e-4", ["baseline", "tf1"]),
        ("model.adaln = true and model.hidden = null", ["baseline", "tf1", "tf2", "tf3"]),
        ("model.adaln = false", []),
        ("data.remove = '[\"laion\"]'", ["baseline", "tf1", "tf2", "tf3"]),
        ("resources.accelerator = tpu-v6e-8 and model.adapter.type in ('mlp')", ["baseline"]),
        ("status = finished", ["tf1"]),
        ("status in (queued, running)", ["baseline", "tf2", "tf3"]),
        ("study = other", ["baseline"]),
        ("name = base", ["baseline"]),
        ("study = adapters and not name in (baseline, tf1)", ["tf2", "tf3"]),
        ("hash = " + "c" * 64, ["tf2"]),
        ("hash >= 'b' and hash < 'd'", ["tf1", "tf2"]),
        ("score:geneval/overall > 0.5", ["tf1", "tf2"]),
        ("score:geneval/overall@j1 > 0.6", ["tf2"]),
        ("score:geneval/overall@j2 > 0.6", ["tf2"]),
        ("score:geneval/overall@nobody > 0", []),
        ("score:geneval/overall != 0.5", ["tf1", "tf2", "tf3"]),
        ("score:dpg/dpg_score > 0", []),
        ('data.captioner = "it\'s; DROP TABLE runs; --"', ["tf3"]),
        ("data.captioner = 'it\\'s; DROP TABLE runs; --'", ["tf3"]),
        ("imported = false and id >= 2 and step = 0 and status != finished", ["tf2", "tf3"]),
    ],
)
def test_filter_semantics(reg: Registry, expr: str, expected: list[str]) -> None:
    assert names(reg, expr) == expected


def test_score_at_step_latest_and_best(reg: Registry) -> None:
    assert names(reg, "score:geneval/overall@j1 > 0.6", "50") == ["tf1"]
    assert names(reg, "score:geneval/overall@j1 > 0.6", "latest") == ["tf2"]
    assert names(reg, "score:geneval/overall@j1 > 0.6", "best") == ["tf1", "tf2"]
    assert names(reg, "score:geneval/overall > 0", "75") == []


def test_frame_columns_and_metric_values(reg: Registry) -> None:
    frame = runs_frame("study = adapters", ["geneval/overall"], registry=reg)
    assert list(frame.columns) == [
        "id",
        "study",
        "name",
        "hash",
        "status",
        "step",
        "params",
        "imported",
        "geneval/overall@j1",
        "geneval/overall@j2",
    ]  # two judges scored it: one column each
    rows = {r["name"]: r for r in frame.to_dict("records")}
    assert rows["tf2"]["geneval/overall@j1"] == 0.65 and rows["tf2"]["geneval/overall@j2"] == 0.9
    assert rows["baseline"]["study"] == "adapters"  # the first study it was recorded in
    one = runs_frame("study = adapters", ["geneval/overall@j1"], at_step="best", registry=reg)
    assert dict(zip(one["name"], one["geneval/overall@j1"], strict=True)) == {
        "baseline": 0.5,
        "tf1": 0.70,
        "tf2": 0.65,
        "tf3": 0.35,
    }
    at50 = runs_frame("name = tf1", ["geneval/overall"], at_step=50, registry=reg)
    assert at50["geneval/overall"].tolist() == [0.70]
    assert len(runs_frame("", registry=reg)) == len(RUNS)
    assert len(runs_frame(None, registry=reg, limit=2)) == 2
    empty = runs_frame("model.adapter.blocks = 9", ["geneval/overall"], registry=reg)
    assert len(empty) == 0 and "geneval/overall" in empty.columns
    assert [r["name"] for r in run_query("model.adapter.blocks = 2", reg)] == ["tf2"]


def test_parser_builds_the_ast() -> None:
    node = parse("a.b = 1 or not (c.d in ('x', y) and score:g/m@j >= -2.5e-1)")
    assert isinstance(node, Or)
    left, right = node.items
    assert isinstance(left, Compare) and left.field.name == "a.b" and left.value == 1.0
    assert isinstance(right, Not) and isinstance(right.item, And)
    inside, score = right.item.items
    assert isinstance(inside, In) and inside.values == ("x", "y")
    assert isinstance(score, Compare) and score.field.kind == "score"
    assert (score.field.benchmark, score.field.metric, score.field.judge, score.value) == (
        "g",
        "m",
        "j",
        -0.25,
    )
    assert [t.kind for t in tokenize("x<=1")] == ["word", "op", "word", "end"]


@pytest.mark.parametrize(
    ("expr", "message"),
    [
        ("", "column 1: empty filter"),
        ("model.adapter.type", "column 19: expected an operator"),
        ("model.adapter.type =", "column 21: expected a value, got the end of the filter"),
        ("a.b = 'open", "column 7: unterminated string"),
        ("(a.b = 1", "column 9: expected ')' to close the '(' at column 1"),
        ("a.b = 1)", "column 8: ')' without a matching '('"),
        ("a.b = 1 b.c = 2", "column 9: expected 'and', 'or' or the end, got 'b.c'"),
        ("a.b == 1", "column 5: use '=' to compare"),
        ("a.b ! 1", "column 5: '!' must be followed by '='"),
        ("a.b in 1, 2", "column 8: expected '(' after 'in'"),
        ("a.b in (1 2)", "column 11: expected ',' or ')' in the list"),
        ("a.b not = 1", "column 9: expected 'in' after 'not'"),
        ("and = 1", "column 1: expected a field, got the keyword 'and'"),
        ("= 1", "column 1: expected a field, got '='"),
        ("1.5 = x", "column 1: '1.5' is not a field"),
        ("score:geneval = 1", "column 1: a score field is score:BENCHMARK/METRIC"),
        ("score:g/m = high", "column 11: score:g/m compares with numbers"),
        ("a.b < true", "column 5: true, false and null compare only with ="),
        ("status = finshed", "unknown status 'finshed' (did you mean 'finished'?"),
        ("id = abc", "id compares with numbers"),
        ("imported = 1", "imported compares with true or false"),
        ("a.b = x and or", "column 13: expected a field, got the keyword 'or'"),
        ("a.b = and", "column 7: expected a value, got the keyword 'and'"),
        ("a.b = x\x00y", "column 8: unprintable character"),
    ],
)
def test_errors_are_one_line_with_the_column(expr: str, message: str) -> None:
    with pytest.raises(QueryError) as info:
        Compiler().validate(parse(expr))
    text = str(info.value)
    assert text.startswith("query: column ") and "\n" not in text
    assert message in text, text


def test_unknown_fields_are_named_with_a_suggestion(reg: Registry) -> None:
    with pytest.raises(
        I1labError, match=r"column 1: unknown field 'model.adaptr.type' \(did you mean 'model.adapter.type'"
    ):
        runs_frame("model.adaptr.type = mlp", registry=reg)
    with pytest.raises(
        I1labError,
        match=r"column 27: 'model.adapter' is a section, not a field; its fields: model\.adapter\.blocks",
    ):
        runs_frame("model.adapter.type = x or model.adapter = mlp", registry=reg)
    with pytest.raises(I1labError, match="--at-step must be a step number, latest or best"):
        runs_frame("", at_step="last", registry=reg)
    with pytest.raises(I1labError, match="--metric must be BENCHMARK/METRIC"):
        runs_frame("", ["geneval"], registry=reg)


def test_cli_query_formats(reg: Registry, home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from i1lab.cli import main as cli

    monkeypatch.setattr(cli.out, "width", 250)
    runner = CliRunner()

    def query(*args: str) -> str:
        res = runner.invoke(cli.app, ["query", *args])
        assert res.exit_code == 0, res.output
        return res.stdout

    as_json = query("score:geneval/overall@j1 >= 0.5", "--metric", "geneval/overall@j1", "--format", "json")
    rows = json.loads(as_json)
    assert [(r["name"], r["geneval/overall@j1"]) for r in rows] == [
        ("baseline", 0.5),
        ("tf1", 0.55),
        ("tf2", 0.65),
    ]
    lines = query(
        "name = tf1", "--metric", "geneval/overall", "--at-step", "best", "--format", "csv"
    ).splitlines()
    assert lines[0].endswith(",geneval/overall") and lines[1].endswith(",0.7")
    table = query("model.adapter.type = transformer", "--metric", "geneval/overall@j1", "--limit", "2")
    assert "2 runs" in table and "tf2" in table and "0.6500" in table and "tf3" not in table
    # the installed command: a bad filter is one line on stderr and exit status 2
    bad = subprocess.run(
        [sys.executable, "-m", "i1lab", "query", "model.adapter.type = 'x"],
        capture_output=True,
        text=True,
        env={**os.environ, "I1LAB_HOME": str(home)},
        check=False,
    )
    assert bad.returncode == 2 and bad.stderr.strip().count("\n") == 0
    assert bad.stderr.startswith("error: query: column 22: unterminated string")


def test_values_at_a_step_come_from_the_score_vectors(reg: Registry, monkeypatch: pytest.MonkeyPatch) -> None:
    """At a step the metric columns are read from each checkpoint's packed score vector; they equal the
    scores themselves, follow a rescoring, and equal the pivot over the scores table that is used when
    two score keys would share an id."""
    metrics = ["geneval/overall", "dpg/dpg_score"]
    frame = runs_frame("study = adapters", metrics, at_step=100, registry=reg)
    ids = dict(zip(frame["name"], frame["id"], strict=True))
    truth = {(s.run_id, s.judge): s.value for s in reg.scores(ids.values()) if s.step == 100}
    assert list(frame.columns[-3:]) == ["geneval/overall@j1", "geneval/overall@j2", "dpg/dpg_score"]
    for _, row in frame.iterrows():
        for judge in ("j1", "j2"):
            want = truth.get((row["id"], judge))
            got = row[f"geneval/overall@{judge}"]
            assert (got == want) if want is not None else got != got, (row["name"], judge)
    assert frame["dpg/dpg_score"].isna().all()  # asked, never scored: a column of NaN
    reg.add_scores(
        [
            ScoreRecord(
                run_id=ids["tf1"], step=100, benchmark="geneval", metric="overall", judge="j1", value=0.11
            )
        ]
    )
    again = runs_frame("study = adapters", metrics, at_step=100, registry=reg)
    assert again.set_index("name").loc["tf1", "geneval/overall@j1"] == 0.11
    monkeypatch.setattr(vectors, "key_id", lambda *key: 7)  # every key the same id: vectors unusable
    pd.testing.assert_frame_equal(runs_frame("study = adapters", metrics, at_step=100, registry=reg), again)
