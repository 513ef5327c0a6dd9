"""A search's trials and best configuration (``i1lab compare SEARCH``, the dashboard) and Optuna's own
figures of it (``i1lab search-report``): optimisation history, parameter importances, slices."""

from __future__ import annotations

import csv
import io
import json
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from i1lab.errors import I1labError

if TYPE_CHECKING:
    import optuna
    from rich.table import Table as RichTable

ATTRS = "i1lab"
PRIMITIVE = (str, int, float, bool, type(None))


class TrialRow(BaseModel):
    number: int
    state: str  # complete, pruned, fail, running, waiting
    params: dict[str, Any]  # dotted path -> spec value
    value: float | None
    terms: dict[str, float]  # objective key -> score at the scored step
    member: str | None  # the registry member (study/member names the run)
    run_hash: str | None
    reused: bool  # its scores were in the registry already when it was asked
    note: str | None = None  # why it failed, or where it was pruned


class SearchSummary(BaseModel):
    name: str
    kind: str  # inference or training
    direction: str
    objective: dict[str, float]
    paths: list[str]
    step: int | None
    checkpoint: str | None
    trials: list[TrialRow]
    best: TrialRow | None


def best_of(rows: list[TrialRow], direction: str) -> TrialRow | None:
    """The best complete trial (lowest number among equals). Pure."""
    done = [r for r in rows if r.state == "complete" and r.value is not None]
    if not done:
        return None
    sign = -1.0 if direction == "maximize" else 1.0
    return min(done, key=lambda r: (sign * (r.value or 0.0), r.number))


def spec_value(dim: dict[str, Any] | None, distribution: Any, value: Any) -> Any:
    """The spec value of a trial's parameter: a categorical dimension's choice at the place of ``value``
    among the distribution's (encoded) choices, which Optuna stores in the dimension's order; any other
    value as it is."""
    if dim is None or dim.get("type") != "categorical":
        return value
    encoded = getattr(distribution, "choices", ())
    choices = dim.get("choices") or []
    for i, c in enumerate(encoded):
        if c == value and type(c) is type(value) and i < len(choices):
            return choices[i]
    return value


def show(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, PRIMITIVE):
        return str(value)
    return json.dumps(value, sort_keys=True)


def summarize(study: optuna.Study) -> SearchSummary:
    """The trials of a search's Optuna study, with their registry runs and the best one."""
    info = study.user_attrs.get(ATTRS) or {}
    dims: dict[str, dict[str, Any]] = dict(info.get("space") or {})
    rows = []
    for t in study.get_trials(deepcopy=False):
        params: dict[str, Any] = {}
        for path, value in t.params.items():
            params[path] = spec_value(dims.get(path), t.distributions.get(path), value)
        attrs = t.user_attrs
        note = attrs.get("reason")
        if attrs.get("pruned_at") is not None:
            note = f"pruned at step {attrs['pruned_at']}"
        rows.append(
            TrialRow(
                number=t.number,
                state=t.state.name.lower(),
                params=params,
                value=t.value if t.state.name == "COMPLETE" else None,
                terms=dict(attrs.get("scores") or {}),
                member=attrs.get("member"),
                run_hash=attrs.get("run_hash"),
                reused=bool(attrs.get("reused")),
                note=note,
            )
        )
    direction = str(info.get("direction") or study.direction.name.lower())
    return SearchSummary(
        name=study.study_name,
        kind=str(info.get("kind") or "?"),
        direction=direction,
        objective=dict(info.get("objective") or {}),
        paths=list(dims) or sorted({p for r in rows for p in r.params}),
        step=info.get("step"),
        checkpoint=info.get("checkpoint"),
        trials=rows,
        best=best_of(rows, direction),
    )


def load_study(name: str, registry_url: str | None = None) -> optuna.Study:
    import optuna

    from i1lab.registry.search_storage import open_storage

    try:
        return optuna.load_study(study_name=name, storage=open_storage(registry_url, readonly=True))
    except KeyError:
        raise I1labError(f"no search named {name!r} (run `i1lab search STUDY` first)") from None


def load_summary(name: str, registry_url: str | None = None) -> SearchSummary:
    return summarize(load_study(name, registry_url))


# --- rendering ----------------------------------------------------------------------------------------
def objective_text(summary: SearchSummary) -> str:
    terms = " + ".join(f"{w:g}×{k}" for k, w in summary.objective.items())
    return f"{summary.direction} {terms}"


def best_text(summary: SearchSummary) -> str:
    b = summary.best
    if b is None:
        return f"{summary.name}: no complete trial yet"
    params = ", ".join(f"{p}={show(v)}" for p, v in b.params.items())
    return f"best: trial {b.number} ({b.member}), objective {b.value:.6g}: {params}"


def records(summary: SearchSummary) -> list[dict[str, Any]]:
    """One flat dict per trial (CSV / markdown rows)."""
    out = []
    best = summary.best.number if summary.best else None
    for r in summary.trials:
        row: dict[str, Any] = {"trial": r.number, "state": r.state, "best": r.number == best}
        row.update({p: r.params.get(p) for p in summary.paths})
        row["objective"] = r.value
        row.update({k: r.terms.get(k) for k in summary.objective})
        row.update({"member": r.member, "run": (r.run_hash or "")[:12], "reused": r.reused, "note": r.note})
        out.append(row)
    return out


def render_json(summary: SearchSummary) -> str:
    return summary.model_dump_json(indent=2)


def render_csv(summary: SearchSummary) -> str:
    rows = records(summary)
    buf = io.StringIO()
    if rows:
        writer = csv.DictWriter(buf, fieldnames=list(rows[0]))
        writer.writeheader()
        for row in rows:
            writer.writerow({k: json.dumps(v) if isinstance(v, dict | list) else v for k, v in row.items()})
    return buf.getvalue()


def cell_text(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else ""
    return show(value)


def render_markdown(summary: SearchSummary) -> str:
    rows = records(summary)
    head = list(rows[0]) if rows else ["trial"]
    lines = [f"**{summary.name}** — {objective_text(summary)}", "", "| " + " | ".join(head) + " |"]
    lines.append("|" + "---|" * len(head))
    for row in rows:
        lines.append("| " + " | ".join(cell_text(row[k]).replace("|", "\\|") for k in head) + " |")
    lines += ["", best_text(summary)]
    return "\n".join(lines)


def rich_table(summary: SearchSummary) -> RichTable:
    from rich.markup import escape
    from rich.table import Table

    where = f"checkpoint {summary.checkpoint}" if summary.checkpoint else f"step {summary.step}"
    table = Table(
        title=escape(f"search {summary.name} — {objective_text(summary)} at {where}"),
        caption=escape(best_text(summary)),
    )
    table.add_column("trial", justify="right")
    table.add_column("state")
    for path in summary.paths:
        table.add_column(escape(path), justify="right")
    table.add_column("objective", justify="right")
    for key in summary.objective:
        table.add_column(escape(key), justify="right")
    table.add_column("run")
    table.add_column("note")
    best = summary.best.number if summary.best else None
    for r in summary.trials:
        mark = "[bold green]★[/] " if r.number == best else ""
        state = r.state + (" (reused)" if r.reused else "")
        table.add_row(
            mark + str(r.number),
            escape(state),
            *(escape(cell_text(r.params.get(p))) for p in summary.paths),
            cell_text(r.value),
            *(cell_text(r.terms.get(k)) for k in summary.objective),
            (r.run_hash or "")[:12],
            escape(r.note or ""),
        )
    return table


# --- Optuna's figures ---------------------------------------------------------------------------------
FIGURES = ("optimization_history", "param_importances", "slice", "parallel_coordinate")


def figures(study: optuna.Study, stems: tuple[str, ...] = FIGURES) -> dict[str, Any]:
    """Optuna's visualisations of a search as Plotly figures, by file stem. A figure Optuna cannot draw
    yet (e.g. importances before two complete trials differ) is a figure that says why."""
    import warnings

    from optuna import visualization as vis

    makers: dict[str, Any] = {
        "optimization_history": vis.plot_optimization_history,
        "param_importances": vis.plot_param_importances,
        "slice": vis.plot_slice,
        "parallel_coordinate": vis.plot_parallel_coordinate,
    }
    out: dict[str, Any] = {}
    for stem in stems:
        make = makers[stem]
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                out[stem] = make(study)
        except (ValueError, RuntimeError, ZeroDivisionError) as exc:
            out[stem] = _message_figure(stem.replace("_", " "), str(exc).splitlines()[0] if str(exc) else "")
    return out


def _message_figure(title: str, message: str) -> Any:
    import plotly.graph_objects as go

    fig = go.Figure()
    fig.update_layout(title=title, xaxis={"visible": False}, yaxis={"visible": False})
    fig.add_annotation(text=f"not available yet: {message}", showarrow=False, x=0.5, y=0.5)
    return fig


def _write_atomic(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        mask = os.umask(0)
        os.umask(mask)
        os.chmod(tmp, 0o666 & ~mask)  # mkstemp creates 0600; the report is an ordinary file
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_report(name: str, out_dir: Path, registry_url: str | None = None) -> list[Path]:
    """Write Optuna's figures of search ``name`` as HTML files in ``out_dir`` (one ``plotly.min.js``
    beside them, so they open offline), plus the trials as ``trials.json``. Returns the files."""
    try:
        import plotly.offline
    except ImportError:
        raise I1labError("search reports need plotly: pip install 'i1lab[dashboard]'") from None
    study = load_study(name, registry_url)
    summary = summarize(study)
    figs = figures(study)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise I1labError(f"cannot create {out_dir}: {exc.strerror or exc}") from None
    written = []
    bundle = out_dir / "plotly.min.js"
    if not bundle.is_file():
        _write_atomic(bundle, plotly.offline.get_plotlyjs())
    for stem, fig in figs.items():
        fig.update_layout(title=f"{name}: {stem.replace('_', ' ')}")
        path = out_dir / f"{stem}.html"
        _write_atomic(path, fig.to_html(include_plotlyjs="plotly.min.js", full_html=True))
        written.append(path)
    path = out_dir / "trials.json"
    _write_atomic(path, render_json(summary) + "\n")
    written.append(path)
    return written
