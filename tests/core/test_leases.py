"""Run leases on a real registry (SQLite and PostgreSQL): racing acquirers get exactly one lease, stale
fencing tokens write nothing, expired leases are taken over and counted, queueing leaves a live run
alone, and a real training worker that loses its lease stops within a step."""

from __future__ import annotations

import multiprocessing as mp
import os
import threading
import time
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from i1lab.registry import PlannedMember, Registry, ScoreRecord

RACERS = 8


def member(name: str, digest: str, workdir: str | None = None) -> PlannedMember:
    return PlannedMember(
        name=name,
        label=name,
        hash=digest,
        is_baseline=name == "baseline",
        baseline="baseline",
        varied={},
        spec={"name": name, "resources": {"accelerator": "cpu"}},
        total_steps=10,
        workdir=workdir,
    )


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, home: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{home / 'registry.db'}"
    else:
        yield request.getfixturevalue("postgres_url")


def racer(url: str, run_id: int, barrier: Any, out: str) -> None:
    try:
        registry = Registry(url)
        barrier.wait(timeout=120)
        grant = registry.acquire_lease(run_id, f"racer-{os.getpid()}", ttl=60, node="n", expect_token=0)
        Path(out, f"{os.getpid()}.txt").write_text(f"{run_id} {grant.state} {grant.token}")
    except BaseException:
        Path(out, f"{os.getpid()}.err").write_text(traceback.format_exc())
        os._exit(1)


def test_racing_processes_get_exactly_one_lease_per_work_directory(url: str, tmp_path: Path) -> None:
    registry = Registry(url)
    # two runs sharing one work directory (one training): one lease between them, not one each
    ids = registry.record_plan(
        "race", [member("baseline", "a" * 64, "/runs/shared"), member("cfg", "b" * 64, "/runs/shared")]
    )
    registry.engine.dispose()  # no pooled connection may cross the fork
    ctx = mp.get_context("fork")
    barrier = ctx.Barrier(RACERS)
    out = tmp_path / "out"
    out.mkdir()
    targets = [ids["baseline"], ids["cfg"]] * (RACERS // 2)
    procs = [ctx.Process(target=racer, args=(url, rid, barrier, str(out))) for rid in targets]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
    errors = [f.read_text() for f in out.glob("*.err")]
    assert not errors and [p.exitcode for p in procs] == [0] * RACERS, errors
    answers = [f.read_text().split() for f in out.glob("*.txt")]
    won = [a for a in answers if a[1] == "acquired"]
    assert len(answers) == RACERS and len(won) == 1, answers
    winner = int(won[0][0])
    # the losers on the winner's run see its lease; those on the other run see the folder busy
    for rid, state, _ in answers:
        if (rid, state) != (str(winner), "acquired"):
            assert state == ("leased" if int(rid) == winner else "busy"), answers
    run = registry.run(winner)
    assert (run.status, run.attempts, run.lease_token, run.node) == ("running", 1, 1, "n")
    assert [e.kind for e in registry.events([winner])] == ["leased"]


def test_a_checkpoint_raises_the_recorded_step_and_never_lowers_it(url: str) -> None:
    """Progress is written every few seconds; a checkpoint written in between moves the recorded step
    up to it in the same transaction, so the registry never shows a step below the latest checkpoint
    (and a resumed attempt never reads below the step it resumes from)."""
    registry = Registry(url)
    rid = registry.record_plan("ckpt_step", [member("baseline", "e" * 64)])["baseline"]
    grant = registry.acquire_lease(rid, "w1", ttl=30, node="n")
    assert grant.token is not None
    assert registry.fenced_update(rid, grant.token, step=4)
    assert registry.fenced_checkpoint(rid, grant.token, 6, "/x/6", False)
    assert registry.run(rid).step == 6
    assert registry.fenced_update(rid, grant.token, step=8)
    assert registry.fenced_checkpoint(rid, grant.token, 5, "/x/5", False)  # an older one, re-recorded
    assert registry.run(rid).step == 8
    assert [s for s, _, _ in registry.checkpoints(rid)] == [5, 6]


def test_a_stale_token_writes_nothing_and_an_expired_lease_is_taken_over(url: str) -> None:
    registry = Registry(url)
    rid = registry.record_plan("fence", [member("baseline", "c" * 64)])["baseline"]
    first = registry.acquire_lease(rid, "w1", ttl=0.5, node="node-1")
    assert first.state == "acquired" and first.token == 1
    assert registry.fenced_update(rid, 1, step=3)
    # while the lease is live nobody else gets it, and queueing the run leaves it alone
    assert registry.acquire_lease(rid, "w2", ttl=30, node="node-2").state == "leased"
    assert registry.queue_runs([rid])[rid].live and registry.run(rid).status == "running"
    time.sleep(0.7)  # w1 stops renewing: its lease expires
    second = registry.acquire_lease(rid, "w2", ttl=30, node="node-2")
    assert second.state == "acquired" and second.token is not None and second.token > 1
    # every write of the first worker is refused now
    assert not registry.renew_lease(rid, 1, 30, step=9)
    assert not registry.fenced_update(rid, 1, step=9)
    assert not registry.fenced_checkpoint(rid, 1, 9, "/x/9", True)
    score = ScoreRecord(run_id=rid, step=9, benchmark="b", metric="m", judge="j", value=1.0)
    assert not registry.fenced_scores(rid, 1, [score], eval_seconds=5.0)
    assert not registry.finish_lease(rid, 1, "finished")
    run = registry.run(rid)
    assert (run.status, run.step, run.node, run.interruptions, run.attempts) == (
        "running",
        3,
        "node-2",
        1,
        2,
    )
    assert registry.checkpoints(rid) == [] and registry.scores([rid]) == [] and run.eval_seconds == 0.0
    # the current holder's writes go through, and finishing releases the lease
    assert registry.fenced_scores(rid, second.token, [score], eval_seconds=2.5, node="node-2")
    assert registry.finish_lease(rid, second.token, "finished", step=10)
    run = registry.run(rid)
    assert (run.status, run.step, run.lease_owner, run.eval_seconds) == ("finished", 10, None, 2.5)
    kinds = [(e.kind, e.node) for e in registry.events([rid])]
    assert kinds == [
        ("leased", "node-1"),
        ("interrupted", "node-1"),
        ("leased", "node-2"),
        ("evaluated", "node-2"),
        ("finished", "node-2"),
    ]
    # a finished run is neither queued again nor leased
    assert registry.queue_runs([rid])[rid].status == "finished"
    assert registry.acquire_lease(rid, "w3", ttl=30).state == "done"


def test_queueing_and_expected_tokens(url: str) -> None:
    registry = Registry(url)
    rid = registry.record_plan("queue", [member("baseline", "d" * 64)])["baseline"]
    token = registry.queue_runs([rid])[rid].token
    # a submitter that queued the run loses to one that leased it since: it sees it leased
    assert registry.acquire_lease(rid, "a", ttl=30, expect_token=token).state == "acquired"
    assert registry.acquire_lease(rid, "b", ttl=30, expect_token=token).state == "leased"
    # the driver that launched "a" sees it die: the lease is released, one interruption counted
    assert registry.interrupt_lease(rid, "a", "NodeDiedError: node gone")
    assert not registry.interrupt_lease(rid, "a", "again")  # not its lease any more
    state = registry.queue_runs([rid])[rid]
    assert state.status == "queued" and not state.live and state.token > token
    # "b", still holding the stale token, is refused; with the new one it gets the run
    assert registry.acquire_lease(rid, "b", ttl=30, expect_token=token).state == "moved"
    assert registry.acquire_lease(rid, "b", ttl=30, expect_token=state.token).state == "acquired"
    run = registry.run(rid)
    assert (run.interruptions, run.attempts, run.lease_owner) == (1, 2, "b")
    # a failure for the run's own reason is final for anyone who queued it before
    assert registry.finish_lease(rid, run.lease_token, "failed", "loss became nan at step 3")
    grant = registry.acquire_lease(rid, "c", ttl=30, expect_token=state.token)
    assert (grant.state, grant.status, grant.reason) == ("done", "failed", "loss became nan at step 3")


def test_a_training_worker_that_loses_its_lease_stops(
    home: Path, monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """A real in-process training run; its lease is taken over mid-run (its driver presumed it dead and
    another worker got the run): it stops within a step, and writes nothing after the takeover."""
    from i1lab.execution import worker
    from tests.core.test_train_step import shared_xla_cache, tiny_spec

    monkeypatch.setenv("I1LAB_LEASE_SECONDS", "2")
    monkeypatch.setenv("JAX_COMPILATION_CACHE_DIR", shared_xla_cache(tmp_path_factory))
    spec = tiny_spec(**{"train.steps": 5000, "train.checkpoint_every": 5000, "train.keep_every": 5000})
    registry = Registry()
    m = member("baseline", "e" * 64, str(home / "run"))
    m.spec, m.total_steps = spec.model_dump(mode="json"), spec.train.steps
    rid = registry.record_plan("lost", [m])["baseline"]
    outcome: list[worker.Outcome] = []
    thread = threading.Thread(
        target=lambda: outcome.append(worker.execute_run(rid, None, str(home / "run"), owner="victim"))
    )
    thread.start()
    deadline = time.monotonic() + 120
    t0 = time.monotonic()
    while registry.run(rid).step < 20:
        assert thread.is_alive() and time.monotonic() < deadline, "the run made no progress"
        time.sleep(0.1)
    assert registry.interrupt_lease(rid, "victim", "presumed dead")
    taken = registry.acquire_lease(rid, "successor", ttl=60, node="elsewhere")
    assert taken.state == "acquired"
    at_takeover = time.monotonic()
    print(f"progress after {at_takeover - t0:.1f} s")
    step_at_takeover = registry.run(rid).step
    thread.join(timeout=60)
    assert not thread.is_alive()
    stopped_after = time.monotonic() - at_takeover
    (out,) = outcome
    assert out.status == "lost" and "lease lost" in (out.reason or ""), out
    assert stopped_after < 5.0  # the next progress write or heartbeat (every 0.5 s) found out
    run = registry.run(rid)
    # the successor owns the run; the stopped worker changed nothing after the takeover
    assert (run.lease_owner, run.status, run.interruptions) == ("successor", "running", 1)
    assert run.step == step_at_takeover < spec.train.steps
    assert [e.kind for e in registry.events([rid])] == ["leased", "started", "interrupted", "leased"]


TWICE = """\
study: twice_micro
extends: {adapter}
priority: 2
max_concurrent: 3
axes:
  model.adapter:
    - {{type: transformer, blocks: 1}}
  sampling.cfg_scale: [2.0]
profiles:
  tiny:
    train.steps: 10
    train.checkpoint_every: 10
    train.keep_every: 10
    train.log_every: 5
    eval.benchmarks: []
"""


def test_two_submitters_of_one_study_at_once_train_every_run_exactly_once(
    home: Path, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Two ``i1lab submit`` processes, each with its own embedded Ray cluster, started together: Ray
    cannot deduplicate across clusters, so only the registry's leases stand between them."""
    import json
    import subprocess
    import sys

    from tests.conftest import EXPERIMENTS
    from tests.core.test_train_step import shared_xla_cache

    study = tmp_path / "twice.yaml"
    study.write_text(TWICE.format(adapter=EXPERIMENTS / "adapter_size.yaml"))
    env = {
        **os.environ,
        "I1LAB_HOME": str(home),
        "COLUMNS": "200",
        "JAX_COMPILATION_CACHE_DIR": shared_xla_cache(tmp_path_factory),
    }
    Registry()  # create the registry first: two processes migrating one SQLite file race
    cmd = [sys.executable, "-m", "i1lab", "submit", str(study), "--profile", "tiny", "--no-progress"]
    cmd += ["--no-mlflow"]
    procs = [
        subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for _ in range(2)
    ]
    outs = [p.communicate(timeout=600)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    registry = Registry()
    members = registry.members("twice_micro")
    assert len(members) == 3 and len(registry.runs()) == 3
    for m in members:
        assert m.run.status == "finished", m.run.reason
        log = registry.events([m.run.id])
        # trained exactly once: one lease, one start, one finish, whoever did it
        assert [e.kind for e in log].count("leased") == 1, [e.kind for e in log]
        assert [e.kind for e in log].count("started") == 1
        assert [e.kind for e in log].count("finished") == 1 and m.run.attempts == 1
        # each submitter reports every run: one as its own, the other as done by the other submitter
        lines = [ln for out in outs for ln in out.splitlines() if ln.startswith(f"{m.name}: finished")]
        assert sorted(lines) == [f"{m.name}: finished", f"{m.name}: finished (by another submitter)"], lines
    # one training per work directory (the sampling variant shares the baseline's), nothing repeated
    for workdir in {m.run.workdir for m in members}:
        lines = (Path(workdir or "") / "metrics.jsonl").read_text().splitlines()
        assert [json.loads(x)["step"] for x in lines] == [1, 2, 3, 5, 10]
    study_row = registry.study("twice_micro")
    assert (study_row.priority, study_row.max_concurrent) == (2, 3)  # the study file's policy, stored


def test_one_heartbeat_thread_renews_every_lease_and_none_after_stop(home: Path) -> None:
    """The process's heartbeat thread renews each lease it holds every quarter of the time-to-live; a
    stopped lease is never renewed again; a lease whose renewal is refused is marked lost."""
    from i1lab.registry.lease_holder import Lease

    registry = Registry(f"sqlite:///{home / 'registry.db'}")
    ids = registry.record_plan("beats", [member(f"r{i}", f"{i}" * 64, f"/runs/beat{i}") for i in range(3)])
    leases = []
    for run_id in ids.values():
        grant = registry.acquire_lease(run_id, f"o{run_id}", ttl=0.8, node="n")
        assert grant.token is not None
        leases.append(Lease(registry, run_id, grant.token, 0.8, "n").start())
    first = {r: registry.lease_states([r])[r].expires_at for r in ids.values()}
    time.sleep(1.2)  # about five heartbeats at 0.2 s
    second = {r: registry.lease_states([r])[r].expires_at for r in ids.values()}
    assert all(second[r] > first[r] for r in ids.values())  # type: ignore[operator]
    assert all(registry.lease_states([r])[r].live for r in ids.values())  # 1.2 s > ttl: renewed
    beating = [t.name for t in threading.enumerate() if t.name.startswith("i1lab-lease")]
    assert beating == ["i1lab-leases"]  # one thread for the process, not one per lease
    stopped, refused, kept = leases
    stopped.stop()
    assert registry.renew_lease(refused.run_id, refused.token, 0.8)
    assert registry.interrupt_lease(refused.run_id, f"o{refused.run_id}", "taken away")
    held = registry.lease_states([stopped.run_id])[stopped.run_id].expires_at
    time.sleep(1.0)
    assert registry.lease_states([stopped.run_id])[stopped.run_id].expires_at == held
    assert not registry.lease_states([stopped.run_id])[stopped.run_id].live  # expired: nobody renews it
    assert refused.lost and not kept.lost and registry.lease_states([kept.run_id])[kept.run_id].live
    kept.stop()
