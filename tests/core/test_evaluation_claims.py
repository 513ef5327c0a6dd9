"""Evaluation steps in the registry (SQLite and PostgreSQL): racing claimers get each step exactly once,
an expired or failed claim is taken over, done steps are the history, and scores are recorded with their
steps marked done in one transaction, fenced by the training lease's token or by the claim."""

from __future__ import annotations

import multiprocessing as mp
import os
import time
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from i1lab.evaluation.checkpoint import record_scores
from i1lab.evaluation.judging import BenchmarkScore
from i1lab.plan.steps import EvalStep, evaluation_history
from i1lab.registry import EvaluationRef, PlannedMember, Registry

RACERS = 8


def member(name: str, digest: str) -> PlannedMember:
    return PlannedMember(
        name=name,
        label=name,
        hash=digest,
        is_baseline=True,
        baseline=name,
        varied={},
        spec={"name": name, "resources": {"accelerator": "cpu"}},
        total_steps=10,
    )


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, home: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{home / 'registry.db'}"
    else:
        yield request.getfixturevalue("postgres_url")


def one_run(registry: Registry) -> tuple[int, str]:
    digest = "e" * 64
    return registry.record_plan("evals", [member("baseline", digest)])["baseline"], digest


def steps_of(
    run_hash: str, benchmarks: tuple[str, ...] = ("shapes", "longtext"), step: int = 10
) -> list[EvalStep]:
    judges = {"shapes": "exact-pixel", "longtext": "ocr"}
    return [EvalStep(run_hash=run_hash, step=step, benchmark=b, judge=judges[b]) for b in benchmarks]


def result(step: int, benchmark: str = "shapes", value: float = 0.5) -> BenchmarkScore:
    return BenchmarkScore(
        benchmark=benchmark, judge="exact-pixel", step=step, metrics={"m": value}, headline="m"
    )


def claimer(url: str, refs: list[dict[str, Any]], barrier: Any, out: str) -> None:
    try:
        registry = Registry(url)
        barrier.wait(timeout=120)
        got = registry.claim_evaluations(
            [EvaluationRef.model_validate(r) for r in refs], f"claimer-{os.getpid()}", 60
        )
        Path(out, f"{os.getpid()}.txt").write_text(" ".join(sorted(got)))
    except BaseException:
        Path(out, f"{os.getpid()}.err").write_text(traceback.format_exc())
        os._exit(1)


def test_racing_processes_claim_each_evaluation_step_exactly_once(url: str, tmp_path: Path) -> None:
    registry = Registry(url)
    rid, digest = one_run(registry)
    refs = [s.ref(rid) for s in steps_of(digest) + steps_of(digest, step=20)]
    registry.engine.dispose()  # no pooled connection may cross the fork
    ctx = mp.get_context("fork")
    barrier = ctx.Barrier(RACERS)
    out = tmp_path / "out"
    out.mkdir()
    dumped = [r.model_dump() for r in refs]
    procs = [ctx.Process(target=claimer, args=(url, dumped, barrier, str(out))) for _ in range(RACERS)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=180)
    errors = [f.read_text() for f in out.glob("*.err")]
    assert not errors, errors[0]
    got = [f.read_text().split() for f in sorted(out.glob("*.txt"))]
    assert len(got) == RACERS
    # one claim takes all the steps in one transaction; every other claimer gets none of them
    assert sorted(map(len, got)) == [0] * (RACERS - 1) + [len(refs)]
    assert sorted(k for keys in got for k in keys) == sorted(r.key for r in refs)
    rows = registry.evaluation_steps([rid])
    assert {r.status for r in rows} == {"claimed"} and len({r.owner for r in rows}) == 1


def test_an_expired_or_failed_claim_is_taken_over_and_its_old_owner_records_nothing(url: str) -> None:
    registry = Registry(url)
    rid, digest = one_run(registry)
    shapes, longtext = steps_of(digest)
    a, b = shapes.ref(rid), longtext.ref(rid)
    assert registry.claim_evaluations([a, b], "first", 0.3) == {a.key, b.key}
    assert registry.claim_evaluations([a, b], "second", 60) == set()  # live: not given
    assert registry.claim_evaluations([a], "first", 0.3) == {a.key}  # its owner renews it
    time.sleep(0.5)
    assert registry.claim_evaluations([a], "second", 60) == {a.key}  # expired: taken over
    # the first owner's evaluation of it is refused, whole: no score, nothing marked done
    assert not record_scores(registry, rid, [result(10)], steps=[shapes, longtext], owner="first")
    assert registry.scores([rid]) == [] and registry.done_evaluations([rid]) == {rid: set()}
    assert registry.renew_evaluations([a.key, b.key], "first", 60) == {b.key}
    # a failed (released) claim may be claimed again at once
    assert registry.release_evaluations([b.key], "first", "judge crashed") == {b.key}
    (row,) = [r for r in registry.evaluation_steps([rid]) if r.key == b.key]
    assert (row.status, row.reason) == ("failed", "judge crashed")
    assert registry.claim_evaluations([b], "third", 60) == {b.key}
    # the new owner records it: scores and the step done together, then nobody may claim it
    assert record_scores(registry, rid, [result(10)], steps=[shapes], owner="second")
    assert registry.done_evaluations([rid]) == {rid: {a.key}}
    assert [(s.step, s.benchmark, s.value) for s in registry.scores([rid])] == [(10, "shapes", 0.5)]
    assert registry.claim_evaluations([a], "fourth", 60) == set()
    assert [e.kind for e in registry.events([rid], kinds=["evaluated"])] == ["evaluated"]


def test_done_steps_are_the_history_with_old_scores_as_fallback(home: Path) -> None:
    registry = Registry()
    rid, digest = one_run(registry)
    shapes, longtext = steps_of(digest)
    assert record_scores(registry, rid, [result(10)], steps=[shapes], detail="step 10 by a test")
    history = evaluation_history(registry, [rid])[rid]
    assert history.keys == {shapes.key}
    assert history.done(shapes) and not history.done(longtext)
    # scores recorded before keys were (no step named), by a judge of the kind asked, count as done
    ocr = BenchmarkScore(
        benchmark="longtext", judge="ocr-tesseract", step=10, metrics={"m": 1.0}, headline="m"
    )
    assert record_scores(registry, rid, [ocr])
    assert evaluation_history(registry, [rid])[rid].done(longtext)
    assert registry.done_evaluations([rid]) == {rid: {shapes.key}}


def test_scores_with_a_stale_lease_token_record_nothing_and_mark_nothing(url: str) -> None:
    registry = Registry(url)
    rid, digest = one_run(registry)
    (shapes,) = steps_of(digest, ("shapes",))
    first = registry.acquire_lease(rid, "w1", ttl=0.3, node="n1")
    assert first.state == "acquired" and first.token is not None
    time.sleep(0.5)
    second = registry.acquire_lease(rid, "w2", ttl=60, node="n2")
    assert second.state == "acquired" and second.token is not None
    assert not record_scores(registry, rid, [result(10)], steps=[shapes], token=first.token, seconds=3.0)
    assert registry.scores([rid]) == [] and registry.evaluation_steps([rid]) == []
    assert registry.run(rid).eval_seconds == 0.0
    # the lease holder records them, and its step is done: no claim needed under a lease
    assert record_scores(registry, rid, [result(10)], steps=[shapes], token=second.token, seconds=2.0)
    (row,) = registry.evaluation_steps([rid])
    assert (row.key, row.status, row.step, row.benchmark, row.judge) == (
        shapes.key,
        "done",
        10,
        "shapes",
        "exact-pixel",
    )
    assert registry.run(rid).eval_seconds == 2.0
    # a step claimed by nobody but done is never claimed again
    assert registry.claim_evaluations([shapes.ref(rid)], "late", 60) == set()


def test_an_evaluation_task_skips_steps_done_and_waits_for_those_another_owner_holds(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import threading

    from i1lab.execution.evaluation import EvalCall, run_evaluation

    monkeypatch.setenv("I1LAB_LEASE_SECONDS", "1")  # claims renewed, and polled, every quarter second
    registry = Registry()
    rid, digest = one_run(registry)
    shapes, longtext = steps_of(digest)
    assert record_scores(registry, rid, [result(10)], steps=[shapes])  # done
    # another submitter evaluates longtext meanwhile: this task waits for its result, then skips it
    assert registry.claim_evaluations([longtext.ref(rid)], "other-submitter", 60) == {longtext.key}
    ocr = BenchmarkScore(
        benchmark="longtext", judge="ocr-tesseract", step=10, metrics={"m": 1.0}, headline="m"
    )
    other = threading.Timer(
        0.5, lambda: record_scores(registry, rid, [ocr], steps=[longtext], owner="other-submitter")
    )
    other.start()
    call = EvalCall(run_id=rid, workdir=str(tmp_path / "wd"), step=10, steps=[shapes, longtext])
    done = run_evaluation(call)
    other.join()
    assert done.recorded and done.skipped == 2 and done.scores == ""
    assert len(registry.events([rid], kinds=["evaluated"])) == 2  # this task recorded nothing
    # a step whose other owner died (its claim expires unrenewed) is taken over once it expires; the
    # checkpoint is gone here, so the step is failed at once (claimable again), not held until it expires
    (late,) = steps_of(digest, ("shapes",), step=20)
    assert registry.claim_evaluations([late.ref(rid)], "dead-submitter", 0.5) == {late.key}
    done = run_evaluation(EvalCall(run_id=rid, workdir=str(tmp_path / "wd"), step=20, steps=[late]))
    assert not done.recorded and done.reason == "checkpoint 20 not kept"
    (row,) = [r for r in registry.evaluation_steps([rid]) if r.key == late.key]
    assert row.status == "failed" and row.owner != "dead-submitter"


def test_migration_0008_backfills_the_keys_evaluated_events_named(tmp_path: Path) -> None:
    from datetime import datetime

    import sqlalchemy as sa
    from alembic import command
    from alembic.config import Config

    from i1lab.registry.db import MIGRATIONS, make_engine

    url = f"sqlite:///{tmp_path / 'old.db'}"

    def alembic(target: str, down: bool = False) -> None:
        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS))
        with make_engine(url).begin() as conn:
            cfg.attributes["connection"] = conn
            (command.downgrade if down else command.upgrade)(cfg, target)

    alembic("0007")
    t = datetime(2026, 11, 30)
    with make_engine(url).begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO runs (id, hash, spec, status, step, total_steps, imported, attempts, "
                "created_at, updated_at) VALUES (1, :h, '{}', 'finished', 4, 4, 0, 1, :t, :t)"
            ),
            {"h": "f" * 64, "t": t},
        )
        for detail in (
            "step 2 in the training process in 1.0 s [eval 00aa 11bb]",
            "step 4 [eval 22cc]",
            None,
        ):
            conn.execute(
                sa.text("INSERT INTO run_events (run_id, at, kind, detail) VALUES (1, :t, 'evaluated', :d)"),
                {"t": t, "d": detail},
            )
    alembic("head")
    registry = Registry(url)
    assert registry.done_evaluations([1]) == {1: {"00aa", "11bb", "22cc"}}
    assert {(r.step, r.benchmark, r.finished_at) for r in registry.evaluation_steps([1])} == {(None, None, t)}
    registry.engine.dispose()
    alembic("0007", down=True)
    assert "evaluation_steps" not in sa.inspect(make_engine(url)).get_table_names()
