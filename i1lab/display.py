"""Rich renderings: the ablation table and the live progress of a study's runs."""

from __future__ import annotations

from rich.table import Table as RichTable

from i1lab.registry import MemberRecord
from i1lab.report import Table, fmt_delta, fmt_params, fmt_value


def rich_table(table: Table) -> RichTable:
    at = "latest checkpoint" if table.at_step == "latest" else f"step {table.at_step}"
    out = RichTable(title=f"{table.study} — deltas vs baseline at {at}")
    out.add_column("variant")
    out.add_column("status")
    out.add_column("params", justify="right")
    for col in table.columns:
        out.add_column(f"{col.title}\n[{col.judge}]", justify="right")
    for row in table.rows:
        cells = []
        for cell in row.cells:
            delta = fmt_delta(cell.delta)
            color = "green" if (cell.delta or 0) > 0 else "red" if (cell.delta or 0) < 0 else "white"
            cells.append(fmt_value(cell.value) + (f" [{color}]{delta}[/]" if delta else ""))
        name = f"[bold]{row.name}[/] (baseline)" if row.is_baseline else row.name
        out.add_row(name, row.status, fmt_params(row.params), *cells)
    return out


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
