"""The worker's own log of a run (``<workdir>/logs/<hash[:12]>.log``): every attempt appends a header,
its training log records, checkpoints, evaluations and how it ended (a traceback on failure), and
``i1lab logs RUN`` shows it. A real tiny run, in process, on a real SQLite registry."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from i1lab.registry import PlannedMember, Registry
from i1lab.spec.run import RunSpec
from tests.core.test_train_step import shared_xla_cache, tiny_spec


@pytest.fixture
def env(home: Path, tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("JAX_COMPILATION_CACHE_DIR", shared_xla_cache(tmp_path_factory))
    return home


def record(registry: Registry, study: str, name: str, spec: RunSpec, digest: str, workdir: Path) -> int:
    member = PlannedMember(
        name=name,
        label=name,
        hash=digest,
        is_baseline=True,
        baseline=name,
        varied={},
        spec=spec.model_dump(mode="json"),
        total_steps=spec.train.steps,
        workdir=str(workdir),
    )
    return registry.record_plan(study, [member])[name]


def i1lab_logs(ref: str, home: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "i1lab", "logs", ref],
        capture_output=True,
        text=True,
        env={**os.environ, "I1LAB_HOME": str(home), "COLUMNS": "250"},
        timeout=60,
        check=False,
    )


def test_a_real_runs_log_has_its_attempt_training_checkpoints_and_scores(env: Path, tmp_path: Path) -> None:
    from i1lab.execution.worker import execute_run

    spec = tiny_spec(
        **{
            "train.steps": 8,
            "train.checkpoint_every": 4,
            "train.keep_every": 8,
            "train.log_every": 4,
            "eval.benchmarks": ["shapes"],
        }
    )
    registry = Registry()
    workdir = tmp_path / "run"
    run_id = record(registry, "runlog", "baseline", spec, "a" * 64, workdir)
    outcome = execute_run(run_id, None, str(workdir))
    assert outcome.status == "finished", outcome.reason

    text = (workdir / "logs" / f"{'a' * 12}.log").read_text()
    lines = [re.sub(r"^\[[0-9: -]+\] ", "", line) for line in text.splitlines()]
    token = registry.run(run_id).lease_token - 1  # finishing moved the token on by one
    assert lines[0] == (
        f"=== attempt 1 of run {run_id} ({'a' * 12}) on {outcome.node}, "
        f"pid {os.getpid()}, lease token {token}"
    )
    assert lines[1] == "started at step 0: from scratch"
    assert [ln.split("  ")[0] for ln in lines if ln.startswith("step ")] == [
        "step 1",
        "step 2",
        "step 3",
        "step 4",
        "step 8",
    ]
    assert any(ln.startswith("step 8  loss ") for ln in lines)
    checkpoints = [ln for ln in lines if ln.startswith("checkpoint step")]
    assert checkpoints[0].startswith("checkpoint step 4: ") and checkpoints[-1].startswith(
        "checkpoint step 8 (permanent): "
    )
    (evaluated,) = [ln for ln in lines if ln.startswith("evaluated step")]
    assert evaluated.startswith("evaluated step 8 in the training process") and "shapes/" in evaluated
    assert lines[-2] == "trained: step 8 after " + lines[-2].split(" after ")[1]
    assert lines[-1] == "attempt 1 ended: finished"
    assert all(line.startswith("[20") for line in text.splitlines())  # every line has its time

    # the 'started' event counts this attempt as the first (read in the lease's own transaction)
    (started,) = [e for e in registry.events([run_id]) if e.kind == "started"]
    assert started.detail == f"pid {os.getpid()}, attempt 1: from scratch"
    kinds = [e.kind for e in registry.events([run_id])]
    assert kinds.index("leased") < kinds.index("started") < kinds.index("trained") < kinds.index("finished")

    res = i1lab_logs("runlog/baseline", env)
    assert res.returncode == 0, res.stderr
    assert "attempt 1: from scratch" in res.stdout  # the registry's events
    assert f"=== attempt 1 of run {run_id}" in res.stdout and "attempt 1 ended: finished" in res.stdout
    assert "evaluated step 8 in the training process" in res.stdout


def test_every_attempt_appends_and_a_crash_leaves_its_traceback(
    env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from i1lab.execution.worker import execute_run
    from i1lab.train import runner

    def crash(spec: RunSpec, wd: Path, hooks: Any, init_from: Any = None) -> dict[str, Any]:
        hooks.on_start(0, [])
        hooks.on_log({"step": 1, "loss": 0.5})
        raise ValueError("boom at step 1")

    monkeypatch.setattr(runner, "train", crash)
    spec = tiny_spec(**{"train.steps": 4})
    registry = Registry()
    workdir = tmp_path / "run"
    run_id = record(registry, "crash", "baseline", spec, "b" * 64, workdir)
    with pytest.raises(ValueError, match="boom at step 1"):
        execute_run(run_id, None, str(workdir))
    registry.queue_runs([run_id])  # a failed run is queued again: its second attempt
    with pytest.raises(ValueError, match="boom at step 1"):
        execute_run(run_id, None, str(workdir))

    lines = [
        re.sub(r"^\[[0-9: -]+\] ", "", line)
        for line in (workdir / "logs" / f"{'b' * 12}.log").read_text().splitlines()
    ]
    headers = [ln for ln in lines if ln.startswith("=== attempt")]
    assert [h.split(" of run")[0] for h in headers] == ["=== attempt 1", "=== attempt 2"]
    assert lines.count("step 1  loss 0.5") == 2
    assert lines.count("Traceback (most recent call last):") >= 2
    assert "ValueError: boom at step 1" in lines
    assert lines[-1] == "ValueError: boom at step 1" or any(
        ln.startswith("attempt 2 failed: ValueError: boom at step 1") for ln in lines
    )
    assert registry.run(run_id).status == "failed" and registry.run(run_id).attempts == 2
    details = [e.detail or "" for e in registry.events([run_id]) if e.kind == "started"]
    assert [d.split(":")[0].split(", ")[1] for d in details] == ["attempt 1", "attempt 2"]

    res = i1lab_logs("crash/baseline", env)
    assert res.returncode == 0, res.stderr
    assert "=== attempt 2 of run" in res.stdout and "ValueError: boom at step 1" in res.stdout
