"""The ``i1lab`` command line (Typer + Rich). Heavy libraries are imported inside commands only."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

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


def _registry_exists() -> bool:
    from i1lab import paths

    url = paths.database_url()
    if url.startswith("sqlite:///"):
        return Path(url.removeprefix("sqlite:///")).is_file()
    return True


@app.command()
def plan(
    studies: Annotated[list[Path], typer.Argument(help="study files (YAML); several are planned together")],
    profile: ProfileOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
) -> None:
    """Validate studies and show the runs they expand to: new, reused or to resume, and their cost.

    Planning never writes anything; it reads the registry (if one exists) to mark runs reused.
    """
    from i1lab.plan import expand, make_plan, report
    from i1lab.spec import load_study

    loaded = [load_study(path) for path in studies]
    expanded = [expand(study, profile) for study in loaded]
    existing = {}
    if _registry_exists():
        from i1lab.registry import Registry

        existing = Registry().existing_runs(v.hash for vs in expanded for v in vs)
    plans = [make_plan(s, vs, existing, profile) for s, vs in zip(loaded, expanded, strict=True)]
    payload = report(plans)
    if as_json:
        sys.stdout.write(json.dumps(payload, indent=2) + "\n")
        return
    from i1lab.display import plan_table

    out.print(plan_table(payload))


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
) -> None:
    """Plan a study, record it in the registry, run what is new, and print its ablation table."""
    from i1lab.submit import submit_study

    submit_study(
        study, profile, address=address, progress=progress, mlflow=mlflow, console=out, budget_hours=budget
    )


@app.command()
def status(
    study: Annotated[str | None, typer.Argument(help="study name (default: all runs)")] = None,
) -> None:
    """Show runs: state, step, and the last reason for failure."""
    from rich.table import Table

    from i1lab.registry import Registry

    registry = Registry()
    table = Table()
    for col in ("id", "run", "hash", "status", "step", "reason"):
        table.add_column(col)
    if study:
        for m in registry.members(study):
            r = m.run
            table.add_row(
                str(r.id), m.name, r.hash[:12], r.status, f"{r.step}/{r.total_steps}", r.reason or ""
            )
    else:
        for r in registry.runs():
            table.add_row(
                str(r.id),
                str(r.spec.get("name", "")),
                r.hash[:12],
                r.status,
                f"{r.step}/{r.total_steps}",
                r.reason or "",
            )
    out.print(table)


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
    from i1lab import report
    from i1lab.registry import Registry

    formats = ("table", "markdown", "latex", "csv", "json")
    if fmt not in formats:
        raise I1labError(f"--format must be one of {', '.join(formats)} (got {fmt!r})")
    members = Registry().members(study)
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
            from i1lab.display import rich_curves

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
        from i1lab.display import rich_table

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
    from i1lab.query import plain, runs_frame

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
    from i1lab.plan import expand
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
        from i1lab.evaluate import evaluate as run_eval

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
    from i1lab.scoring_cli import score_command

    score_command(
        bench, path, as_json=as_json, run=run, step=step, benchmarks_dir=benchmarks_dir, console=out
    )


@sync_app.command("mlflow")
def sync_mlflow(study: Annotated[str | None, typer.Argument(help="one study (default: all)")] = None) -> None:
    """Mirror the registry into MLflow (idempotent)."""
    from i1lab import tracking
    from i1lab.registry import Registry

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
    from i1lab.fetch import fetch

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
    from i1lab.judging import judge_images

    if run is not None and step is None:
        raise I1labError("--run needs --step: the checkpoint step the images belong to")
    score = judge_images(bench, images, judge, step=step or 0, command=command, directory=benchmarks_dir)
    if score is None:
        out.print(f"{bench}: judge none: nothing judged", markup=False)
        return
    if run is not None:
        from i1lab.registry import Registry
        from i1lab.worker import record_scores

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
    from i1lab.importer import import_results as run_import

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
    from i1lab.dashboard_cli import serve_dashboard

    serve_dashboard(host, port)


@app.command("mlflow-ui")
def mlflow_ui(
    port: Annotated[int, typer.Option(help="port to serve on")] = 5000,
    host: Annotated[str, typer.Option(help="interface to bind (127.0.0.1: this machine only)")] = "127.0.0.1",
) -> None:
    """Serve the MLflow UI on the configured MLflow store (compare a study's runs)."""
    from i1lab.dashboard_cli import serve_mlflow_ui

    serve_mlflow_ui(host, port)


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
    from i1lab.forward import forward

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
    from i1lab.generate import generate_images, read_prompts

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


def main() -> None:
    try:
        app()
    except I1labError as exc:
        err.print(f"error: {exc}", markup=False, highlight=False, soft_wrap=True)
        raise SystemExit(2) from None
    except KeyboardInterrupt:
        err.print("interrupted", markup=False)
        raise SystemExit(130) from None
