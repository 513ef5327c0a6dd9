"""``i1lab status``: where each run stands — state, step, throughput, ETA, retries, interruptions, node.

Everything comes from the registry (plus the tail of a running run's ``metrics.jsonl`` when the worker
has not recorded a throughput yet) and, for a detached study, the job server's REST API: no Ray or
JAX import, so the table prints in a fraction of a second.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from sqlalchemy import select

from i1lab.registry import Registry
from i1lab.registry.records import STATUSES, now
from i1lab.registry.schema import RunEventRow, RunRow, StudyRow, StudyRunRow

COLUMNS = (
    RunRow.id,
    RunRow.hash,
    RunRow.status,
    RunRow.reason,
    RunRow.step,
    RunRow.total_steps,
    RunRow.steps_per_second,
    RunRow.attempts,
    RunRow.interruptions,
    RunRow.node,
    RunRow.heartbeat_at,
    RunRow.started_at,
    RunRow.finished_at,
    RunRow.workdir,
)


class RunStatus(BaseModel):
    id: int
    name: str
    hash: str
    status: str
    reason: str | None
    step: int
    total_steps: int
    steps_per_second: float | None  # the worker's latest measure, else the run's metrics.jsonl
    eta_seconds: float | None
    attempts: int
    retries: int  # attempts - 1: how often the run was started again
    interruptions: int
    interrupted_by: list[str] = []  # the causes of its interruptions, oldest first (where recorded)
    node: str | None
    heartbeat_age_seconds: float | None
    started_at: datetime | None
    finished_at: datetime | None


def eta_seconds(status: str, step: int, total: int, steps_per_second: float | None) -> float | None:
    """Seconds of training left for a running run at its current throughput. Pure."""
    if status != "running" or not steps_per_second or steps_per_second <= 0:
        return None
    return max(total - step, 0) / steps_per_second


def fmt_duration(seconds: float | None) -> str:
    """``95`` -> ``1m35s``; ``7384`` -> ``2h03m``. Pure."""
    if seconds is None:
        return "—"
    s = round(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


def short_node(node: str | None) -> str:
    """``host/10.0.0.7/<56-hex Ray node id>`` -> ``host/10.0.0.7/1a2b3c4d`` for the table. Pure."""
    if not node:
        return "—"
    head, sep, last = node.rpartition("/")
    if sep and len(last) > 12 and all(c in "0123456789abcdef" for c in last):
        return f"{head}/{last[:8]}"
    return node


def throughput_from_metrics(workdir: str | None, tail_bytes: int = 4096) -> float | None:
    """Steps per second from the last complete line of a run's ``metrics.jsonl`` (its ``step_time``)."""
    if not workdir:
        return None
    path = Path(workdir) / "metrics.jsonl"
    try:
        with path.open("rb") as f:
            f.seek(0, 2)
            size = f.tell()
            f.seek(max(0, size - tail_bytes))
            lines = f.read().decode("utf-8", "replace").splitlines()
    except OSError:
        return None
    for line in reversed(lines):
        try:
            step_time = float(json.loads(line)["step_time"])
        except (ValueError, KeyError, TypeError):
            continue
        return 1.0 / step_time if step_time > 0 else None
    return None


def _row(name: str, r: Any, t: datetime, read_metrics: bool) -> RunStatus:
    sps = r.steps_per_second
    if sps is None and r.step > 0 and (read_metrics or r.status == "running"):
        sps = throughput_from_metrics(r.workdir)
    attempts = r.attempts or 0
    return RunStatus(
        id=r.id,
        name=name,
        hash=r.hash,
        status=r.status,
        reason=r.reason,
        step=r.step,
        total_steps=r.total_steps,
        steps_per_second=sps,
        eta_seconds=eta_seconds(r.status, r.step, r.total_steps, sps),
        attempts=attempts,
        retries=max(attempts - 1, 0),
        interruptions=r.interruptions or 0,
        node=r.node,
        heartbeat_age_seconds=(t - r.heartbeat_at).total_seconds() if r.heartbeat_at else None,
        started_at=r.started_at,
        finished_at=r.finished_at,
    )


def _with_causes(registry: Registry, runs: list[RunStatus]) -> list[RunStatus]:
    """Fill ``interrupted_by`` of the runs that were interrupted (one read, of those runs only)."""
    ids = [r.id for r in runs if r.interruptions]
    if not ids:
        return runs
    causes: dict[int, list[str]] = {}
    with registry.session() as s:
        for i in range(0, len(ids), 500):
            for run_id, cause in s.execute(
                select(RunEventRow.run_id, RunEventRow.cause)
                .where(
                    RunEventRow.run_id.in_(ids[i : i + 500]),
                    RunEventRow.kind == "interrupted",
                    RunEventRow.cause.is_not(None),
                )
                .order_by(RunEventRow.id)
            ):
                causes.setdefault(run_id, []).append(str(cause))
    for r in runs:
        r.interrupted_by = causes.get(r.id, [])
    return runs


def interruptions_cell(r: RunStatus) -> str:
    """``2 (sigterm, lost-device)``, or the count alone where no cause was recorded. Pure."""
    if not r.interrupted_by:
        return str(r.interruptions)
    return f"{r.interruptions} ({', '.join(dict.fromkeys(r.interrupted_by))})"


def study_status(registry: Registry, study: str) -> list[RunStatus]:
    """Every member of a study, in the study's order."""
    registry.study(study)  # one-line error naming the known studies if there is no such study
    t = now()
    with registry.session() as s:
        rows = s.execute(
            select(StudyRunRow.name, *COLUMNS)
            .join(RunRow, RunRow.id == StudyRunRow.run_id)
            .join(StudyRow, StudyRow.id == StudyRunRow.study_id)
            .where(StudyRow.name == study)
            .order_by(StudyRunRow.position)
        ).all()
    return _with_causes(registry, [_row(r.name, r, t, True) for r in rows])


def all_status(registry: Registry, limit: int = 1000) -> list[RunStatus]:
    """The newest runs of every study, named ``study/name`` (a run in several studies by its first)."""
    t = now()
    with registry.session() as s:
        rows = s.execute(select(*COLUMNS).order_by(RunRow.id.desc()).limit(limit)).all()
        ids = [r.id for r in rows]
        names: dict[int, str] = {}
        for i in range(0, len(ids), 500):
            for run_id, study, name in s.execute(
                select(StudyRunRow.run_id, StudyRow.name, StudyRunRow.name)
                .join(StudyRow, StudyRow.id == StudyRunRow.study_id)
                .where(StudyRunRow.run_id.in_(ids[i : i + 500]))
                .order_by(StudyRow.name, StudyRunRow.name)
            ):
                names.setdefault(run_id, f"{study}/{name}")
    return _with_causes(registry, [_row(names.get(r.id, r.hash[:12]), r, t, False) for r in rows])


def counts(runs: list[RunStatus]) -> dict[str, int]:
    out = {s: 0 for s in STATUSES}
    for r in runs:
        out[r.status] = out.get(r.status, 0) + 1
    return {k: v for k, v in out.items() if v}


def render(runs: list[RunStatus], title: str | None = None, caption: str | None = None) -> Any:
    """A Rich table of the runs."""
    from rich.markup import escape
    from rich.table import Table

    table = Table(title=escape(title) if title else None, caption=escape(caption) if caption else None)
    for col in ("id", "run", "status", "step", "steps/s", "ETA", "retries", "interrupts", "node", "reason"):
        right = col in ("id", "step", "steps/s", "ETA", "retries", "interrupts")
        table.add_column(col, justify="right" if right else "left")
    for r in runs:
        table.add_row(
            str(r.id),
            escape(r.name),
            r.status,
            f"{r.step}/{r.total_steps}",
            f"{r.steps_per_second:.2f}" if r.steps_per_second else "—",
            fmt_duration(r.eta_seconds),
            str(r.retries),
            interruptions_cell(r),
            escape(short_node(r.node)),
            escape(r.reason or ""),
        )
    return table
