"""32 writer processes at once, on SQLite and on a real PostgreSQL server: nothing lost, no lock errors.

Each process records its own study (sharing one baseline run with all the others), moves its run through
running -> finished, and records checkpoints, progress and scores step by step; every process also
records scores of the shared run under one common metric, so the latest-score summary of that metric is
written by all 32 at once, and one score of its own at the shared run's step 0, so that checkpoint's
score vector is rewritten by all 32 at once. Afterwards every row must be there with its exact value.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import traceback
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from i1lab.registry import PlannedMember, Registry, ScoreRecord, vectors
from i1lab.registry.schema import (
    CheckpointRow,
    RunRow,
    ScoreRow,
    ScoreSummaryRow,
    ScoreVectorRow,
    StudyRunRow,
)

PROCESSES = 32
STEPS = 4
SHARED = "5" * 64


def member(name: str, digest: str, baseline: bool) -> PlannedMember:
    return PlannedMember(
        name=name,
        label=name,
        hash=digest,
        is_baseline=baseline,
        baseline="baseline",
        varied={},
        spec={"name": name, "train": {"seed": int(digest[:4], 16)}, "resources": {"accelerator": "gpu:2"}},
        total_steps=STEPS,
    )


def own_hash(i: int) -> str:
    return f"{i:064x}"


def writer(url: str, i: int, barrier: Any, errors: str) -> None:
    """One process: everything a worker and a planner write, interleaved with 31 others."""
    try:
        registry = Registry(url)
        barrier.wait(timeout=120)
        ids = registry.record_plan(
            f"w{i:02d}", [member("baseline", SHARED, True), member(f"v{i}", own_hash(i), False)]
        )
        own, shared = ids[f"v{i}"], ids["baseline"]
        registry.set_status(own, "running")
        for step in range(1, STEPS + 1):
            registry.add_checkpoint(own, step, f"/ckpt/{i}/{step}", step == STEPS)
            registry.add_scores(
                [
                    ScoreRecord(
                        run_id=own, step=step, benchmark="b", metric=m, judge="j", value=i + step / 10
                    )
                    for m in ("m1", "m2")
                ]
                + [
                    ScoreRecord(
                        run_id=shared,
                        step=step * PROCESSES + i,
                        benchmark="b",
                        metric="shared",
                        judge="j",
                        value=float(step * PROCESSES + i),
                    )
                ]
                + [
                    ScoreRecord(run_id=shared, step=0, benchmark="b", metric=f"p{i}", judge="j", value=i)
                    for _ in range(step == 1)
                ]
            )
            registry.set_progress(own, step)
        registry.set_status(own, "finished")
    except BaseException:
        Path(errors, f"{i}.txt").write_text(traceback.format_exc())
        os._exit(1)


def hammer(url: str, tmp_path: Path) -> Registry:
    registry = Registry(url)  # migrate once, before the writers start
    registry.engine.dispose()  # no pooled connection may cross the fork
    ctx = mp.get_context("fork")
    barrier = ctx.Barrier(PROCESSES)
    errors = tmp_path / "errors"
    errors.mkdir()
    procs = [ctx.Process(target=writer, args=(url, i, barrier, str(errors))) for i in range(PROCESSES)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=240)
    failures = {
        f.name: [ln for ln in f.read_text().splitlines() if "Error" in ln][-1:] for f in errors.iterdir()
    }
    codes = [p.exitcode for p in procs]
    assert not failures and codes == [0] * PROCESSES, (codes, failures)
    return registry


def check(registry: Registry) -> None:
    with registry.session() as s:
        assert s.scalar(select(func.count()).select_from(RunRow)) == PROCESSES + 1
        assert s.scalar(select(func.count()).select_from(StudyRunRow)) == 2 * PROCESSES
        assert s.scalar(select(func.count()).select_from(CheckpointRow)) == PROCESSES * STEPS
        shared_id = s.scalar(select(RunRow.id).where(RunRow.hash == SHARED))
        own = {
            digest: (rid, status, step, attempts)
            for digest, rid, status, step, attempts in s.execute(
                select(RunRow.hash, RunRow.id, RunRow.status, RunRow.step, RunRow.attempts).where(
                    RunRow.hash != SHARED
                )
            )
        }
        scores = {
            (rid, step, metric): value
            for rid, step, metric, value in s.execute(
                select(ScoreRow.run_id, ScoreRow.step, ScoreRow.metric, ScoreRow.value)
            )
        }
        v = ScoreVectorRow
        packed = {(r, st): vectors.unpack(b) for r, st, b in s.execute(select(v.run_id, v.step, v.entries))}
        summary = {
            (rid, metric): (latest_step, latest_value, best_step)
            for rid, metric, latest_step, latest_value, best_step in s.execute(
                select(
                    ScoreSummaryRow.run_id,
                    ScoreSummaryRow.metric,
                    ScoreSummaryRow.latest_step,
                    ScoreSummaryRow.latest_value,
                    ScoreSummaryRow.best_step,
                )
            )
        }
    expected: dict[tuple[int, int, str], float] = {}
    for i in range(PROCESSES):
        rid, status, step, attempts = own[own_hash(i)]
        assert (status, step, attempts) == ("finished", STEPS, 1)
        for st in range(1, STEPS + 1):
            expected[(rid, st, "m1")] = expected[(rid, st, "m2")] = i + st / 10
            expected[(shared_id, st * PROCESSES + i, "shared")] = float(st * PROCESSES + i)
        expected[(shared_id, 0, f"p{i}")] = float(i)
        assert summary[(rid, "m1")] == (STEPS, i + STEPS / 10, STEPS)
    assert scores == expected  # nothing lost, nothing extra, every value exact
    vectors_expected: dict[tuple[int, int], dict[int, float]] = {}
    for (rid, step, metric), value in expected.items():
        vectors_expected.setdefault((rid, step), {})[vectors.key_id("b", metric, "j")] = value
    assert packed == vectors_expected  # each checkpoint's vector holds exactly its scores
    assert len(packed[(shared_id, 0)]) == PROCESSES  # the checkpoint all 32 wrote at once
    last = STEPS * PROCESSES + PROCESSES - 1
    assert summary[(shared_id, "shared")] == (last, float(last), last)  # written by all 32 at once


def test_32_writer_processes_on_sqlite(home: Path, tmp_path: Path) -> None:
    registry = hammer(f"sqlite:///{home / 'registry.db'}", tmp_path)
    check(registry)
    with registry.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"


def test_32_writer_processes_on_postgresql(postgres_url: str, tmp_path: Path) -> None:
    registry = hammer(postgres_url, tmp_path)
    assert registry.dialect == "postgresql"
    check(registry)


def test_without_immediate_writers_sqlite_reports_lock_errors(tmp_path: Path) -> None:
    """What the SQLite test guards against: two deferred transactions that read and then write fail
    with "database is locked" (whatever the busy timeout) -- the registry's writers begin IMMEDIATE."""
    import sqlite3
    import threading

    path = tmp_path / "plain.db"
    setup = sqlite3.connect(path)
    setup.execute("PRAGMA journal_mode=WAL")
    setup.execute("CREATE TABLE t (x INTEGER)")
    setup.commit()
    setup.close()
    errors: list[str] = []
    go = threading.Barrier(2)

    def read_then_write(tag: int) -> None:
        conn = sqlite3.connect(path, timeout=0.5, isolation_level=None)
        conn.execute("BEGIN")
        conn.execute("SELECT count(*) FROM t").fetchone()
        go.wait()
        try:
            conn.execute("INSERT INTO t VALUES (?)", (tag,))
            go.wait()  # hold the write lock until the other has tried to write
            conn.execute("COMMIT")
        except sqlite3.OperationalError as exc:
            errors.append(str(exc))
            conn.execute("ROLLBACK")
            go.abort()
        except threading.BrokenBarrierError:
            conn.execute("COMMIT")

    threads = [threading.Thread(target=read_then_write, args=(k,)) for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert any("locked" in e for e in errors), errors


def _open_new_registry(url: str) -> None:
    """Processes that open a registry nobody has created yet, all at once."""
    import subprocess
    import sys

    code = "import sys; from i1lab.registry import Registry; Registry(sys.argv[1]).engine.dispose()"
    cmd = [sys.executable, "-c", code, url]
    procs = [subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True) for _ in range(6)]
    errors = [p.communicate(timeout=300)[1] for p in procs]
    assert [p.returncode for p in procs] == [0] * 6, "\n".join(e for e in errors if e)[-3000:]


def test_processes_creating_one_sqlite_registry_at_once_all_get_the_migrated_schema(tmp_path: Path) -> None:
    from i1lab.registry.db import current_revision, head_revision

    url = f"sqlite:///{tmp_path / 'fresh.db'}"
    _open_new_registry(url)
    with Registry(url).engine.connect() as conn:
        assert current_revision(conn) == head_revision()


def test_processes_creating_one_postgresql_registry_at_once_all_get_the_migrated_schema(
    postgres_url: str,
) -> None:
    from i1lab.registry.db import current_revision, head_revision

    _open_new_registry(postgres_url)
    with Registry(postgres_url).engine.connect() as conn:
        assert current_revision(conn) == head_revision()
