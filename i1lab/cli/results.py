"""``i1lab compare``, ``query`` and ``sync mlflow``: what the registry holds, as tables and mirrors."""

from __future__ import annotations

import json
import sys
from typing import Annotated

import typer

from i1lab.cli.common import out
from i1lab.cli.search import print_search
from i1lab.errors import I1labError

sync_app = typer.Typer(help="Bring mirrors up to date with the registry.", no_args_is_help=True)


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

    Where per-prompt values are recorded, each delta carries its paired bootstrap 95% interval over
    the prompts both runs share, marked * when it excludes 0 (beyond prompt noise). With several
    baseline seeds (baseline#seed=N), a delta within ±2σ of the baseline's seeds is marked (noise)."""
    from i1lab.registry import Registry
    from i1lab.report import tables as report

    formats = ("table", "markdown", "latex", "csv", "json")
    if fmt not in formats:
        raise I1labError(f"--format must be one of {', '.join(formats)} (got {fmt!r})")
    registry = Registry()
    if not curves and print_search(study, registry, fmt):
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
    prompts = registry.prompt_scores(m.run.id for m in members)
    table = report.ablation_table(study, members, at_step=at_step, all_metrics=all_metrics, prompts=prompts)
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


@sync_app.command("mlflow")
def sync_mlflow(study: Annotated[str | None, typer.Argument(help="one study (default: all)")] = None) -> None:
    """Mirror the registry into MLflow (idempotent)."""
    from i1lab.registry import Registry, tracking

    registry = Registry()
    counts = {study: len(tracking.sync_study(registry, study))} if study else tracking.sync_all(registry)
    for name, n in counts.items():
        out.print(f"{name}: {n} runs mirrored")
