"""``i1lab submit``: plan, record, schedule what is new, mirror to MLflow, print the table."""

from __future__ import annotations

import time
from pathlib import Path

from rich.console import Console
from rich.live import Live

from i1lab import paths
from i1lab.errors import I1labError
from i1lab.hashing import training_hash
from i1lab.plan import Plan, expand, make_plan
from i1lab.registry import PlannedMember, Registry
from i1lab.spec import load_study


def submit_study(
    study_file: Path,
    profile: str | None,
    *,
    address: str | None,
    progress: bool,
    mlflow: bool,
    console: Console,
    budget_hours: float | None = None,
) -> Plan:
    study = load_study(study_file)
    variants = expand(study, profile)  # every spec error surfaces here, before anything is written
    registry = Registry()
    plan = make_plan(study, variants, registry.existing_runs(v.hash for v in variants), profile)
    plan.check_budget(budget_hours)
    members = []
    for r in plan.runs:
        for name in (r.name, *r.aliases):
            members.append(
                PlannedMember(
                    name=name,
                    label=r.label,
                    hash=r.hash,
                    is_baseline=r.is_baseline,
                    baseline=r.baseline,
                    varied=r.varied,
                    spec=r.spec.model_dump(mode="json"),
                    total_steps=r.spec.train.steps,
                    workdir=str(paths.run_dir(training_hash(r.spec))),
                    params=r.cost.params if r.cost else None,
                    accelerator_hours_est=r.cost.accelerator_hours if r.cost else None,
                )
            )
    ids = registry.record_plan(
        plan.study, members, file=str(study_file), profile=profile, description=study.doc.description
    )
    s = plan.summary()
    console.print(
        f"study {plan.study}: {s['runs']} runs — {s['new']} new, {s['reused']} reused, "
        f"{s['resume']} to resume"
    )
    todo = [r for r in plan.runs if r.status != "reused"]
    if todo:
        _run(plan, todo, ids, registry, address=address, progress=progress, mlflow=mlflow, console=console)
    if mlflow:
        _mirror(registry, plan.study, console)
    from i1lab import report
    from i1lab.display import rich_table

    console.print(rich_table(report.ablation_table(plan.study, registry.members(plan.study))))
    unfinished = [
        m.name for m in registry.members(plan.study) if m.run.status not in ("finished", "imported")
    ]
    if unfinished:
        names = ", ".join(unfinished)
        raise I1labError(
            f"{len(unfinished)} run(s) did not finish: {names} (see `i1lab status {plan.study}`)"
        )
    return plan


def _mirror(registry: Registry, study: str, console: Console) -> None:
    from i1lab import tracking

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
    registry: Registry,
    *,
    address: str | None,
    progress: bool,
    mlflow: bool,
    console: Console,
) -> None:
    from i1lab.display import progress_table
    from i1lab.scheduler import Task, run_tasks

    tasks = [
        Task(
            run_id=ids[r.name],
            name=r.name,
            resources=r.spec.resources,
            workdir=str(paths.run_dir(training_hash(r.spec))),
            hash=r.hash,
            parent_hash=r.spec.data.resume_from,
        )
        for r in todo
    ]
    for t in tasks:
        registry.set_status(t.run_id, "queued")
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

    def on_done(outcome: object) -> None:
        from i1lab.worker import Outcome

        assert isinstance(outcome, Outcome)
        if outcome.status != "finished" and registry.run(outcome.run_id).status in ("queued", "running"):
            registry.set_status(outcome.run_id, "failed", outcome.reason)
        name = next(t.name for t in tasks if t.run_id == outcome.run_id)
        line = f"{name}: {outcome.status}" + (f" ({outcome.reason})" if outcome.reason else "")
        if live is not None:
            live.console.print(line)
        else:
            console.print(line, markup=False)
        if mlflow:
            _mirror(registry, plan.study, console)

    if live is not None:
        with live:
            run_tasks(tasks, address=address, on_poll=on_poll, on_done=on_done)
    else:
        run_tasks(tasks, address=address, on_poll=on_poll, on_done=on_done)
    console.print(f"{len(tasks)} runs done in {time.perf_counter() - started:.0f} s")
