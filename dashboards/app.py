"""The dashboard: a Dash app over the registry (read-only; see ``dashboards.data``).

Pages:

* ``/`` — every study: progress (finished / total runs), the runs by status, and cost (accelerator-hours
  planned from the runs' specs, and used so far);
* ``/study/<name>`` — one study: the ablation table (value, delta vs the baseline with an arrow, and the
  seed-noise band when the baseline has several seeds), benchmark-vs-step curves of the chosen runs, every
  metric of a benchmark (its categories), sample images of the same prompts across the chosen variants,
  and links to each run's page (and the study's run comparison) in the MLflow UI; for a search
  (``i1lab search``), its trials, best configuration and optimisation history first.

Each page is built on the server in one callback, so it arrives complete; the controls of a study page
update their own part only. Start it with ``i1lab dashboard`` (``create_app`` for tests and WSGI servers).
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Callable, Sequence
from html import escape
from pathlib import Path
from typing import Any

from dash import Dash, Input, Output, State, dcc, html
from dash.exceptions import DependencyException
from flask import Response, abort, request, send_file
from flask.typing import ResponseReturnValue

from dashboards import figures, plotly_bundle
from dashboards.data import (
    Mlflow,
    SampleGrid,
    Source,
    StudyPage,
    StudySummary,
    column_key,
)
from i1lab.errors import I1labError
from i1lab.report.tables import NOISE_SIGMAS, Cell, Table, fmt_params, fmt_value

ASSETS = Path(__file__).parent / "assets"
LATEST = "latest"


# --- formatting ------------------------------------------------------------------------------------
def fmt_hours(hours: float | None) -> str:
    if hours is None:
        return "—"
    if hours >= 100:
        return f"{hours:,.0f}"
    return f"{hours:.2f}" if hours >= 0.01 else f"{hours:.1e}"


def study_href(name: str) -> str:
    return "/study/" + urllib.parse.quote(name, safe="")


def image_href(run_id: int, benchmark: str, step: int, filename: str) -> str:
    return f"/images/{run_id}/{urllib.parse.quote(benchmark, safe='')}/{step}/{filename}"


def arrow(delta: float) -> str:
    return "↑" if delta > 0 else "↓" if delta < 0 else "="


# --- the studies page ------------------------------------------------------------------------------
def progress_bar(summary: StudySummary) -> html.Div:
    pct = 100 * summary.progress
    return html.Div(
        [
            html.Div(className="bar", children=html.Div(className="fill", style={"width": f"{pct:.0f}%"})),
            html.Span(f"{summary.done}/{summary.runs}", className="count"),
        ],
        className="progress",
        title=f"{summary.done} of {summary.runs} runs finished",
    )


def studies_page(source: Source) -> html.Div:
    studies = source.studies()
    if not studies:
        return html.Div(
            [html.H2("Studies"), html.P("The registry has no study yet: run one with i1lab submit.")]
        )
    head = [
        "study",
        "profile",
        "progress",
        "runs by status",
        "accelerator-hours (planned)",
        "used",
        "updated",
    ]
    rows = []
    for s in studies:
        statuses = ", ".join(f"{n} {k}" for k, n in sorted(s.by_status.items()))
        planned = fmt_hours(s.est_hours) + (f" (+{s.uncosted} not costed)" if s.uncosted else "")
        rows.append(
            html.Tr(
                [
                    html.Td(
                        [
                            dcc.Link(s.name, href=study_href(s.name), className="study-link"),
                            html.Div(s.description or "", className="muted"),
                        ]
                    ),
                    html.Td(s.profile or "—"),
                    html.Td(progress_bar(s)),
                    html.Td(statuses),
                    html.Td(planned, className="num"),
                    html.Td(fmt_hours(s.used_hours), className="num"),
                    html.Td(s.updated_at.strftime("%Y-%m-%d %H:%M")),
                ]
            )
        )
    return html.Div(
        [
            html.H2("Studies"),
            html.Table(
                [html.Thead(html.Tr([html.Th(h) for h in head])), html.Tbody(rows)],
                id="studies",
                className="grid",
            ),
        ]
    )


# --- the ablation table ----------------------------------------------------------------------------
def _tag(name: str, body: str = "", **attrs: str | None) -> str:
    """An HTML element; attribute values and nothing else are escaped here (bodies are built escaped)."""
    rendered = "".join(
        f' {k.rstrip("_").replace("_", "-")}="{escape(v, quote=True)}"'
        for k, v in attrs.items()
        if v is not None
    )
    return f"<{name}{rendered}>{body}</{name}>"


def cell_html(cell: Cell) -> str:
    parts = [_tag("span", escape(fmt_value(cell.value)), class_="value")]
    title = f"step {cell.step}" if cell.step is not None else "no score"
    if cell.delta is not None:
        kind = "up" if cell.delta > 0 else "down" if cell.delta < 0 else "flat"
        classes = f"delta {kind}" + (" noise" if cell.noise else "")
        parts.append(_tag("span", f"{cell.delta:+.4f} {arrow(cell.delta)}", class_=classes))
    if cell.sigma is not None:
        band = NOISE_SIGMAS * cell.sigma
        parts.append(_tag("span", f"±{band:.4f}", class_="band"))
        verdict = "within" if cell.noise else "outside"
        title += f"; seed-noise band ±{NOISE_SIGMAS:g}σ = ±{band:.4f} (σ = {cell.sigma:.4f}): {verdict} noise"
    return _tag("td", " ".join(parts), class_="metric", title=title)


def ablation_html(table: Table, page: StudyPage, mlflow: Mlflow, experiment_id: str | None) -> str:
    """The ablation table as one HTML string: a 300-run study renders in the browser at once, where
    thousands of Dash components would take seconds."""
    variants = {v.name: v for v in page.variants}
    head = "".join(_tag("th", h) for h in ("variant", "status", "step", "params", "acc-h"))
    head += "".join(
        _tag("th", escape(c.title) + _tag("div", escape(c.judge), class_="judge"), class_="metric")
        for c in table.columns
    )
    head += _tag("th", "MLflow")
    body = []
    for row in table.rows:
        v = variants.get(row.name)
        name = _tag("span", escape(row.name), class_="name")
        if row.label and row.label != row.name:
            name += _tag("div", escape(row.label), class_="muted")
        link = "—"
        if v is not None and v.mlflow_run_id:
            link = _tag("a", "run ↗", href=mlflow.run_url(v.mlflow_run_id, experiment_id), target="_blank")
        cells = [
            _tag("td", name),
            _tag(
                "td",
                _tag("span", escape(row.status), class_=f"status {row.status}"),
                title=(v.reason or None) if v else None,
            ),
            _tag("td", f"{row.step}/{row.total_steps}", class_="num"),
            _tag("td", escape(fmt_params(row.params)), class_="num"),
            _tag("td", fmt_hours(v.est_hours if v else None), class_="num"),
            *[cell_html(c) for c in row.cells],
            _tag("td", link),
        ]
        body.append(
            _tag("tr", "".join(cells), class_="baseline" if row.is_baseline else "variant", data_run=row.name)
        )
    return _tag(
        "table",
        _tag("thead", _tag("tr", head)) + _tag("tbody", "".join(body)),
        id="ablation-table",
        class_="grid",
    )


def ablation_note(table: Table) -> str:
    noise = any(c.sigma is not None for r in table.rows for c in r.cells)
    note = "Δ vs the variant's baseline at the same step" + (
        "." if table.at_step == LATEST else f"; scores at step {table.at_step}."
    )
    if noise:
        note += (
            f" ± is the seed-noise band ({NOISE_SIGMAS:g}σ of the baseline's seeds); a grey delta lies "
            "within it."
        )
    return note if table.columns else "No scores yet."


# Large tables arrive as HTML strings (built escaped on the server) in a store ``<slot>-html`` and are
# put into their slot ``<slot>`` by the browser (``innerHTML``): one native parse instead of thousands of
# React components, which take seconds for a 300-run study.
HTML_SLOTS = ("ablation", "samples")


def set_html(slot: str) -> str:
    return f"""
function(content) {{
    const el = document.getElementById("{slot}");
    if (el) {{ el.innerHTML = content || ""; }}
    return window.dash_clientside.no_update;
}}
"""


def html_slot(slot: str, content: str) -> list[Any]:
    return [dcc.Store(id=f"{slot}-html", data=content), html.Div(id=slot, className="html-slot")]


def ablation_payload(table: Table, page: StudyPage, mlflow: Mlflow, experiment_id: str | None) -> str:
    note = _tag("p", escape(ablation_note(table)), class_="muted")
    return ablation_html(table, page, mlflow, experiment_id) + note


# --- samples ---------------------------------------------------------------------------------------
def samples_html(grid: SampleGrid) -> str:
    """The same prompts (rows) across variants (columns); images load lazily as they scroll into view."""
    if grid.step is None:
        return _tag(
            "div",
            _tag("p", escape(f"No {grid.benchmark} images of these runs on this machine."), class_="muted"),
            id="sample-grid",
        )

    def img(variant: str, filename: str, alt: str, cls: str) -> str:
        src = image_href(grid.run_ids[variant], grid.benchmark, grid.step or 0, filename)
        return f'<img src="{escape(src)}" class="{cls}" alt="{escape(alt)}" loading="lazy">'

    head = _tag("th", "prompt") + "".join(_tag("th", escape(v)) for v in grid.variants)
    rows = []
    for p in grid.prompts:
        cells = [_tag("td", escape(p.prompt), class_="prompt")]
        for v in grid.variants:
            ks = p.images.get(v, [])
            imgs = "".join(img(v, f"{p.index}-{k}.png", f"{v}: {p.prompt} ({k})", "sample") for k in ks)
            cells.append(_tag("td", imgs or "—"))
        rows.append(_tag("tr", "".join(cells)))
    if not rows:  # no per-prompt layout: the runs' sample grids side by side
        cells = [_tag("td", "sample grid", class_="prompt")]
        cells += [
            _tag("td", img(v, "grid.png", f"{v} sample grid", "grid-image") if grid.grids.get(v) else "—")
            for v in grid.variants
        ]
        rows.append(_tag("tr", "".join(cells)))
    caption = _tag("p", escape(f"{grid.benchmark} at step {grid.step}"), class_="muted")
    table = _tag("table", _tag("thead", _tag("tr", head)) + _tag("tbody", "".join(rows)), class_="samples")
    return _tag("div", caption + table, id="sample-grid")


# --- the study page --------------------------------------------------------------------------------
def _options(values: Sequence[str]) -> list[dict[str, str]]:
    return [{"label": v, "value": v} for v in values]


def _step_options(steps: Sequence[int]) -> list[dict[str, Any]]:
    return [{"label": "latest", "value": LATEST}] + [{"label": str(s), "value": s} for s in steps]


def _section(title: str, *children: Any) -> html.Section:
    return html.Section([html.H3(title), *children])


def search_section(source: Source, name: str) -> list[Any]:
    """For a search (``i1lab search``): its trials, best configuration and Optuna's optimisation
    history; nothing for other studies."""
    from i1lab.registry.search_storage import search_exists
    from i1lab.report.search import best_text, cell_text, figures, load_study, records, summarize

    reg = source.registry
    if not search_exists(name, reg.url, reg.engine if reg.dialect != "sqlite" else None):
        return []
    study = load_study(name, reg.url)
    summary = summarize(study)
    rows = records(summary)
    head = [k for k in (rows[0] if rows else {}) if k not in ("best", "member")]
    body = [
        html.Tr([html.Td(cell_text(r[k])) for k in head], className="best" if r["best"] else None)
        for r in rows
    ]
    history = figures(study, ("optimization_history",))["optimization_history"]
    return [
        _section(
            "Search",
            html.P(best_text(summary), id="search-best"),
            html.Table(
                [html.Thead(html.Tr([html.Th(k) for k in head])), html.Tbody(body)], id="search-trials"
            ),
            dcc.Graph(id="search-history", figure=history, config={"displaylogo": False, "responsive": True}),
        )
    ]


def study_page(source: Source, name: str) -> html.Div:
    page = source.study(name)
    s = page.summary
    exp = source.experiment_id(name)
    mlflow = source.mlflow
    links: list[Any] = []
    if exp is not None:
        mirrored = [v.mlflow_run_id for v in page.variants if v.mlflow_run_id]
        links = [
            html.A("MLflow experiment ↗", href=mlflow.experiment_url(exp), target="_blank"),
            " · ",
            html.A(
                "compare runs in MLflow ↗",
                href=mlflow.compare_url(exp, mirrored),
                target="_blank",
                id="mlflow-compare",
            ),
        ]
    else:
        links = [html.Span("not mirrored to MLflow yet (i1lab sync mlflow)", className="muted")]
    runs = page.default_runs()
    col = page.default_column()
    bench = col.benchmark if col else (page.benchmarks[0] if page.benchmarks else "")
    meta = [
        f"profile {s.profile}" if s.profile else None,
        f"file {page.study.file}" if page.study.file else None,
        f"updated {s.updated_at:%Y-%m-%d %H:%M}",
    ]
    header = html.Div(
        [
            html.H2(name),
            html.P(page.study.description or "", className="description"),
            html.P(" · ".join(m for m in meta if m), className="muted"),
            html.Div(
                [
                    progress_bar(s),
                    html.Span(
                        f"{fmt_hours(s.est_hours)} accelerator-hours planned"
                        + (f" (+{s.uncosted} runs not costed)" if s.uncosted else "")
                        + f", {fmt_hours(s.used_hours)} used",
                        className="cost",
                    ),
                    html.Span(links, className="links"),
                ],
                className="summary",
            ),
        ]
    )
    table = source.table(name)
    controls = html.Div(
        [
            html.Label("checkpoint"),
            dcc.Dropdown(id="table-step", options=_step_options(page.steps), value=LATEST, clearable=False),
            dcc.Checklist(id="table-all", options=[{"label": " every metric", "value": "all"}], value=[]),
        ],
        className="controls",
    )
    curve_controls = html.Div(
        [
            html.Label("runs"),
            dcc.Dropdown(
                id="runs", options=_options([v.name for v in page.variants]), value=runs, multi=True
            ),
            html.Label("metric"),
            dcc.Dropdown(
                id="curve-metric",
                options=[{"label": f"{c.title} [{c.judge}]", "value": column_key(c)} for c in page.columns],
                value=column_key(col) if col else None,
                clearable=False,
            ),
        ],
        className="controls",
    )
    return html.Div(
        [
            dcc.Store(id="study-name", data=name),
            header,
            *search_section(source, name),
            _section(
                "Ablation table",
                controls,
                *html_slot("ablation", ablation_payload(table, page, mlflow, exp)),
            ),
            _section(
                "Curves",
                curve_controls,
                dcc.Graph(
                    id="curve",
                    figure=figures.curve_figure(source.curve(name, column_key(col) if col else None, runs)),
                    config={"displaylogo": False, "responsive": True},
                ),
            ),
            _section(
                "Per-category breakdown",
                html.Div(
                    [
                        html.Label("benchmark"),
                        dcc.Dropdown(
                            id="breakdown-bench",
                            options=_options(page.benchmarks),
                            value=bench or None,
                            clearable=False,
                        ),
                    ],
                    className="controls",
                ),
                dcc.Graph(
                    id="breakdown",
                    figure=figures.breakdown_figure(source.breakdown(name, bench, runs)),
                    config={"displaylogo": False, "responsive": True},
                ),
            ),
            _section(
                "Samples",
                html.Div(
                    [
                        html.Label("benchmark"),
                        dcc.Dropdown(
                            id="sample-bench",
                            options=_options(page.benchmarks),
                            value=bench or None,
                            clearable=False,
                        ),
                        html.Label("step"),
                        dcc.Dropdown(
                            id="sample-step", options=_step_options(page.steps), value=LATEST, clearable=False
                        ),
                    ],
                    className="controls",
                ),
                *html_slot("samples", samples_html(source.samples(name, bench, runs))),
            ),
        ]
    )


def error_page(message: str) -> html.Div:
    return html.Div([html.H2("Cannot show this page"), html.P(message, className="error")], id="error")


# --- the app ---------------------------------------------------------------------------------------
#: Bounds of what a request may carry (the URL's path and the callbacks' values come from the browser,
#: or from anyone who can reach the server): a longer or mistyped value is a message on the page.
MAX_PATH_CHARS = 2048
MAX_NAME_CHARS = 256
MAX_RUNS = 1000
MAX_STEP = 2**63 - 1


class RequestError(I1labError):
    """A request value the dashboard refuses (shown on the page, never a server error)."""


def _step(value: Any) -> int | None:
    ok = isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_STEP
    return value if ok else None


def _name(value: Any, what: str, *, empty: bool = False) -> str:
    """A name sent by the browser (study, benchmark, metric key): a printable string of bounded length."""
    if value is None and empty:
        return ""
    if not isinstance(value, str):
        raise RequestError(f"{what}: expected a name, got {type(value).__name__}")
    if len(value) > MAX_NAME_CHARS:
        raise RequestError(f"{what}: a name of {len(value)} characters (at most {MAX_NAME_CHARS})")
    if not value.isprintable():
        raise RequestError(f"{what}: the name holds an unprintable character")
    return value


def _names(value: Any, what: str) -> list[str]:
    """A list of names sent by the browser (the runs picked), each checked by `_name`."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise RequestError(f"{what}: expected a list of names, got {type(value).__name__}")
    if len(value) > MAX_RUNS:
        raise RequestError(f"{what}: {len(value)} names (at most {MAX_RUNS})")
    return [_name(v, what) for v in value]


def update_problem(body: Any, callbacks: dict[str, Any]) -> str | None:
    """What is wrong with a callback request's body (Dash's ``_dash-update-component``), or None: it must
    name a server callback of this app and carry exactly its inputs and state, as the page sends them.
    (Dash itself answers a malformed body with a server error.)"""
    if not isinstance(body, dict):
        return "the body is not a JSON object"
    output = body.get("output")
    entry = callbacks.get(output) if isinstance(output, str) else None
    if entry is None or entry.get("callback") is None:
        return "no such callback"
    for key in ("inputs", "state"):
        got, want = body.get(key, []), entry.get(key, [])
        if not isinstance(got, list) or len(got) != len(want):
            return f"{key}: expected {len(want)} values"
        for item, spec in zip(got, want, strict=True):
            if (
                not isinstance(item, dict)
                or item.get("id") != spec["id"]
                or item.get("property") != spec["property"]
            ):
                return f"{key}: expected {spec['id']}.{spec['property']}"
    if not isinstance(body.get("changedPropIds", []), list) or not isinstance(
        body.get("outputs"), dict | list
    ):
        return "malformed callback request"
    return None


def _flags(value: Any) -> list[str]:
    return [v for v in value if isinstance(v, str)] if isinstance(value, list) else []


def create_app(source: Source | Callable[[], Source] | None = None) -> Dash:
    """The Dash app. ``source``: a :class:`Source`, a function that opens one (retried on each request
    until it succeeds, so the dashboard can start before the registry exists), or None for the
    configured registry."""
    opened: list[Source] = [source] if isinstance(source, Source) else []
    opener: Callable[[], Source] = source if callable(source) else Source.open

    def get() -> Source:
        if not opened:
            opened.append(opener())
        return opened[0]

    app = Dash(
        __name__,
        title="i1lab dashboard",
        update_title="",  # no "Updating..." title while callbacks run
        assets_folder=str(ASSETS),
        serve_locally=True,
        suppress_callback_exceptions=True,
        health_endpoint="health",
        enable_mcp=False,
    )
    plotly_bundle.use_partial_bundle(dcc)
    app.layout = html.Div(
        [
            dcc.Location(id="url"),
            html.Header(
                [
                    dcc.Link("i1lab", href="/", className="brand"),
                    html.Span("ablation studies", className="muted"),
                    html.A("MLflow UI ↗", href=Mlflow().ui_url, target="_blank", className="right"),
                ]
            ),
            html.Main(id="page"),
            # an empty, hidden graph: Plotly's script starts loading with the app, not after the page
            dcc.Graph(id="plotly-preload", figure={}, style={"display": "none"}),
        ]
    )

    @app.server.before_request
    def check_callback_request() -> ResponseReturnValue | None:
        if request.method != "POST" or not request.path.endswith("/_dash-update-component"):
            return None
        problem = update_problem(request.get_json(silent=True), app.callback_map)
        if problem is None:
            return None
        return Response(f"bad request: {problem}\n", status=400, mimetype="text/plain")

    @app.server.errorhandler(DependencyException)
    def unknown_component_file(exc: DependencyException) -> ResponseReturnValue:
        return Response("not found\n", status=404, mimetype="text/plain")

    def guarded(build: Callable[[], Any]) -> Any:
        try:
            return build()
        except I1labError as exc:
            return error_page(str(exc))

    @app.callback(Output("page", "children"), Input("url", "pathname"))
    def route(pathname: Any) -> Any:
        path = pathname or "/"
        if not isinstance(path, str):
            return error_page(f"no page at a {type(path).__name__}")
        if len(path) > MAX_PATH_CHARS:
            return error_page(f"no page at a path of {len(path)} characters (at most {MAX_PATH_CHARS})")
        if path in ("/", ""):
            return guarded(lambda: studies_page(get()))
        if path.startswith("/study/"):
            name = urllib.parse.unquote(path.removeprefix("/study/"))
            return guarded(lambda: study_page(get(), _name(name, "study")))
        return error_page(f"no page at {path}")

    for slot in HTML_SLOTS:
        app.clientside_callback(set_html(slot), Output(slot, "title"), Input(f"{slot}-html", "data"))

    @app.callback(
        Output("ablation-html", "data"),
        Input("table-step", "value"),
        Input("table-all", "value"),
        State("study-name", "data"),
        prevent_initial_call=True,
    )
    def update_table(step: Any, every: Any, study: Any) -> Any:
        def build() -> Any:
            name = _name(study, "study")
            src = get()
            table = src.table(name, _step(step), all_metrics="all" in _flags(every))
            return ablation_payload(table, src.study(name), src.mlflow, src.experiment_id(name))

        try:
            return build()
        except I1labError as exc:
            return _tag("p", escape(str(exc)), class_="error")

    @app.callback(
        Output("curve", "figure"),
        Input("runs", "value"),
        Input("curve-metric", "value"),
        State("study-name", "data"),
        prevent_initial_call=True,
    )
    def update_curve(runs: Any, key: Any, name: Any) -> Any:
        try:
            picked, metric = _names(runs, "runs"), _name(key, "metric", empty=True) or None
            return figures.curve_figure(get().curve(_name(name, "study"), metric, picked))
        except I1labError as exc:
            return figures.empty(str(exc))

    @app.callback(
        Output("breakdown", "figure"),
        Input("breakdown-bench", "value"),
        Input("runs", "value"),
        Input("table-step", "value"),
        State("study-name", "data"),
        prevent_initial_call=True,
    )
    def update_breakdown(bench: Any, runs: Any, step: Any, name: Any) -> Any:
        try:
            study, benchmark = _name(name, "study"), _name(bench, "benchmark", empty=True)
            picked = _names(runs, "runs")
            return figures.breakdown_figure(get().breakdown(study, benchmark, picked, _step(step)))
        except I1labError as exc:
            return figures.empty(str(exc))

    @app.callback(
        Output("samples-html", "data"),
        Input("sample-bench", "value"),
        Input("sample-step", "value"),
        Input("runs", "value"),
        State("study-name", "data"),
        prevent_initial_call=True,
    )
    def update_samples(bench: Any, step: Any, runs: Any, name: Any) -> Any:
        try:
            study, benchmark = _name(name, "study"), _name(bench, "benchmark", empty=True)
            return samples_html(get().samples(study, benchmark, _names(runs, "runs"), _step(step)))
        except I1labError as exc:
            return _tag("p", escape(str(exc)), class_="error")

    @app.server.route("/images/<int:run_id>/<benchmark>/<int:step>/<filename>")
    def image(run_id: int, benchmark: str, step: int, filename: str) -> ResponseReturnValue:
        path = None
        if run_id <= MAX_STEP and step <= MAX_STEP and len(benchmark) + len(filename) <= MAX_NAME_CHARS:
            try:
                path = get().image_file(run_id, benchmark, step, filename)
            except I1labError:
                path = None
        if path is None:
            abort(404)
        return send_file(path, mimetype="image/png", max_age=3600)

    return app
