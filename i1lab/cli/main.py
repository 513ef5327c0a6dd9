"""The ``i1lab`` command line (Typer + Rich). Heavy libraries are imported inside commands only."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from i1lab import paths
from i1lab.errors import I1labError

app = typer.Typer(
    name="i1lab",
    help="Controlled ablation studies of text-to-image diffusion models.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
sync_app = typer.Typer(help="Bring mirrors up to date with the registry.", no_args_is_help=True)
app.add_typer(sync_app, name="sync")

out = Console()
err = Console(stderr=True)

StudyArg = Annotated[Path, typer.Argument(help="study file (YAML)", show_default=False)]
ProfileOpt = Annotated[str | None, typer.Option("--profile", "-p", help="scale profile, e.g. tiny")]


@app.command()
def plan(
    studies: Annotated[list[Path], typer.Argument(help="study files (YAML); several are planned together")],
    profile: ProfileOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
) -> None:
    """Validate studies and show the runs they expand to: new, reused or to resume, and their cost.

    Planning never writes anything; it reads the registry (if one exists) to mark runs reused.
    """
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


@app.command()
def submit(
    study: StudyArg,
    profile: ProfileOpt = None,
    address: Annotated[
        str | None, typer.Option(help="Ray cluster address (default: local)", envvar="RAY_ADDRESS")
    ] = None,
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


@app.command()
def status(
    study: Annotated[str | None, typer.Argument(help="study name (default: the newest runs of all)")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
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


@app.command()
def compare(
    study: Annotated[str, typer.Argument(help="study name")],
    at_step: Annotated[int | None, typer.Option("--at-step", help="compare at this checkpoint step")] = None,
    fmt: Annotated[str, typer.Option("--format", help="table, markdown, latex, csv or json")] = "table",
    all_metrics: Annotated[
        bool, typer.Option("--all-metrics", help="every metric, not only headlines")
    ] = False,
    curves: Annotated[
        bool, typer.Option("--curves", help="each benchmark over checkpoint steps (a step x run table)")
    ] = False,
    runs: Annotated[
        list[str] | None, typer.Option("--run", help="with --curves: only these runs (repeatable)")
    ] = None,
) -> None:
    """The ablation table of a study: each variant's scores and deltas (↑/↓) against its baseline.

    With several baseline seeds (baseline#seed=N), a delta within ±2σ of the baseline's seeds is
    marked (noise)."""
    from i1lab.registry import Registry
    from i1lab.report import tables as report

    formats = ("table", "markdown", "latex", "csv", "json")
    if fmt not in formats:
        raise I1labError(f"--format must be one of {', '.join(formats)} (got {fmt!r})")
    registry = Registry()
    if not curves and _compare_search(study, registry, fmt):
        return
    members = registry.members(study)
    if curves:
        if fmt == "latex":
            raise I1labError("--curves prints table, markdown, csv or json (not latex)")
        items = report.curves(members, runs=runs or None, all_metrics=all_metrics)
        if fmt == "json":
            sys.stdout.write(report.render_curves_json(items) + "\n")
        elif fmt == "csv":
            sys.stdout.write(report.render_curves_csv(items))
        elif fmt == "markdown":
            sys.stdout.write(report.render_curves_markdown(items) + "\n")
        else:
            from i1lab.report.display import rich_curves

            for curve_table in rich_curves(study, items):
                out.print(curve_table)
        return
    if runs:
        raise I1labError("--run selects the runs of --curves")
    table = report.ablation_table(study, members, at_step=at_step, all_metrics=all_metrics)
    if fmt == "json":
        sys.stdout.write(report.render_json(table) + "\n")
    elif fmt == "csv":
        sys.stdout.write(report.render_csv(table))
    elif fmt == "markdown":
        sys.stdout.write(report.render_markdown(table) + "\n")
    elif fmt == "latex":
        sys.stdout.write(report.render_latex(table) + "\n")
    else:
        from i1lab.report.display import rich_table

        out.print(rich_table(table))


@app.command()
def query(
    expr: Annotated[
        str,
        typer.Argument(
            help='filter, e.g. "model.adapter.type = transformer and status = finished"; '
            "= != < <= > >= in (a, b), and / or / not, parentheses; fields: dotted spec paths, status, "
            "study, name, hash, id, step, params, imported, score:BENCHMARK/METRIC\\[@JUDGE]"
        ),
    ],
    metric: Annotated[
        list[str] | None,
        typer.Option("--metric", help="add a score column BENCHMARK/METRIC\\[@JUDGE] (repeatable)"),
    ] = None,
    at_step: Annotated[
        str, typer.Option("--at-step", help="scores at step N, each run's latest step, or its best")
    ] = "latest",
    fmt: Annotated[str, typer.Option("--format", help="table, csv or json")] = "table",
    limit: Annotated[int | None, typer.Option("--limit", help="at most this many runs")] = None,
) -> None:
    """Find runs by their spec fields, status, studies and scores; print them with score columns."""
    from i1lab.registry.query import plain, runs_frame

    if fmt not in ("table", "csv", "json"):
        raise I1labError(f"--format must be table, csv or json (got {fmt!r})")
    frame = runs_frame(expr, metric or (), at_step=at_step, limit=limit)
    if fmt == "json":
        rows = [{k: plain(v) for k, v in rec.items()} for rec in frame.to_dict("records")]
        sys.stdout.write(json.dumps(rows, indent=2, default=str) + "\n")
        return
    if fmt == "csv":
        sys.stdout.write(frame.to_csv(index=False))
        return
    from rich.table import Table

    table = Table()
    for col in frame.columns:
        table.add_column(
            str(col), justify="right" if col in ("id", "step", "params") or "/" in col else "left"
        )
    for rec in frame.to_dict("records"):
        cells = []
        for col, v in rec.items():
            v = plain(v)
            if v is None:
                cells.append("—")
            elif col == "hash":
                cells.append(str(v)[:12])
            elif isinstance(v, float):
                cells.append(f"{v:.4f}")
            else:
                cells.append(str(v))
        table.add_row(*cells)
    out.print(table)
    out.print(f"{len(frame)} runs")


@app.command()
def train(
    study: StudyArg,
    workdir: Annotated[Path, typer.Option("--workdir", help="where checkpoints and metrics go")],
    profile: ProfileOpt = None,
    variant: Annotated[str, typer.Option(help="which run of the study")] = "baseline",
    evaluate: Annotated[bool, typer.Option(help="score checkpoints on the spec's benchmarks")] = True,
) -> None:
    """Train one run of a study in a work directory, without the registry (what a worker runs)."""
    from i1lab.plan.planner import expand
    from i1lab.spec import load_study

    variants = {v.name: v for v in expand(load_study(study), profile)}
    for v in list(variants.values()):
        variants.update({a: v for a in v.aliases})
    if variant not in variants:
        raise I1labError(f"no run named {variant!r} in {study}; runs: {', '.join(variants)}")
    spec = variants[variant].spec
    from i1lab.train.runner import Hooks
    from i1lab.train.runner import train as run_train

    def on_log(m: dict[str, float]) -> None:
        err.print(f"step {int(m['step'])}: loss {m['loss']:.4f} ({m['images_per_s']:.0f} img/s)")

    def on_start(step: int, notes: list[str]) -> None:
        for note in notes:
            err.print(note, markup=False, highlight=False)

    hooks = Hooks(on_log=on_log, on_start=on_start)
    if evaluate:
        from i1lab.evaluation.evaluate import evaluate as run_eval

        def on_eval(step: int, ema: object) -> None:
            for res in run_eval(spec, ema, step, workdir / "eval"):
                err.print(f"step {step}: {res.benchmark} {res.headline} = {res.metrics[res.headline]:.4f}")

        hooks.on_eval = on_eval
    summary = run_train(spec, workdir, hooks)
    out.print(f"finished at step {summary['step']}, loss {summary['loss']:.4f}")


@app.command()
def score(
    bench: Annotated[str, typer.Argument(help="geneval, dpg, prism, cvtg or longtext")],
    path: Annotated[Path, typer.Argument(help="output file or folder of the benchmark's judge")],
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
    run: Annotated[
        str | None, typer.Option(help="record for this run (id, hash prefix or study/name)")
    ] = None,
    step: Annotated[int | None, typer.Option(help="the checkpoint step the outputs belong to")] = None,
    benchmarks_dir: Annotated[
        Path | None, typer.Option(help="official prompt files (default: see README)")
    ] = None,
) -> None:
    """Score a benchmark's per-sample outputs exactly as its authors do; optionally record the result."""
    from i1lab.evaluation.scores import score_command

    score_command(
        bench, path, as_json=as_json, run=run, step=step, benchmarks_dir=benchmarks_dir, console=out
    )


@sync_app.command("mlflow")
def sync_mlflow(study: Annotated[str | None, typer.Argument(help="one study (default: all)")] = None) -> None:
    """Mirror the registry into MLflow (idempotent)."""
    from i1lab.registry import Registry, tracking

    registry = Registry()
    counts = {study: len(tracking.sync_study(registry, study))} if study else tracking.sync_all(registry)
    for name, n in counts.items():
        out.print(f"{name}: {n} runs mirrored")


@app.command()
def schema() -> None:
    """Print the JSON Schema of a run spec (for editor completion of study files)."""
    from i1lab.spec.run import RunSpec

    sys.stdout.write(json.dumps(RunSpec.model_json_schema(), indent=2) + "\n")


evals_app = typer.Typer(help="Benchmark files and judges.", no_args_is_help=True)
app.add_typer(evals_app, name="evals")


@evals_app.command("fetch")
def evals_fetch(
    directory: Annotated[
        Path | None,
        typer.Option(
            "--dir", help="benchmarks directory (default: $I1LAB_BENCHMARKS_DIR or ../shared/benchmarks)"
        ),
    ] = None,
    dpg_questions: Annotated[
        bool, typer.Option("--dpg-questions", help="also fetch DPG's question table dpg_bench.csv")
    ] = False,
    timeout: Annotated[float, typer.Option(help="seconds per download")] = 30.0,
) -> None:
    """Download the official prompt files from their upstream repositories (files present are kept)."""
    import os

    from evals.benchdir import DEFAULT_RELATIVE, ENV_VAR, REPO_ROOT
    from i1lab.evaluation.fetch import fetch

    target = directory or Path(os.environ.get(ENV_VAR) or (REPO_ROOT / DEFAULT_RELATIVE).resolve())
    report = fetch(target, include_optional=dpg_questions, timeout=timeout)
    for note in report.notes:
        err.print(note, markup=False)
    if report.complete:
        out.print(
            f"{target}: complete ({len(report.present)} files present, nothing to download)", markup=False
        )
    else:
        out.print(
            f"{target}: downloaded {len(report.downloaded)} files ({len(report.present)} already present)",
            markup=False,
        )


@evals_app.command("judge")
def evals_judge(
    bench: Annotated[str, typer.Argument(help="geneval, dpg, prism, cvtg or longtext")],
    images: Annotated[Path, typer.Argument(help="image folder in the benchmark's official layout")],
    judge: Annotated[str, typer.Option(help="ocr[:engine], official or vlm:/weights")] = "ocr",
    command: Annotated[str | None, typer.Option(help="official command template")] = None,
    run: Annotated[
        str | None, typer.Option(help="record for this run (id, hash prefix or study/name)")
    ] = None,
    step: Annotated[int | None, typer.Option(help="the checkpoint step of the images")] = None,
    benchmarks_dir: Annotated[
        Path | None, typer.Option(help="official prompt files (default: see README)")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
) -> None:
    """Judge an existing image folder (e.g. eval/<bench>/step_N/) and score it exactly; optionally record."""
    from i1lab.evaluation.judging import judge_images

    if run is not None and step is None:
        raise I1labError("--run needs --step: the checkpoint step the images belong to")
    score = judge_images(bench, images, judge, step=step or 0, command=command, directory=benchmarks_dir)
    if score is None:
        out.print(f"{bench}: judge none: nothing judged", markup=False)
        return
    if run is not None:
        from i1lab.execution.worker import record_scores
        from i1lab.registry import Registry

        registry = Registry()
        record_scores(registry, registry.find_run(run).id, [score])
    if as_json:
        sys.stdout.write(score.model_dump_json(indent=2) + "\n")
        return
    value = score.metrics[score.headline]
    out.print(f"{bench} {score.headline} = {value:.6g}  [judge: {score.judge}]", markup=False)


@app.command("inspect")
def inspect_run(
    workdir: Annotated[Path, typer.Argument(help="a run's work directory", show_default=False)],
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
) -> None:
    """The newest usable checkpoint of a run: step, data position, sha256 of params, EMA and optimizer."""
    from i1lab.train.inspection import inspect_workdir, render

    info = inspect_workdir(workdir)
    if as_json:
        sys.stdout.write(json.dumps(info, indent=2) + "\n")
    else:
        sys.stdout.write(render(info) + "\n")


@app.command("import-results")
def import_results(
    path: Annotated[Path, typer.Argument(help="JSON lines: one run trained elsewhere per line")],
) -> None:
    """Record results of runs trained elsewhere (status imported), comparable like trained ones.

    Each line: {"study", "name", "baseline", "spec": {dotted.key: value}, "params", "scores":
    [{"benchmark", "metric", "value", "step", "judge"}]}. All lines or none are recorded."""
    from i1lab.registry.importer import import_results as run_import

    summary = run_import(path)
    out.print(
        f"imported {summary.lines} lines: {summary.runs} runs, {summary.scores} scores "
        f"into {', '.join(summary.studies)}",
        markup=False,
        highlight=False,
    )


@app.command()
def dashboard(
    port: Annotated[int, typer.Option(help="port to serve on")] = 8050,
    host: Annotated[
        str, typer.Option(help="interface to bind (127.0.0.1: this machine only; 0.0.0.0: every one)")
    ] = "127.0.0.1",
) -> None:
    """Serve the web dashboard over the registry (read-only): studies, ablation tables, curves, samples."""
    from i1lab.cli.dashboard import serve_dashboard

    serve_dashboard(host, port)


@app.command("mlflow-ui")
def mlflow_ui(
    port: Annotated[int, typer.Option(help="port to serve on")] = 5000,
    host: Annotated[str, typer.Option(help="interface to bind (127.0.0.1: this machine only)")] = "127.0.0.1",
) -> None:
    """Serve the MLflow UI on the configured MLflow store (compare a study's runs)."""
    from i1lab.cli.dashboard import serve_mlflow_ui

    serve_mlflow_ui(host, port)


@app.command()
def search(
    study: StudyArg,
    profile: ProfileOpt = None,
    checkpoint: Annotated[
        str | None,
        typer.Option(
            help="RUN@STEP: sample and score this checkpoint in every trial, without training (searches "
            "over sampling.* only); RUN is a run id, hash prefix or study/name; @STEP defaults to its last"
        ),
    ] = None,
    trials: Annotated[int | None, typer.Option(help="trials in all (default: search.trials)")] = None,
    parallel: Annotated[int | None, typer.Option(help="trials at once (default: search.parallel)")] = None,
    address: Annotated[
        str | None, typer.Option(help="Ray cluster address (default: local)", envvar="RAY_ADDRESS")
    ] = None,
    mlflow: Annotated[bool, typer.Option(help="mirror the trials' runs to MLflow at the end")] = True,
) -> None:
    """Run a study's search: block with Optuna, each trial a registry run (finished trials are reused).

    The Optuna study lives on the registry's database and is named after the search; re-running the
    same search resumes it. `i1lab compare SEARCH` shows the trials and the best configuration."""
    from i1lab.registry import Registry
    from i1lab.search.report import load_summary, rich_table
    from i1lab.search.run import run_search
    from i1lab.search.setup import prepare

    registry = Registry()
    setup = prepare(
        study, profile, checkpoint=checkpoint, trials=trials, parallel=parallel, registry=registry
    )
    where = f"checkpoint {setup.checkpoint.ref()}" if setup.checkpoint else "training each trial"
    out.print(
        f"search {setup.name}: {setup.search.trials} trials, {setup.search.parallel} at once, "
        f"{setup.search.sampler} sampler, {where}",
        markup=False,
        highlight=False,
    )
    result = run_search(
        setup, registry=registry, address=address, on_event=lambda line: out.print(line, markup=False)
    )
    if mlflow:
        from i1lab.registry import tracking

        try:
            tracking.sync_study(registry, setup.name)
        except Exception as exc:
            err.print(f"MLflow mirror not updated ({type(exc).__name__}: {exc}); run `i1lab sync mlflow`")
    out.print(rich_table(load_summary(setup.name, registry.url)))
    out.print(
        f"{result.complete} complete, {result.pruned} pruned, {result.failed} failed; this run: "
        f"{result.ran} started, {result.reused} reused from the registry, {result.resumed} finished before",
        markup=False,
        highlight=False,
    )
    if result.complete == 0:
        raise I1labError(f"search {setup.name}: no trial completed (see `i1lab compare {setup.name}`)")


def _compare_search(name: str, registry: object, fmt: str) -> bool:
    """``i1lab compare SEARCH``: print a search's trials and best configuration; False if not a search."""
    from i1lab.registry import Registry
    from i1lab.search.storage import search_exists

    assert isinstance(registry, Registry)
    if not search_exists(name, registry.url, registry.engine if registry.dialect != "sqlite" else None):
        return False
    from i1lab.search import report as search_report

    summary = search_report.load_summary(name, registry.url)
    if fmt == "json":
        sys.stdout.write(search_report.render_json(summary) + "\n")
    elif fmt == "csv":
        sys.stdout.write(search_report.render_csv(summary))
    elif fmt == "markdown":
        sys.stdout.write(search_report.render_markdown(summary) + "\n")
    elif fmt == "latex":
        raise I1labError(f"{name} is a search: --format table, markdown, csv or json")
    else:
        out.print(search_report.rich_table(summary))
    return True


@app.command("search-report")
def search_report_cmd(
    name: Annotated[str, typer.Argument(help="search name (the study it records its trials under)")],
    out_dir: Annotated[
        Path | None, typer.Option("--out", help="folder for the HTML files (default: ./NAME-report)")
    ] = None,
) -> None:
    """Write Optuna's figures of a search (history, parameter importances, slices) as HTML files."""
    from i1lab.search.report import write_report

    folder = out_dir or Path(f"{name}-report")
    for path in write_report(name, folder):
        out.print(str(path), markup=False, highlight=False)


@app.command("import-i1")
def import_i1(
    config: Annotated[
        Path, typer.Argument(help="an i1 reference config (jax/configs/**.py); it is parsed, never run")
    ],
    out: Annotated[
        Path | None,
        typer.Option(help="the study file to write (default: print it); with --checkpoint, the run folder"),
    ] = None,
    checkpoint: Annotated[
        Path | None, typer.Option(help="a reference checkpoint (.npz, also with its -<step> suffix, or .pt)")
    ] = None,
) -> None:
    """Import an i1 reference config as a single-run study, and optionally convert its checkpoint.

    Without --checkpoint: writes the equivalent study YAML (every knob mapped or listed; an unknown knob
    is an error). With --checkpoint: converts the checkpoint into a run folder (spec.json + an Orbax
    checkpoint) that `i1lab forward`, `i1lab generate` and training read, and reports every tensor."""
    from i1lab.i1import.knobs import import_config

    imported = import_config(config)
    text = imported.study_yaml()
    if checkpoint is None:
        if out is None:
            sys.stdout.write(text)
        else:
            imported.write(out)
        where = f"wrote {out}" if out is not None else str(config)
        err.print(f"{where}: {imported.summary()}", markup=False, highlight=False, soft_wrap=True)
        return
    from i1lab.i1import.convert import convert_checkpoint, step_of

    step = step_of(checkpoint)
    target = out or Path(f"{imported.name}-step{step if step is not None else 'final'}")
    report = convert_checkpoint(imported.spec, checkpoint, target, study_yaml=text)
    sys.stdout.write(report.text() + "\n")


@app.command("weights")
def weights_cmd(
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
) -> None:
    """What the weights directory holds: every text encoder and VAE of the catalogue, present, missing
    or mismatched, with the folder read (or looked for) and its feature width / latent channels."""
    from i1lab.plan.weights import inventory, weights_dir

    rows = inventory()
    if as_json:
        payload = {"weights_dir": str(weights_dir()), "weights": [r.model_dump() for r in rows]}
        sys.stdout.write(json.dumps(payload, indent=2) + "\n")
        return
    from rich.table import Table

    table = Table(title=f"weights: {weights_dir()}")
    for col in ("kind", "name", "state", "D / ch", "folder or reason"):
        table.add_column(col, overflow="fold")
    styles = {"present": "green", "builtin": "green", "missing": "yellow", "mismatched": "red"}
    for r in rows:
        where = r.detail if r.state == "mismatched" else (r.path or "built in")
        dim = str(r.dim) if r.dim is not None and r.state != "missing" else "—"
        table.add_row(r.kind, r.name, f"[{styles[r.state]}]{r.state}[/]", dim, where)
    out.print(table)


@app.command("encode-text")
def encode_text_cmd(
    encoder: Annotated[str, typer.Argument(help="catalogue name, e.g. T5Gemma, minilm, clip-large")],
    captions: Annotated[Path, typer.Option(help="text file, one caption per line")],
    out_path: Annotated[Path, typer.Option("--out", help="output .npz: features (N, L, D), mask (N, L)")],
    weights: Annotated[
        Path | None,
        typer.Option(help="the encoder's Hugging Face-format folder (default: the weights dir's)"),
    ] = None,
    token_len: Annotated[
        int | None, typer.Option(help="tokens per caption (default: the catalogue's)")
    ] = None,
    dtype: Annotated[str, typer.Option(help="bfloat16 (as training) or float32")] = "bfloat16",
) -> None:
    """One text encoder's features for a file of captions: last hidden state, float32, and the mask."""
    from i1lab.evaluation.frozen import encode_text

    shape = encode_text(encoder, captions, out_path, weights=weights, token_len=token_len, dtype=dtype)
    out.print(f"wrote {out_path}: features {shape}, mask {shape[:2]}")


vae_app = typer.Typer(help="A VAE on its own: images to latents and back.", no_args_is_help=True)
app.add_typer(vae_app, name="vae")

VaeWeightsOpt = Annotated[
    Path | None,
    typer.Option("--weights", help="the VAE's diffusers-format folder (default: the weights dir's)"),
]
VaeInOpt = Annotated[Path, typer.Option("--in", help="input .npz")]
VaeOutOpt = Annotated[Path, typer.Option("--out", help="output .npz")]


@vae_app.command("encode")
def vae_encode(
    vae: Annotated[str, typer.Argument(help="flux2, flux, qwenimage or identity")],
    inputs: VaeInOpt,
    out_path: VaeOutOpt,
    weights: VaeWeightsOpt = None,
) -> None:
    """``images`` (N, H, W, 3) uint8 -> ``latents`` (N, C, H/8, W/8) float32, normalised as the model sees
    them (posterior mean)."""
    from i1lab.evaluation.frozen import vae_code

    shape = vae_code("encode", vae, inputs, out_path, weights=weights)
    out.print(f"wrote {out_path}: latents {shape}")


@vae_app.command("moments")
def vae_moments(
    vae: Annotated[str, typer.Argument(help="flux2, flux or qwenimage")],
    inputs: VaeInOpt,
    out_path: VaeOutOpt,
    weights: VaeWeightsOpt = None,
) -> None:
    """``images`` (N, H, W, 3) uint8 -> ``moments`` (N, 2C, H/8, W/8) float32: the raw posterior mean and
    log-variance, what a WebDataset sample stores as ``KEY.latents.<vae>.<resolution>.npy`` so that
    training samples the posterior from it instead of running the encoder."""
    from i1lab.evaluation.frozen import vae_code

    shape = vae_code("moments", vae, inputs, out_path, weights=weights)
    out.print(f"wrote {out_path}: moments {shape}")


@vae_app.command("decode")
def vae_decode(
    vae: Annotated[str, typer.Argument(help="flux2, flux, qwenimage or identity")],
    inputs: VaeInOpt,
    out_path: VaeOutOpt,
    weights: VaeWeightsOpt = None,
) -> None:
    """``latents`` (N, C, h, w) normalised -> ``images`` (N, 8h, 8w, 3) uint8."""
    from i1lab.evaluation.frozen import vae_code

    shape = vae_code("decode", vae, inputs, out_path, weights=weights)
    out.print(f"wrote {out_path}: images {shape}")


@app.command("forward")
def forward_cmd(
    checkpoint: Annotated[Path, typer.Argument(help="a run folder or one of its checkpoints/<step> folders")],
    inputs: Annotated[
        Path, typer.Option("--inputs", help=".npz with x (B,C,h,w), t (B,), text (B,L,D), mask (B,L)")
    ],
    out: Annotated[Path, typer.Option("--out", help=".npz to write the velocity v (B,C,h,w) to")],
    weights: Annotated[str, typer.Option(help="ema or params")] = "ema",
) -> None:
    """Apply the model once to given arrays and save the predicted velocity `v` (deterministic)."""
    from i1lab.evaluation.forward import forward

    if weights not in ("ema", "params"):
        raise I1labError(f"--weights must be ema or params, not {weights!r}")
    step, shape = forward(checkpoint, inputs, out, weights)  # type: ignore[arg-type]
    out_shape = "x".join(map(str, shape))
    err.print(
        f"wrote {out}: v {out_shape} from step {step} ({weights} weights)", markup=False, highlight=False
    )


@app.command("generate")
def generate_cmd(
    checkpoint: Annotated[Path, typer.Argument(help="a run folder or one of its checkpoints/<step> folders")],
    prompt: Annotated[list[str] | None, typer.Option("--prompt", help="a prompt (repeatable)")] = None,
    prompts: Annotated[
        Path | None, typer.Option("--prompts", help="prompts file: one per line, or .jsonl")
    ] = None,
    out: Annotated[Path, typer.Option(help="folder for the PNGs")] = Path("samples"),
    cfg_scale: Annotated[float | None, typer.Option(help="CFG scale w (default: the run's)")] = None,
    cfg_rescale: Annotated[float | None, typer.Option(help="CFG rescale φ (default: the run's)")] = None,
    steps: Annotated[int | None, typer.Option(help="Euler steps (default: the run's)")] = None,
    seed: Annotated[int | None, typer.Option(help="noise seed (default: the run's sampling seed)")] = None,
    size: Annotated[int | None, typer.Option(help="image size in pixels (default: the trained one)")] = None,
    batch_size: Annotated[int, typer.Option(help="images sampled together")] = 8,
) -> None:
    """Generate one image per prompt from a checkpoint (EMA weights) into a folder of PNGs."""
    from i1lab.evaluation.generate import generate_images, read_prompts

    texts = read_prompts(prompt, prompts)
    result = generate_images(
        checkpoint,
        texts,
        out,
        cfg_scale=cfg_scale,
        cfg_rescale=cfg_rescale,
        steps=steps,
        seed=seed,
        size=size,
        batch_size=batch_size,
        console=err,
    )
    err.print(
        f"wrote {len(result.files)} images to {result.folder} (step {result.step})",
        markup=False,
        highlight=False,
        soft_wrap=True,
    )


@app.command()
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


@app.command()
def cancel(study: Annotated[str, typer.Argument(help="study name")]) -> None:
    """Stop a study: end its detached Ray job (its runs stop with it) and mark its unfinished runs
    cancelled. Checkpoints are kept; `i1lab resume STUDY` continues from them."""
    from i1lab.execution.jobs import cancel_study

    cancel_study(study, out)


@app.command()
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


def main() -> None:
    try:
        app()
    except I1labError as exc:
        err.print(f"error: {exc}", markup=False, highlight=False, soft_wrap=True)
        raise SystemExit(2) from None
    except KeyboardInterrupt:
        err.print("interrupted", markup=False)
        raise SystemExit(130) from None
