"""Reads for an overview of every study at once (the dashboard's front page): a fingerprint that changes
whenever the registry does, and each study's runs with their cost."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from sqlalchemy import func, select

from i1lab.registry import Registry
from i1lab.registry.schema import CheckpointRow, RunRow, ScoreRow, StudyRow, StudyRunRow


class StudyRunCost(BaseModel):
    """A member's run as a study's progress and cost count it."""

    hash: str
    status: str
    spec: dict[str, Any]
    planned_hours: float | None  # accelerator-hours estimated when planned
    used_hours: float | None  # accelerator-hours measured so far


def fingerprint(registry: Registry) -> tuple[Any, ...]:
    """Changes whenever the registry does: row counts and the latest timestamps of what is written."""
    with registry.session() as s:
        return (
            tuple(s.execute(select(func.count(RunRow.id), func.max(RunRow.updated_at))).one()),
            tuple(s.execute(select(func.count(ScoreRow.id), func.max(ScoreRow.created_at))).one()),
            tuple(s.execute(select(func.count(StudyRow.id), func.max(StudyRow.updated_at))).one()),
            tuple(s.execute(select(func.count(CheckpointRow.id))).one()),
        )


def study_run_costs(registry: Registry) -> dict[int, list[StudyRunCost]]:
    """Study id -> its members' runs (one entry per membership), in one query."""
    out: dict[int, list[StudyRunCost]] = {}
    with registry.session() as s:
        rows = s.execute(
            select(
                StudyRunRow.study_id,
                RunRow.hash,
                RunRow.status,
                RunRow.spec,
                RunRow.accelerator_hours_est,
                RunRow.accelerator_hours,
            ).join(RunRow, RunRow.id == StudyRunRow.run_id)
        )
        for study_id, digest, status, spec, planned, spent in rows:
            out.setdefault(study_id, []).append(
                StudyRunCost(hash=digest, status=status, spec=spec, planned_hours=planned, used_hours=spent)
            )
    return out
