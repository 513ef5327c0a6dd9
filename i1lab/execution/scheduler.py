"""Scheduling runs on Ray: an in-process local cluster by default, any cluster with ``--address``.

One driver (:class:`Driver`: ``submit`` tasks, ``poll`` their outcomes, ``cancel``, ``close``) serves
``i1lab submit`` (:func:`run_tasks`) and searches (:mod:`i1lab.search.run`). Each run attempt is one Ray
task that calls :func:`i1lab.execution.worker.execute_run` with a typed
:class:`~i1lab.execution.worker.RunCall`; the task asks for the resources its spec names (CPU cores,
GPUs, or a TPU slice's head resource) and Ray places it. Runs that prove short (under
``SHORT_SECONDS``) are batched: one task runs several, one after the other, each with its own lease and
outcome (:func:`batches`). On top of Ray the driver adds only study-level policy and the registry's
exactly-once guarantees:

- **Exactly once.** A task trains its run only if it acquires the run's lease
  (:mod:`i1lab.registry.lease_holder`). A run leased by another submitter's worker is watched in the
  registry until it ends, and its result reused; a run whose lease expired (its worker vanished
  unseen) is taken over.
- **Preemption.** A task whose worker or node died (any Ray system error) is an interruption: the
  driver releases the attempt's lease, records it (``runs.interruptions``, an ``interrupted`` event with
  the node and its cause, ``dead-worker``) and starts the run again after a backoff (at most
  ``Policy.max_retries`` times); the new attempt resumes from the latest checkpoint. A worker that gets
  a notice to stop (SIGTERM, a TPU maintenance notice) or whose device or host is lost (a runtime error
  :func:`i1lab.train.preemption.classify` recognises) records the interruption itself, with its cause,
  and returns ``interrupted``: retried the same way. A run that fails for its own reason (an exception
  of the run's code: NaN loss, bad data) is failed, not retried.
- **Policy.** At most ``max_concurrent`` runs of the study at once (counting other submitters' leases),
  at most as many runs in flight per accelerator kind as the cluster has room for, none of a kind that
  a study of higher priority is waiting for, and none past the global accelerator-hours budget.
- **Evaluation** of checkpoints runs as separate Ray tasks on their own resources (``eval_options``);
  the evaluation steps a run already trained lacks (a study asks it for another benchmark or judge)
  run as such tasks too (:func:`run_evaluations`).

Runs sharing a work directory (a sampling-only variant) run one after the other, and a resolution stage
after the run it resumes from.
"""

from __future__ import annotations

import contextlib
import os
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from i1lab import paths
from i1lab.execution.launching import (
    CLUSTER_SECONDS,
    SHORT_SAMPLE,
    WAITING_FRESH_SECONDS,
    Policy,
    Task,
    batches,
    capacity,
    dependencies,
    eval_options,
    eval_resources,
    failure_kind,
    missing_resources,
    order_tasks,
    pipeline_room,
    plan_launches,
    ray_options,
    retry_delay,
)
from i1lab.execution.worker import EVAL_TRIES, Outcome, RunCall, first_line, freeze_heap
from i1lab.plan.steps import EvalStep, RunEvals
from i1lab.spec.run import RunSpec

if TYPE_CHECKING:
    from i1lab.registry import Registry
    from i1lab.registry.leases import LeaseState


def init_ray(address: str | None) -> None:
    """Connect to the Ray cluster at ``address`` (None: start an in-process one), passing i1lab's
    settings to the workers; nothing if Ray is already initialised."""
    import ray

    if ray.is_initialized():
        return
    env = {
        "I1LAB_HOME": str(paths.home()),
        "I1LAB_DATABASE_URL": paths.database_url(),
        "I1LAB_WORKER_THREADS": os.environ.get("I1LAB_WORKER_THREADS", "1"),
        "JAX_PLATFORMS": os.environ.get("JAX_PLATFORMS", ""),
        "I1LAB_LEASE_SECONDS": os.environ.get("I1LAB_LEASE_SECONDS", ""),
        "I1LAB_BENCHMARKS_DIR": os.environ.get("I1LAB_BENCHMARKS_DIR", ""),
        "I1LAB_WEIGHTS_DIR": os.environ.get("I1LAB_WEIGHTS_DIR", ""),
        "I1LAB_DATA_DIR": os.environ.get("I1LAB_DATA_DIR", ""),
        "JAX_COMPILATION_CACHE_DIR": os.environ.get("JAX_COMPILATION_CACHE_DIR", ""),
        "MLFLOW_TRACKING_URI": os.environ.get("MLFLOW_TRACKING_URI", ""),
        "I1LAB_MLFLOW_UI_URL": os.environ.get("I1LAB_MLFLOW_UI_URL", ""),
    }
    env = {k: v for k, v in env.items() if v}
    kwargs: dict[str, Any] = {
        "include_dashboard": False,
        "logging_level": "ERROR",
        "log_to_driver": False,
        "runtime_env": {"env_vars": env},
    }
    if address:
        ray.init(address=address, **kwargs)
    else:
        # "local" starts a fresh in-process cluster even when another one runs on this machine.
        ray.init(address="local", num_cpus=os.cpu_count() or 1, **kwargs)


class Attempt(BaseModel):
    """One launch of a task: its lease owner's name and this driver's attempt number for the run."""

    task: Task
    owner: str
    number: int  # this driver's attempt number for the run (1 = first)


class Driver:
    """The one Ray driver: ``submit`` tasks, ``poll`` for their outcomes, ``cancel`` one, ``close``.

    ``run_tasks`` (``i1lab submit``) submits a study's runs and polls until every one has ended; a search
    (:mod:`i1lab.search.run`) submits each trial's run as it is asked and cancels the ones its pruner
    stops. Ray must be initialised (:func:`init_ray`)."""

    def __init__(
        self,
        policy: Policy,
        registry: Registry,
        *,
        on_done: Callable[[Outcome], None] = lambda outcome: None,
        on_note: Callable[[str], None] = lambda line: None,
        poll_seconds: float = 1.0,
        fn: Callable[..., Outcome] | None = None,
        score_fn: Callable[..., Outcome] | None = None,
    ) -> None:
        import ray

        from i1lab.execution.worker import execute_batch, execute_run

        self.ray = ray
        self.tasks: dict[int, Task] = {}
        self.order: list[int] = []
        self.deps: dict[int, set[int]] = {}
        self.policy = policy
        self.registry = registry
        self.on_done, self.on_note = on_done, on_note
        self.poll_seconds = poll_seconds
        self.fn: Callable[..., Outcome] = fn or execute_run
        self.remote: Any = ray.remote(self.fn)
        self.batch_remote: Any = ray.remote(execute_batch)
        self.score_fn = score_fn  # what a ``score`` task runs (a search's inference trial)
        self.score_remote: Any = None  # score_fn, made remote on first use
        self.eval_remote: Any = None  # i1lab.execution.evaluation.evaluate_run, likewise
        self.launches = 0  # Ray tasks started
        self.last_watch = time.monotonic()
        self.slice_remote: Any = None  # i1lab.execution.gang.execute_slice, made remote on first use
        self.slices: set[Any] = set()  # the tasks of runs on multi-host slices in flight
        self.url = registry.url
        self.driver = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.state: dict[int, str] = {}  # blocked | ready | launched | watching | backoff | done
        self.token: dict[int, int] = {}
        self.launched: dict[Any, list[Attempt]] = {}  # Ray task -> its attempts (several: a batch)
        self.attempts: dict[int, int] = {}
        self.retries: dict[int, int] = {}
        self.backoff_until: dict[int, float] = {}
        self.watching: dict[int, int] = {}  # run -> the run whose lease it waits on (itself or a blocker)
        self.outcomes: list[Outcome] = []
        self.leased_by: dict[int, str | None] = {}  # run -> lease owner, as of the last poll
        # dispatching reads the cluster and the registry: it runs only when something it depends on may
        # have changed (a run became ready, a slot freed, a poll saw other submitters' state)
        self.dirty = True
        self._cluster: tuple[float, dict[str, float]] | None = None  # (when read, total resources)
        self._demand: tuple[float, dict[str, int]] | None = None  # (when read, waiting demand)
        self.recent: list[float] = []  # seconds of this driver's latest attempts that ran their run
        self.blocked: list[int] = []  # runs waiting for others (same work directory, resume_from)
        self.missing: set[str] = set()  # kinds no node of the cluster could run when last looked

    # --- the interface --------------------------------------------------------------------------
    def submit(self, tasks: list[Task]) -> None:
        """Take these tasks on (a run already ended here may be submitted again). Each waits for the
        open tasks of its work directory and for the run it resumes from, else is queued at once."""
        new = [t for t in order_tasks(tasks) if self.state.get(t.run_id) in (None, "done")]
        for t in new:
            if t.run_id in self.tasks:
                self.order.remove(t.run_id)
            self.tasks[t.run_id] = t
        taken = {t.run_id for t in new}
        open_ = [self.tasks[r] for r in self.order if self.state.get(r) != "done" and r not in taken]
        deps = dependencies(open_ + new)
        for t in new:
            self.order.append(t.run_id)
            self.deps[t.run_id] = deps[t.run_id]
            self.state[t.run_id] = "blocked" if deps[t.run_id] else "pending"
        self.blocked += [t.run_id for t in new if deps[t.run_id]]  # in order; unblock() releases them
        for t in new:
            if t.kind == "evaluate":  # a finished run: nothing to queue or lease
                self.state[t.run_id] = "ready"
        self.queue([t.run_id for t in new if not deps[t.run_id] and t.kind != "evaluate"])

    @property
    def pending(self) -> bool:
        """Whether a submitted task has not ended yet."""
        return any(s != "done" for s in self.state.values())

    def poll(self, timeout: float | None = None) -> list[Outcome]:
        """Launch what may be launched, wait up to ``timeout`` seconds (default: the poll period) for
        a task to end, and look at the registry once a poll period; the outcomes that came meanwhile."""
        seen = len(self.outcomes)
        self.unblock()
        self.dispatch()
        wait = self.poll_seconds if timeout is None else timeout
        if self.backoff_until:
            nxt = min(
                (u for r, u in self.backoff_until.items() if self.state.get(r) == "backoff"),
                default=None,
            )
            if nxt is not None:
                wait = max(0.05, min(wait, nxt - time.monotonic()))
        refs = list(self.launched)
        if refs:
            ready, _ = self.ray.wait(refs, num_returns=1, timeout=wait)
            if ready:
                ready, _ = self.ray.wait(refs, num_returns=len(refs), timeout=0)
            for ref in ready:
                self.collect(ref)
        elif self.pending:
            time.sleep(wait)
        if time.monotonic() - self.last_watch >= self.poll_seconds or not self.launched:
            self.watch()
            self.dirty = True  # other submitters' leases, demand and spending may have moved
            self.last_watch = time.monotonic()
        return self.outcomes[seen:]

    def cancel(self, run_id: int, reason: str) -> None:
        """Stop a task (its Ray task cancelled, the other runs of its batch queued again) and end its
        run ``cancelled`` for ``reason`` unless it ended already."""
        if self.state.get(run_id) in (None, "done"):
            return
        for ref, attempts in list(self.launched.items()):
            if all(a.task.run_id != run_id for a in attempts):
                continue
            self.launched.pop(ref)
            with contextlib.suppress(Exception):
                self.ray.cancel(ref, force=True)
            self.release_slice(ref, attempts)
            others = [a for a in attempts if a.task.run_id != run_id]
            if others:
                for a in others:
                    self.registry.interrupt_lease(a.task.run_id, a.owner, reason, cause="submitter")
                self.queue([a.task.run_id for a in others])
            mine = next(a for a in attempts if a.task.run_id == run_id)
            if self.registry.interrupt_lease(
                run_id, mine.owner, reason, status="cancelled", reason=reason, interrupted=False
            ):
                self.finish(Outcome(run_id=run_id, status="cancelled", reason=reason, seconds=0.0))
                return
            break
        if self.state[run_id] != "watching" and self.registry.run(run_id).status in ("queued", "running"):
            self.registry.settle_run(run_id, "cancelled", reason)  # not another submitter's attempt
        self.blocked = [r for r in self.blocked if r != run_id]
        self.finish(Outcome(run_id=run_id, status="cancelled", reason=reason, seconds=0.0))

    def close(self) -> None:
        """Stop every attempt in flight (see :meth:`abandon`)."""
        self.abandon()

    # --- states ----------------------------------------------------------------------------------
    def finish(self, outcome: Outcome) -> None:
        self.state[outcome.run_id] = "done"
        self.outcomes.append(outcome)
        self.on_done(outcome)

    def settled(self, run_id: int, st: LeaseState) -> bool:
        """If the run reached a terminal state (by anyone), finish it with that state."""
        if st.status in ("finished", "imported", "failed", "cancelled"):
            status = "finished" if st.status in ("finished", "imported") else st.status
            self.finish(Outcome(run_id=run_id, status=status, reason=st.reason, seconds=0.0, node=st.node))
            return True
        return False

    def queue(self, ids: list[int]) -> None:
        """Queue these runs in the registry and sort them: done, watched (leased elsewhere) or ready."""
        self.dirty = True
        for run_id, st in self.registry.queue_runs(ids).items():
            if st.status in ("finished", "imported"):
                self.settled(run_id, st)
            elif st.live:
                self.state[run_id], self.watching[run_id] = "watching", run_id
                where = f" on {st.node}" if st.node else ""
                self.on_note(f"{self.tasks[run_id].name}: running elsewhere{where}; waiting for its result")
            else:
                self.state[run_id], self.token[run_id] = "ready", st.token

    def unblock(self) -> None:
        if not self.blocked:
            return
        free = [r for r in self.blocked if all(self.state.get(d) == "done" for d in self.deps[r])]
        if free:
            released = set(free)
            self.blocked = [r for r in self.blocked if r not in released]
            self.queue(free)

    # --- launching -------------------------------------------------------------------------------
    def flying(self) -> Iterator[tuple[Any, Attempt]]:
        """Every attempt in flight with its Ray task."""
        for ref, attempts in self.launched.items():
            for a in attempts:
                yield ref, a

    def in_flight(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for _, a in self.flying():
            kind = a.task.resources.accelerator
            out[kind] = out.get(kind, 0) + 1
        return out

    def cluster(self) -> dict[str, float]:
        """The cluster's total resources, read again once they are ``CLUSTER_SECONDS`` old (a cluster
        grows and shrinks, but not between two completions)."""
        t = time.monotonic()
        if self._cluster is None or t - self._cluster[0] > CLUSTER_SECONDS:
            self._cluster = (t, {k: float(v) for k, v in self.ray.cluster_resources().items()})
        return self._cluster[1]

    def demand(self) -> dict[str, int]:
        """Runs of higher-priority studies waiting, per kind: read at most once per poll period (other
        drivers mark their waiting runs once per poll period too)."""
        t = time.monotonic()
        if self._demand is None or t - self._demand[0] >= self.poll_seconds:
            since = _now() - timedelta(seconds=WAITING_FRESH_SECONDS)
            self._demand = (t, self.registry.waiting_demand(self.policy.priority, since))
        return self._demand[1]

    def dispatch(self) -> None:
        if not self.dirty:
            return
        self.dirty = False
        ready = [self.tasks[r] for r in self.order if self.state.get(r) == "ready"]
        if not ready:
            return
        cluster = self.cluster()
        # the ready runs' kinds, once each: how many tasks of each the cluster holds, and the room
        options = {t.resources.accelerator: ray_options(t.resources) for t in ready}
        for kind, opts in options.items():
            lacking = missing_resources(opts, cluster)
            if lacking and kind not in self.missing:  # said once per kind: Ray keeps its tasks waiting
                self.missing.add(kind)
                self.on_note(
                    f"{kind}: no node of the cluster has {', '.join(lacking)} now; its runs wait for one "
                    "(a node that provides it, or an autoscaler)"
                )
        caps = {kind: max(1, capacity(opts, cluster)) for kind, opts in options.items()}
        room = {kind: pipeline_room(cap, self.recent) for kind, cap in caps.items()}
        for t in ready:  # a multi-host run holds its slice alone: never pipelined, never batched
            if t.resources.slice_hosts > 1:
                room[t.resources.accelerator] = caps[t.resources.accelerator]
        p = self.policy
        study_room = None
        if p.max_concurrent is not None:
            mine = sum(len(attempts) for attempts in self.launched.values())
            others = self.registry.study_leased(p.study) - self._mine_leased() if p.study else 0
            study_room = p.max_concurrent - mine - max(0, others)
        demand = self.demand()
        budget_left = None
        committed = 0.0
        if p.budget_hours is not None:
            budget_left = p.budget_hours - self.registry.accelerator_hours_used()
            committed = sum(a.task.accelerator_hours_est or 0.0 for _, a in self.flying())
        plan = plan_launches(
            ready,
            in_flight=self.in_flight(),
            room=room,
            study_room=study_room,
            demand=demand,
            budget_left=budget_left,
            committed=committed,
        )
        for run_id in plan.over_budget:
            reason = (
                f"not started: it needs {self.tasks[run_id].accelerator_hours_est or 0:,.2f} "
                f"accelerator-hours and the global budget of {p.budget_hours:,.2f} has "
                f"{max(0.0, budget_left or 0.0):,.2f} left"
            )
            self.registry.settle_run(run_id, "cancelled", reason)
            self.finish(Outcome(run_id=run_id, status="cancelled", reason=reason, seconds=0.0))
        by_kind: dict[str, list[int]] = {}
        for run_id in plan.launch:
            by_kind.setdefault(self.tasks[run_id].resources.accelerator, []).append(run_id)
        for kind, ids in by_kind.items():
            scores = [r for r in ids if self.tasks[r].kind != "train"]  # never batched
            for r in scores:
                self.launch([self.tasks[r]])
            for batch in batches([r for r in ids if r not in scores], caps[kind], room[kind]):
                self.launch([self.tasks[r] for r in batch])

    def _mine_leased(self) -> int:
        return sum(1 for _, a in self.flying() if self.leased_by.get(a.task.run_id) == a.owner)

    def launch(self, batch: list[Task]) -> None:
        """One Ray task for these runs (of one kind): :func:`execute_run` for one, else
        :func:`i1lab.execution.worker.execute_batch`, which runs them one after the other."""
        attempts, calls = [], []
        for t in batch:
            n = self.attempts.get(t.run_id, 0) + 1
            self.attempts[t.run_id] = n
            owner = f"{self.driver}/{t.run_id}/{n}"
            attempts.append(Attempt(task=t, owner=owner, number=n))
            calls.append(
                RunCall(
                    run_id=t.run_id,
                    database_url=self.url,
                    workdir=t.workdir,
                    expect_token=self.token.get(t.run_id),
                    owner=owner,
                    eval_options=eval_options(self.policy.eval_accelerator, t.resources),
                )
            )
            self.state[t.run_id] = "launched"
        first = batch[0]
        options = {**ray_options(first.resources), "max_retries": 0}
        self.launches += 1
        if first.kind == "score":
            ref = self.launch_score(first, options)
        elif first.kind == "evaluate":
            ref = self.launch_evaluation(first, options)
        elif first.resources.slice_hosts > 1:
            ref = self.launch_on_slice(first, calls[0])
        elif len(batch) == 1:
            ref = self.remote.options(**options, name=f"i1lab:{first.name}").remote(**calls[0].model_dump())
        else:
            name = f"i1lab:{first.name} (+{len(batch) - 1})"
            ref = self.batch_remote.options(**options, name=name).remote(calls, self.fn)
        self.launched[ref] = attempts

    def launch_score(self, t: Task, options: dict[str, Any]) -> Any:
        """A search's inference trial: the driver's ``score_fn`` (no lease: its run only reads the work
        directory it shares)."""
        if self.score_remote is None:
            if self.score_fn is None:
                raise RuntimeError("score task submitted to a driver without a score_fn")
            self.score_remote = self.ray.remote(self.score_fn)
        return self.score_remote.options(**options, name=f"i1lab:{t.name}").remote(
            t.run_id, self.url, t.workdir, t.step
        )

    def launch_evaluation(self, t: Task, options: dict[str, Any]) -> Any:
        """The evaluation steps of a run already trained, one checkpoint after the other."""
        from i1lab.execution.evaluation import EvalCall, evaluate_run

        if self.eval_remote is None:
            self.eval_remote = self.ray.remote(evaluate_run)
        by_step: dict[int, list[EvalStep]] = {}
        for e in t.evaluations:
            by_step.setdefault(e.step, []).append(e)
        calls = [
            EvalCall(
                run_id=t.run_id, database_url=self.url, workdir=t.workdir, step=step, steps=steps, eval=t.eval
            )
            for step, steps in sorted(by_step.items())
        ]
        return self.eval_remote.options(**options, name=f"i1lab-eval:{t.name}").remote(calls)

    def launch_on_slice(self, t: Task, call: RunCall) -> Any:
        """A run on a multi-host TPU slice: :func:`i1lab.execution.gang.execute_slice` reserves the slice and
        runs one process per host. The task itself asks for nothing (the slice's placement group holds the
        hosts) and stays beside this driver where it can."""
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        from i1lab.execution.gang import execute_slice, slice_shape

        if self.slice_remote is None:
            self.slice_remote = self.ray.remote(execute_slice)
        here = NodeAffinitySchedulingStrategy(node_id=self.ray.get_runtime_context().get_node_id(), soft=True)
        from i1lab.execution.worker import execute_run

        fn = None if self.fn is execute_run else self.fn
        ref = self.slice_remote.options(
            num_cpus=0, max_retries=0, scheduling_strategy=here, name=f"i1lab:{t.name} (slice)"
        ).remote(call, slice_shape(t.resources), fn)
        self.slices.add(ref)
        return ref

    def release_slice(self, ref: Any, attempts: list[Attempt]) -> None:
        """Remove the placement groups of a slice attempt that ended or was stopped (its task removes
        them when it ends normally; not when it was killed)."""
        if ref in self.slices:
            from i1lab.execution.gang import remove_slice_groups

            self.slices.discard(ref)
            for a in attempts:
                with contextlib.suppress(Exception):
                    remove_slice_groups(a.owner)

    # --- results ---------------------------------------------------------------------------------
    def collect(self, ref: Any) -> None:
        attempts = self.launched.pop(ref)
        self.dirty = True  # a slot freed
        self.release_slice(ref, attempts)
        try:
            result = self.ray.get(ref)
        except Exception as exc:
            if attempts[0].task.kind == "evaluate":
                self.evaluation_failed(attempts[0], exc)
            else:
                self.failed_task(attempts, exc)
            return
        outcomes = result if isinstance(result, list) else [result]
        for attempt, outcome in zip(attempts, outcomes, strict=True):
            assert isinstance(outcome, Outcome)
            self.ended(attempt, outcome)

    def ended(self, attempt: Attempt, outcome: Outcome) -> None:
        """An attempt returned (its run's own exception included, from a batch: ``raised``)."""
        run_id = attempt.task.run_id
        if outcome.status == "raised":  # recorded failed by the worker already
            self.failed_own(attempt, outcome.reason or "its run raised an exception")
            return
        if outcome.trained:
            self.recent = [*self.recent[-(SHORT_SAMPLE - 1) :], outcome.seconds]
        if outcome.status in ("finished", "failed", "cancelled"):
            self.finish(outcome)
        elif outcome.status == "elsewhere":
            self.state[run_id] = "watching"
            self.watching[run_id] = outcome.blocker or run_id
            self.on_note(f"{attempt.task.name}: {outcome.reason}; waiting for it")
        elif outcome.status == "interrupted":
            # released by the worker already after a notice to stop or a lost device (this is then a
            # no-op); still held after its evaluations kept dying
            reason = outcome.reason or "interrupted"
            self.registry.interrupt_lease(run_id, attempt.owner, reason, cause=outcome.cause)
            self.retry(attempt.task, f"{outcome.cause}: {reason}" if outcome.cause else reason)
        else:  # lost: someone took the run over; see how it ends
            self.state[run_id], self.watching[run_id] = "watching", run_id

    def evaluation_failed(self, attempt: Attempt, exc: BaseException) -> None:
        """An evaluation task returned no outcome: started again once if its worker died, else failed;
        the run itself, trained already, is left as it is."""
        t = attempt.task
        if failure_kind(exc) == "interrupted" and attempt.number < EVAL_TRIES:
            self.state[t.run_id] = "ready"
            return
        self.finish(Outcome(run_id=t.run_id, status="failed", reason=first_line(exc), seconds=0.0))

    def failed_own(self, attempt: Attempt, reason: str) -> None:
        """The run's own code raised: failed, not retried."""
        run_id = attempt.task.run_id
        if not self.registry.interrupt_lease(
            run_id, attempt.owner, reason, status="failed", reason=reason, interrupted=False
        ):
            self.registry.settle_run(run_id, "failed", reason)  # it failed before taking the lease
        self.finish(Outcome(run_id=run_id, status="failed", reason=reason, seconds=0.0))

    def failed_task(self, attempts: list[Attempt], exc: BaseException) -> None:
        """A Ray task (one run, or a batch) returned no result."""
        kind = failure_kind(exc)
        reason = first_line(exc)
        if kind == "interrupted":
            self.interrupted(attempts, reason)
            return
        if kind == "own" and len(attempts) == 1:
            self.failed_own(attempts[0], reason)
            return
        if kind == "own":
            # the batch's task itself raised (its runs' own errors come back as outcomes): the run that
            # held its lease, else the first still to run, is failed; the others are left as they ended
            # or queued again
            held = [
                a
                for a in attempts
                if self.registry.interrupt_lease(
                    a.task.run_id, a.owner, reason, status="failed", reason=reason, interrupted=False
                )
            ]
            self.split_batch(attempts, held, lambda a: self.failed_own(a, reason))
            return
        # cancelled: the runs of a batch that had ended before end as recorded
        for attempt in self.unsettled(attempts) if len(attempts) > 1 else attempts:
            self.cancelled(attempt, reason)

    def cancelled(self, attempt: Attempt, reason: str) -> None:
        run_id = attempt.task.run_id
        why = "its task was cancelled"
        if not self.registry.interrupt_lease(
            run_id, attempt.owner, reason, status="cancelled", reason=why, interrupted=False
        ):
            self.registry.settle_run(run_id, "cancelled", why)
        self.finish(Outcome(run_id=run_id, status="cancelled", reason=reason, seconds=0.0))

    def unsettled(self, attempts: list[Attempt]) -> list[Attempt]:
        """Those of these attempts whose runs have not ended in the registry (one read); the others
        are finished as the registry has them."""
        states = self.registry.lease_states([a.task.run_id for a in attempts])
        out = []
        for a in attempts:
            st = states.get(a.task.run_id)
            if st is None or not self.settled(a.task.run_id, st):
                out.append(a)
        return out

    def interrupted(self, attempts: list[Attempt], reason: str) -> None:
        """A task's worker or node died (or hung): release the lease its run held and retry that run,
        counting one retry (see :meth:`split_batch` for the other runs of a batch)."""
        held = [a for a in attempts if self.registry.interrupt_lease(a.task.run_id, a.owner, reason)]
        self.split_batch(attempts, held, lambda a: self.retry(a.task, reason))

    def split_batch(
        self, attempts: list[Attempt], held: list[Attempt], blame: Callable[[Attempt], None]
    ) -> None:
        """The runs of a task that returned no result: ``blame`` those that held their lease; each of
        the others ends as the registry has it if it ended (finished, failed or cancelled before the
        task died), or is queued again without blame — except that when none held its lease, the first
        still to run is blamed (the task died before any run started: a task that always dies must not
        go round forever)."""
        for a in held:
            blame(a)
        taken = {a.task.run_id for a in held}
        rest = [a for a in attempts if a.task.run_id not in taken]
        if not rest:
            return
        open_ = self.unsettled(rest)
        if not held and open_:
            blame(open_[0])
            open_ = open_[1:]
        if open_:
            self.queue([a.task.run_id for a in open_])

    def retry(self, t: Task, reason: str) -> None:
        n = self.retries.get(t.run_id, 0) + 1
        self.retries[t.run_id] = n
        p = self.policy
        if n > p.max_retries:
            why = f"interrupted {n} times, giving up ({p.max_retries} retries): {reason}"
            self.registry.settle_run(t.run_id, "failed", why)
            self.finish(Outcome(run_id=t.run_id, status="failed", reason=why, seconds=0.0))
            return
        delay = retry_delay(n, p.backoff_seconds, p.backoff_max_seconds)
        self.registry.add_event(
            t.run_id, "retried", detail=f"retry {n} of {p.max_retries} in {delay:.1f} s: {reason}"
        )
        self.on_note(f"{t.name}: interrupted ({reason}); retry {n}/{p.max_retries} in {delay:.0f} s")
        self.state[t.run_id] = "backoff"
        self.backoff_until[t.run_id] = time.monotonic() + delay

    # --- watching the registry -------------------------------------------------------------------
    def watch(self) -> None:
        now = time.monotonic()
        due = [r for r, s in self.state.items() if s == "backoff" and self.backoff_until[r] <= now]
        if due:
            self.queue(due)
        flying = {a.task.run_id: (ref, a) for ref, a in self.flying()}
        watched = {r: w for r, w in self.watching.items() if self.state.get(r) == "watching"}
        ids = set(flying) | set(watched.values())
        if not ids:
            return
        states = self.registry.lease_states(ids)
        self.leased_by = {r: states[r].owner for r in flying if r in states}
        waiting = [
            r for r in flying if r in states and states[r].owner is None and self.tasks[r].kind == "train"
        ]
        self.registry.touch_waiting(waiting)
        for run_id, (ref, attempt) in flying.items():
            st = states.get(run_id)
            if st is not None and st.owner == attempt.owner and not st.live and ref in self.launched:
                # the worker stopped renewing its lease (hung, or its node is gone and Ray has not said):
                # its task is stopped, the runs of a batch with it
                batch = self.launched.pop(ref)
                with contextlib.suppress(Exception):
                    self.ray.cancel(ref, force=True)
                self.release_slice(ref, batch)
                self.interrupted(batch, "lease expired: no heartbeat from the worker")
        requeue = []
        for run_id, target in watched.items():
            st = states.get(target)
            if st is None:
                continue
            if target == run_id and self.settled(run_id, st):
                continue
            if not st.live:
                requeue.append(run_id)
        if requeue:
            self.queue(requeue)

    # --- the loop --------------------------------------------------------------------------------
    def run(self, on_poll: Callable[[], None] = lambda: None) -> list[Outcome]:
        """Poll until every submitted task has ended; their outcomes."""
        try:
            while self.pending:
                self.poll()
                on_poll()
        finally:
            self.abandon()
        return self.outcomes

    def abandon(self) -> None:
        """The driver stops with attempts in flight (an error, Ctrl-C): stop them and release their
        leases so that the runs can be resumed at once, by this study's next submit or anyone else's."""
        for ref, attempts in list(self.launched.items()):
            with contextlib.suppress(Exception):
                self.ray.cancel(ref, force=True)
            self.release_slice(ref, attempts)
            for attempt in attempts:
                with contextlib.suppress(Exception):
                    self.registry.interrupt_lease(
                        attempt.task.run_id, attempt.owner, "its submitter stopped", cause="submitter"
                    )
        self.launched.clear()


def eval_tasks(
    runs: list[RunEvals], specs: dict[int, RunSpec], workdirs: dict[int, str], eval_accelerator: str = "auto"
) -> list[Task]:
    """One ``evaluate`` task per run for the evaluation steps ``runs`` lack. Pure."""
    return [
        Task(
            run_id=r.run_id,
            name=r.name,
            resources=eval_resources(eval_accelerator, specs[r.run_id].resources),
            workdir=workdirs[r.run_id],
            kind="evaluate",
            evaluations=r.steps,
            eval=specs[r.run_id].eval.model_dump(mode="json"),
        )
        for r in runs
    ]


def run_evaluations(
    tasks: list[Task],
    *,
    address: str | None = None,
    policy: Policy | None = None,
    registry: Registry | None = None,
    on_note: Callable[[str], None] = lambda line: None,
) -> list[str]:
    """Run ``evaluate`` tasks on the driver (:func:`eval_tasks`); the errors, one line each (empty: all
    recorded). Ray is started (and stopped at the end) unless it runs already."""
    if not tasks:
        return []
    errors: list[str] = []
    names = {t.run_id: t.name for t in tasks}

    def done(outcome: Outcome) -> None:
        if outcome.status == "finished":
            on_note(f"{names[outcome.run_id]}: evaluated")
        else:
            errors.append(f"{names[outcome.run_id]}: {outcome.reason or outcome.status}")
            on_note(errors[-1])

    run_tasks(tasks, address=address, policy=policy, registry=registry, on_done=done, on_note=on_note)
    return errors


def _now() -> Any:
    from i1lab.registry.records import now

    return now()


def run_tasks(
    tasks: list[Task],
    *,
    address: str | None = None,
    on_poll: Callable[[], None] = lambda: None,
    on_done: Callable[[Outcome], None] = lambda outcome: None,
    on_note: Callable[[str], None] = lambda line: None,
    poll_seconds: float = 1.0,
    policy: Policy | None = None,
    registry: Registry | None = None,
    fn: Callable[..., Outcome] | None = None,
) -> list[Outcome]:
    """Run every task on Ray under ``policy`` and wait until each has an outcome (finished, failed or
    cancelled; by this driver's workers or, for runs another submitter holds, by theirs).

    ``fn`` replaces :func:`i1lab.execution.worker.execute_run` as the task body (same arguments and result;
    for measuring the scheduler itself). Ray is started (and stopped at the end) unless it runs already."""
    if not tasks:
        return []
    import ray

    from i1lab.registry import Registry

    started = not ray.is_initialized()
    init_ray(address)
    freeze_heap()
    try:
        driver = Driver(
            policy or Policy(),
            registry or Registry(),
            on_done=on_done,
            on_note=on_note,
            poll_seconds=poll_seconds,
            fn=fn,
        )
        driver.submit(tasks)
        return driver.run(on_poll)
    finally:
        if started and address is None:
            ray.shutdown()
