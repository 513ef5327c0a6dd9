"""The registry on a real SQLite database: migrations, idempotent plans, scores, membership."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import inspect, text

from i1lab.errors import I1labError
from i1lab.registry import PlannedMember, Registry, ScoreRecord
from i1lab.registry.db import head_revision
from i1lab.registry.schema import Base


def member(name: str, digest: str, baseline: bool = False, lr: float = 1e-4) -> PlannedMember:
    return PlannedMember(
        name=name,
        label=name,
        hash=digest,
        is_baseline=baseline,
        baseline="baseline",
        varied={},
        spec={"name": name, "train": {"lr": lr, "steps": 10}, "model": {"adaln": True}},
        total_steps=10,
    )


def test_migrations_create_the_orm_schema(home: Path) -> None:
    reg = Registry()
    insp = inspect(reg.engine)
    for table in Base.metadata.sorted_tables:
        assert {c["name"] for c in insp.get_columns(table.name)} == set(table.columns.keys()), table.name
    with reg.engine.connect() as conn:
        assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar() == head_revision()
        assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
    assert (home / "registry.db").is_file()


def test_record_plan_is_idempotent_and_shares_runs(home: Path) -> None:
    reg = Registry()
    ids = reg.record_plan("s1", [member("baseline", "a" * 64, True), member("v", "b" * 64, lr=2e-4)])
    again = reg.record_plan("s1", [member("baseline", "a" * 64, True), member("v", "b" * 64, lr=2e-4)])
    assert ids == again
    other = reg.record_plan("s2", [member("base", "a" * 64, True)])
    assert other["base"] == ids["baseline"]  # the shared baseline is one run
    assert len(reg.runs()) == 2
    assert [m.name for m in reg.members("s1")] == ["baseline", "v"]
    assert reg.find_run("s2/base").id == ids["baseline"]
    assert reg.find_run("bbbbbb").id == ids["v"]


def test_scores_replace_same_key_and_keep_judges_apart(home: Path) -> None:
    reg = Registry()
    rid = reg.record_plan("s", [member("baseline", "c" * 64, True)])["baseline"]
    reg.add_scores(
        [ScoreRecord(run_id=rid, step=10, benchmark="shapes", metric="overall", judge="j1", value=0.1)]
    )
    reg.add_scores(
        [
            ScoreRecord(run_id=rid, step=10, benchmark="shapes", metric="overall", judge="j1", value=0.3),
            ScoreRecord(run_id=rid, step=10, benchmark="shapes", metric="overall", judge="j2", value=0.5),
        ]
    )
    got = {(s.judge, s.value) for s in reg.scores([rid])}
    assert got == {("j1", 0.3), ("j2", 0.5)}


def test_status_transitions_and_attempts(home: Path) -> None:
    reg = Registry()
    rid = reg.record_plan("s", [member("baseline", "d" * 64, True)])["baseline"]
    assert reg.run(rid).status == "queued"
    reg.set_status(rid, "running")
    reg.set_progress(rid, 7)
    reg.set_status(rid, "failed", "loss became nan at step 7")
    run = reg.run(rid)
    assert (run.status, run.step, run.attempts, run.reason) == ("failed", 7, 1, "loss became nan at step 7")
    assert run.finished_at is not None


def test_unknown_study_and_run_are_one_line_errors(home: Path) -> None:
    reg = Registry()
    with pytest.raises(I1labError, match="no study named 'nope'"):
        reg.members("nope")
    with pytest.raises(I1labError, match="no run matches"):
        reg.find_run("zzzzzzzz")


def test_field_text_keeps_types_apart_whatever_was_written_before() -> None:
    """``field_text`` remembers the text of each distinct value: equal-comparing values of other types
    (1, 1.0, True; [1] and [1.0]) must still get their own text, in any order."""
    from i1lab.registry.fields import field_text

    for _ in range(2):  # the second round answers from what the first remembered
        assert [field_text(v) for v in (1, 1.0, True, [1], [1.0], [True], "1", None)] == [
            "1", "1.0", "true", "[1]", "[1.0]", "[true]", "1", "null",
        ]  # fmt: skip
        assert field_text([[1], {"a": 2}]) == '[[1], {"a": 2}]'  # not hashable: computed each time
