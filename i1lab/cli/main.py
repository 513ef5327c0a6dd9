"""The ``i1lab`` command line (Typer + Rich): the commands in the order ``--help`` lists them, and ``main``.

Each family module holds its commands' handlers; heavy libraries are imported inside handlers only, so
``i1lab --help``, ``plan``, ``query``, ``compare`` and ``status`` start fast. An ``I1labError`` is one
line on stderr and exit status 2; an interrupt, exit status 130.
"""

from __future__ import annotations

import typer

from i1lab.cli import dashboard, evals, imports, results, run, search, study, weights
from i1lab.cli.common import err, out
from i1lab.environ import check_environment
from i1lab.errors import I1labError

__all__ = ["app", "err", "main", "out"]

app = typer.Typer(
    name="i1lab",
    help="Controlled ablation studies of text-to-image diffusion models.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(results.sync_app, name="sync")

for name, handler in (
    ("plan", study.plan),
    ("submit", study.submit),
    ("status", study.status),
    ("compare", results.compare),
    ("query", results.query),
    ("train", run.train),
    ("score", evals.score),
    ("schema", study.schema),
    ("inspect", run.inspect_run),
    ("import-results", imports.import_results),
    ("dashboard", dashboard.dashboard),
    ("mlflow-ui", dashboard.mlflow_ui),
    ("search", search.search),
    ("search-report", search.search_report_cmd),
    ("import-i1", imports.import_i1),
    ("export-i1", imports.export_i1),
    ("weights", weights.weights_cmd),
    ("encode-text", weights.encode_text_cmd),
    ("forward", run.forward_cmd),
    ("generate", run.generate_cmd),
    ("logs", study.logs),
    ("cancel", study.cancel),
    ("resume", study.resume),
):
    app.command(name)(handler)
app.add_typer(evals.evals_app, name="evals")
app.add_typer(weights.vae_app, name="vae")


def main() -> None:
    try:
        check_environment()
        app()
    except I1labError as exc:
        err.print(f"error: {exc}", markup=False, highlight=False, soft_wrap=True)
        raise SystemExit(2) from None
    except KeyboardInterrupt:
        err.print("interrupted", markup=False)
        raise SystemExit(130) from None
