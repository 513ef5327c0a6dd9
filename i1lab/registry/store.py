"""The registry API: everything i1lab reads from and writes to the SQL source of truth.

Callers get Pydantic records, never ORM objects, so sessions never leak across process boundaries.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict
from sqlalchemy import Engine, delete, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session, sessionmaker

from i1lab import paths
from i1lab.errors import I1labError
from i1lab.registry.db import make_engine, migrate
from i1lab.registry.schema import CheckpointRow, RunFieldRow, RunRow, ScoreRow, StudyRow, StudyRunRow

if TYPE_CHECKING:
    from i1lab.plan import ExistingRun

RunStatus = Literal["queued", "running", "finished", "failed", "cancelled", "imported"]
ACTIVE = ("queued", "running")


def now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


class RunRecord(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    hash: str
    spec: dict[str, Any]
    status: str
    reason: str | None
    step: int
    total_steps: int
    params: int | None
    workdir: str | None
    imported: bool
    attempts: int
    mlflow_run_id: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    updated_at: datetime


class ScoreRecord(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    run_id: int
    step: int
    benchmark: str
    metric: str
    judge: str
    value: float


class MemberRecord(BaseModel):
    """A run as a member of a study, with its scores."""

    study: str
    name: str
    label: str | None
    is_baseline: bool
    baseline: str | None
    varied: dict[str, Any]
    run: RunRecord
    scores: list[ScoreRecord]


class StudyRecord(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    name: str
    file: str | None
    profile: str | None
    description: str | None
    created_at: datetime
    updated_at: datetime


class PlannedMember(BaseModel):
    """What ``record_plan`` needs of each planned run (a subset of :class:`i1lab.plan.PlannedRun`)."""

    name: str
    label: str
    hash: str
    is_baseline: bool
    baseline: str
    varied: dict[str, Any]
    spec: dict[str, Any]
    total_steps: int
    params: int | None = None
    workdir: str | None = None


def flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}``; lists stay values."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten(value, dotted + "."))
        else:
            out[dotted] = value
    return out


def field_row(run_id: int, key: str, value: Any) -> dict[str, Any]:
    num: float | None = None
    if isinstance(value, bool):
        num = float(value)
        text = "true" if value else "false"
    elif isinstance(value, int | float):
        num = float(value)
        text = json.dumps(value)
    elif isinstance(value, str):
        text = value
    elif value is None:
        text = "null"
    else:
        text = json.dumps(value, sort_keys=True)
    return {"run_id": run_id, "key": key, "value_text": text, "value_num": num}


class Registry:
    """A handle on the registry database (SQLite under ``$I1LAB_HOME`` or ``$I1LAB_DATABASE_URL``)."""

    def __init__(self, url: str | None = None, *, engine: Engine | None = None) -> None:
        self.url = url or paths.database_url()
        self.engine = engine or make_engine(self.url)
        try:
            migrate(self.engine)
        except Exception as exc:
            raise I1labError(f"cannot open the registry at {self.url}: {exc}") from None
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    @contextmanager
    def session(self) -> Iterator[Session]:
        with self._sessions() as session, session.begin():
            yield session

    def _insert(self, session: Session, table: Any, rows: list[dict[str, Any]], keys: list[str]) -> None:
        """Insert rows, ignoring those whose unique ``keys`` already exist."""
        if not rows:
            return
        dialect = session.bind.dialect.name if session.bind else "sqlite"
        ins = pg_insert if dialect == "postgresql" else sqlite_insert
        session.execute(ins(table).values(rows).on_conflict_do_nothing(index_elements=keys))

    # --- studies and runs -------------------------------------------------------------------------
    def existing(self, hashes: Iterable[str]) -> dict[str, RunRecord]:
        hashes = list(hashes)
        out: dict[str, RunRecord] = {}
        with self.session() as s:
            for i in range(0, len(hashes), 500):
                chunk = hashes[i : i + 500]
                for row in s.scalars(select(RunRow).where(RunRow.hash.in_(chunk))):
                    out[row.hash] = RunRecord.model_validate(row)
        return out

    def existing_runs(self, hashes: Iterable[str]) -> dict[str, ExistingRun]:
        """Runs already registered under these hashes, with the study/name of each membership."""
        from i1lab.plan import ExistingRun

        found = self.existing(hashes)
        names: dict[int, list[str]] = {}
        with self.session() as s:
            ids = [r.id for r in found.values()]
            for i in range(0, len(ids), 500):
                rows = s.execute(
                    select(StudyRunRow.run_id, StudyRow.name, StudyRunRow.name)
                    .join(StudyRow, StudyRow.id == StudyRunRow.study_id)
                    .where(StudyRunRow.run_id.in_(ids[i : i + 500]))
                )
                for run_id, study, name in rows:
                    names.setdefault(run_id, []).append(f"{study}/{name}")
        return {
            h: ExistingRun(id=r.id, hash=h, status=r.status, step=r.step, names=sorted(names.get(r.id, [])))
            for h, r in found.items()
        }

    def record_plan(
        self,
        study: str,
        members: list[PlannedMember],
        *,
        file: str | None = None,
        profile: str | None = None,
        description: str | None = None,
        imported: bool = False,
    ) -> dict[str, int]:
        """Create the study and any missing runs; link every member. Returns name -> run id.

        Idempotent: recording the same plan twice changes nothing (a run is keyed by its hash).
        """
        t = now()
        with self.session() as s:
            row = s.scalar(select(StudyRow).where(StudyRow.name == study))
            if row is None:
                row = StudyRow(
                    name=study,
                    file=file,
                    profile=profile,
                    description=description,
                    created_at=t,
                    updated_at=t,
                )
                s.add(row)
                s.flush()
            else:
                row.updated_at = t
                row.file = file or row.file
                row.profile = profile
                row.description = description or row.description
            study_id = row.id
            status = "imported" if imported else "queued"
            self._insert(
                s,
                RunRow,
                [
                    {
                        "hash": m.hash,
                        "spec": m.spec,
                        "status": status,
                        "step": 0,
                        "total_steps": m.total_steps,
                        "params": m.params,
                        "workdir": m.workdir,
                        "imported": imported,
                        "attempts": 0,
                        "created_at": t,
                        "updated_at": t,
                    }
                    for m in members
                ],
                ["hash"],
            )
            ids = {
                r.hash: r.id
                for r in s.execute(
                    select(RunRow.hash, RunRow.id).where(RunRow.hash.in_([m.hash for m in members]))
                )
            }
            fields: list[dict[str, Any]] = []
            for m in members:
                fields.extend(field_row(ids[m.hash], k, v) for k, v in flatten(m.spec).items())
            self._insert(s, RunFieldRow, fields, ["run_id", "key"])
            s.execute(delete(StudyRunRow).where(StudyRunRow.study_id == study_id))
            for pos, m in enumerate(members):
                s.add(
                    StudyRunRow(
                        study_id=study_id,
                        name=m.name,
                        run_id=ids[m.hash],
                        label=m.label,
                        is_baseline=m.is_baseline,
                        baseline=m.baseline,
                        varied=m.varied,
                        position=pos,
                    )
                )
            return {m.name: ids[m.hash] for m in members}

    def run(self, run_id: int) -> RunRecord:
        with self.session() as s:
            row = s.get(RunRow, run_id)
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
        values: dict[str, Any] = {"status": status, "reason": reason, "updated_at": now()}
        if status == "running":
            values["started_at"] = now()
            values["attempts"] = RunRow.attempts + 1
        if status in ("finished", "failed", "cancelled"):
            values["finished_at"] = now()
        with self.session() as s:
            s.execute(update(RunRow).where(RunRow.id == run_id).values(**values))

    def set_progress(self, run_id: int, step: int) -> None:
        with self.session() as s:
            s.execute(update(RunRow).where(RunRow.id == run_id).values(step=step, updated_at=now()))

    def set_fields(self, run_id: int, **values: Any) -> None:
        with self.session() as s:
            s.execute(update(RunRow).where(RunRow.id == run_id).values(**values, updated_at=now()))

    def add_checkpoint(self, run_id: int, step: int, path: str | None, permanent: bool) -> None:
        with self.session() as s:
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

    def add_scores(self, scores: list[ScoreRecord]) -> None:
        """Record scores; a score already present for the same key is replaced."""
        if not scores:
            return
        t = now()
        with self.session() as s:
            for sc in scores:
                s.execute(
                    delete(ScoreRow).where(
                        ScoreRow.run_id == sc.run_id,
                        ScoreRow.step == sc.step,
                        ScoreRow.benchmark == sc.benchmark,
                        ScoreRow.metric == sc.metric,
                        ScoreRow.judge == sc.judge,
                    )
                )
            s.add_all([ScoreRow(**sc.model_dump(), created_at=t) for sc in scores])

    def scores(self, run_ids: Iterable[int]) -> list[ScoreRecord]:
        ids = list(run_ids)
        with self.session() as s:
            rows = s.scalars(
                select(ScoreRow)
                .where(ScoreRow.run_id.in_(ids))
                .order_by(ScoreRow.run_id, ScoreRow.step, ScoreRow.benchmark, ScoreRow.metric)
            )
            return [ScoreRecord.model_validate(r) for r in rows]

    # --- reading studies ---------------------------------------------------------------------------
    def studies(self) -> list[StudyRecord]:
        with self.session() as s:
            return [
                StudyRecord.model_validate(r) for r in s.scalars(select(StudyRow).order_by(StudyRow.name))
            ]

    def study(self, name: str) -> StudyRecord:
        with self.session() as s:
            row = s.scalar(select(StudyRow).where(StudyRow.name == name))
            if row is None:
                known = (
                    ", ".join(r.name for r in s.scalars(select(StudyRow).order_by(StudyRow.name))) or "none"
                )
                raise I1labError(f"no study named {name!r} in the registry (known: {known})")
            return StudyRecord.model_validate(row)

    def members(self, study: str) -> list[MemberRecord]:
        rec = self.study(study)
        with self.session() as s:
            rows = s.execute(
                select(StudyRunRow, RunRow)
                .join(RunRow, RunRow.id == StudyRunRow.run_id)
                .where(StudyRunRow.study_id == rec.id)
                .order_by(StudyRunRow.position)
            ).all()
            members = [
                (m.name, m.label, m.is_baseline, m.baseline, m.varied or {}, RunRecord.model_validate(r))
                for m, r in rows
            ]
        scores = self.scores(r.id for *_, r in members)
        by_run: dict[int, list[ScoreRecord]] = {}
        for sc in scores:
            by_run.setdefault(sc.run_id, []).append(sc)
        return [
            MemberRecord(
                study=study,
                name=n,
                label=lb,
                is_baseline=b,
                baseline=bl,
                varied=v,
                run=r,
                scores=by_run.get(r.id, []),
            )
            for n, lb, b, bl, v, r in members
        ]

    def runs(self, status: Iterable[str] | None = None, limit: int = 1000) -> list[RunRecord]:
        with self.session() as s:
            q = select(RunRow).order_by(RunRow.id.desc()).limit(limit)
            if status is not None:
                q = q.where(RunRow.status.in_(list(status)))
            return [RunRecord.model_validate(r) for r in s.scalars(q)]
