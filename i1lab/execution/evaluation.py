"""Evaluating a checkpoint of a run: restore its EMA parameters, sample, judge, record.

The one path every evaluation takes: the training worker at its checkpoints (in its process or as Ray
tasks beside it), the evaluation steps the scheduler runs for runs already trained (a study that asks a
reused run for another benchmark or judge, see :mod:`i1lab.plan.steps`), a search's inference trials,
``i1lab evals judge --run`` and ``i1lab score --run``. Scores reach the registry through
:func:`record_scores` only.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from i1lab.plan.steps import EvalStep, keys_line
from i1lab.registry import Registry, ScoreRecord
from i1lab.spec.run import EvalSpec, RunSpec

if TYPE_CHECKING:
    from i1lab.evaluation.judging import BenchmarkScore
    from i1lab.execution.worker import Outcome
    from i1lab.registry.lease_holder import Lease


class EvalCall(BaseModel):
    """One checkpoint to evaluate, as a Ray task is asked it (:func:`run_evaluation`)."""

    run_id: int
    database_url: str | None = None
    workdir: str
    step: int
    #: the evaluation steps to run (a study's own settings, e.g. for a reused run); empty: the benchmarks
    #: of the run's recorded spec
    steps: list[EvalStep] = []
    eval: dict[str, Any] | None = None  # the EvalSpec ``steps`` come from; None: the run's own
    #: the training attempt's fencing token (scores are recorded only while it holds the lease); None:
    #: a run already trained, no lease
    token: int | None = None


class EvalOutcome(BaseModel):
    run_id: int
    step: int
    recorded: bool  # False: checkpoint not kept, or the lease moved on (the scores were not recorded)
    seconds: float
    node: str
    pid: int
    scores: str = ""  # the scores recorded, as a log line


def restore_ema(spec: RunSpec, workdir: Path, step: int) -> Any | None:
    """The EMA parameters of checkpoint ``step``, read without modifying the folder (the training
    process may be writing beside it); None if that checkpoint is not kept or cannot be trusted."""
    from i1lab.train.checkpoint import CheckpointCorrupt, Checkpoints
    from i1lab.train.runner import initial_state

    folder = workdir / "checkpoints"
    if not (folder / str(step)).is_dir():
        return None
    t = spec.train
    ckpts = Checkpoints(
        folder, every=t.checkpoint_every, keep_every=t.keep_every, total_steps=t.steps, read_only=True
    )
    try:
        abstract, _, _ = initial_state(spec, abstract=True)
        return ckpts.restore(step, abstract)[0].ema
    except CheckpointCorrupt:
        return None
    finally:
        ckpts.manager.close()


def asked_with(spec: RunSpec, eval_spec: dict[str, Any] | None, steps: Sequence[EvalStep]) -> RunSpec:
    """``spec`` as a study asks it: its evaluation block replaced by ``eval_spec`` (None: kept), on the
    benchmarks of ``steps`` only (none given: all). Pure."""
    e = spec.eval if eval_spec is None else EvalSpec.model_validate(eval_spec)
    if steps:
        benches = [b for b in e.benchmarks if b in {s.benchmark for s in steps}]
        e = e.model_copy(update={"benchmarks": benches})
    return spec.model_copy(update={"eval": e})


def evaluate_checkpoint(
    spec: RunSpec, params: Any, step: int, workdir: Path, run_hash: str
) -> list[BenchmarkScore]:
    """Sample and judge the EMA ``params`` of checkpoint ``step`` on every benchmark of ``spec.eval``,
    writing the images under ``<workdir>/eval/<hash[:12]>/``."""
    from i1lab.evaluation.evaluate import evaluate

    return evaluate(spec, params, step, workdir / "eval" / run_hash[:12])


def score_records(run_id: int, results: Sequence[BenchmarkScore]) -> list[ScoreRecord]:
    return [
        ScoreRecord(
            run_id=run_id, step=r.step, benchmark=r.benchmark, metric=metric, judge=r.judge, value=value
        )
        for r in results
        for metric, value in r.metrics.items()
    ]


def scores_line(step: int, results: Sequence[BenchmarkScore], where: str) -> str:
    values = ", ".join(
        f"{r.benchmark}/{metric}={value:.4g}" for r in results for metric, value in r.metrics.items()
    )
    return f"evaluated step {step} {where}: {values or 'no scores'}"


def record_scores(
    registry: Registry,
    run_id: int,
    results: Sequence[BenchmarkScore],
    *,
    steps: Sequence[EvalStep] = (),
    lease: Lease | None = None,
    token: int | None = None,
    seconds: float = 0.0,
    node: str | None = None,
    detail: str | None = None,
) -> bool:
    """Record the scores of one evaluation and an ``evaluated`` event whose detail names the evaluation
    steps it ran (``steps``): through the training attempt's ``lease``, fenced by its ``token``, or, for
    a run already trained, as they are. False: the lease moved on, nothing was recorded."""
    records = score_records(run_id, results)
    text = (detail or "") + keys_line(steps)
    if lease is not None:
        return lease.scores(records, eval_seconds=seconds, detail=text)
    if token is not None:
        return registry.fenced_scores(run_id, token, records, eval_seconds=seconds, node=node, detail=text)
    registry.add_scores(records)
    if steps or detail:
        registry.add_event(run_id, "evaluated", node=node, detail=text)
    return True


def run_evaluation(call: EvalCall) -> EvalOutcome:
    """A Ray task (or a plain call): evaluate checkpoint ``call.step`` of the run and record the scores
    with the time it took. The evaluation steps another submitter recorded meanwhile are skipped."""
    from i1lab.execution.nodes import node_name
    from i1lab.execution.worker import limit_threads, registry_for
    from i1lab.plan.steps import evaluation_history
    from i1lab.plan.weights import check_recorded

    limit_threads()
    t0 = time.perf_counter()
    registry = registry_for(call.database_url)
    record = registry.run(call.run_id)
    node, pid = node_name(), os.getpid()
    steps = call.steps
    if steps and call.token is None:
        done = evaluation_history(registry, [call.run_id])[call.run_id]
        steps = [s for s in steps if not done.done(s)]
        if not steps:
            return EvalOutcome(
                run_id=call.run_id, step=call.step, recorded=True, seconds=0.0, node=node, pid=pid
            )
    spec = RunSpec.model_validate(record.spec)
    wd = Path(call.workdir)
    check_recorded(spec, wd)  # this node must sample with the frozen weights the run trained with
    ema = restore_ema(spec, wd, call.step)
    if ema is None:
        return EvalOutcome(
            run_id=call.run_id, step=call.step, recorded=False, seconds=0.0, node=node, pid=pid
        )
    asked = asked_with(spec, call.eval, steps)
    if not steps:
        from i1lab.plan.steps import evaluations

        steps = evaluations(asked, record.hash, [call.step])
    results = evaluate_checkpoint(asked, ema, call.step, wd, record.hash)
    seconds = time.perf_counter() - t0
    where = f"by an evaluation task on {node} (pid {pid}) in {seconds:.1f} s"
    recorded = record_scores(
        registry,
        call.run_id,
        results,
        steps=steps,
        token=call.token,
        seconds=seconds,
        node=node,
        detail=f"step {call.step} by an evaluation task (pid {pid}) in {seconds:.1f} s",
    )
    return EvalOutcome(
        run_id=call.run_id,
        step=call.step,
        recorded=recorded,
        seconds=seconds,
        node=node,
        pid=pid,
        scores=scores_line(call.step, results, where),
    )


def evaluate_run(calls: list[EvalCall]) -> Outcome:
    """A Ray task of the driver (an ``evaluate`` task): the checkpoints of one run already trained, one
    after the other (:func:`run_evaluation`); ``failed`` names the checkpoints no longer kept."""
    from i1lab.execution.worker import Outcome

    t0 = time.perf_counter()
    done = [run_evaluation(call) for call in calls]
    lost = [str(d.step) for d in done if not d.recorded]
    return Outcome(
        run_id=calls[0].run_id,
        status="failed" if lost else "finished",
        reason=f"checkpoint(s) {', '.join(lost)} not kept" if lost else None,
        seconds=time.perf_counter() - t0,
        node=done[0].node if done else None,
    )
