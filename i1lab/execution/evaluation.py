"""Evaluation as Ray tasks: one checkpoint of a run (:func:`run_evaluation`), or the missing
evaluation steps of a run already trained (:func:`evaluate_run`, the driver's ``evaluate`` tasks). What
is evaluated and how it is recorded is :mod:`i1lab.evaluation.checkpoint`, the one evaluation path.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from i1lab.evaluation.checkpoint import (
    asked_with,
    evaluate_checkpoint,
    record_scores,
    restore_ema,
    scores_line,
)
from i1lab.plan.steps import EvalStep
from i1lab.spec.run import RunSpec

if TYPE_CHECKING:
    from i1lab.execution.worker import Outcome


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


def run_evaluation(call: EvalCall) -> EvalOutcome:
    """A Ray task (or a plain call): evaluate checkpoint ``call.step`` of the run and record the scores
    with the time it took. The evaluation steps another submitter recorded meanwhile are skipped."""
    from i1lab.execution.nodes import node_name
    from i1lab.execution.worker import limit_threads, registry_for
    from i1lab.plan.steps import evaluation_history
    from i1lab.spec.weights import check_recorded

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
