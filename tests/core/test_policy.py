"""Scheduling policy on a real local Ray cluster and a real registry: the per-study concurrency cap,
priorities between studies, the global accelerator-hours budget; and the pure planning behind them.

The runs here hold their lease and sleep instead of training (``run_tasks(fn=...)``): what is under
test is the driver's policy, and a second of sleep makes overlaps exact where JAX would make it slow."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from i1lab.execution.launching import Policy, Task, capacity, missing_resources, plan_launches, retry_delay
from i1lab.execution.scheduler import run_tasks
from i1lab.execution.worker import Outcome
from i1lab.registry import PlannedMember, Registry
from i1lab.spec.run import ResourcesSpec

SLEEP = 1.0


def sleeper(
    run_id: int,
    database_url: str | None = None,
    workdir: str | None = None,
    *,
    expect_token: int | None = None,
    owner: str | None = None,
    eval_options: dict[str, Any] | None = None,
) -> Outcome:
    """A run that takes its lease like a worker, holds it for SLEEP seconds and finishes."""
    from i1lab.execution.worker import Outcome
    from i1lab.registry import Registry

    registry = Registry(database_url)
    grant = registry.acquire_lease(run_id, owner or "sleeper", ttl=30, node="n", expect_token=expect_token)
    if grant.state != "acquired" or grant.token is None:
        return Outcome(run_id=run_id, status="elsewhere", seconds=0.0)
    time.sleep(SLEEP)
    registry.finish_lease(run_id, grant.token, "finished")
    return Outcome(run_id=run_id, status="finished", seconds=SLEEP, trained=True)


def record(registry: Registry, study: str, n: int, est: float = 0.1) -> list[Task]:
    members = [
        PlannedMember(
            name=f"r{i}",
            label=f"r{i}",
            hash=f"{study}-{i}".encode().hex().ljust(64, "0")[:64],
            is_baseline=i == 0,
            baseline="r0",
            varied={},
            spec={"name": f"r{i}", "resources": {"accelerator": "cpu"}},
            total_steps=1,
            workdir=f"/runs/{study}/{i}",
            accelerator_hours_est=est,
        )
        for i in range(n)
    ]
    ids = registry.record_plan(study, members)
    return [
        Task(
            run_id=ids[m.name],
            name=m.name,
            resources=ResourcesSpec(accelerator="cpu"),
            workdir=m.workdir or "",
            hash=m.hash,
            accelerator_hours_est=est,
        )
        for m in members
    ]


def spans(registry: Registry, tasks: list[Task]) -> list[tuple[float, float]]:
    """(leased, finished) times of the runs, from their events."""
    out = []
    for t in tasks:
        log = registry.events([t.run_id])
        start = next(e.at for e in log if e.kind == "leased")
        end = next(e.at for e in log if e.kind == "finished")
        out.append((start.timestamp(), end.timestamp()))
    return out


def peak(intervals: list[tuple[float, float]]) -> int:
    events = sorted([(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals])
    running = top = 0
    for _, delta in events:
        running += delta
        top = max(top, running)
    return top


@pytest.fixture(scope="module")
def ray_local() -> Iterator[None]:
    import ray

    ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level="ERROR")
    yield
    ray.shutdown()


def test_the_concurrency_cap_holds_and_without_it_the_cluster_is_filled(ray_local: None, home: Path) -> None:
    registry = Registry()
    capped, free = record(registry, "capped", 3), record(registry, "free", 4)
    outcomes = run_tasks(
        capped, policy=Policy(study="capped", max_concurrent=1), fn=sleeper, poll_seconds=0.2
    )
    assert [o.status for o in outcomes] == ["finished"] * 3
    assert peak(spans(registry, capped)) == 1
    run_tasks(free, policy=Policy(study="free"), fn=sleeper, poll_seconds=0.2)
    assert peak(spans(registry, free)) == 2  # both CPUs: the cap above was what held runs back


def test_a_study_defers_to_a_higher_priority_study_waiting_for_the_same_accelerator(
    ray_local: None, home: Path
) -> None:
    registry = Registry()
    low = record(registry, "low", 2)
    (high,) = record(registry, "high", 1)
    registry.set_study_policy("high", priority=5)
    waited = threading.Event()

    def higher_priority_submitter() -> None:
        """Another driver's run, waiting for a CPU for 3 s (as a driver marks its pending runs), then
        starting."""
        deadline = time.monotonic() + 3.0
        while time.monotonic() < deadline:
            registry.touch_waiting([high.run_id])
            waited.set()
            time.sleep(0.3)
        assert registry.acquire_lease(high.run_id, "other-driver", ttl=30).state == "acquired"

    other = threading.Thread(target=higher_priority_submitter)
    other.start()
    waited.wait(10)
    run_tasks(low, policy=Policy(study="low", priority=0), fn=sleeper, poll_seconds=0.2)
    other.join()
    first_low = min(start for start, _ in spans(registry, low))
    high_leased = next(e.at for e in registry.events([high.run_id]) if e.kind == "leased").timestamp()
    # nothing of the low-priority study started while the high-priority run was waiting for a CPU
    assert first_low >= high_leased, (first_low, high_leased)
    # a study of equal priority is not held back by a waiting one
    (again,) = record(registry, "again", 1)
    registry.set_study_policy("again", priority=5)
    registry.touch_waiting([again.run_id])
    (same,) = record(registry, "same", 1)
    t0 = time.monotonic()
    run_tasks([same], policy=Policy(study="same", priority=5), fn=sleeper, poll_seconds=0.2)
    assert time.monotonic() - t0 < SLEEP + 3.0


def test_the_global_budget_waits_for_runs_in_flight_and_refuses_what_cannot_fit(
    ray_local: None, home: Path
) -> None:
    registry = Registry()
    (past,) = record(registry, "past", 1)
    registry.set_fields(past.run_id, status="finished", wall_seconds=2 * 3600.0, chips=1)  # 2 h spent
    assert abs(registry.accelerator_hours_used() - 2.0) < 1e-9
    tasks = record(registry, "budgeted", 3, est=1.0)
    tasks[2].accelerator_hours_est = 0.4
    # 1.5 h left: r0 (1 h) and r2 (0.4 h) go at once; r1 (1 h) fits only once r0 has spent less than
    # its estimate, so it waits for it
    outcomes = run_tasks(
        tasks, policy=Policy(study="budgeted", budget_hours=3.5), fn=sleeper, poll_seconds=0.2
    )
    assert sorted(o.status for o in outcomes) == ["finished"] * 3
    (r0, r1, r2) = spans(registry, tasks)
    assert abs(r0[0] - r2[0]) < 1.0 and r1[0] >= r0[1] - 0.05
    # a run needing more than is left is not started at all
    (big,) = record(registry, "big", 1, est=2.0)
    (outcome,) = run_tasks([big], policy=Policy(study="big", budget_hours=3.5), fn=sleeper, poll_seconds=0.2)
    assert outcome.status == "cancelled" and "global budget of 3.50" in (outcome.reason or "")
    run = registry.run(big.run_id)
    assert run.status == "cancelled" and run.attempts == 0 and "budget" in (run.reason or "")


def test_submit_refuses_a_study_over_the_global_budget_before_recording_it(
    home: Path, tmp_path: Path
) -> None:
    from tests.conftest import EXPERIMENTS

    study = tmp_path / "s.yaml"
    study.write_text(f"study: over\nextends: {EXPERIMENTS / 'adapter_size.yaml'}\n")
    env = {**os.environ, "I1LAB_HOME": str(home), "COLUMNS": "200"}
    cmd = [sys.executable, "-m", "i1lab", "submit", str(study), "--profile", "tiny", "--no-progress"]
    res = subprocess.run(
        [*cmd, "--global-budget", "0.000001"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert res.returncode != 0 and res.stderr.startswith("error: global budget: 0.00 accelerator-hours used")
    assert len(res.stderr.strip().splitlines()) == 1 and "over the budget of 0.00" in res.stderr
    assert "over" not in {s.name for s in Registry().studies()}  # nothing recorded
    bad = subprocess.run(
        [*cmd, "--max-concurrent", "0"], env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert bad.returncode != 0 and "--max-concurrent must be at least 1 (got 0)" in bad.stderr


def test_pure_planning() -> None:
    cpu = ResourcesSpec(accelerator="cpu")
    tpu = ResourcesSpec(accelerator="tpu-v6e-8")

    def task(i: int, res: ResourcesSpec, est: float = 1.0) -> Task:
        return Task(run_id=i, name=f"r{i}", resources=res, workdir=f"/w/{i}", accelerator_hours_est=est)

    ready = [task(1, tpu), task(2, tpu), task(3, cpu), task(4, tpu)]
    plan = plan_launches(
        ready, in_flight={"tpu-v6e-8": 1}, room={"tpu-v6e-8": 2, "cpu": 4}, study_room=None, demand={},
        budget_left=None,
    )  # fmt: skip
    assert plan.launch == [1, 3] and plan.over_budget == []  # one slice free
    plan = plan_launches(
        ready, in_flight={}, room={"tpu-v6e-8": 2, "cpu": 4}, study_room=None, demand={"tpu-v6e-8": 1},
        budget_left=None,
    )  # fmt: skip
    assert plan.launch == [3]  # a higher-priority study waits for slices, not for CPUs
    plan = plan_launches(
        ready, in_flight={}, room={"tpu-v6e-8": 8, "cpu": 8}, study_room=2, demand={}, budget_left=None
    )
    assert plan.launch == [1, 2]
    # a kind that fills up early does not stop the scan before the other kind's runs further on
    many = [task(i, tpu) for i in range(10, 60)] + [task(99, cpu)]
    plan = plan_launches(
        many, in_flight={}, room={"tpu-v6e-8": 2, "cpu": 1}, study_room=None, demand={}, budget_left=None
    )
    assert plan.launch == [10, 11, 99]
    plan = plan_launches(
        [task(1, cpu, 2.0), task(2, cpu, 0.5), task(3, cpu, 5.0)],
        in_flight={}, room={"cpu": 8}, study_room=None, demand={}, budget_left=2.4, committed=0.0,
    )  # fmt: skip
    assert plan.launch == [1] and plan.over_budget == [3]  # r2 waits for r1's actual spend
    assert capacity({"num_cpus": 1, "resources": {"TPU-v6e-8-head": 1}}, {"CPU": 3, "TPU-v6e-8-head": 2}) == 2
    assert (
        capacity({"num_cpus": 2}, {"CPU": 5}) == 2
        and capacity({"num_gpus": 1, "num_cpus": 1}, {"CPU": 4}) == 0
    )
    # what the scheduler names when no node can run a kind (the runs wait in Ray meanwhile)
    tpu = {"num_cpus": 1, "resources": {"TPU-v6e-8-head": 1}}
    assert missing_resources(tpu, {"CPU": 2}) == ["TPU-v6e-8-head: 1"]
    assert missing_resources(tpu, {"CPU": 0.5}) == ["CPU: 1", "TPU-v6e-8-head: 1"]
    assert missing_resources(tpu, {"CPU": 2, "TPU-v6e-8-head": 1}) == []
    assert missing_resources({"num_cpus": 1, "num_gpus": 2}, {"CPU": 8, "GPU": 1}) == ["GPU: 2"]
    assert [retry_delay(n, 2.0, 10.0) for n in (1, 2, 3, 4)] == [2.0, 4.0, 8.0, 10.0]


def test_the_heap_is_frozen_once_per_process() -> None:
    """Drivers and workers move their import graph out of the collector's sight once (``gc.freeze``)."""
    import gc

    from i1lab.execution import worker

    gc.unfreeze()
    worker._FROZEN = False
    try:
        worker.freeze_heap()
        frozen = gc.get_freeze_count()
        assert frozen > 1000  # the modules imported so far
        kept = [object() for _ in range(100)]
        worker.freeze_heap()
        assert gc.get_freeze_count() == frozen and kept  # a second call freezes nothing new
    finally:
        gc.unfreeze()
        worker._FROZEN = False


def test_short_runs_are_queued_in_ray_about_a_second_per_slot() -> None:
    from i1lab.execution.launching import PIPELINE_MAX, SHORT_SAMPLE, pipeline_room

    assert pipeline_room(2, []) == 2  # nothing learnt yet: one per slot
    assert pipeline_room(2, [0.01] * (SHORT_SAMPLE - 1)) == 2  # too few attempts seen
    assert pipeline_room(2, [0.01] * SHORT_SAMPLE) == 200  # ~1 s of 10 ms runs per slot
    assert pipeline_room(2, [0.01, 0.01, 0.01, 0.5]) == 4  # the slowest of them decides: at least 2
    assert pipeline_room(2, [0.01, 0.01, 0.01, 1.5]) == 2  # one run of real length: no queueing
    assert pipeline_room(3, [0.0] * SHORT_SAMPLE) == 3 * PIPELINE_MAX  # bounded
    assert pipeline_room(2, [5.0] * 10 + [0.01] * SHORT_SAMPLE) == 200  # only the latest count
