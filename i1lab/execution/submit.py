"""``i1lab submit``: plan, record, schedule what is new, mirror to MLflow, print the table."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console
from rich.live import Live

from i1lab import paths
from i1lab.errors import I1labError
from i1lab.hashing import training_hash
from i1lab.plan.planner import Plan, PlannedRun, expand, make_plan
from i1lab.registry import PlannedMember, Registry
from i1lab.spec import load_study

if TYPE_CHECKING:
    from i1lab.execution.launching import Policy, Task


def planned_members(plan: Plan, total_steps: int | None = None) -> list[PlannedMember]:
    """The registry members of a plan: one per run name and alias, with its spec, work folder and cost
    (``total_steps`` overrides the spec's step count, for runs recorded with given results)."""
    members = []
    for r in plan.runs:
        spec = r.spec.model_dump(mode="json")
        for name in (r.name, *r.aliases):
            members.append(
                PlannedMember(
                    name=name,
                    label=r.label,
                    hash=r.hash,
                    is_baseline=r.is_baseline,
                    baseline=r.baseline,
                    varied=r.varied,
                    spec=spec,
                    total_steps=total_steps if total_steps is not None else r.spec.train.steps,
                    workdir=str(paths.run_dir(r.training_hash or training_hash(r.spec))),
                    params=r.cost.params if r.cost else None,
                    accelerator_hours_est=r.cost.accelerator_hours if r.cost else None,
                )
            )
    return members


def submit_study(
    study_file: Path,
    profile: str | None,
    *,
    address: str | None,
    progress: bool,
    mlflow: bool,
    console: Console,
    budget_hours: float | None = None,
    priority: int | None = None,
    max_concurrent: int | None = None,
    global_budget_hours: float | None = None,
    eval_accelerator: str = "auto",
    max_retries: int = 3,
) -> Plan:
    """Plan ``study_file``, record the plan, run what is new on Ray and print the ablation table.

    ``priority`` and ``max_concurrent`` (default: the study file's) are stored on the study and enforced
    by the scheduler; ``global_budget_hours`` caps the accelerator-hours of every run in the registry
    (refused up front if the new runs' estimates do not fit, and no run is started past it)."""
    study = load_study(study_file)
    variants = expand(study, profile)  # every spec error surfaces here, before anything is written
    existing = Registry().existing_runs(v.hash for v in variants) if paths.registry_exists() else {}
    plan = make_plan(study, variants, existing, profile)
    plan.check_runnable()  # before anything is written: a run without its weights would only fail
    plan.check_budget(budget_hours)
    registry = Registry()
    if max_concurrent is not None and max_concurrent < 1:
        raise I1labError(f"--max-concurrent must be at least 1 (got {max_concurrent})")
    if global_budget_hours is not None:
        used = registry.accelerator_hours_used()
        need = plan.totals()["accelerator_hours_to_run"]
        if used + need > global_budget_hours:
            raise I1labError(
                f"global budget: {used:,.2f} accelerator-hours used and the new runs need {need:,.2f}, "
                f"over the budget of {global_budget_hours:,.2f}"
            )
    if priority is None:
        priority = study.doc.priority
    if max_concurrent is None:
        max_concurrent = study.doc.max_concurrent
    members = planned_members(plan)
    ids = registry.record_plan(
        plan.study, members, file=str(study_file), profile=profile, description=study.doc.description
    )
    registry.set_study_policy(plan.study, priority=priority, max_concurrent=max_concurrent)
    s = plan.summary()
    console.print(
        f"study {plan.study}: {s['runs']} runs — {s['new']} new, {s['reused']} reused, "
        f"{s['resume']} to resume"
    )
    todo = [r for r in plan.runs if r.status != "reused"]
    # the evaluation steps the reused runs lack (this study asks another benchmark or judge of them) run
    # on the same driver as the training steps; the runs trained now are evaluated by their workers
    reused = [r for r in plan.runs if r.status == "reused"]
    evaluations = _evaluations(reused, plan, ids, registry, console, eval_accelerator)
    failed_evals: list[str] = []
    if todo or evaluations:
        from i1lab.execution.launching import Policy

        policy = Policy(
            study=plan.study,
            priority=priority,
            max_concurrent=max_concurrent,
            budget_hours=global_budget_hours,
            max_retries=max_retries,
            eval_accelerator=eval_accelerator,
        )
        failed_evals = _run(
            plan,
            todo,
            ids,
            members,
            registry,
            address=address,
            progress=progress,
            mlflow=mlflow,
            console=console,
            policy=policy,
            evaluations=evaluations,
        )
    # a run trained now for another study (resumed here) was evaluated as that study asked: the rest now
    later = _evaluations(todo, plan, ids, registry, console, eval_accelerator) if todo else []
    if later:
        from i1lab.execution.launching import Policy
        from i1lab.execution.scheduler import run_evaluations

        failed_evals += run_evaluations(
            later,
            address=address,
            policy=Policy(study=plan.study, eval_accelerator=eval_accelerator),
            registry=registry,
            on_note=lambda line: _write(console, line),
        )
    if mlflow:
        _mirror(registry, plan.study, console)
    from i1lab.report import tables as report
    from i1lab.report.display import rich_table

    final = registry.members(plan.study)
    console.print(rich_table(report.ablation_table(plan.study, final)))
    unfinished = [m.name for m in final if m.run.status not in ("finished", "imported")]
    if unfinished:
        names = ", ".join(unfinished)
        raise I1labError(
            f"{len(unfinished)} run(s) did not finish: {names} (see `i1lab status {plan.study}`)"
        )
    if failed_evals:
        more = f" (and {len(failed_evals) - 1} more)" if len(failed_evals) > 1 else ""
        raise I1labError(f"an evaluation was not recorded: {failed_evals[0]}{more}")
    return plan


def _evaluations(
    planned: list[PlannedRun],
    plan: Plan,
    ids: dict[str, int],
    registry: Registry,
    console: Console,
    eval_accelerator: str,
) -> list[Task]:
    """The ``evaluate`` tasks of the evaluation steps these runs, finished, lack as this study asks them
    (at the checkpoints still kept), announced on the console; none without a registry read more than
    three."""
    from i1lab.plan.steps import evaluation_history, missing_evaluations

    asked = {r.name: r for r in planned if r.spec.eval.benchmarks}
    if not asked:
        return []
    records = {m.run.id: m.run for m in registry.members(plan.study) if m.name in asked}
    runs = {
        ids[name]: (f"{plan.study}/{name}", r.spec, r.hash)
        for name, r in asked.items()
        if ids[name] in records and records[ids[name]].status == "finished"
    }
    history = evaluation_history(registry, runs)
    lacking = missing_evaluations(runs, history)
    if not lacking:
        return []
    kept = {r.run_id: {c[0] for c in registry.checkpoints(r.run_id) if c[2]} for r in lacking}
    lacking = missing_evaluations({r.run_id: runs[r.run_id] for r in lacking}, history, kept)
    if not lacking:
        return []
    from i1lab.execution.scheduler import eval_tasks

    specs = {i: v[1] for i, v in runs.items()}
    tasks = eval_tasks(lacking, specs, {i: records[i].workdir or "" for i in runs}, eval_accelerator)
    n = sum(len(t.evaluations) for t in tasks)
    console.print(f"{n} evaluation(s) of {len(lacking)} run(s) trained before")
    return tasks


def _mirror(registry: Registry, study: str, console: Console) -> None:
    from i1lab.registry import tracking

    try:
        tracking.sync_study(registry, study)
    except Exception as exc:
        console.print(
            f"[yellow]MLflow mirror not updated ({type(exc).__name__}: {exc}); "
            f"run `i1lab sync mlflow` later[/]"
        )


def _run(
    plan: Plan,
    todo: list,
    ids: dict[str, int],
    members: list[PlannedMember],
    registry: Registry,
    *,
    address: str | None,
    progress: bool,
    mlflow: bool,
    console: Console,
    policy: Policy,
    evaluations: list[Task],
) -> list[str]:
    """Run the training steps ``todo`` and the ``evaluations`` on one driver; the evaluations that
    failed, one line each."""
    from i1lab.execution.launching import Task
    from i1lab.execution.scheduler import run_tasks
    from i1lab.report.display import progress_table

    workdirs = {m.hash: m.workdir for m in members}
    tasks = [
        Task(
            run_id=ids[r.name],
            name=r.name,
            resources=r.spec.resources,
            workdir=workdirs[r.hash],
            hash=r.hash,
            parent_hash=r.spec.data.resume_from,
            accelerator_hours_est=r.cost.accelerator_hours if r.cost else None,
        )
        for r in todo
    ]
    trained = len(tasks)
    tasks += evaluations
    # No status is written here: the scheduler queues each run in the registry unless another
    # submitter's worker holds it, in which case it waits for that run and reuses its result.
    started = time.perf_counter()
    live = (
        Live(
            progress_table(plan.study, registry.members(plan.study)),
            console=console,
            refresh_per_second=2,
            transient=False,
        )
        if progress and console.is_terminal
        else None
    )

    def on_poll() -> None:
        if live is not None:
            live.update(progress_table(plan.study, registry.members(plan.study)))

    names = {t.run_id: t.name for t in tasks}
    evaluated = {t.run_id for t in evaluations}
    failed: list[str] = []

    def on_done(outcome: object) -> None:
        from i1lab.execution.worker import Outcome

        assert isinstance(outcome, Outcome)
        name = names[outcome.run_id]
        if outcome.run_id in evaluated:
            ok = outcome.status == "finished"
            line = f"{name}: evaluated" if ok else f"{name}: {outcome.reason or outcome.status}"
            failed.extend([] if ok else [line])
            note(line)
            return
        where = "" if outcome.trained or outcome.status != "finished" else " (by another submitter)"
        line = f"{name}: {outcome.status}{where}" + (f" ({outcome.reason})" if outcome.reason else "")
        note(line)
        if mlflow:
            _mirror(registry, plan.study, console)

    def note(line: str) -> None:
        if live is not None:  # printed above the live table
            live.console.print(line, markup=False, highlight=False, soft_wrap=True)
        else:  # a plain line as it is: nothing for Rich to render (75 us a line through ``print``)
            console.file.write(line + "\n")

    def go() -> None:
        run_tasks(
            tasks,
            address=address,
            on_poll=on_poll,
            on_done=on_done,
            on_note=note,
            policy=policy,
            registry=registry,
        )

    if live is not None:
        with live:
            go()
    else:
        go()
    if trained:
        console.print(f"{trained} runs done in {time.perf_counter() - started:.0f} s")
    return failed


def _write(console: Console, line: str) -> None:
    console.file.write(line + "\n")
