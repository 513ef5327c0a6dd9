"""``i1lab score`` and ``i1lab evals fetch/judge``: benchmark files, judges and exact scores."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from i1lab.cli.common import JsonOpt, err, out
from i1lab.errors import I1labError

evals_app = typer.Typer(help="Benchmark files and judges.", no_args_is_help=True)


def score(
    bench: Annotated[
        str,
        typer.Argument(
            help="a benchmark of the catalogue (evals/ and $I1LAB_BENCHMARK_FOLDERS), e.g. geneval"
        ),
    ],
    path: Annotated[Path, typer.Argument(help="output file or folder of the benchmark's judge")],
    as_json: JsonOpt = False,
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


@evals_app.command("fetch")
def evals_fetch(
    directory: Annotated[
        Path | None,
        typer.Option(
            "--dir",
            help="benchmarks directory (default: $I1LAB_BENCHMARKS_DIR, else "
            "~/.cache/i1lab/benchmarks/<commit>)",
        ),
    ] = None,
    dpg_questions: Annotated[
        bool, typer.Option("--dpg-questions", help="also fetch DPG's question table dpg_bench.csv")
    ] = False,
    timeout: Annotated[float, typer.Option(help="seconds per download")] = 30.0,
) -> None:
    """Download the official prompt files from their upstream repositories (files present are kept)."""
    import os

    from evals.benchdir import ENV_VAR, default_dir
    from i1lab.evaluation.fetch import fetch

    target = directory or Path(os.environ.get(ENV_VAR) or default_dir())
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


@evals_app.command("setup")
def evals_setup(
    bench: Annotated[
        str, typer.Argument(help="a benchmark with a pinned official environment, e.g. longtext")
    ],
    source: Annotated[
        Path | None,
        typer.Option(help="a local checkout of the official code (default: download the pinned commit)"),
    ] = None,
    stage: Annotated[
        list[str] | None,
        typer.Option(help="set up only this stage (repeatable); default: all whose weights exist"),
    ] = None,
    python: Annotated[
        str | None, typer.Option(help="the interpreter the environment is made from (default: i1lab's)")
    ] = None,
) -> None:
    """Build a benchmark's official judging environment from its pinned specification (see README)."""
    from i1lab.evaluation.environments import setup

    report = setup(bench, source=source, stages=stage or None, python=python or sys.executable)
    for name, why in report.refused.items():
        typer.echo(f"{report.benchmark}: {name} stage not set up: {why}", err=True)
    typer.echo(
        f"{report.benchmark}: environment {report.fingerprint} in {report.root} "
        f"(stages: {', '.join(report.stages)}; {report.seconds:.0f} s)"
    )


@evals_app.command("steps")
def evals_steps(
    run: Annotated[str, typer.Argument(help="a run (id, hash prefix or study/name)")],
    as_json: JsonOpt = False,
) -> None:
    """A run's evaluation steps: checkpoint, benchmark, judge, status, and how each was made (judge,
    environment and weights fingerprints, prompts hash, sampling, seed, node)."""
    import json

    from i1lab.registry import Registry

    registry = Registry()
    found = registry.find_run(run)
    steps = sorted(registry.evaluation_steps([found.id]), key=lambda e: (e.step or 0, e.benchmark or ""))
    rows: list[dict[str, Any]] = [
        {
            "key": e.key,
            "step": e.step,
            "benchmark": e.benchmark,
            "judge": e.judge,
            "status": e.status,
            "finished_at": e.finished_at.isoformat() if e.finished_at else None,
            "provenance": json.loads(e.provenance) if e.provenance else None,
        }
        for e in steps
    ]
    if as_json:
        sys.stdout.write(json.dumps(rows, indent=2) + "\n")
        return
    if not rows:
        typer.echo(f"run {found.id} ({found.hash[:12]}): no evaluation steps recorded")
        return
    for r in rows:
        made = r["provenance"] or {}
        what = ", ".join(f"{k}={v}" for k, v in made.items() if k != "sampling")
        typer.echo(f"step {r['step']} {r['benchmark']} [{r['judge']}] {r['status']} {r['key']}  {what}")


@evals_app.command("judge")
def evals_judge(
    bench: Annotated[
        str,
        typer.Argument(
            help="a benchmark of the catalogue (evals/ and $I1LAB_BENCHMARK_FOLDERS), e.g. geneval"
        ),
    ],
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
    as_json: JsonOpt = False,
    official_summary: Annotated[
        bool,
        typer.Option(
            "--official-summary", help="also score with the official summary code in its environment"
        ),
    ] = False,
) -> None:
    """Judge an existing image folder (e.g. eval/<bench>/step_N/) and score it exactly; optionally record."""
    from i1lab.evaluation.judging import judge_images

    if run is not None and step is None:
        raise I1labError("--run needs --step: the checkpoint step the images belong to")
    score = judge_images(
        bench,
        images,
        judge,
        step=step or 0,
        command=command,
        directory=benchmarks_dir,
        official_summary=official_summary,
    )
    if score is None:
        out.print(f"{bench}: judge none: nothing judged", markup=False)
        return
    if run is not None:
        from i1lab.evaluation.checkpoint import record_scores
        from i1lab.registry import Registry

        registry = Registry()
        detail = f"step {step} by `i1lab evals judge`"
        record_scores(registry, registry.find_run(run).id, [score], detail=detail)
    if as_json:
        sys.stdout.write(score.model_dump_json(indent=2) + "\n")
        return
    value = score.metrics[score.headline]
    out.print(f"{bench} {score.headline} = {value:.6g}  [judge: {score.judge}]", markup=False)
