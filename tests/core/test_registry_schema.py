"""Migration 0002 and what it adds: lineage, provenance, timings and cost, artifacts, score summaries."""

from __future__ import annotations

import re
import subprocess
import time
from datetime import datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.config import Config

from i1lab.registry import PlannedMember, Registry, ScoreRecord, vectors
from i1lab.registry.db import MIGRATIONS, make_engine
from i1lab.registry.provenance import capture, git_state
from i1lab.registry.records import ArtifactRecord
from i1lab.registry.schema import Base, ScoreVectorRow

REPO = Path(__file__).resolve().parents[2]


def member(name: str, digest: str, spec: dict[str, object], baseline: bool = False) -> PlannedMember:
    return PlannedMember(
        name=name,
        label=name,
        hash=digest,
        is_baseline=baseline,
        baseline="s1",
        varied={},
        spec=spec,
        total_steps=10,
        accelerator_hours_est=12.5,
    )


def alembic(url: str, target: str, down: bool = False) -> None:
    engine = make_engine(url)
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        (command.downgrade if down else command.upgrade)(cfg, target)


def test_upgrade_from_0001_backfills_and_downgrade_returns(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    alembic(url, "0001")
    engine = make_engine(url)
    meta = sa.MetaData()
    meta.reflect(engine)
    runs, scores, fields = meta.tables["runs"], meta.tables["scores"], meta.tables["run_fields"]
    t = datetime(2026, 1, 1)
    common = {"status": "finished", "step": 10, "total_steps": 10, "imported": False, "attempts": 1}
    with engine.begin() as conn:
        for rid, digest, data in (
            (1, "p" * 64, {"resolution": 256}),
            (2, "q" * 64, {"resolution": 512, "resume_from": "p" * 64}),
            (3, "r" * 64, {"resolution": 1024, "resume_from": "q" * 64}),
        ):
            conn.execute(
                sa.insert(runs).values(
                    id=rid, hash=digest, spec={"data": data}, created_at=t, updated_at=t, **common
                )
            )
            conn.execute(
                sa.insert(fields).values(
                    run_id=rid,
                    key="data.resolution",
                    value_text=str(data["resolution"]),
                    value_num=float(data["resolution"]),
                )
            )
        for step, value in ((5, 0.7), (10, 0.6)):
            conn.execute(
                sa.insert(scores).values(
                    run_id=1, step=step, benchmark="g", metric="m", judge="j", value=value, created_at=t
                )
            )
    reg = Registry(url)  # migrates to head
    by_id = {r.id: r for r in reg.runs()}
    assert [(by_id[i].resumed_from, by_id[i].stage, by_id[i].resolution) for i in (1, 2, 3)] == [
        (None, 0, 256),
        ("p" * 64, 1, 512),
        ("q" * 64, 2, 1024),
    ]
    (summary,) = reg.score_summaries([1])
    assert (summary["latest_step"], summary["latest_value"], summary["best_step"], summary["best_value"]) == (
        10,
        0.6,
        5,
        0.7,
    )
    assert reg.field_keys() == ["data.resolution"]
    with reg.engine.connect() as conn:  # 0003: the filtering tables are clustered by their keys on SQLite
        for table in ("run_fields", "score_summary", "field_keys"):
            ddl = conn.exec_driver_sql(f"SELECT sql FROM sqlite_master WHERE name = '{table}'").scalar()
            assert "WITHOUT ROWID" in str(ddl), table
        assert conn.exec_driver_sql("SELECT count(*) FROM run_fields").scalar() == 3
        # 0007: each checkpoint's score vector, backfilled from its scores
        v = ScoreVectorRow
        packed = {
            (r, st): vectors.unpack(b) for r, st, b in conn.execute(sa.select(v.run_id, v.step, v.entries))
        }
    key = vectors.key_id("g", "m", "j")
    assert packed == {(1, 5): {key: 0.7}, (1, 10): {key: 0.6}}
    alembic(url, "0001", down=True)
    insp = sa.inspect(make_engine(url))
    assert "artifacts" not in insp.get_table_names()
    assert "score_vectors" not in insp.get_table_names()
    assert "resumed_from" not in {c["name"] for c in insp.get_columns("runs")}
    assert Registry(url).run(2).resumed_from == "p" * 64  # upgraded again


def test_schema_matches_the_models_on_postgresql(postgres_url: str) -> None:
    reg = Registry(postgres_url)
    insp = sa.inspect(reg.engine)
    for table in Base.metadata.sorted_tables:
        assert {c["name"] for c in insp.get_columns(table.name)} == set(table.columns.keys()), table.name
        want = {ix.name for ix in table.indexes}
        assert want <= {ix["name"] for ix in insp.get_indexes(table.name)}, table.name


def test_provenance_lineage_and_cost(home: Path) -> None:
    reg = Registry()
    parent = {"data": {"resolution": 256}, "resources": {"accelerator": "gpu:8"}}
    child = {"data": {"resolution": 512, "resume_from": "1" * 64}, "resources": {"accelerator": "tpu-v6e-16"}}
    ids = reg.record_plan("s", [member("s1", "1" * 64, parent, True), member("s2", "2" * 64, child)])
    first, second = reg.run(ids["s1"]), reg.run(ids["s2"])
    assert (first.stage, second.stage, second.resumed_from, second.resolution) == (0, 1, "1" * 64, 512)
    assert (first.accelerator, first.chips, second.chips) == ("gpu:8", 8, 16)
    assert first.accelerator_hours_est == 12.5 and first.queued_at is not None
    commit, dirty = git_state(REPO)
    assert commit is not None and re.fullmatch(r"[0-9a-f]{40}", commit)
    head = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True
    ).stdout.strip()
    assert (first.git_commit, first.git_dirty) == (head, dirty)
    assert first.versions is not None and {"python", "sqlalchemy", "pydantic"} <= set(first.versions)
    assert first.versions["sqlalchemy"] == sa.__version__
    assert capture().git_commit == head
    assert git_state(Path("/")) == (None, None)  # outside git: unknown, not an error

    reg.set_status(first.id, "running")
    time.sleep(0.05)
    reg.set_status(first.id, "failed", "preempted")
    reg.set_status(first.id, "failed", "preempted")  # a repeated terminal status adds no time
    after_one = reg.run(first.id)
    assert after_one.attempts == 1 and 0.04 < after_one.wall_seconds < 5
    reg.set_status(first.id, "running")
    reg.set_status(first.id, "finished")
    done = reg.run(first.id)
    assert done.attempts == 2 and done.wall_seconds >= after_one.wall_seconds
    assert done.accelerator_hours == pytest.approx(done.wall_seconds / 3600 * 8)
    assert done.started_at is not None and done.finished_at is not None
    assert done.finished_at - done.started_at < timedelta(seconds=5)


def test_score_summary_follows_latest_and_best_even_when_rescored(home: Path) -> None:
    reg = Registry()
    rid = reg.record_plan("s", [member("s1", "3" * 64, {}, True)])["s1"]

    def add(step: int, value: float, judge: str = "j") -> None:
        reg.add_scores(
            [ScoreRecord(run_id=rid, step=step, benchmark="g", metric="m", judge=judge, value=value)]
        )

    def summary(judge: str = "j") -> tuple[int, float, int, float]:
        row = next(r for r in reg.score_summaries([rid]) if r["judge"] == judge)
        return row["latest_step"], row["latest_value"], row["best_step"], row["best_value"]

    add(20, 0.5)
    add(10, 0.8)  # an earlier checkpoint scored later
    assert summary() == (20, 0.5, 10, 0.8)
    add(10, 0.3)  # re-scored lower: the best moves
    assert summary() == (20, 0.5, 20, 0.5)
    add(30, 0.4, judge="other")
    assert summary() == (20, 0.5, 20, 0.5) and summary("other") == (30, 0.4, 30, 0.4)
    assert len(reg.scores([rid])) == 3


def test_artifacts_are_recorded_once_per_run_step_and_kind(home: Path) -> None:
    reg = Registry()
    rid = reg.record_plan("s", [member("s1", "4" * 64, {}, True)])["s1"]
    reg.add_artifacts(
        [
            ArtifactRecord(run_id=rid, step=20, kind="grid/shapes", uri="/a/grid.png"),
            ArtifactRecord(run_id=rid, step=10, kind="grid/shapes", uri="/old.png"),
        ]
    )
    reg.add_artifacts([ArtifactRecord(run_id=rid, step=10, kind="grid/shapes", uri="/new.png")])
    assert [(a.step, a.uri) for a in reg.artifacts([rid])] == [(10, "/new.png"), (20, "/a/grid.png")]


def test_a_runs_fields_are_written_once_and_stages_follow_a_parent_recorded_later(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import i1lab.registry.studies as store

    written: list[int] = []
    real = store.execute_many

    def counting(conn: object, stmt: object, columns: object, rows: list[object]) -> None:
        written.append(len(rows))
        real(conn, stmt, columns, rows)  # type: ignore[arg-type]

    monkeypatch.setattr(store, "execute_many", counting)
    reg = Registry()
    child = {"data": {"resolution": 512, "resume_from": "4" * 64}, "train": {"lr": 2e-4}}
    members = [member("s1", "5" * 64, {"train": {"lr": 3e-4}}, True), member("s2", "6" * 64, child)]
    ids = reg.record_plan("s", members)
    assert sum(written) == 1 + 3  # one leaf and three: the runs' fields, written with them
    with reg.engine.connect() as conn:
        count = conn.execute(sa.text("SELECT count(*) FROM run_fields")).scalar_one()
    assert count == 4 and reg.run(ids["s2"]).stage == 0  # its parent is not in the registry yet
    written.clear()
    reg.record_plan("p", [member("s1", "4" * 64, {"data": {"resolution": 256}}, True)])
    assert sum(written) == 1  # the parent's own
    written.clear()
    reg.record_plan("s", members)  # the same study again: no field rewritten, the child's stage updated
    assert written == [] and reg.run(ids["s2"]).stage == 1
    rows = reg.runs()
    assert len(rows) == 3
