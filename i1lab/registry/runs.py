"""Runs: reading them, their status and progress outside a lease, checkpoints, artifacts and events."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, func, insert, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from i1lab.errors import I1labError
from i1lab.registry.base import CHUNK, RegistryBase, connection_of, run_statement
from i1lab.registry.db import raw_read
from i1lab.registry.records import TERMINAL, ArtifactRecord, RunEventRecord, RunRecord, RunStatus, now
from i1lab.registry.schema import (
    ArtifactRow,
    CheckpointRow,
    FieldKeyRow,
    RunEventRow,
    RunRow,
    StudyRow,
    StudyRunRow,
)

EVENT_INSERT = insert(cast(Table, RunEventRow.__table__))  # prepared once: events are written per attempt


class RunsMixin(RegistryBase):
    @staticmethod
    def _event(
        s: Session | Connection,
        run_id: int,
        kind: str,
        node: str | None,
        detail: str | None,
        t: datetime,
        cause: str | None = None,
    ) -> None:
        # a prepared Core insert: no ORM unit of work to flush for a row nobody reads back here
        row = {"run_id": run_id, "at": t, "kind": kind, "node": node, "detail": detail, "cause": cause}
        connection_of(s).execute(EVENT_INSERT, row)

    def run(self, run_id: int) -> RunRecord:
        """One run by id (on a SQLite file read on the DBAPI cursor: a worker reads one per run)."""
        if self._raw:
            with raw_read(self.engine) as raw:
                row = raw.execute(run_statement(), {"run_id": run_id}).first()
        else:
            with self.engine.connect() as conn:
                row = conn.execute(run_statement(), {"run_id": run_id}).first()
        if row is None:
            raise I1labError(f"no run with id {run_id}")
        return RunRecord.model_validate(row)

    def find_run(self, ref: str) -> RunRecord:
        """A run by id, hash prefix (>= 6 characters) or ``study/name``."""
        with self.session() as s:
            row: RunRow | None = None
            if ref.isdigit():
                row = s.get(RunRow, int(ref))
            if row is None and "/" in ref:
                study, name = ref.split("/", 1)
                row = s.scalar(
                    select(RunRow)
                    .join(StudyRunRow)
                    .join(StudyRow)
                    .where(StudyRow.name == study, StudyRunRow.name == name)
                )
            if row is None and len(ref) >= 6:
                rows = list(s.scalars(select(RunRow).where(RunRow.hash.startswith(ref)).limit(2)))
                if len(rows) > 1:
                    raise I1labError(f"run reference {ref!r} is ambiguous")
                row = rows[0] if rows else None
            if row is None:
                raise I1labError(f"no run matches {ref!r} (use an id, a hash prefix or study/name)")
            return RunRecord.model_validate(row)

    def set_status(self, run_id: int, status: RunStatus, reason: str | None = None) -> None:
        """Move a run to ``status``. Running records the worker's provenance and starts the clock; a
        terminal status stops it, adding the attempt's wall time and accelerator-hours (x chips)."""
        t = now()
        values: dict[str, Any] = {"status": status, "reason": reason, "updated_at": t}
        if status == "queued":
            values["queued_at"] = t
        if status == "running":
            from i1lab.registry.provenance import capture

            prov = capture()
            values.update(
                started_at=t,
                attempts=RunRow.attempts + 1,
                git_commit=prov.git_commit,
                git_dirty=prov.git_dirty,
                versions=prov.versions,
            )
        with self.session(write=True) as s:
            if status in TERMINAL:
                values["finished_at"] = t
                # a terminal status ends any lease: the token moves on, fencing out a worker still at it
                values.update(lease_owner=None, lease_expires_at=None, lease_token=RunRow.lease_token + 1)
                row = s.execute(
                    select(RunRow.status, RunRow.started_at, RunRow.wall_seconds, RunRow.chips)
                    .where(RunRow.id == run_id)
                    .with_for_update()
                ).first()
                if row is not None and row.status == "running" and row.started_at is not None:
                    wall = (row.wall_seconds or 0.0) + max(0.0, (t - row.started_at).total_seconds())
                    values["wall_seconds"] = wall
                    if row.chips is not None:
                        values["accelerator_hours"] = wall / 3600 * row.chips
            s.execute(update(RunRow).where(RunRow.id == run_id).values(**values))

    def set_progress(self, run_id: int, step: int) -> None:
        with self.session(write=True) as s:
            s.execute(update(RunRow).where(RunRow.id == run_id).values(step=step, updated_at=now()))

    def set_fields(self, run_id: int, **values: Any) -> None:
        with self.session(write=True) as s:
            s.execute(update(RunRow).where(RunRow.id == run_id).values(**values, updated_at=now()))

    def add_checkpoint(self, run_id: int, step: int, path: str | None, permanent: bool) -> None:
        with self.session(write=True) as s:
            self._insert(
                s,
                CheckpointRow,
                [{"run_id": run_id, "step": step, "path": path, "permanent": permanent, "created_at": now()}],
                ["run_id", "step"],
            )

    def checkpoints(self, run_id: int) -> list[tuple[int, str | None, bool]]:
        with self.session() as s:
            rows = s.execute(
                select(CheckpointRow.step, CheckpointRow.path, CheckpointRow.permanent)
                .where(CheckpointRow.run_id == run_id)
                .order_by(CheckpointRow.step)
            )
            return [(r[0], r[1], r[2]) for r in rows]

    def add_event(self, run_id: int, kind: str, node: str | None = None, detail: str | None = None) -> None:
        with self.session(write=True) as s:
            self._event(s, run_id, kind, node, detail, now())

    def events(
        self,
        run_ids: Iterable[int] | None = None,
        kinds: Iterable[str] | None = None,
        *,
        after: int | None = None,
    ) -> list[RunEventRecord]:
        """Scheduling events, oldest first (of these runs / of these kinds / with an id above ``after``)."""
        q = select(RunEventRow).order_by(RunEventRow.id)
        if after is not None:
            q = q.where(RunEventRow.id > after)
        if run_ids is not None:
            q = q.where(RunEventRow.run_id.in_(sorted(set(run_ids))))
        if kinds is not None:
            q = q.where(RunEventRow.kind.in_(list(kinds)))
        with self.session() as s:
            return [RunEventRecord.model_validate(r) for r in s.scalars(q)]

    def add_artifacts(self, artifacts: list[ArtifactRecord]) -> None:
        """Record files of runs; the same (run, step, kind) recorded again points to the new uri."""
        if not artifacts:
            return
        t = now()
        rows = {(a.run_id, a.step, a.kind): {**a.model_dump(), "created_at": t} for a in artifacts}
        with self.session(write=True) as s:
            self._insert(s, ArtifactRow, [rows[k] for k in sorted(rows)], ["run_id", "step", "kind"], ["uri"])

    def artifacts(self, run_ids: Iterable[int]) -> list[ArtifactRecord]:
        ids = list(run_ids)
        out: list[ArtifactRecord] = []
        with self.session() as s:
            for i in range(0, len(ids), CHUNK):
                out.extend(
                    ArtifactRecord.model_validate(r)
                    for r in s.scalars(select(ArtifactRow).where(ArtifactRow.run_id.in_(ids[i : i + CHUNK])))
                )
        return sorted(out, key=lambda a: (a.run_id, a.step, a.kind))

    def runs(self, status: Iterable[str] | None = None, limit: int = 1000) -> list[RunRecord]:
        with self.session() as s:
            q = select(RunRow).order_by(RunRow.id.desc()).limit(limit)
            if status is not None:
                q = q.where(RunRow.status.in_(list(status)))
            return [RunRecord.model_validate(r) for r in s.scalars(q)]

    def field_keys(self) -> list[str]:
        """Every flattened spec key recorded so far."""
        with self.session() as s:
            return [k for (k,) in s.execute(select(FieldKeyRow.key).order_by(FieldKeyRow.key))]

    def count(self, table: Any) -> int:
        with self.session() as s:
            return int(s.scalar(select(func.count()).select_from(table)) or 0)
