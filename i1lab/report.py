"""Ablation tables: one row per variant, each benchmark's value and its delta against the baseline.

``ablation_table`` is a pure function of registry records; the renderers turn its result into text.
"""

from __future__ import annotations

import csv
import io
import json
from typing import Literal

from pydantic import BaseModel

from i1lab.registry import MemberRecord, ScoreRecord

# The headline metric of each benchmark (evals.scoring.HEADLINES plus the synthetic shapes benchmark).
HEADLINES = {
    "shapes": "overall",
    "geneval": "overall",
    "dpg": "dpg_score",
    "prism": "final_combined_average",
    "cvtg": "word_accuracy",
    "longtext": "text_score",
}


class Column(BaseModel):
    benchmark: str
    metric: str
    judge: str

    @property
    def title(self) -> str:
        return f"{self.benchmark}/{self.metric}"


class Cell(BaseModel):
    value: float | None
    delta: float | None
    step: int | None


class Row(BaseModel):
    name: str
    label: str | None
    is_baseline: bool
    status: str
    step: int
    total_steps: int
    params: int | None
    cells: list[Cell]


class Table(BaseModel):
    study: str
    columns: list[Column]
    rows: list[Row]
    at_step: int | Literal["latest"]


def _pick(scores: list[ScoreRecord], col: Column, at_step: int | None) -> ScoreRecord | None:
    matching = [
        s for s in scores if (s.benchmark, s.metric, s.judge) == (col.benchmark, col.metric, col.judge)
    ]
    if at_step is not None:
        matching = [s for s in matching if s.step == at_step]
    return max(matching, key=lambda s: s.step) if matching else None


def columns_of(members: list[MemberRecord], all_metrics: bool = False) -> list[Column]:
    seen: dict[tuple[str, str, str], Column] = {}
    for m in members:
        for s in m.scores:
            if all_metrics or HEADLINES.get(s.benchmark) == s.metric:
                seen.setdefault(
                    (s.benchmark, s.metric, s.judge),
                    Column(benchmark=s.benchmark, metric=s.metric, judge=s.judge),
                )
    return sorted(
        seen.values(), key=lambda c: (c.benchmark, c.metric != HEADLINES.get(c.benchmark), c.metric, c.judge)
    )


def ablation_table(
    study: str, members: list[MemberRecord], *, at_step: int | None = None, all_metrics: bool = False
) -> Table:
    """Baseline rows first, then variants in plan order, each cell with its delta vs its baseline."""
    cols = columns_of(members, all_metrics)
    by_name = {m.name: m for m in members}
    ordered = sorted(members, key=lambda m: not m.is_baseline)
    rows = []
    for m in ordered:
        base = by_name.get(m.baseline or "") if not m.is_baseline else None
        cells = []
        for col in cols:
            own = _pick(m.scores, col, at_step)
            delta = None
            if own is not None and base is not None:
                ref = _pick(base.scores, col, own.step)
                delta = own.value - ref.value if ref is not None else None
            cells.append(Cell(value=own.value if own else None, delta=delta, step=own.step if own else None))
        rows.append(
            Row(
                name=m.name,
                label=m.label,
                is_baseline=m.is_baseline,
                status=m.run.status,
                step=m.run.step,
                total_steps=m.run.total_steps,
                params=m.run.params,
                cells=cells,
            )
        )
    return Table(study=study, columns=cols, rows=rows, at_step=at_step if at_step is not None else "latest")


def fmt_value(value: float | None) -> str:
    return "—" if value is None else f"{value:.4f}"


def fmt_delta(delta: float | None) -> str:
    if delta is None:
        return ""
    arrow = "↑" if delta > 0 else "↓" if delta < 0 else "="
    return f"{delta:+.4f} {arrow}"


def fmt_params(params: int | None) -> str:
    if params is None:
        return "—"
    return f"{params / 1e9:.4f}B" if params >= 1e8 else f"{params / 1e6:.3f}M"


def to_records(table: Table) -> list[dict[str, object]]:
    out = []
    for row in table.rows:
        rec: dict[str, object] = {
            "name": row.name,
            "baseline": row.is_baseline,
            "status": row.status,
            "step": row.step,
            "params": row.params,
        }
        for col, cell in zip(table.columns, row.cells, strict=True):
            rec[col.title] = cell.value
            rec[f"{col.title} delta"] = cell.delta
            rec[f"{col.title} judge"] = col.judge
        out.append(rec)
    return out


def render_json(table: Table) -> str:
    return json.dumps(table.model_dump(), indent=2)


def render_csv(table: Table) -> str:
    recs = to_records(table)
    buf = io.StringIO()
    if recs:
        writer = csv.DictWriter(buf, fieldnames=list(recs[0]))
        writer.writeheader()
        writer.writerows(recs)
    return buf.getvalue()


def render_markdown(table: Table) -> str:
    head = ["variant", "params", *[f"{c.title} [{c.judge}]" for c in table.columns]]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in table.rows:
        cells = [f"{fmt_value(c.value)} {fmt_delta(c.delta)}".strip() for c in row.cells]
        name = f"**{row.name}**" if row.is_baseline else row.name
        lines.append("| " + " | ".join([name, fmt_params(row.params), *cells]) + " |")
    return "\n".join(lines)
