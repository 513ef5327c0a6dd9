"""``i1lab plan``, ``submit``, ``status``, ``logs``, ``cancel``, ``resume`` and ``schema``: a study from
its file to its runs."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from i1lab import paths
from i1lab.cli.common import AddressOpt, JsonOpt, ProfileOpt, StudyArg, err, out
from i1lab.errors import I1labError


def plan(
    studies: Annotated[list[Path], typer.Argument(help="study files (YAML); several are planned together")],
    profile: ProfileOpt = None,
    as_json: JsonOpt = False,
    resolve: Annotated[
        float | None,
        typer.Option(
            "--resolve",
            help="also say how many prompts (and seeds) resolve a delta of this size (95% confidence, 80% "
            "power), from the per-prompt values the baseline has recorded",
        ),
    ] = None,
    benchmark: Annotated[
        str | None, typer.Option("--benchmark", help="with --resolve: this benchmark (default: the first)")
    ] = None,
    metric: Annotated[
        str | None, typer.Option("--metric", help="with --resolve: this headline metric (default: the first)")
    ] = None,
) -> None:
    """Validate studies and show the runs they expand to: new, reused or to resume, and their cost.

    Planning never writes anything; it reads the registry (if one exists) to mark runs reused.
    """
    if resolve is None and (benchmark or metric):
        raise I1labError("--benchmark and --metric go with --resolve DELTA")
    from i1lab.plan.planner import expand, make_plan, report
    from i1lab.spec import load_study

    loaded = [load_study(path) for path in studies]
    expanded = [expand(study, profile) for study in loaded]
    existing = {}
    if paths.registry_exists():
        from i1lab.registry import Registry

        existing = Registry().existing_runs(v.hash for vs in expanded for v in vs)
    plans = [make_plan(s, vs, existing, profile) for s, vs in zip(loaded, expanded, strict=True)]
    payload = report(plans)
    resolved = []
    if resolve is not None:
        from i1lab.registry import Registry
        from i1lab.report.resolve import resolution

        registry = Registry() if paths.registry_exists() else None
        for study, variants in zip(loaded, expanded, strict=True):
            bases = [(v.name, existing[v.hash].id) for v in variants if v.is_baseline and v.hash in existing]
            ids = [rid for _, rid in bases]
            prompts = registry.prompt_scores(ids) if registry and ids else []
            scores = registry.scores(ids) if registry and ids else []
            resolved.append(
                resolution(study.name, resolve, bases, prompts, scores, benchmark=benchmark, metric=metric)
            )
        if as_json:
            payload = {**payload, "resolve": resolved}
    if as_json:
        sys.stdout.write(json.dumps(payload, indent=2) + "\n")
        return
    from i1lab.report.display import plan_blockers, plan_table

    out.print(plan_table(payload))
    blockers = plan_blockers(payload)
    if blockers:
        out.print("cannot run here:", style="bold")
        for line in blockers:
            out.print(f"  {line}", markup=False, highlight=False, soft_wrap=True)
    if resolved:
        from i1lab.report.resolve import resolution_lines

        for r in resolved:
            for line in resolution_lines(r):
                out.print(line, markup=False, highlight=False, soft_wrap=True)


def submit(
    study: StudyArg,
    profile: ProfileOpt = None,
    address: AddressOpt = None,
    progress: Annotated[bool, typer.Option(help="live progress display")] = True,
    mlflow: Annotated[bool, typer.Option(help="mirror runs to MLflow as they finish")] = True,
    budget: Annotated[
        float | None, typer.Option(help="refuse if the new runs need more accelerator-hours than this")
    ] = None,
    detach: Annotated[
        bool,
        typer.Option(
            "--detach",
            help="submit as a Ray Job that outlives this command (no --address: i1lab's local Ray head)",
        ),
    ] = False,
    priority: Annotated[
        int | None,
        typer.Option(help="priority over other studies competing for slices (default: the file's, 0)"),
    ] = None,
    max_concurrent: Annotated[
        int | None, typer.Option(help="at most this many of the study's runs at once (default: the file's)")
    ] = None,
    global_budget: Annotated[
        float | None,
        typer.Option(
            help="accelerator-hours every run in the registry may use together; no run starts past it",
            envvar="I1LAB_GLOBAL_BUDGET_HOURS",
        ),
    ] = None,
    max_retries: Annotated[int, typer.Option(help="restarts of a run whose worker or node died")] = 3,
    eval_on: Annotated[
        str,
        typer.Option(
            help="where checkpoints are evaluated: auto (a CPU task beside accelerator runs, in-process "
            "for CPU runs), inline, or an evaluation task's resources (cpu[:N], gpu:N, tpu-...)"
        ),
    ] = "auto",
) -> None:
    """Plan a study, record it in the registry, run what is new, and print its ablation table.

    With --detach: validate and plan here, submit the study as a Ray Job and return at once; follow it
    with `i1lab status/logs STUDY`, stop it with `i1lab cancel STUDY`, continue with `i1lab resume`."""
    from i1lab.spec.run import ResourcesSpec

    if eval_on not in ("auto", "inline"):
        try:
            hosts = ResourcesSpec(accelerator=eval_on).slice_hosts
        except ValueError:
            raise I1labError(
                f"--eval-on: {eval_on!r} is not auto, inline, cpu[:N], gpu:N or tpu-v6e-N"
            ) from None
        if hosts > 1:
            raise I1labError(f"--eval-on: {eval_on} is a slice of {hosts} hosts; evaluation runs on one host")
    if max_retries < 0:
        raise I1labError(f"--max-retries must be 0 or more (got {max_retries})")
    if max_concurrent is not None and max_concurrent < 1:
        raise I1labError(f"--max-concurrent must be at least 1 (got {max_concurrent})")
    if detach:  # checked here first: the job would only find bad options on the cluster
        from i1lab.execution.jobs import submit_detached

        options = [] if mlflow else ["--no-mlflow"]
        if budget is not None:
            options += ["--budget", repr(budget)]
        for flag, value in (
            ("--priority", priority),
            ("--max-concurrent", max_concurrent),
            ("--global-budget", global_budget),
            ("--max-retries", max_retries if max_retries != 3 else None),
            ("--eval-on", eval_on if eval_on != "auto" else None),
        ):
            if value is not None:
                options += [flag, str(value)]
        submit_detached(study, profile, address=address, options=options, budget_hours=budget, console=out)
        return
    from i1lab.execution.submit import submit_study

    submit_study(
        study,
        profile,
        address=address,
        progress=progress,
        mlflow=mlflow,
        console=out,
        budget_hours=budget,
        priority=priority,
        max_concurrent=max_concurrent,
        global_budget_hours=global_budget,
        max_retries=max_retries,
        eval_accelerator=eval_on,
    )


def status(
    study: Annotated[str | None, typer.Argument(help="study name (default: the newest runs of all)")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Show runs: state, step/total, throughput, ETA, retries, interruptions, node, failure reason;
    and the state of the study's detached Ray job, if it has one."""
    from i1lab.execution import jobs
    from i1lab.registry import Registry
    from i1lab.registry import status as st

    record = jobs.job_record(study) if study else None
    job = jobs.job_state(record) if record is not None else None
    runs: list[st.RunStatus] = []
    if not paths.registry_exists() and study and record is None:
        raise I1labError(f"no study named {study!r}: there is no registry at {paths.database_url()} yet")
    if paths.registry_exists():
        registry = Registry()
        if study and record is not None and study not in {s.name for s in registry.studies()}:
            runs = []  # submitted detached; the job has not recorded its plan yet
        else:
            runs = st.study_status(registry, study) if study else st.all_status(registry)
    if as_json:
        payload = {
            "study": study,
            "job": None
            if record is None or job is None
            else {**job.model_dump(mode="json"), "submitted_at": record.submitted_at.isoformat()},
            "counts": st.counts(runs),
            "runs": [r.model_dump(mode="json") for r in runs],
        }
        sys.stdout.write(json.dumps(payload, indent=2) + "\n")
        return
    if record is not None and job is not None:
        line = f"job {job.job_id}: {job.status} at {job.address}"
        if job.message and job.status not in ("RUNNING", "PENDING"):
            line += f" — {job.message.strip().splitlines()[-1][:200]}"
        out.print(line, markup=False, highlight=False)
    summary = ", ".join(f"{n} {s}" for s, n in st.counts(runs).items())
    caption = f"{len(runs)} runs: {summary}" if runs else "no runs recorded yet"
    out.print(st.render(runs, title=f"study {study}" if study else None, caption=caption))


def logs(
    target: Annotated[
        str, typer.Argument(help="a run (id, hash prefix or study/name), or a study with a detached job")
    ],
    follow: Annotated[bool, typer.Option("--follow", "-f", help="keep streaming until it ends")] = False,
) -> None:
    """Stream a run's log (scheduling events, logged training steps, errors) or a detached study's
    job output (its `i1lab submit` on the cluster)."""
    from i1lab.execution import jobs

    def write(text: str) -> None:
        sys.stdout.write(text if text.endswith("\n") or not text else text + "\n")
        sys.stdout.flush()

    record = jobs.job_record(target) if "/" not in target else None
    if record is not None:
        jobs.job_logs(record, follow=follow, write=write)
        return
    if not paths.registry_exists():
        raise I1labError(f"no run or detached study matches {target!r}")
    from i1lab.registry import Registry
    from i1lab.registry.logs import stream_run

    registry = Registry()
    if "/" not in target and target in {s.name for s in registry.studies()}:
        names = ", ".join(f"{target}/{m.name}" for m in registry.members(target)[:5])
        raise I1labError(
            f"study {target} was not submitted with --detach, so it has no job log; "
            f"name one of its runs instead, e.g. {names}"
        )
    run = registry.find_run(target)
    err.print(f"run {run.id} ({run.hash[:12]}): {run.status}, {run.workdir}", markup=False, highlight=False)
    stream_run(registry, run, follow=follow, write=write)


def cancel(study: Annotated[str, typer.Argument(help="study name")]) -> None:
    """Stop a study: end its detached Ray job (its runs stop with it) and mark its unfinished runs
    cancelled. Checkpoints are kept; `i1lab resume STUDY` continues from them."""
    from i1lab.execution.jobs import cancel_study

    cancel_study(study, out)


def resume(
    study: Annotated[str, typer.Argument(help="study name")],
    detach: Annotated[
        bool | None,
        typer.Option("--detach/--no-detach", help="as a Ray Job (default: as it was submitted)"),
    ] = None,
    address: Annotated[
        str | None, typer.Option(help="Ray cluster address (default: where it ran)", envvar="RAY_ADDRESS")
    ] = None,
) -> None:
    """Submit a study again from its recorded file and profile: finished runs are reused, cancelled,
    failed or interrupted ones resume from their latest checkpoints."""
    from i1lab.execution.jobs import resume_study

    resume_study(study, detach=detach, address=address, console=out)


def schema() -> None:
    """Print the JSON Schema of a run spec (for editor completion of study files)."""
    from i1lab.spec.run import RunSpec

    sys.stdout.write(json.dumps(RunSpec.model_json_schema(), indent=2) + "\n")
