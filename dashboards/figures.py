"""Plotly figures of the dashboard: benchmark-vs-step curves and per-category breakdowns."""

from __future__ import annotations

from typing import Any

import plotly.graph_objects as go

from i1lab.report.tables import Curve, Table

LAYOUT: dict[str, Any] = {
    "template": "plotly_white",
    "margin": {"l": 50, "r": 20, "t": 40, "b": 40},
    "height": 360,
    "legend": {"orientation": "h", "y": -0.2},
}


def empty(message: str) -> go.Figure:
    fig = go.Figure()
    fig.update_layout(
        **LAYOUT,
        xaxis={"visible": False},
        yaxis={"visible": False},
        annotations=[{"text": message, "showarrow": False, "font": {"size": 14}}],
    )
    return fig


def curve_figure(curve: Curve | None) -> go.Figure:
    """One line per run: the metric at each checkpoint step it was scored."""
    if curve is None or not curve.steps:
        return empty("no scores for this metric and these runs")
    fig = go.Figure()
    for j, run in enumerate(curve.runs):
        points = [
            (st, row[j]) for st, row in zip(curve.steps, curve.values, strict=True) if row[j] is not None
        ]
        if not points:
            continue
        fig.add_trace(
            go.Scatter(x=[p[0] for p in points], y=[p[1] for p in points], mode="lines+markers", name=run)
        )
    col = curve.column
    fig.update_layout(
        **LAYOUT,
        title={"text": f"{col.title} [{col.judge}]", "font": {"size": 14}},
        xaxis_title="step",
        yaxis_title=col.metric,
    )
    return fig


def breakdown_figure(table: Table) -> go.Figure:
    """Grouped bars: every metric of one benchmark (x) for each chosen run (one bar colour per run)."""
    if not table.columns or not table.rows:
        return empty("no scores for this benchmark and these runs")
    labels = [c.metric for c in table.columns]
    fig = go.Figure()
    for row in table.rows:
        fig.add_trace(go.Bar(x=labels, y=[c.value for c in row.cells], name=row.name))
    bench = table.columns[0].benchmark
    at = "latest checkpoint" if table.at_step == "latest" else f"step {table.at_step}"
    fig.update_layout(
        **LAYOUT,
        barmode="group",
        title={"text": f"{bench}: every metric at the {at}", "font": {"size": 14}},
        yaxis_title="value",
    )
    return fig
