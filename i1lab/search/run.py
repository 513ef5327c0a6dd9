"""Running a search: the driver owns the Optuna study (ask / tell) and Ray tasks do the work.

Each asked trial becomes a registry run: its resolved spec is content-hashed (a sampling-only trial
shares its checkpoint's training hash and work directory) and linked to the registry study named after
the search as member ``trial-NNNN`` whose ``varied`` holds the trial's params. Then, in order:

1. the run already has scores for every objective term at the scored step (from this search, another
   search or a submitted study) -> Optuna is told the stored value; nothing is sampled or trained;
2. the same run is already in flight for another trial of this search -> the trial waits for it;
3. otherwise the run is submitted to the scheduler's Ray driver (:class:`i1lab.execution.scheduler.Driver`,
   the one ``i1lab submit`` uses: leases, retries, slices, runs held by other submitters): an inference
   trial restores the checkpoint's EMA weights and samples and scores the study's benchmarks at that step
   (:func:`score_checkpoint`); a training trial is :func:`i1lab.execution.worker.execute_run`, whose
   intermediate checkpoint scores feed the pruner, which cancels the run on the driver.

Only the driver writes the Optuna study, so trials are never lost or duplicated by racing workers; the
workers write the registry (one short transaction per fact, see :mod:`i1lab.registry.base`).
Re-running a search resumes its Optuna study: finished trials count toward ``trials`` and are not
redone; trials left running by an interrupted driver are failed and their params asked again first.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from i1lab import paths
from i1lab.errors import I1labError, SpecError
from i1lab.execution.worker import Outcome
from i1lab.hashing import canonical_json, content_hash, training_hash
from i1lab.registry import PlannedMember, Registry
from i1lab.search.setup import Setup
from i1lab.search.space import (
    decode_params,
    distributions,
    fingerprint,
    grid_points,
    member_name,
    objective_value,
    scores_at,
    show,
    trial_label,
)
from i1lab.spec.run import RunSpec

if TYPE_CHECKING:
    import optuna

    from i1lab.execution.scheduler import Driver as RayDriver

ATTRS = "i1lab"  # the Optuna study's user attribute holding the search definition


class SearchResult(BaseModel):
    """What one invocation of a search did."""

    name: str
    trials: int  # trials in the Optuna study at the end (every state)
    complete: int
    pruned: int
    failed: int
    resumed: int  # finished trials found from earlier invocations (not redone)
    reused: int  # trials asked now whose run already had its scores in the registry
    ran: int  # Ray tasks started now (sampling or training)
    max_in_flight: int
    best_number: int | None
    best_value: float | None
    best_params: dict[str, Any] | None


def score_checkpoint(run_id: int, database_url: str, workdir: str, step: int) -> Outcome:
    """An inference trial (a Ray task): sample and score registry run ``run_id`` on the EMA weights of
    checkpoint ``step`` in ``workdir``, which it only reads; record the scores and finish the run."""
    from i1lab.evaluation.checkpoint import evaluate_checkpoint, record_scores, restore_ema
    from i1lab.plan.steps import evaluations
    from i1lab.train.runner import enable_compilation_cache

    enable_compilation_cache()
    t0 = time.perf_counter()
    registry = Registry(database_url)
    record = registry.run(run_id)
    spec = RunSpec.model_validate(record.spec)
    wd = Path(workdir)
    registry.set_status(run_id, "running")
    try:
        if not (wd / "checkpoints" / str(step)).is_dir():
            raise I1labError(f"checkpoint {step} is no longer kept in {wd / 'checkpoints'}")
        ema = restore_ema(spec, wd, step)
        if ema is None:
            raise I1labError(f"checkpoint {step} in {wd} is corrupt")
        registry.add_checkpoint(run_id, step, str(wd / "checkpoints" / str(step)), True)
        results = evaluate_checkpoint(spec, ema, step, wd, record.hash)
        seconds = time.perf_counter() - t0
        record_scores(
            registry,
            run_id,
            results,
            steps=evaluations(spec, record.hash, [step]),
            detail=f"step {step} by a search's inference trial in {seconds:.1f} s",
        )
    except (I1labError, NotImplementedError, OSError) as exc:
        registry.set_status(run_id, "failed", f"{type(exc).__name__}: {exc}")
        return Outcome(run_id=run_id, status="failed", reason=str(exc), seconds=time.perf_counter() - t0)
    except Exception as exc:
        registry.set_status(run_id, "failed", f"{type(exc).__name__}: {exc}".splitlines()[0])
        raise
    registry.set_progress(run_id, step)
    registry.set_status(run_id, "finished")
    return Outcome(run_id=run_id, status="finished", seconds=time.perf_counter() - t0)


@dataclass
class _Job:
    """One run in flight on the driver and the trials waiting for it (several when trials share a
    configuration)."""

    run_id: int
    hash: str
    training: bool
    trials: list[Any] = field(default_factory=list)
    reported: set[int] = field(default_factory=set)


def _sampler(setup: Setup, done: int = 0) -> Any:
    """The search's sampler. Its seed moves on with the number of trials the study already has
    (``done``): a resumed search draws new configurations instead of repeating its first ones, and the
    same study state always draws the same ones."""
    import optuna

    s = setup.search
    seed = s.seed + done
    if s.sampler == "tpe":
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            # constant liar: trials in flight count as pessimistic results, so parallel asks spread out
            return optuna.samplers.TPESampler(seed=seed, constant_liar=True)
    return optuna.samplers.RandomSampler(seed=seed)  # grid: the points are enqueued in order


def _pruner(setup: Setup) -> Any:
    import optuna

    if setup.kind == "inference" or setup.search.pruner == "none":
        return optuna.pruners.NopPruner()
    if setup.search.pruner == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=0)
    first = min((s for s in _eval_steps(setup.base) if s > 0), default=setup.step)
    return optuna.pruners.HyperbandPruner(min_resource=first, max_resource=setup.step)


def _eval_steps(spec: RunSpec) -> set[int]:
    from i1lab.plan.steps import eval_steps

    return eval_steps(spec)


def definition(setup: Setup) -> dict[str, Any]:
    """The search as stored on its Optuna study (read back by ``compare`` and ``search-report``)."""
    return {
        "fingerprint": fingerprint(setup.search, content_hash(setup.base), setup.step),
        "kind": setup.kind,
        "objective": dict(setup.search.objective),
        "direction": setup.search.direction,
        "space": {p: d.model_dump(mode="json") for p, d in setup.search.space.items()},
        "sampler": setup.search.sampler,
        "step": setup.step,
        "checkpoint": setup.checkpoint.ref() if setup.checkpoint else None,
        "study_file": setup.study_file,
        "profile": setup.profile,
    }


def open_study(setup: Setup, storage: Any) -> optuna.Study:
    """Create the search's Optuna study, or load it when this same search ran before.

    A study of the same name with another definition (space, objective, sampler, seed, base spec or
    checkpoint) is refused: its trials would mean something else."""
    import optuna

    info = definition(setup)
    try:
        study = optuna.load_study(
            study_name=setup.name, storage=storage, sampler=_sampler(setup), pruner=_pruner(setup)
        )
    except KeyError:
        try:
            study = optuna.create_study(
                storage=storage,
                study_name=setup.name,
                direction=setup.search.direction,
                sampler=_sampler(setup),
                pruner=_pruner(setup),
            )
            study.set_user_attr(ATTRS, info)
        except optuna.exceptions.DuplicatedStudyError:  # another driver created it just now
            study = optuna.load_study(
                study_name=setup.name, storage=storage, sampler=_sampler(setup), pruner=_pruner(setup)
            )
    stored = study.user_attrs.get(ATTRS)
    if not isinstance(stored, dict) or stored.get("fingerprint") != info["fingerprint"]:
        raise SpecError(
            f"search {setup.name!r} exists with another definition (space, objective, sampler, seed, "
            "base spec or checkpoint); name this one differently with search.name",
            key="search",
            where=setup.block,
        )
    study.sampler = _sampler(setup, len(study.get_trials(deepcopy=False)))
    return study


class Driver:
    """The ask / tell loop of one invocation (see the module doc)."""

    def __init__(
        self,
        setup: Setup,
        registry: Registry,
        *,
        address: str | None = None,
        on_event: Callable[[str], None] = lambda line: None,
        poll_seconds: float = 0.5,
        fn: Callable[..., Outcome] | None = None,
    ) -> None:
        """``fn``: a replacement for :func:`i1lab.execution.worker.execute_run` (see
        :class:`~i1lab.execution.scheduler.Driver`)."""
        self.setup = setup
        self.registry = registry
        self.address = address
        self.on_event = on_event
        self.poll_seconds = poll_seconds
        self.dists = distributions(setup.search)
        self.jobs: dict[str, _Job] = {}  # run hash -> its job, in flight on the driver
        self.fn = fn
        self.executor: RayDriver | None = None  # made on the first trial that runs
        self.reused = self.ran = self.max_in_flight = 0
        self.started_ray = False

    # --- Optuna side --------------------------------------------------------------------------------
    def run(self) -> SearchResult:
        from optuna.trial import TrialState

        from i1lab.registry.search_storage import open_storage

        study = open_study(self.setup, open_storage(self.registry.url))
        self.study = study
        for stale in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            # left running by a driver that stopped: fail it, and ask its params again first
            study.tell(stale.number, state=TrialState.FAIL)
            study.enqueue_trial(dict(stale.params), user_attrs={"retry_of": stale.number})
            self.on_event(f"trial {stale.number}: interrupted earlier; its params are asked again")
        done_states = (TrialState.COMPLETE, TrialState.PRUNED)
        resumed = len(study.get_trials(deepcopy=False, states=done_states))
        target = self.setup.search.trials
        grid = self.setup.grid_size()
        if grid is not None:
            target = min(target, grid)
        to_ask = max(0, target - resumed)
        if self.setup.search.sampler == "grid":
            self._enqueue_grid(study, to_ask)
        if resumed:
            self.on_event(f"search {self.setup.name}: {resumed} finished trials reused, {to_ask} to ask")
        asked = 0
        budget = self.setup.search.budget_hours
        over_budget = self.setup.kind == "training" and budget is not None and self._spent(study) >= budget
        if over_budget and to_ask:
            self.on_event(f"search {self.setup.name}: its budget_hours ({budget:g}) is spent; no new trial")
        try:
            while True:
                while asked < to_ask and len(self.jobs) < self.setup.search.parallel and not over_budget:
                    asked += 1
                    over_budget = self._ask(study)
                self.max_in_flight = max(self.max_in_flight, len(self.jobs))
                if not self.jobs:
                    break
                self._wait()
        except BaseException:
            self._abandon(study)
            raise
        finally:
            if self.executor is not None:
                self.executor.close()
            if self.started_ray:
                import ray

                ray.shutdown()
        trials = study.get_trials(deepcopy=False)
        complete = [t for t in trials if t.state == TrialState.COMPLETE]
        best = study.best_trial if complete else None
        return SearchResult(
            name=self.setup.name,
            trials=len(trials),
            complete=len(complete),
            pruned=sum(t.state == TrialState.PRUNED for t in trials),
            failed=sum(t.state == TrialState.FAIL for t in trials),
            resumed=resumed,
            reused=self.reused,
            ran=self.ran,
            max_in_flight=self.max_in_flight,
            best_number=best.number if best else None,
            best_value=best.value if best else None,
            best_params=decode_params(self.setup.search, best.params) if best else None,
        )

    def _enqueue_grid(self, study: optuna.Study, n: int) -> None:
        from optuna.trial import TrialState

        taken = {
            canonical_json(t.params)
            for t in study.get_trials(deepcopy=False)
            if t.state != TrialState.FAIL and t.params
        }
        taken |= {
            canonical_json(t.system_attrs.get("fixed_params", {}))
            for t in study.get_trials(deepcopy=False, states=(TrialState.WAITING,))
        }
        waiting = len(study.get_trials(deepcopy=False, states=(TrialState.WAITING,)))
        for point in grid_points(self.setup.search):
            if waiting >= n:
                break
            if canonical_json(point) not in taken:
                study.enqueue_trial(point)
                waiting += 1

    def _ask(self, study: optuna.Study) -> bool:
        """Ask one trial and start, attach or reuse its run. Returns True when the budget is reached."""
        from optuna.trial import TrialState

        trial = study.ask(self.dists)
        params = decode_params(self.setup.search, trial.params)
        member = member_name(trial.number)
        label = trial_label(trial.number, params)
        try:
            spec = self.setup.trial_spec(params, name=member)
        except SpecError as exc:
            trial.set_user_attr("reason", str(exc))
            study.tell(trial, state=TrialState.FAIL)
            self.on_event(f"{label}: invalid ({exc})")
            return False
        digest = content_hash(spec)
        hours = self._hours(spec)
        if self.setup.kind == "training" and self.setup.search.budget_hours is not None:
            spent = self._spent(study)
            if spent + (hours or 0.0) > self.setup.search.budget_hours:
                trial.set_user_attr("reason", "over the search's budget_hours")
                study.tell(trial, state=TrialState.FAIL)
                self.on_event(
                    f"budget reached: {spent:.2f} accelerator-hours spent, trial {trial.number} needs "
                    f"{hours or 0.0:.2f} more (budget_hours {self.setup.search.budget_hours:g})"
                )
                return True
        workdir = (
            self.setup.checkpoint.workdir
            if self.setup.checkpoint is not None
            else str(paths.run_dir(training_hash(spec)))
        )
        ids = self.registry.add_members(
            self.setup.name,
            [
                PlannedMember(
                    name=member,
                    label=label,
                    hash=digest,
                    is_baseline=False,
                    baseline="",
                    varied=params,
                    spec=spec.model_dump(mode="json"),
                    total_steps=spec.train.steps,
                    params=self.setup.checkpoint.params if self.setup.checkpoint else self._params(spec),
                    workdir=workdir,
                    accelerator_hours_est=hours,
                )
            ],
            file=self.setup.study_file,
            profile=self.setup.profile,
            description=self.setup.description,
        )
        run_id = ids[member]
        for key, value in (("member", member), ("run_id", run_id), ("run_hash", digest)):
            trial.set_user_attr(key, value)
        terms = scores_at(
            self.setup.search, self.registry.scores([run_id]), self.setup.step, self.setup.judges
        )
        if terms is not None:
            trial.set_user_attr("reused", True)
            self._tell(study, trial, terms, "reused: scores already recorded")
            self.reused += 1
            return False
        job = self.jobs.get(digest)
        if job is not None:
            job.trials.append(trial)
            self.on_event(f"{label}: same run as trial {job.trials[0].number}, waiting for it")
            return False
        trial.set_user_attr("trained", self.setup.kind == "training")
        trial.set_user_attr("hours_est", hours)
        self._submit(trial, run_id, digest, spec, workdir)
        self.on_event(f"{label}: started ({digest[:12]})")
        return False

    @staticmethod
    def _spent(study: optuna.Study) -> float:
        """Estimated accelerator-hours of the trials this search trained (reused ones cost nothing)."""
        return sum(
            float(t.user_attrs.get("hours_est") or 0.0)
            for t in study.get_trials(deepcopy=False)
            if t.user_attrs.get("trained")
        )

    def _tell(self, study: optuna.Study, trial: Any, terms: dict[str, float], note: str) -> None:
        value = objective_value(self.setup.search, terms)
        trial.set_user_attr("scores", terms)
        trial.set_user_attr("step", self.setup.step)
        study.tell(trial, value)
        params = decode_params(self.setup.search, trial.params)
        self.on_event(f"{trial_label(trial.number, params)}: {value:.6g} ({note})")

    def _fail(self, study: optuna.Study, trial: Any, reason: str) -> None:
        from optuna.trial import TrialState

        trial.set_user_attr("reason", reason)
        study.tell(trial, state=TrialState.FAIL)
        params = decode_params(self.setup.search, trial.params)
        self.on_event(f"{trial_label(trial.number, params)}: failed ({reason})")

    def _hours(self, spec: RunSpec) -> float | None:
        if self.setup.kind == "inference":
            return None
        return self._cost(spec)[1]

    def _params(self, spec: RunSpec) -> int | None:
        return self._cost(spec)[0]

    @staticmethod
    def _cost(spec: RunSpec) -> tuple[int | None, float | None]:
        from i1lab.plan.cost import run_cost
        from i1lab.spec.model import model_config

        try:
            cost = run_cost(spec, model_config(spec))
        except NotImplementedError:
            return None, None
        return cost.params, cost.accelerator_hours

    # --- Ray side: the scheduler's driver -----------------------------------------------------------
    def _driver(self) -> RayDriver:
        if self.executor is None:
            import ray

            from i1lab.execution.launching import Policy
            from i1lab.execution.scheduler import Driver, init_ray

            if not ray.is_initialized():
                init_ray(self.address)
                self.started_ray = self.address is None
            policy = Policy(study=self.setup.name)
            self.executor = Driver(
                policy,
                self.registry,
                on_note=self.on_event,
                poll_seconds=self.poll_seconds,
                fn=self.fn,
                score_fn=score_checkpoint,
            )
        return self.executor

    def _submit(self, trial: Any, run_id: int, digest: str, spec: RunSpec, workdir: str) -> None:
        from i1lab.execution.launching import Task

        job = _Job(run_id, digest, self.setup.kind == "training", [trial])
        self.jobs[digest] = job
        checkpoint = self.setup.checkpoint
        task = Task(
            run_id=run_id,
            name=f"{self.setup.name}/{member_name(trial.number)}",
            resources=spec.resources,
            workdir=workdir,
            hash=digest,
            kind="train" if job.training else "score",
            step=checkpoint.step if checkpoint is not None else None,
        )
        self._driver().submit([task])
        self.ran += 1

    def _wait(self) -> None:
        by_run = {j.run_id: j for j in self.jobs.values()}
        for outcome in self._driver().poll(self.poll_seconds):
            job = by_run.get(outcome.run_id)
            if job is None:
                continue
            self.jobs.pop(job.hash, None)
            self._finish(job, outcome)
        if self.setup.kind == "training" and self.setup.search.pruner != "none":
            for job in list(self.jobs.values()):
                self._maybe_prune(job)

    def _finish(self, job: _Job, outcome: Outcome) -> None:
        if outcome.status != "finished":
            for trial in job.trials:
                self._fail(self.study, trial, outcome.reason or outcome.status)
            return
        terms = scores_at(
            self.setup.search, self.registry.scores([job.run_id]), self.setup.step, self.setup.judges
        )
        for i, trial in enumerate(job.trials):
            if terms is None:
                missing = ", ".join(self.setup.search.objective)
                self._fail(self.study, trial, f"no score for {missing} at step {self.setup.step}")
            elif i == 0:
                self._tell(
                    self.study,
                    trial,
                    terms,
                    f"{'trained' if job.training else 'sampled'} in {outcome.seconds:.1f} s",
                )
            else:
                self._tell(self.study, trial, terms, f"same run as trial {job.trials[0].number}")

    def _maybe_prune(self, job: _Job) -> None:
        """Report the objective at each newly scored checkpoint; stop the run if Optuna prunes it."""
        from optuna.trial import TrialState

        scores = self.registry.scores([job.run_id])
        for step in sorted({sc.step for sc in scores} - job.reported):
            if step >= self.setup.step:
                continue
            terms = scores_at(self.setup.search, scores, step, self.setup.judges)
            if terms is None:
                continue
            job.reported.add(step)
            value = objective_value(self.setup.search, terms)
            for trial in job.trials:
                trial.report(value, step)
            if job.trials[0].should_prune():
                self.jobs.pop(job.hash, None)
                self._driver().cancel(job.run_id, f"pruned by search {self.setup.name} at step {step}")
                for trial in job.trials:
                    trial.set_user_attr("pruned_at", step)
                    self.study.tell(trial, state=TrialState.PRUNED)
                    params = decode_params(self.setup.search, trial.params)
                    self.on_event(
                        f"{trial_label(trial.number, params)}: pruned at step {step} ({show(value)})"
                    )
                return

    def _abandon(self, study: optuna.Study) -> None:
        """Interrupted: stop the tasks (their runs can be resumed at once), fail their trials and ask
        their params again first next time."""
        from optuna.trial import TrialState

        if self.executor is not None:
            with contextlib.suppress(Exception):
                self.executor.close()
        for job in list(self.jobs.values()):
            if not job.training:  # an inference trial's run has no lease to give back
                with contextlib.suppress(Exception):
                    if self.registry.run(job.run_id).status in ("queued", "running"):
                        self.registry.set_status(job.run_id, "cancelled", f"search {self.setup.name} stopped")
            for trial in job.trials:
                with contextlib.suppress(Exception):
                    study.tell(trial, state=TrialState.FAIL)
                    study.enqueue_trial(dict(trial.params), user_attrs={"retry_of": trial.number})
        self.jobs.clear()


def run_search(
    setup: Setup,
    *,
    registry: Registry | None = None,
    address: str | None = None,
    on_event: Callable[[str], None] = lambda line: None,
) -> SearchResult:
    """Run (or resume) a prepared search to its trial count; see the module doc."""
    return Driver(setup, registry or Registry(), address=address, on_event=on_event).run()
