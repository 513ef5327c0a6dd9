"""``i1lab search`` and ``search-report``, and ``compare`` of a search: Optuna searches over a study."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from i1lab.cli.common import AddressOpt, ProfileOpt, StudyArg, err, out
from i1lab.errors import I1labError


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
    address: AddressOpt = None,
    mlflow: Annotated[bool, typer.Option(help="mirror the trials' runs to MLflow at the end")] = True,
) -> None:
    """Run a study's search: block with Optuna, each trial a registry run (finished trials are reused).

    The Optuna study lives on the registry's database and is named after the search; re-running the
    same search resumes it. `i1lab compare SEARCH` shows the trials and the best configuration."""
    from i1lab.registry import Registry
    from i1lab.report.search import load_summary, rich_table
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


def print_search(name: str, registry: object, fmt: str) -> bool:
    """``i1lab compare SEARCH``: print a search's trials and best configuration; False if not a search."""
    from i1lab.registry import Registry
    from i1lab.registry.search_storage import search_exists

    assert isinstance(registry, Registry)
    if not search_exists(name, registry.url, registry.engine if registry.dialect != "sqlite" else None):
        return False
    from i1lab.report import search as search_report

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


def search_report_cmd(
    name: Annotated[str, typer.Argument(help="search name (the study it records its trials under)")],
    out_dir: Annotated[
        Path | None, typer.Option("--out", help="folder for the HTML files (default: ./NAME-report)")
    ] = None,
) -> None:
    """Write Optuna's figures of a search (history, parameter importances, slices) as HTML files."""
    from i1lab.report.search import write_report

    folder = out_dir or Path(f"{name}-report")
    for path in write_report(name, folder):
        out.print(str(path), markup=False, highlight=False)
