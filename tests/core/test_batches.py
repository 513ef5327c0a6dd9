"""Short runs batched into Ray tasks, on a real local Ray cluster and a real registry.

Once a study's runs prove short (``SHORT_SAMPLE`` attempts under ``SHORT_SECONDS``) the driver hands
each Ray task several of them (:func:`i1lab.execution.launching.batches`,
:func:`i1lab.execution.worker.execute_batch`).
Each run must keep its own lease and outcome: one that raises fails alone, and a worker that dies in
the middle of a batch costs an interruption only to the run it was running."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from i1lab.execution.launching import Policy, batches
from i1lab.execution.scheduler import run_tasks
from i1lab.execution.worker import Outcome, RunCall
from i1lab.registry import Registry
from tests.core.test_policy import record

# 24 runs on two slots: r0 and r1 (or r0 to r2) run alone, then the first batch is r2-r12, r3-r13 or
# r4-r13 (the rest halved over the slots)
BAD = "r12"  # kills its worker: well after the first runs, inside the first batch
RAISES = "r8"  # raises, in the middle of the first batch
FAILS = "r10"  # fails for its own reason (recorded failed, like a NaN loss) in the same batch, before BAD


def quick(
    run_id: int,
    database_url: str | None = None,
    workdir: str | None = None,
    *,
    expect_token: int | None = None,
    owner: str | None = None,
    eval_options: dict[str, Any] | None = None,
) -> Outcome:
    """A run that takes its lease like a worker, notes the Ray task it runs in, and finishes at once.

    The run named by ``$BATCH_TEST_RAISE`` raises after taking its lease; the one named by
    ``$BATCH_TEST_DIE`` kills its worker process the first time (a marker file says it did); the one
    named by ``$BATCH_TEST_FAIL`` records itself failed, as a run whose loss went NaN does."""
    import ray

    from i1lab.execution.worker import Outcome
    from i1lab.registry import Registry

    registry = Registry(database_url)
    grant = registry.acquire_lease(run_id, owner or "quick", ttl=30, node="n", expect_token=expect_token)
    if grant.state != "acquired" or grant.token is None:
        return Outcome(run_id=run_id, status="elsewhere", seconds=0.0)
    name = registry.run(run_id).spec["name"]
    with open(Path(os.environ["BATCH_TEST_DIR"]) / "tasks.txt", "a") as f:
        f.write(f"{name} {ray.get_runtime_context().get_task_id()}\n")
    if name == os.environ.get("BATCH_TEST_RAISE"):
        raise ValueError("bad data in this run")
    if name == os.environ.get("BATCH_TEST_FAIL"):
        registry.finish_lease(run_id, grant.token, "failed", "loss is NaN")
        return Outcome(run_id=run_id, status="failed", reason="loss is NaN", seconds=0.001, trained=True)
    marker = Path(os.environ["BATCH_TEST_DIR"]) / "died"
    if name == os.environ.get("BATCH_TEST_DIE") and not marker.exists():
        marker.touch()
        os._exit(1)
    registry.finish_lease(run_id, grant.token, "finished")
    return Outcome(run_id=run_id, status="finished", seconds=0.001, trained=True)


@pytest.fixture(scope="module")
def ray_batches(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    import ray

    folder = tmp_path_factory.mktemp("batches")
    os.environ["BATCH_TEST_DIR"] = str(folder)
    ray.init(
        address="local",
        num_cpus=2,
        include_dashboard=False,
        logging_level="ERROR",
        log_to_driver=False,
        runtime_env={"env_vars": {"BATCH_TEST_DIR": str(folder), "JAX_PLATFORMS": "cpu"}},
    )
    yield folder
    ray.shutdown()
    os.environ.pop("BATCH_TEST_DIR", None)


def test_runs_of_one_kind_launched_together_are_spread_over_the_slots_in_batches() -> None:
    ids = list(range(10))
    assert batches(ids, 2, 2) == [[i] for i in ids]  # no pipelining: one run per task
    assert batches(ids, 2, 8) == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]  # at most room // capacity each
    assert batches(ids, 2, 400) == [[0, 1, 2, 3, 4], [5, 6, 7, 8, 9]]  # but every slot gets some
    assert batches(ids, 3, 600) == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    assert batches([7], 2, 400) == [[7]]
    assert batches([], 2, 400) == []


def task_ids(folder: Path) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in (folder / "tasks.txt").read_text().splitlines():
        name, task = line.split()
        out.setdefault(name, []).append(task)
    return out


def test_a_run_that_raises_in_a_batch_fails_alone(ray_batches: Path, home: Path) -> None:
    registry = Registry()
    tasks = record(registry, "raising", 24)
    (ray_batches / "tasks.txt").unlink(missing_ok=True)
    outcomes = run_tasks(
        tasks, policy=Policy(study="raising"), fn=_with_env(quick, BATCH_TEST_RAISE=RAISES), poll_seconds=0.2
    )
    by_id = {o.run_id: o for o in outcomes}
    by_name = {t.name: by_id[t.run_id] for t in tasks}
    assert by_name[RAISES].status == "failed" and by_name[RAISES].reason == "ValueError: bad data in this run"
    assert all(o.status == "finished" for name, o in by_name.items() if name != RAISES)
    runs = {r.id: r for r in registry.runs()}
    for t in tasks:
        run = runs[t.run_id]
        assert run.status == ("failed" if t.name == RAISES else "finished"), t.name
        leased = [e for e in registry.events([t.run_id]) if e.kind == "leased"]
        assert len(leased) == 1 and run.interruptions == 0, t.name
    assert "bad data" in (runs[by_name[RAISES].run_id].reason or "")
    # batched: fewer Ray tasks than runs, and the failed run shared its task with runs that finished
    seen = task_ids(ray_batches)
    assert all(len(v) == 1 for v in seen.values()) and len(seen) == 24
    tasks_used = {v[0] for v in seen.values()}
    assert len(tasks_used) < 24
    mates = [name for name, v in seen.items() if v[0] == seen[RAISES][0]]
    later = [name for name in mates if int(name[1:]) > int(RAISES[1:])]
    assert later  # it shared its task with runs that came after it, and finished
    # recorded failed (its lease released) at once, not when the batch ended
    ids = {t.name: t.run_id for t in tasks}
    failed_at = next(e.at for e in registry.events([ids[RAISES]]) if e.kind == "failed")
    last_at = max(e.at for name in later for e in registry.events([ids[name]]) if e.kind == "finished")
    assert failed_at < last_at


def test_a_worker_that_dies_in_a_batch_interrupts_only_the_run_it_was_running(
    ray_batches: Path, home: Path
) -> None:
    registry = Registry()
    tasks = record(registry, "dying", 24)
    (ray_batches / "tasks.txt").unlink(missing_ok=True)
    (ray_batches / "died").unlink(missing_ok=True)
    policy = Policy(study="dying", backoff_seconds=0.1)
    fn = _with_env(quick, BATCH_TEST_DIE=BAD, BATCH_TEST_FAIL=FAILS)
    outcomes = run_tasks(tasks, policy=policy, fn=fn, poll_seconds=0.2)
    assert (ray_batches / "died").exists()
    by_id = {o.run_id: o for o in outcomes}
    assert len(outcomes) == 24
    runs = {r.id: r for r in registry.runs()}
    seen = task_ids(ray_batches)
    assert len(seen[BAD]) == 2  # the attempt that died and the retry, in another task
    died_with = [name for name, v in seen.items() if v[0] == seen[BAD][0] and name != BAD]
    assert FAILS in died_with  # its batch held runs that had ended before it, one of them failed
    for t in tasks:
        run = runs[t.run_id]
        leased = [e for e in registry.events([t.run_id]) if e.kind == "leased"]
        retried = [e for e in registry.events([t.run_id]) if e.kind == "retried"]
        if t.name == BAD:
            assert (run.interruptions, len(leased), len(retried)) == (1, 2, 1)
        else:  # ended before the worker died, or never started in it: neither counts
            assert (run.interruptions, len(leased), len(retried)) == (0, 1, 0), t.name
        # the failed run stays failed: not trained again when its batch's worker died after it
        expected = "failed" if t.name == FAILS else "finished"
        assert run.status == by_id[t.run_id].status == expected, t.name
    assert runs[next(t.run_id for t in tasks if t.name == FAILS)].reason == "loss is NaN"


def _with_env(fn: Any, **env: str) -> Any:
    """``fn`` run with these environment variables set in the worker (Ray workers outlive a test)."""

    def wrapped(*args: Any, **kwargs: Any) -> Outcome:
        old = {k: os.environ.get(k) for k in env}
        os.environ.update(env)
        try:
            result: Outcome = fn(*args, **kwargs)
            return result
        finally:
            for k, v in old.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v

    return wrapped


# --- the lease hand-over inside a batch, through the real worker (in this process) ---------------

HANDOVER_STUDY = """\
study: handover
extends: {baseline}
axes:
  train.lr: [1.0e-4, 2.0e-4, 3.0e-4]
"""


@pytest.fixture
def no_training(monkeypatch: pytest.MonkeyPatch) -> None:
    """The worker's training returns at once (it reports its last step): what is under test is the
    lease of each run around it."""
    import i1lab.plan.steps as steps
    import i1lab.train.runner as runner

    def train(spec: Any, workdir: Any, hooks: Any, init_from: Any = None) -> dict[str, Any]:
        hooks.on_step(spec.train.steps)
        return {"step": spec.train.steps}

    monkeypatch.setattr(runner, "train", train)
    monkeypatch.setattr(steps, "eval_steps", lambda spec: set())


def planned_calls(registry: Registry, tmp_path: Path) -> list[RunCall]:
    """A four-run study planned and recorded as ``i1lab submit`` does, queued, as a driver's calls."""
    from i1lab.execution.submit import planned_members
    from i1lab.plan.planner import expand, make_plan
    from i1lab.spec import load_study
    from tests.core.test_ray_cluster import EXPERIMENTS

    path = tmp_path / "handover.yaml"
    path.write_text(HANDOVER_STUDY.format(baseline=EXPERIMENTS / "baseline.yaml"))
    study = load_study(path)
    variants = expand(study, "tiny")
    plan = make_plan(study, variants, registry.existing_runs(v.hash for v in variants), "tiny")
    ids = registry.record_plan(plan.study, planned_members(plan), file=str(path), profile="tiny")
    run_ids = [ids[r.name] for r in plan.runs]
    tokens = registry.queue_runs(run_ids)
    return [
        RunCall(run_id=r, database_url=registry.url, expect_token=tokens[r].token, owner=f"driver/{r}/1")
        for r in run_ids
    ]


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_each_run_of_a_batch_is_leased_in_the_transaction_that_ends_the_one_before(
    home: Path, tmp_path: Path, no_training: None, backend: str, request: pytest.FixtureRequest
) -> None:
    """One transaction per run instead of two: recording run k's end also takes run k+1's lease. A
    run another submitter holds is refused in that hand-over (and left alone), and the run after it
    takes its own lease."""
    from i1lab.execution.worker import execute_batch

    registry = Registry(None if backend == "sqlite" else request.getfixturevalue("postgres_url"))
    calls = planned_calls(registry, tmp_path)
    ids = [c.run_id for c in calls]
    held = registry.acquire_lease(ids[2], "another-submitter", ttl=60, node="elsewhere")
    assert held.state == "acquired"

    outcomes = execute_batch(calls)

    assert [o.status for o in outcomes] == ["finished", "finished", "elsewhere", "finished"]
    events = registry.events(ids)
    by_run = {r: [e for e in events if e.run_id == r] for r in ids}
    for r in (ids[0], ids[1], ids[3]):
        kinds = [e.kind for e in by_run[r]]
        assert kinds.count("leased") == 1 and kinds[-1] == "finished", kinds
        assert registry.run(r).attempts == 1
    finished_0 = next(e for e in by_run[ids[0]] if e.kind == "finished")
    leased_1 = next(e for e in by_run[ids[1]] if e.kind == "leased")
    # written together, in one transaction: the next run's lease starts as the previous run ends
    assert leased_1.id == finished_0.id + 1 and leased_1.at == finished_0.at
    assert registry.run(ids[1]).started_at == registry.run(ids[0]).finished_at
    assert "driver/" in (leased_1.detail or "")
    # the run held elsewhere: untouched by this batch
    run = registry.run(ids[2])
    assert (run.status, run.lease_owner) == ("running", "another-submitter")
    assert [e.kind for e in by_run[ids[2]]].count("leased") == 1
    # the run after it took its own lease, after the refusal (not in the transaction of run 1's end)
    finished_1 = next(e for e in by_run[ids[1]] if e.kind == "finished")
    leased_3 = next(e for e in by_run[ids[3]] if e.kind == "leased")
    assert leased_3.at > finished_1.at


def test_a_lease_handed_to_a_run_the_batch_function_does_not_run_is_released(
    home: Path, tmp_path: Path, no_training: None
) -> None:
    """A batch function that skips a run (it answers without calling the worker) leaves no lease
    behind: the run is queued again, with no interruption counted, and the batch goes on."""
    from i1lab.execution.worker import execute_batch, execute_run

    registry = Registry()
    calls = planned_calls(registry, tmp_path)
    ids = [c.run_id for c in calls]

    def skipping(**call: Any) -> Outcome:
        if call["run_id"] == ids[1]:
            return Outcome(run_id=ids[1], status="elsewhere", seconds=0.0)
        return execute_run(**call)

    outcomes = execute_batch(calls, skipping)
    assert [o.status for o in outcomes] == ["finished", "elsewhere", "finished", "finished"]
    run = registry.run(ids[1])
    assert (run.status, run.lease_owner, run.interruptions) == ("queued", None, 0)
    assert [registry.run(r).status for r in (ids[0], ids[2], ids[3])] == ["finished"] * 3
