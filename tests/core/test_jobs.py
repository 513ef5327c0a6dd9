"""Detached studies on a real Ray head on loopback (started by i1lab's own `ray start --head`, torn
down at the end): submit --detach, the job outliving its client, status, logs, cancel and resume."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from i1lab.execution import jobs

BASELINE = Path(__file__).resolve().parents[2] / "experiments" / "baseline.yaml"

SMALL = f"""\
study: small_detached
extends: {BASELINE}
profiles:
  tiny:
    train.steps: 100
    train.checkpoint_every: 10
    train.keep_every: 10
    train.log_every: 5
    eval.benchmarks: []
"""


def big_study(runs: int) -> str:
    values = ", ".join(f"{(i + 1) * 1.0e-6:.6e}" for i in range(runs - 1))
    return f"study: big_detached\nextends: {BASELINE}\naxes:\n  train.lr: [{values}]\n"


@pytest.fixture(scope="module")
def head(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, jobs.HeadRecord]]:
    """i1lab's local Ray head (ray start --head on loopback, job server, token auth) for this module."""
    home = tmp_path_factory.mktemp("jobs") / "home"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("I1LAB_HOME", str(home))
        mp.delenv("I1LAB_DATABASE_URL", raising=False)
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        mp.delenv("RAY_ADDRESS", raising=False)
        record = jobs.ensure_local_head()
        try:
            yield home, record
        finally:
            assert jobs.stop_local_head()
            assert not jobs._pid_alive(record.pid)  # the head's `ray start` process is gone


def i1lab(home: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full = {**os.environ, "I1LAB_HOME": str(home), "COLUMNS": "250", **(env or {})}
    full.pop("RAY_ADDRESS", None)
    return subprocess.run(
        [sys.executable, "-m", "i1lab", *args],
        capture_output=True,
        text=True,
        env=full,
        timeout=180,
        check=False,
    )


def cli(*args: str) -> str:
    """The CLI in this process (no interpreter start-up while a run trains); returns its output, `flat`."""
    from typer.testing import CliRunner

    from i1lab.cli.main import app

    result = CliRunner().invoke(app, list(args), env={"COLUMNS": "250"})
    assert result.exit_code == 0, f"{args}: {result.output}{result.exception!r}"
    return flat(str(result.output))


def flat(text: str) -> str:
    """``text`` with its line breaks as spaces: the CLI's console wraps a message at its width, which it
    takes when i1lab.cli is first imported in the process (80 columns unless that was in a `cli` call)."""
    return " ".join(text.split())


def job_ended(study: str) -> None:
    """Fail at once, with the job's message and output, if the study's job ended when it should not."""
    record = jobs.job_record(study)
    assert record is not None
    state = jobs.job_state(record)
    if state.status in jobs.TERMINAL_JOB:
        logs: list[str] = []
        jobs.job_logs(record, follow=False, write=logs.append)
        raise AssertionError(f"job {state.status}: {state.message}\n{''.join(logs)[-3000:]}")


def wait_for(what: str, predicate: Callable[[], Any], timeout: float = 120.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"{what}: not within {timeout:.0f} s")


def test_detach_300_runs_returns_fast_job_outlives_client_and_cancel_stops_it(
    head: tuple[Path, jobs.HeadRecord], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home, record = head
    token = jobs.local_token() or ""
    auth = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": token}  # as a user of a token cluster sets them
    study = tmp_path / "big.yaml"
    study.write_text(big_study(300))
    t0 = time.perf_counter()
    res = i1lab(
        home,
        "submit",
        str(study),
        "--profile",
        "tiny",
        "--detach",
        "--no-mlflow",
        "--address",
        record.dashboard_url,
        env=auth,
    )
    elapsed = time.perf_counter() - t0
    assert res.returncode == 0, res.stdout + res.stderr
    assert elapsed < 5.0, f"submit --detach took {elapsed:.2f} s"
    assert "300 runs — 300 new" in res.stdout and "submitted as Ray job" in res.stdout
    job = jobs.job_record("big_detached")
    assert job is not None and not job.local_head and job.address == record.dashboard_url

    # The client has exited; the job goes on: it records the 300-run plan and starts runs.
    monkeypatch.setenv("RAY_AUTH_TOKEN", token)
    monkeypatch.setenv("RAY_AUTH_MODE", "token")
    assert jobs.job_state(job).status in ("PENDING", "RUNNING")

    def running() -> dict[str, Any] | None:
        data = json.loads(cli("status", "big_detached", "--json"))
        if data["counts"].get("running"):
            return data
        job_ended("big_detached")
        return None

    data = wait_for("a run of the detached study running", running)
    assert data["job"]["status"] == "RUNNING" and len(data["runs"]) == 300

    out = cli("cancel", "big_detached")
    assert "STOPPED" in out and "run(s) marked cancelled" in out
    after = json.loads(cli("status", "big_detached", "--json"))
    assert after["job"]["status"] == "STOPPED"
    assert after["counts"] == {"cancelled": 300}
    steps = {r["name"]: r["step"] for r in after["runs"]}
    time.sleep(2)
    after = json.loads(cli("status", "big_detached", "--json"))
    assert {r["name"]: r["step"] for r in after["runs"]} == steps  # nothing trains any more


def test_detached_run_status_logs_cancel_resume(head: tuple[Path, jobs.HeadRecord], tmp_path: Path) -> None:
    home, record = head
    study = tmp_path / "small.yaml"
    study.write_text(SMALL)
    res = i1lab(home, "submit", str(study), "--profile", "tiny", "--detach", "--no-mlflow")
    assert res.returncode == 0, res.stdout + res.stderr
    assert f"local Ray head at {record.dashboard_url}" in res.stdout  # no --address: i1lab's own head

    from i1lab.registry import Registry

    def checkpointed() -> int | None:
        job_ended("small_detached")
        if "small_detached" not in {s.name for s in Registry().studies()}:
            return None
        run = Registry().members("small_detached")[0].run
        steps = [step for step, _, _ in Registry().checkpoints(run.id)]
        return run.id if run.status == "running" and steps else None

    run_id = wait_for("a checkpoint of the running run", checkpointed, timeout=150)
    out = cli("cancel", "small_detached")
    assert "STOPPED" in out and "1 run(s) marked cancelled" in out
    cancelled = Registry().run(run_id)
    assert cancelled.status == "cancelled" and cancelled.step < cancelled.total_steps
    kept = max(step for step, _, _ in Registry().checkpoints(run_id))
    time.sleep(2)
    assert Registry().run(run_id).step == cancelled.step  # the worker stopped with its job

    out = cli("resume", "small_detached")
    assert "1 to resume" in out and "submitted as Ray job" in out
    seen: list[int] = []

    def done() -> dict[str, Any] | None:
        data = json.loads(cli("status", "small_detached", "--json"))
        r = data["runs"][0]
        if r["status"] == "running" and r["attempts"] == 2:
            seen.append(r["step"])
        return data if data["job"]["status"] in jobs.TERMINAL_JOB else None

    data = wait_for("the resumed job to end", done, timeout=180)
    assert data["job"]["status"] == "SUCCEEDED", data["job"]
    r = data["runs"][0]
    assert (r["status"], r["step"], r["total_steps"]) == ("finished", 100, 100)
    assert (r["attempts"], r["retries"]) == (2, 1)
    assert r["interruptions"] in (0, 1)  # 1 if the stopped driver had released its lease as interrupted
    assert r["steps_per_second"] > 0 and r["eta_seconds"] is None and r["node"]
    # resumed from its checkpoint, not from step 0: a checkpoint raises the recorded step with it, so
    # even before the resumed worker's first progress write the registry shows no step below it
    assert cancelled.step >= kept
    assert seen and all(step >= kept for step in seen)

    table = cli("status", "small_detached")
    assert "SUCCEEDED" in table and "100/100" in table and "node" in table

    out = cli("logs", "small_detached/baseline")
    assert "cancelled" in out and "step 100 loss" in out
    res = i1lab(home, "logs", "small_detached")  # the job driver's own output (a fresh process)
    assert res.returncode == 0, res.stderr
    assert "study small_detached: 1 runs" in res.stdout and "baseline: finished" in res.stdout


def test_cancel_without_a_job_fences_out_a_foreground_worker(home: Path) -> None:
    """No Ray needed: a study run by a foreground submit is cancelled in the registry; the worker
    holding a run's lease loses it (its token is stale) and so stops at its next step."""
    from i1lab.execution.submit import planned_members
    from i1lab.plan.planner import expand, make_plan
    from i1lab.registry import Registry
    from i1lab.spec import load_study

    study = load_study(BASELINE.parent / "adapter_size.yaml")
    plan = make_plan(study, expand(study, "tiny"), {}, "tiny")
    members = planned_members(plan)
    registry = Registry()
    ids = registry.record_plan("adapter_size", members)
    grant = registry.acquire_lease(ids["baseline"], "other-submitter/1", ttl=60, node="n1")
    assert grant.state == "acquired" and grant.token is not None
    res = i1lab(home, "cancel", "adapter_size")
    assert res.returncode == 0, res.stdout + res.stderr
    assert "no detached job; 4 run(s) cancelled" in res.stdout
    states = registry.lease_states(ids.values())
    assert {st.status for st in states.values()} == {"cancelled"}
    assert all(st.owner is None for st in states.values())
    assert not registry.renew_lease(ids["baseline"], grant.token, 60)  # the old worker is fenced out
    kinds = [e.kind for e in registry.events([ids["baseline"]])]
    assert kinds[-1] == "cancelled"
    assert jobs.job_record("../registry") is None and jobs.job_record("adapter_size/baseline") is None
