"""Rich renderings: the ablation table and the live progress of a study's runs."""

from __future__ import annotations

import json
from typing import Any

from rich.markup import escape
from rich.table import Table as RichTable

from i1lab.registry import MemberRecord
from i1lab.report.tables import Curve, Table, fmt_ci, fmt_delta, fmt_params, fmt_value, noise_note


def rich_table(table: Table) -> RichTable:
    at = "latest checkpoint" if table.at_step == "latest" else f"step {table.at_step}"
    note = noise_note(table)
    out = RichTable(
        title=escape(f"{table.study} — deltas vs baseline at {at}"), caption=escape(note) if note else None
    )
    out.add_column("variant")
    out.add_column("status")
    out.add_column("params", justify="right")
    for col in table.columns:
        out.add_column(escape(f"{col.title}\n[{col.judge}]"), justify="right")
    for row in table.rows:
        cells = []
        for cell in row.cells:
            delta = fmt_delta(cell.delta, cell.noise, cell.beyond_noise)
            color = "green" if (cell.delta or 0) > 0 else "red" if (cell.delta or 0) < 0 else "white"
            if cell.noise or cell.beyond_noise is False:
                color = "dim"
            ci = fmt_ci(cell)
            cells.append(
                escape(fmt_value(cell.value))
                + (f" [{color}]{escape(delta)}[/]" if delta else "")
                + (f"\n[dim]{escape(ci)}[/]" if ci else "")
            )
        name = f"[bold]{escape(row.name)}[/] (baseline)" if row.is_baseline else escape(row.name)
        out.add_row(name, escape(row.status), fmt_params(row.params), *cells)
    return out


def rich_curves(study: str, curves: list[Curve]) -> list[RichTable]:
    """One step x run table per metric (``i1lab compare STUDY --curves``)."""
    tables = []
    for c in curves:
        out = RichTable(title=escape(f"{study} — {c.column.title} [{c.column.judge}] over checkpoints"))
        out.add_column("step", justify="right")
        for name in c.runs:
            out.add_column(escape(name), justify="right")
        for step, values in zip(c.steps, c.values, strict=True):
            out.add_row(str(step), *(fmt_value(v) for v in values))
        tables.append(out)
    return tables


def progress_table(study: str, members: list[MemberRecord]) -> RichTable:
    out = RichTable(title=f"study {study}")
    for col in ("run", "status", "step", "progress"):
        out.add_column(col)
    for m in members:
        r = m.run
        frac = r.step / r.total_steps if r.total_steps else 0.0
        bar = "█" * int(frac * 20) + "░" * (20 - int(frac * 20))
        out.add_row(m.name, r.status, f"{r.step}/{r.total_steps}", f"{bar} {frac:5.0%}")
    return out


def plan_blockers(payload: dict[str, Any]) -> list[str]:
    """What stops the plan's runs running here, each distinct line once."""
    return list(dict.fromkeys(line for r in payload["runs"] for line in r["missing"]))


def plan_table(payload: dict[str, Any]) -> RichTable:
    studies = ", ".join(s["study"] for s in payload["studies"])
    profile = payload["studies"][0]["profile"] if payload["studies"] else None
    title = f"plan: {studies}" + (f" (profile {profile})" if profile else "")
    s, t = payload["summary"], payload["totals"]
    caption = (
        f"{s['runs']} runs: {s['new']} new, {s['reused']} reused, {s['resume']} to resume — "
        f"{t['accelerator_hours_to_run']:,.1f} of {t['accelerator_hours']:,.1f} accelerator-hours to run"
    )
    if s.get("not_runnable"):
        caption += f"; {s['not_runnable']} cannot run here (not counted to run)"
    out = RichTable(title=title, caption=caption)
    for col in ("run", "hash", "status", "params", "accel-hours", "varies"):
        out.add_column(col, justify="right" if col in ("params", "accel-hours") else "left")
    for r in payload["runs"]:
        varied = ", ".join(f"{k}={json.dumps(v)}" for k, v in r["varied"].items()) or "—"
        name = r["name"] if len(r["members"]) == 1 else f"{r['name']} (+{len(r['members']) - 1} more)"
        if r["reused_from"]:
            varied += f" [reuses {r['reused_from'][0]}]"
        cost = r["cost"]
        out.add_row(
            name,
            r["hash"][:12],
            r["status"] if r["runnable"] else f"{r['status']}, cannot run here",
            fmt_params(cost["params"] if cost else None),
            f"{cost['accelerator_hours']:,.2f} {cost['accelerator']}" if cost else "—",
            varied,
        )
    return out
