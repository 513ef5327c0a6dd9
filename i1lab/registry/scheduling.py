"""What drivers read and set to share resources between studies: priorities, caps, waiting demand and
the accelerator-hours spent."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, update

from i1lab.registry.base import CHUNK, RegistryBase
from i1lab.registry.records import now
from i1lab.registry.schema import RunRow, StudyRow, StudyRunRow


class SchedulingMixin(RegistryBase):
    def set_study_policy(
        self, study: str, *, priority: int | None = None, max_concurrent: int | None = None
    ) -> None:
        """Store a study's priority and concurrency cap (None leaves a value as it is)."""
        values: dict[str, Any] = {}
        if priority is not None:
            values["priority"] = priority
        if max_concurrent is not None:
            values["max_concurrent"] = max_concurrent
        if values:
            with self.session(write=True) as s:
                s.execute(update(StudyRow).where(StudyRow.name == study).values(**values))

    def touch_waiting(self, run_ids: Iterable[int]) -> None:
        """Mark queued, unleased runs as waiting for resources now (``heartbeat_at``): what a driver of a
        lower-priority study defers to (:meth:`waiting_demand`)."""
        ids = sorted(set(run_ids))
        if not ids:
            return
        t = now()
        with self.session(write=True) as s:
            for i in range(0, len(ids), CHUNK):
                s.execute(
                    update(RunRow)
                    .where(RunRow.id.in_(ids[i : i + CHUNK]), RunRow.lease_owner.is_(None))
                    .values(heartbeat_at=t)
                )

    def waiting_demand(self, above_priority: int, since: datetime) -> dict[str, int]:
        """Per accelerator: runs of studies with a priority above ``above_priority`` that wait for
        resources (queued, unleased, marked waiting since ``since``)."""
        with self.session() as s:
            rows = s.execute(
                select(RunRow.accelerator, func.count(func.distinct(RunRow.id)))
                .join(StudyRunRow, StudyRunRow.run_id == RunRow.id)
                .join(StudyRow, StudyRow.id == StudyRunRow.study_id)
                .where(
                    StudyRow.priority > above_priority,
                    RunRow.status == "queued",
                    RunRow.lease_owner.is_(None),
                    RunRow.heartbeat_at >= since,
                )
                .group_by(RunRow.accelerator)
            )
            return {str(acc): int(n) for acc, n in rows}

    def study_leased(self, study: str) -> int:
        """How many of the study's runs hold a live lease now (run anywhere, by any submitter)."""
        t = now()
        with self.session() as s:
            return int(
                s.scalar(
                    select(func.count(func.distinct(RunRow.id)))
                    .join(StudyRunRow, StudyRunRow.run_id == RunRow.id)
                    .join(StudyRow, StudyRow.id == StudyRunRow.study_id)
                    .where(
                        StudyRow.name == study, RunRow.lease_owner.is_not(None), RunRow.lease_expires_at > t
                    )
                )
                or 0
            )

    def accelerator_hours_used(self) -> float:
        """Accelerator-hours spent by every run trained here: finished attempts plus the running ones so
        far (wall hours x chips)."""
        t = now()
        with self.session() as s:
            done = s.scalar(
                select(func.sum(RunRow.wall_seconds * RunRow.chips)).where(
                    RunRow.imported.is_(False), RunRow.chips.is_not(None)
                )
            )
            running = s.execute(
                select(RunRow.started_at, RunRow.chips).where(
                    RunRow.status == "running", RunRow.lease_owner.is_not(None), RunRow.chips.is_not(None)
                )
            ).all()
        live = sum(max(0.0, (t - r.started_at).total_seconds()) * r.chips for r in running if r.started_at)
        return (float(done or 0.0) + live) / 3600
