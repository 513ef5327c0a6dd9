"""Executing one registry run where it was scheduled: train, checkpoint, evaluate, record.

This is what a Ray task runs (and ``i1lab train --run``): every fact goes to the registry as it happens,
so the driver, ``i1lab status`` and the dashboard see progress without talking to the worker.
"""

from __future__ import annotations

import os
import time
import traceback
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from i1lab.errors import I1labError
from i1lab.registry import Registry, ScoreRecord
from i1lab.spec.run import RunSpec


class Outcome(BaseModel):
    run_id: int
    status: str
    reason: str | None = None
    seconds: float


def _limit_threads() -> None:
    """One XLA CPU thread pool per worker sized to the worker's share of cores."""
    n = os.environ.get("I1LAB_WORKER_THREADS")
    if n:
        flags = os.environ.get("XLA_FLAGS", "")
        if "intra_op_parallelism_threads" not in flags:
            os.environ["XLA_FLAGS"] = (
                f"{flags} --xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads={n}"
            )


def record_scores(registry: Registry, run_id: int, results: list[Any]) -> None:
    scores = [
        ScoreRecord(
            run_id=run_id, step=r.step, benchmark=r.benchmark, metric=metric, judge=r.judge, value=value
        )
        for r in results
        for metric, value in r.metrics.items()
    ]
    registry.add_scores(scores)


def _parent_dir(registry: Registry, spec: RunSpec) -> Path | None:
    """The work directory of the run this one resumes from (resolution stages), which must be finished."""
    ref = spec.data.resume_from
    if ref is None:
        return None
    parent = registry.existing([ref]).get(ref)
    if parent is None or parent.status not in ("finished", "imported") or not parent.workdir:
        state = "not in the registry" if parent is None else parent.status
        raise I1labError(f"data.resume_from: parent run {ref[:12]} is {state}; it must finish first")
    return Path(parent.workdir)


def execute_run(
    run_id: int, database_url: str | None = None, workdir: str | None = None, *after: object
) -> Outcome:
    """Train and evaluate registry run ``run_id`` to completion (resuming if it has checkpoints).

    ``after`` is unused: the scheduler passes the previous run of the same work directory, so Ray
    starts this one only when that one is done.
    """
    _limit_threads()
    from i1lab.evaluate import evaluate
    from i1lab.train.runner import Hooks, RunFailed, eval_steps, restore_ema, train

    t0 = time.perf_counter()
    registry = Registry(database_url)
    record = registry.run(run_id)
    spec = RunSpec.model_validate(record.spec)
    wd = Path(workdir or record.workdir or ".")
    registry.set_status(run_id, "running")
    last_progress = [0.0]

    def on_step(step: int) -> None:
        now = time.perf_counter()
        if now - last_progress[0] > 0.5 or step == spec.train.steps:
            registry.set_progress(run_id, step)
            last_progress[0] = now

    def on_checkpoint(step: int, permanent: bool, path: str) -> None:
        registry.add_checkpoint(run_id, step, path, permanent)

    eval_dir = wd / "eval" / record.hash[:12]

    def on_eval(step: int, ema: Any) -> None:
        record_scores(registry, run_id, evaluate(spec, ema, step, eval_dir))

    try:
        hooks = Hooks(on_step=on_step, on_checkpoint=on_checkpoint, on_eval=on_eval)
        train(spec, wd, hooks, init_from=_parent_dir(registry, spec))
        # Checkpoints trained earlier (by a run sharing this training, or before a crash) that lack scores.
        scored = {s.step for s in registry.scores([run_id])}
        for step in sorted(eval_steps(spec) - scored):
            ema = restore_ema(spec, wd, step)
            if ema is not None:
                registry.add_checkpoint(run_id, step, str(wd / "checkpoints" / str(step)), True)
                on_eval(step, ema)
    except RunFailed as exc:
        registry.set_status(run_id, "failed", str(exc))
        return Outcome(run_id=run_id, status="failed", reason=str(exc), seconds=time.perf_counter() - t0)
    except (I1labError, NotImplementedError, OSError) as exc:
        registry.set_status(run_id, "failed", f"{type(exc).__name__}: {exc}")
        return Outcome(run_id=run_id, status="failed", reason=str(exc), seconds=time.perf_counter() - t0)
    except Exception as exc:
        (wd / "error.log").write_text(traceback.format_exc())
        registry.set_status(
            run_id, "failed", f"{type(exc).__name__}: {exc} (traceback in {wd / 'error.log'})"
        )
        raise
    registry.set_progress(run_id, spec.train.steps)
    registry.set_status(run_id, "finished")
    return Outcome(run_id=run_id, status="finished", seconds=time.perf_counter() - t0)
