"""Executing one registry run where it was scheduled: lease, train, checkpoint, evaluate, record.

This is what a Ray task runs: every fact goes to the registry as it happens, so the driver, ``i1lab
status`` and the dashboard see progress without talking to the worker.

Exactly-once: :func:`execute_run` first acquires the run's lease (:mod:`i1lab.registry.lease_holder`); if
someone else holds it, or the run is already done, it returns at once without touching the run. While
training, a heartbeat renews the lease and every write is fenced by the lease's token; a worker that loses
its lease stops at its next step (outcome ``lost``).

Evaluation: inside Ray, each permanent checkpoint the run is scored at is evaluated by a separate Ray task
(:func:`i1lab.execution.evaluation.run_evaluation`) on its own resources, which reads the checkpoint from
disk and records its scores, while training goes on; the worker waits for those tasks only once training
is done. Outside Ray (or for an evaluation step that is not a permanent checkpoint) evaluation runs in a
background thread of the training process, on a host copy of the EMA parameters. Either way the scores
are recorded with the keys of the evaluation steps they are (:mod:`i1lab.plan.steps`).
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Literal

from pydantic import BaseModel

from i1lab.errors import I1labError
from i1lab.evaluation.checkpoint import record_scores, restore_ema, scores_line
from i1lab.execution.evaluation import EvalCall, EvalOutcome
from i1lab.execution.nodes import node_name
from i1lab.plan.steps import evaluations
from i1lab.registry import Registry
from i1lab.registry.lease_holder import Lease, LeaseLost, lease_seconds, new_owner
from i1lab.registry.leases import LeaseGrant, LeaseRequest
from i1lab.spec.run import RunSpec

if TYPE_CHECKING:
    from i1lab.registry import RunRecord

PROGRESS_SECONDS = 1.0  # at most one progress write per this many seconds
EVAL_TRIES = 2  # an evaluation task whose worker dies is started again once


class Outcome(BaseModel):
    """How one call of :func:`execute_run` ended.

    ``status``: ``finished``, ``failed``, ``cancelled`` (the run's own terminal state, whoever reached it),
    ``elsewhere`` (another worker holds the run's lease, or that of run ``blocker`` sharing its work
    directory: nothing was done), ``lost`` (the lease was taken over mid-run: this worker stopped),
    ``interrupted`` (``cause`` says why: a notice to stop or a lost device or host, after which the
    worker released the lease itself, or its evaluations kept dying, where the lease is still held; the
    scheduler releases it if held and retries the run) or, from :func:`execute_batch` only, ``raised``
    (the run's own code raised)."""

    run_id: int
    status: str
    reason: str | None = None
    seconds: float
    node: str | None = None
    blocker: int | None = None
    trained: bool = False  # this call held the lease and ran the run
    #: ``interrupted``: what interrupted it (an :data:`~i1lab.train.preemption.InterruptionKind`)
    cause: str | None = None


class RunCall(BaseModel):
    """The arguments of one :func:`execute_run` call, as the driver sends them across Ray."""

    run_id: int
    database_url: str | None = None
    workdir: str | None = None
    expect_token: int | None = None  # the fencing token the driver saw when it queued the run
    owner: str | None = None  # the lease owner's name
    eval_options: dict[str, Any] | None = None  # Ray options of evaluation tasks; None: in-process


class EvalInterrupted(Exception):
    """An evaluation task's worker or node died again and again: the attempt is interrupted, not failed."""


class _Handover(threading.local):
    """The lease hand-over between the runs of one batch (:func:`execute_batch`): the transaction that
    records a run's end also takes the lease of the batch's next run (``next``), and :func:`execute_run`
    of that run uses the grant (``grants``) instead of a transaction of its own. A worker holds one
    run's lease at a time either way: the next run's is taken as the previous one's is released."""

    def __init__(self) -> None:
        self.next: LeaseRequest | None = None
        self.grants: dict[tuple[int, str], LeaseGrant] = {}


_HANDOVER = _Handover()


def _finish(
    lease: Lease, status: Literal["finished", "failed"], reason: str | None = None, **values: Any
) -> bool:
    """``lease.finish``, handing over to the next run of the batch if there is one."""
    then = _HANDOVER.next
    ok = lease.finish(status, reason, then=then, **values)
    if then is not None and lease.handed is not None:
        _HANDOVER.grants[(then.run_id, then.owner)] = lease.handed
    return ok


def freeze_heap() -> None:
    """Move the objects alive now (the modules imported: Ray, pydantic models, i1lab) out of the cyclic
    garbage collector's sight (``gc.freeze``), once per process: a long-lived driver or worker otherwise
    re-scans that whole import graph at every full collection (measured at 0.1 s each in a driver,
    about a tenth of a 200-run no-op study)."""
    import gc

    global _FROZEN
    if not _FROZEN:
        gc.freeze()
        _FROZEN = True


_FROZEN = False


def limit_threads() -> None:
    """One XLA CPU thread pool per worker sized to the worker's share of cores."""
    n = os.environ.get("I1LAB_WORKER_THREADS")
    if n:
        flags = os.environ.get("XLA_FLAGS", "")
        if "intra_op_parallelism_threads" not in flags:
            os.environ["XLA_FLAGS"] = (
                f"{flags} --xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads={n}"
            )


def parent_dir(registry: Registry, spec: RunSpec) -> Path | None:
    """The work directory of the run this one resumes from (resolution stages), which must be finished."""
    ref = spec.data.resume_from
    if ref is None:
        return None
    parent = registry.existing([ref]).get(ref)
    if parent is None or parent.status not in ("finished", "imported") or not parent.workdir:
        state = "not in the registry" if parent is None else parent.status
        raise I1labError(f"data.resume_from: parent run {ref[:12]} is {state}; it must finish first")
    return Path(parent.workdir)


_REGISTRIES: dict[str, Registry] = {}


def registry_for(database_url: str | None) -> Registry:
    """One registry handle per database for this process: a Ray worker runs many tasks, and a handle
    keeps its connection pool and compiled statements."""
    from i1lab import paths

    url = database_url or paths.database_url()
    if url not in _REGISTRIES:
        _REGISTRIES[url] = Registry(url)
    return _REGISTRIES[url]


def _judged_elsewhere(spec: RunSpec) -> bool:
    """Whether a benchmark of ``spec`` has a judge that runs as a Ray task of its own (GPUs)."""
    from i1lab.evaluation.evaluate import judge_gpus

    return any(judge_gpus(spec, bench) > 0 for bench in spec.eval.benchmarks)


def _ray_running() -> bool:
    import sys

    if "ray" not in sys.modules:
        return False
    import ray

    return bool(ray.is_initialized())


def _in_gang() -> bool:
    """Whether this process trains a run together with others (the hosts of a multi-host slice)."""
    import jax

    return bool(jax.process_count() > 1)


def _is_permanent(spec: RunSpec, step: int) -> bool:
    return step % spec.train.keep_every == 0 or step == spec.train.steps


class _RemoteEvals:
    """Evaluation tasks of one training attempt, launched as checkpoints become durable."""

    def __init__(
        self, run_id: int, url: str, workdir: Path, token: int, options: dict[str, Any], log: _AttemptLog
    ) -> None:
        import ray

        self.run_id, self.url, self.workdir, self.token = run_id, url, workdir, token
        self.log = log
        from i1lab.execution.evaluation import run_evaluation

        self.fn: Any = ray.remote(run_evaluation).options(
            **options, max_retries=0, name=f"i1lab-eval:{run_id}"
        )
        self.pending: dict[Any, tuple[int, int]] = {}  # ref -> (step, tries)

    def submit(self, step: int, tries: int = 1) -> None:
        call = EvalCall(
            run_id=self.run_id, database_url=self.url, workdir=str(self.workdir), step=step, token=self.token
        )
        ref = self.fn.remote(call)
        self.pending[ref] = (step, tries)

    def wait(self, lease: Lease) -> None:
        """Until every evaluation has ended; raises the first evaluation's own error, LeaseLost if the
        lease is lost meanwhile. An evaluation whose worker or node died is started again once."""
        import ray
        from ray.exceptions import RayTaskError, TaskCancelledError

        while self.pending:
            ready, _ = ray.wait(list(self.pending), num_returns=1, timeout=1.0)
            lease.check()
            for ref in ready:
                step, tries = self.pending.pop(ref)
                try:
                    done = ray.get(ref)
                    if isinstance(done, EvalOutcome):
                        self.log.write(
                            done.scores
                            if done.recorded
                            else f"step {step}: not evaluated ({done.reason or 'not recorded'})"
                        )
                except RayTaskError as exc:
                    cause = exc.cause if isinstance(exc.cause, BaseException) else exc
                    if isinstance(cause, I1labError):
                        raise I1labError(f"evaluation of step {step}: {cause}") from None
                    raise RuntimeError(
                        f"evaluation of step {step}: {type(cause).__name__}: {cause}"
                    ) from None
                except TaskCancelledError:
                    raise
                except Exception as exc:  # the evaluation's worker or node died: not the run's fault
                    if tries >= EVAL_TRIES:
                        raise EvalInterrupted(
                            f"evaluation of step {step} was interrupted {tries} times: {exc}"
                        ) from None
                    self.submit(step, tries + 1)

    def cancel(self) -> None:
        import ray

        for ref in self.pending:
            ray.cancel(ref)
        self.pending.clear()


class _AttemptLog:
    """The run's own plain log, ``<workdir>/logs/<hash[:12]>.log`` (what ``i1lab logs`` streams): every
    attempt appends a header and then its training log records, checkpoints, evaluations and end.

    Each line is written and flushed at once, so a reader never sees half a line for long; a log that
    cannot be written (a full or read-only disk) is given up on quietly: it must never fail the run."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._file: IO[str] | None = None
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._file = path.open("a", encoding="utf-8")
        except OSError:
            self._file = None

    def write(self, text: str) -> None:
        if self._file is None:
            return
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime())
        lines = "".join(f"[{stamp}] {line}\n" for line in text.rstrip("\n").splitlines() or [""])
        with self._lock:
            try:
                self._file.write(lines)
                self._file.flush()
            except (OSError, ValueError):
                self._file = None

    def close(self) -> None:
        with self._lock:
            if self._file is not None:
                with contextlib.suppress(OSError):
                    self._file.close()
                self._file = None


def _metrics_line(record: dict[str, Any]) -> str:
    parts = [f"step {record.get('step')}"]
    parts += [
        f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in record.items() if k != "step"
    ]
    return "  ".join(parts)


class _Clock:
    """Training time of this attempt and its throughput (steps/s after the first, compiling, step)."""

    def __init__(self, base_seconds: float) -> None:
        self.base = base_seconds
        self.t0 = time.perf_counter()
        self.end: float | None = None
        self.start_step = 0
        self.first: tuple[int, float] | None = None
        self.rate: float | None = None

    def started(self, step: int) -> None:
        self.start_step = step

    def step(self, step: int) -> None:
        now = time.perf_counter()
        if step <= self.start_step:
            return
        if self.first is None:
            self.first = (step, now)
        elif step > self.first[0] and now > self.first[1]:
            self.rate = (step - self.first[0]) / (now - self.first[1])

    def stop(self) -> None:
        self.end = time.perf_counter()

    @property
    def train_seconds(self) -> float:
        return self.base + ((self.end or time.perf_counter()) - self.t0)


def execute_run(
    run_id: int,
    database_url: str | None = None,
    workdir: str | None = None,
    *,
    expect_token: int | None = None,
    owner: str | None = None,
    eval_options: dict[str, Any] | None = None,
) -> Outcome:
    """Train and evaluate registry run ``run_id`` to completion (resuming if it has checkpoints), if this
    call gets the run's lease.

    ``expect_token``: the fencing token the scheduler saw when it queued the run (the lease is refused
    if anyone took the run since). ``owner``: the lease owner's name (the scheduler's, to recognise its
    own attempts). ``eval_options``: Ray task options for evaluation tasks; None evaluates in-process."""
    limit_threads()
    t0 = time.perf_counter()
    registry = registry_for(database_url)
    node = node_name()
    ttl = lease_seconds()
    handed = _HANDOVER.grants.pop((run_id, owner), None) if owner else None
    grant = handed or registry.acquire_lease(
        run_id, owner or new_owner(), ttl=ttl, node=node, expect_token=expect_token
    )
    if grant.state != "acquired" or grant.token is None:
        if grant.state == "done":
            status = "finished" if grant.status in ("finished", "imported") else str(grant.status)
            return Outcome(
                run_id=run_id, status=status, reason=grant.reason, seconds=time.perf_counter() - t0, node=node
            )
        where = (
            f"run {grant.blocker}, which shares its work directory,"
            if grant.state == "busy"
            else "another worker"
        )
        reason = f"{where} holds the lease" + (f" on {grant.node}" if grant.node else "")
        return Outcome(
            run_id=run_id,
            status="elsewhere",
            reason=reason if grant.state != "moved" else "queued or leased by another submitter",
            seconds=time.perf_counter() - t0,
            node=node,
            blocker=grant.blocker,
        )
    lease = Lease(registry, run_id, grant.token, ttl, node).start()
    try:
        record = grant.run or registry.run(run_id)
        wd = Path(workdir or record.workdir or ".")
        attempt = RunAttempt(
            registry=registry,
            lease=lease,
            record=record,
            number=grant.attempt or record.attempts,
            workdir=wd,
            eval_options=eval_options,
            t0=t0,
            log=_AttemptLog(wd / "logs" / f"{record.hash[:12]}.log"),
        )
        return _execute(attempt)
    finally:
        lease.stop()


def first_line(exc: BaseException) -> str:
    """``Type: first line of the message`` of an exception (of its cause, for a Ray task's error)."""
    cause = getattr(exc, "cause", None)
    err = cause if isinstance(cause, BaseException) else exc
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0] if text else ''}"[:300]


def execute_batch(calls: list[RunCall], fn: Callable[..., Outcome] | None = None) -> list[Outcome]:
    """Several short runs in one Ray task, one after the other (the scheduler batches runs that all
    took under a second): each is one :func:`execute_run` call (``fn``: a replacement with the same
    arguments) with its own lease, log and outcome. The transaction that records a run's end also
    takes the next run's lease (:class:`_Handover`): one registry transaction per run, not two, and
    no moment where the worker holds two leases. A run whose own code raises does not stop the
    others: it is recorded failed at once, and its outcome is ``raised`` with the exception's first
    line. A run interrupted (its evaluations kept dying) has its lease released at once, for the
    driver to retry it: a lease kept until the batch ends would expire meanwhile."""
    run = fn or execute_run
    outcomes = []
    _HANDOVER.grants.clear()
    for i, call in enumerate(calls):
        t0 = time.perf_counter()
        run_id, owner = call.run_id, call.owner
        following = calls[i + 1] if i + 1 < len(calls) else None
        _HANDOVER.next = (
            LeaseRequest(run_id=following.run_id, owner=following.owner, expect_token=following.expect_token)
            if following is not None and following.owner
            else None
        )
        try:
            outcome = run(**call.model_dump())
        except (Exception, SystemExit) as exc:
            reason = first_line(exc)
            if owner:  # failed now, not when the batch ends: its lease would expire meanwhile
                registry_for(call.database_url).interrupt_lease(
                    run_id, owner, reason, status="failed", reason=reason, interrupted=False
                )
            outcome = Outcome(
                run_id=run_id,
                status="raised",
                reason=reason,
                seconds=time.perf_counter() - t0,
                node=node_name(),
            )
        else:
            if outcome.status == "interrupted" and owner:  # released now, for the driver to retry it
                registry_for(call.database_url).interrupt_lease(
                    run_id, owner, outcome.reason or "interrupted", cause=outcome.cause
                )
            unused = _HANDOVER.grants.pop((run_id, owner), None) if owner else None
            if unused is not None and unused.state == "acquired" and owner:  # ``fn`` took it another way
                registry_for(call.database_url).interrupt_lease(
                    run_id, owner, "the lease handed to it was not used", interrupted=False
                )
        finally:
            _HANDOVER.next = None
        outcomes.append(outcome)
    _HANDOVER.grants.clear()
    return outcomes


@dataclass
class RunAttempt:
    """One attempt at a run by this worker, holding its lease: what training and evaluation need."""

    registry: Registry
    lease: Lease
    record: RunRecord
    number: int  # the run's attempt number
    workdir: Path
    eval_options: dict[str, Any] | None  # Ray options of evaluation tasks; None: in this process
    t0: float  # when the call began (perf_counter)
    log: _AttemptLog

    def outcome(self, status: str, reason: str | None = None, cause: str | None = None) -> Outcome:
        return Outcome(
            run_id=self.record.id,
            status=status,
            reason=reason,
            seconds=time.perf_counter() - self.t0,
            node=self.lease.node,
            trained=True,
            cause=cause,
        )


def _execute(a: RunAttempt) -> Outcome:
    record, log = a.record, a.log
    log.write(
        f"=== attempt {a.number} of run {record.id} ({record.hash[:12]}) on {a.lease.node}, "
        f"pid {os.getpid()}, lease token {a.lease.token}"
    )
    try:
        outcome = _train_and_evaluate(a)
    except BaseException as exc:
        log.write(f"attempt {a.number} failed: {type(exc).__name__}: {exc}\n{traceback.format_exc()}")
        raise
    else:
        log.write(
            f"attempt {a.number} ended: {outcome.status}" + (f": {outcome.reason}" if outcome.reason else "")
        )
        return outcome
    finally:
        log.close()


def _interrupted(
    a: RunAttempt,
    cause: str,
    reason: str,
    remote: _RemoteEvals | None,
    clock: _Clock,
    step: int | None = None,
) -> Outcome:
    """End the attempt as interrupted by ``cause``: the run is queued again and the lease released here
    (the process may be about to go), with the step its checkpoint holds; the driver retries it."""
    if remote is not None:
        remote.cancel()  # their checkpoints are evaluated by the next attempt
    clock.stop()
    values: dict[str, Any] = {"train_seconds": clock.train_seconds}
    if step is not None:
        values["step"] = step
    if not a.lease.interrupt(cause, reason, **values):
        return a.outcome("lost", f"run {a.record.id}: lease lost before its interruption was recorded")
    return a.outcome("interrupted", reason, cause=cause)


def _train_and_evaluate(a: RunAttempt) -> Outcome:
    from i1lab.evaluation.checkpoint import evaluate_checkpoint
    from i1lab.plan.steps import eval_steps, evaluation_history
    from i1lab.train.preemption import Interrupted, classify
    from i1lab.train.runner import Hooks, RunFailed, train

    freeze_heap()  # JAX and Flax are imported by now
    registry, lease, record, log, wd = a.registry, a.lease, a.record, a.log, a.workdir
    attempt, outcome = a.number, a.outcome
    run_id = record.id
    spec = RunSpec.model_validate(record.spec)
    evals = eval_steps(spec) if spec.eval.benchmarks else set()
    options = a.eval_options
    if options is None and evals and _ray_running() and _judged_elsewhere(spec):
        options = {"num_cpus": 1}  # a GPU judge: evaluated beside, so that training never waits for it
    remote = (
        _RemoteEvals(run_id, registry.url, wd, lease.token, options, log)
        if options is not None and _ray_running()
        else None
    )
    clock = _Clock(record.train_seconds)
    last_progress = [0.0]

    def on_start(step: int, notes: list[str]) -> None:
        clock.started(step)
        how = "; ".join(notes) if notes else "from scratch"
        log.write(f"started at step {step}: {how}")
        # written with the first progress update: one transaction fewer per attempt
        lease.event("started", f"pid {os.getpid()}, attempt {attempt}: {how}", defer=True)
        lease.check()

    def on_log(metrics: dict[str, Any]) -> None:
        log.write(_metrics_line(metrics))

    def on_step(step: int) -> None:
        lease.check()
        clock.step(step)
        now = time.perf_counter()
        # the last step's progress is written with what follows training, unless an evaluation in this
        # process comes first
        last = step == spec.train.steps and step in evals and remote is None
        if (now - last_progress[0] > PROGRESS_SECONDS and step < spec.train.steps) or last:
            last_progress[0] = now
            values: dict[str, Any] = {"step": step, "train_seconds": clock.train_seconds}
            if clock.rate is not None:
                values["steps_per_second"] = clock.rate
            lease.renew(**values)
            lease.check()

    def on_checkpoint(step: int, permanent: bool, path: str) -> None:
        log.write(f"checkpoint step {step}{' (permanent)' if permanent else ''}: {path}")
        lease.checkpoint(step, path, permanent)
        if remote is not None and permanent and step in evals and not lease.lost:
            remote.submit(step)

    def on_eval(step: int, ema: Any) -> None:
        if remote is not None and _is_permanent(spec, step):
            return  # an evaluation task scores it from the checkpoint
        t = time.perf_counter()
        results = evaluate_checkpoint(spec, ema, step, wd, record.hash)
        seconds = time.perf_counter() - t
        log.write(scores_line(step, results, f"in the training process in {seconds:.1f} s"))
        record_scores(
            registry,
            run_id,
            results,
            steps=evaluations(spec, record.hash, [step]),
            lease=lease,
            seconds=seconds,
            detail=f"step {step} in the training process in {seconds:.1f} s",
        )

    in_process = remote is None or any(not _is_permanent(spec, s) for s in evals)
    hooks = Hooks(on_step=on_step, on_log=on_log, on_checkpoint=on_checkpoint, on_start=on_start)
    if in_process:
        hooks.on_eval = on_eval
    try:
        train(spec, wd, hooks, init_from=parent_dir(registry, spec))
        clock.stop()
        trained = f"step {spec.train.steps} after {clock.train_seconds:.1f} s of training"
        log.write(f"trained: {trained}")
        lease.event("trained", trained, defer=True)  # written with the progress, one transaction
        if evals or remote is not None:  # else the final status, next, writes it all at once
            lease.renew(step=spec.train.steps, train_seconds=clock.train_seconds)
        lease.check()
        if remote is not None:
            remote.wait(lease)
        # Checkpoints trained earlier (by a run sharing this training, or by an attempt that lost its
        # lease before its evaluations were recorded) that lack scores.
        history = evaluation_history(registry, [run_id])[run_id] if evals else None
        unscored = {s.step for s in evaluations(spec, record.hash) if history and not history.done(s)}
        if remote is None and unscored and _in_gang() and _ray_running():
            # an Orbax restore in this process would wait for the other hosts, which restore nothing:
            # checkpoints trained earlier are scored by evaluation tasks on a CPU
            remote = _RemoteEvals(run_id, registry.url, wd, lease.token, {"num_cpus": 1}, log)
        for step in sorted(unscored):
            if not (wd / "checkpoints" / str(step)).is_dir():
                continue
            lease.checkpoint(step, str(wd / "checkpoints" / str(step)), True)
            if remote is not None:
                remote.submit(step)
                continue
            ema = restore_ema(spec, wd, step)
            if ema is not None:
                on_eval(step, ema)
        if remote is not None:
            remote.wait(lease)
        lease.check()
    except LeaseLost as exc:
        if remote is not None:
            remote.cancel()
        return outcome("lost", str(exc))
    except Interrupted as exc:  # a notice to stop: the step it was in is checkpointed
        log.write(f"interrupted ({exc.kind}): {exc}")
        return _interrupted(a, exc.kind, str(exc), remote, clock, step=exc.step)
    except EvalInterrupted as exc:  # the scheduler releases the lease and tries the run again
        return outcome("interrupted", str(exc), cause="evaluation")
    except RunFailed as exc:
        log.write(traceback.format_exc())
        _finish(lease, "failed", str(exc))
        return outcome("failed", str(exc))
    except (I1labError, NotImplementedError, OSError) as exc:
        log.write(traceback.format_exc())
        _finish(lease, "failed", f"{type(exc).__name__}: {exc}")
        return outcome("failed", str(exc))
    except Exception as exc:  # logged with its traceback by the caller
        (wd / "error.log").write_text(traceback.format_exc())
        lost = classify(exc)
        if lost is not None:  # a device or host went away, not the run's fault: retried (bounded)
            log.write(traceback.format_exc())
            return _interrupted(a, lost, first_line(exc), remote, clock)
        if _in_gang():  # likely a collective whose peer host died: retried (bounded), not failed
            log.write(traceback.format_exc())
            reason = f"{first_line(exc)} (in a gang of hosts; one may have died)"
            return outcome("interrupted", reason, cause="lost-host")
        _finish(lease, "failed", f"{type(exc).__name__}: {exc} (traceback in {wd / 'error.log'})")
        raise
    extra: dict[str, Any] = {"step": spec.train.steps, "train_seconds": clock.train_seconds}
    if clock.rate is not None:
        extra["steps_per_second"] = clock.rate
    if not _finish(lease, "finished", **extra):
        return outcome("lost", f"run {run_id}: lease lost before its result was recorded")
    return outcome("finished")
