"""Evaluation as Ray tasks: one checkpoint of a run (:func:`run_evaluation`), or the missing
evaluation steps of a run already trained (:func:`evaluate_run`, the driver's ``evaluate`` tasks). What
is evaluated and how it is recorded is :mod:`i1lab.evaluation.checkpoint`, the one evaluation path.
"""

from __future__ import annotations

import contextlib
import os
import threading
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
    from i1lab.registry import Registry


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
    recorded: bool  # False: checkpoint not kept, or the lease or claim moved on (nothing recorded)
    seconds: float
    node: str
    pid: int
    scores: str = ""  # the scores recorded, as a log line
    reason: str | None = None  # not recorded: why
    skipped: int = 0  # evaluation steps another owner holds or has done


class ClaimBeat:
    """Keeps ``owner``'s claims on evaluation steps alive while it evaluates them: a daemon thread
    renews them every quarter of their time-to-live; :attr:`lost` once another owner took one over."""

    def __init__(self, registry: Registry, keys: list[str], owner: str, ttl: float) -> None:
        self.registry, self.keys, self.owner, self.ttl = registry, keys, owner, ttl
        self.lost = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="i1lab-eval-claims", daemon=True)

    def __enter__(self) -> ClaimBeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.wait(max(0.2, self.ttl / 4)):
            try:
                held = self.registry.renew_evaluations(self.keys, self.owner, self.ttl)
            except Exception:  # an unreachable registry: try again at the next beat
                continue
            if held != set(self.keys):
                self.lost = True
                return


def run_evaluation(call: EvalCall) -> EvalOutcome:
    """A Ray task (or a plain call): evaluate checkpoint ``call.step`` of the run and record the scores
    with the time it took.

    Within a training attempt (``call.token``) the lease makes the evaluation exclusive. For a run
    already trained, each evaluation step is claimed in the registry first, so that it is evaluated once
    however many submitters ask for it: steps done already (by anyone) are skipped; steps another owner
    holds are waited for, until that owner has recorded them (skipped) or its claim expired or failed
    (then claimed here). Claims are renewed while sampling and judging, released as failed if the
    evaluation fails, and the scores recorded only while they are still held."""
    from i1lab.execution.nodes import node_name
    from i1lab.execution.worker import limit_threads, registry_for
    from i1lab.plan.steps import evaluation_history, evaluations
    from i1lab.registry.lease_holder import lease_seconds, new_owner

    limit_threads()
    t0 = time.perf_counter()
    registry = registry_for(call.database_url)
    record = registry.run(call.run_id)
    node, pid = node_name(), os.getpid()
    spec = RunSpec.model_validate(record.spec)
    steps = call.steps or evaluations(asked_with(spec, call.eval, ()), record.hash, [call.step])

    def outcome(recorded: bool, **extra: Any) -> EvalOutcome:
        return EvalOutcome(
            run_id=call.run_id,
            step=call.step,
            recorded=recorded,
            seconds=time.perf_counter() - t0,
            node=node,
            pid=pid,
            **extra,
        )

    if call.token is not None:  # the training attempt's own evaluation: fenced by its lease
        recorded, line, why = _evaluate(registry, call, spec, record.hash, steps, None, t0)
        return outcome(recorded, scores=line, reason=why)
    owner, ttl = new_owner(), lease_seconds()
    lines: list[str] = []
    ran = 0
    pending = steps
    while True:
        done = evaluation_history(registry, [call.run_id])[call.run_id]
        pending = [s for s in pending if not done.done(s)]
        got = registry.claim_evaluations([s.ref(call.run_id) for s in pending], owner, ttl)
        mine = [s for s in pending if s.key in got]
        if mine:
            start = time.perf_counter()  # not the time spent waiting for other owners
            recorded, line, why = _evaluate(registry, call, spec, record.hash, mine, owner, start)
            if not recorded:
                return outcome(False, scores="\n".join(lines), reason=why)
            lines.append(line)
            ran += len(mine)
        pending = [s for s in pending if s.key not in got]
        if not pending:
            break
        time.sleep(min(5.0, ttl / 4))  # another owner holds them: its result, or its claim's expiry
    return outcome(True, scores="\n".join(lines), skipped=len(steps) - ran)


def _evaluate(
    registry: Registry,
    call: EvalCall,
    spec: RunSpec,
    run_hash: str,
    steps: list[EvalStep],
    owner: str | None,
    t0: float,
) -> tuple[bool, str, str | None]:
    """Restore, sample, judge and record ``steps`` (of checkpoint ``call.step``), holding ``owner``'s
    claims on them (None: fenced by ``call.token``); (recorded, the scores as a log line, why not)."""
    from i1lab.execution.nodes import node_name
    from i1lab.registry.lease_holder import lease_seconds
    from i1lab.spec.weights import check_recorded

    node, pid = node_name(), os.getpid()
    keys = [s.key for s in steps]
    wd = Path(call.workdir)
    try:
        with ClaimBeat(registry, keys, owner, lease_seconds()) if owner else contextlib.nullcontext():
            check_recorded(spec, wd)  # this node must sample with the frozen weights the run trained with
            ema = restore_ema(spec, wd, call.step)
            if ema is None:
                why = f"checkpoint {call.step} not kept"
                if owner:
                    registry.release_evaluations(keys, owner, why)
                return False, "", why
            asked = asked_with(spec, call.eval, steps)
            results = evaluate_checkpoint(asked, ema, call.step, wd, run_hash)
    except BaseException as exc:
        if owner:  # another owner may claim them at once, rather than after the claims expire
            with contextlib.suppress(Exception):
                registry.release_evaluations(keys, owner, f"{type(exc).__name__}: {exc}"[:2000])
        raise
    seconds = time.perf_counter() - t0
    where = f"by an evaluation task on {node} (pid {pid}) in {seconds:.1f} s"
    recorded = record_scores(
        registry,
        call.run_id,
        results,
        steps=steps,
        token=call.token,
        owner=owner,
        seconds=seconds,
        node=node,
        detail=f"step {call.step} by an evaluation task (pid {pid}) in {seconds:.1f} s",
    )
    if not recorded:
        return False, "", "the lease moved on" if owner is None else "another owner took the claim over"
    return True, scores_line(call.step, results, where), None


def evaluate_run(calls: list[EvalCall]) -> Outcome:
    """A Ray task of the driver (an ``evaluate`` task): the checkpoints of one run already trained, one
    after the other (:func:`run_evaluation`); ``failed`` names the checkpoints not evaluated and why."""
    from i1lab.execution.worker import Outcome

    t0 = time.perf_counter()
    done = [run_evaluation(call) for call in calls]
    lost = [f"step {d.step}: {d.reason or 'not recorded'}" for d in done if not d.recorded]
    return Outcome(
        run_id=calls[0].run_id,
        status="failed" if lost else "finished",
        reason="; ".join(lost) if lost else None,
        seconds=time.perf_counter() - t0,
        node=done[0].node if done else None,
    )
