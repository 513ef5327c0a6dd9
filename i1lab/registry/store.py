"""The registry API: everything i1lab reads from and writes to the SQL source of truth.

Callers get Pydantic records, never ORM objects, so sessions never leak across process boundaries.

Concurrency: many processes (Ray workers, importers, the driver) write at once. Every write is one short
transaction; inserts are upserts keyed by natural keys (a run's hash, a score's (run, step, benchmark,
metric, judge)), so repeated or racing writes converge instead of failing. On SQLite a write transaction
takes the write lock when it begins (``BEGIN IMMEDIATE``, see :mod:`i1lab.registry.db`) and waits its
turn; on PostgreSQL rows are locked in a fixed order so that racing writers cannot deadlock.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal, cast

from pydantic import BaseModel, ConfigDict
from sqlalchemy import Engine, Table, bindparam, delete, func, insert, or_, select, tuple_, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session, sessionmaker

from i1lab import paths
from i1lab.errors import I1labError
from i1lab.registry import vectors
from i1lab.registry.db import execute_many, make_engine, migrate, raw_read, raw_write, write_gate, writer
from i1lab.registry.schema import (
    ArtifactRow,
    CheckpointRow,
    FieldKeyRow,
    RunEventRow,
    RunFieldRow,
    RunRow,
    ScoreKeyRow,
    ScoreRow,
    ScoreSummaryRow,
    ScoreVectorRow,
    StudyRow,
    StudyRunRow,
)

if TYPE_CHECKING:
    from i1lab.plan.planner import ExistingRun

RunStatus = Literal["queued", "running", "finished", "failed", "cancelled", "imported"]
STATUSES: tuple[str, ...] = ("queued", "running", "finished", "failed", "cancelled", "imported")
ACTIVE = ("queued", "running")
TERMINAL = ("finished", "failed", "cancelled")
TEXT_CAP = 512  # characters of a field's text kept for filtering (index entries must stay small)
CHUNK = 500  # values per IN (...) list (well under SQLite's bound-parameter limit)
BATCH = 5000  # rows per executemany call of an insert (bounds the driver's parameter buffers)


@functools.cache
def _lock_statement(columns: tuple[Any, ...]) -> Any:
    """``SELECT columns FROM runs WHERE id = :run_id FOR UPDATE``, built once: the lease methods run it
    in every transaction, and a prepared statement skips SQLAlchemy's per-call construction."""
    return select(*columns).where(RunRow.id == bindparam("run_id")).with_for_update()


@functools.cache
def _lock_many_statement(columns: tuple[Any, ...]) -> Any:
    """The same for a list of run ids (``:ids``, expanded when executed), in id order."""
    ids: Any = bindparam("ids", expanding=True)
    return select(*columns).where(RunRow.id.in_(ids)).order_by(RunRow.id).with_for_update()


@functools.cache
def _sharing_statement(columns: tuple[Any, ...]) -> Any:
    """The run ``:run_id`` and every run sharing its work directory, locked in id order."""
    own_dir = select(RunRow.workdir).where(RunRow.id == bindparam("dir_of")).scalar_subquery()
    return (
        select(*columns)
        .where(or_(RunRow.id == bindparam("run_id"), RunRow.workdir == own_dir))
        .order_by(RunRow.id)
        .with_for_update()
    )


@functools.cache
def _pair_lock_statement(columns: tuple[Any, ...]) -> Any:
    """Runs ``:a`` and ``:b`` and every run sharing ``:b``'s work directory, locked in id order."""
    b_dir = select(RunRow.workdir).where(RunRow.id == bindparam("b")).scalar_subquery()
    return (
        select(*columns)
        .where(or_(RunRow.id.in_([bindparam("a"), bindparam("b")]), RunRow.workdir == b_dir))
        .order_by(RunRow.id)
        .with_for_update()
    )


@functools.cache
def _grant_statement() -> Any:
    """The conditional UPDATE that hands a free run's lease to an owner (see ``acquire_lease``)."""
    return (
        update(RunRow)
        .where(
            RunRow.id == bindparam("g_id"),
            RunRow.lease_token == bindparam("g_old"),
            RunRow.lease_owner.is_(None),
        )
        .values(
            lease_owner=bindparam("g_owner"),
            lease_token=bindparam("g_token"),
            lease_expires_at=bindparam("g_expires"),
            heartbeat_at=bindparam("g_beat"),
            node=bindparam("g_node"),
            status="running",
            reason=None,
            started_at=bindparam("g_started"),
            attempts=RunRow.attempts + 1,
            git_commit=bindparam("g_commit"),
            git_dirty=bindparam("g_dirty"),
            versions=bindparam("g_versions"),
            updated_at=bindparam("g_updated"),
        )
    )


_EVENT_INSERT = insert(cast(Table, RunEventRow.__table__))


@functools.cache
def _run_statement() -> Any:
    """One run's row by ``:run_id`` (every column, as a Core row)."""
    return select(cast(Table, RunRow.__table__)).where(RunRow.id == bindparam("run_id"))


@functools.cache
def _set_statement(keys: tuple[str, ...], fenced: bool) -> Any:
    """``UPDATE runs SET <keys> WHERE id = :s_id`` (and, ``fenced``, the lease token ``:s_token`` is still
    held), built once per set of columns: the lease methods write a handful of such sets per attempt."""
    where = [RunRow.id == bindparam("s_id")]
    if fenced:
        where += [RunRow.lease_token == bindparam("s_token"), RunRow.lease_owner.is_not(None)]
    return update(RunRow).where(*where).values({k: bindparam(f"s_{k}") for k in keys})


def _set_run(conn: Connection, run_id: int, values: Mapping[str, Any], token: int | None = None) -> Any:
    """Write plain column values of a run (fenced by ``token`` if given) with a statement built once."""
    keys = tuple(sorted(values))
    params = {f"s_{k}": values[k] for k in keys}
    params["s_id"] = run_id
    if token is not None:
        params["s_token"] = token
    return conn.execute(_set_statement(keys, token is not None), params)


def _conn(s: Session | Connection) -> Connection:
    return s.connection() if isinstance(s, Session) else s


def _live(row: Any, t: datetime) -> bool:
    """Is the lease on this runs row held and unexpired at ``t``?"""
    return bool(row.lease_owner is not None and (row.lease_expires_at or t) > t)


def _lease_state(row: Any, live: bool) -> LeaseState:
    return LeaseState(
        run_id=row.id,
        status=row.status,
        reason=row.reason,
        token=row.lease_token,
        owner=row.lease_owner,
        expires_at=row.lease_expires_at,
        node=row.node,
        live=live,
    )


def _rowcount(result: Any) -> int:
    """Rows an UPDATE matched (``CursorResult.rowcount``)."""
    return int(result.rowcount)


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
    resumed_from: str | None = None
    stage: int = 0
    resolution: int | None = None
    git_commit: str | None = None
    git_dirty: bool | None = None
    versions: dict[str, Any] | None = None
    queued_at: datetime | None = None
    wall_seconds: float = 0.0
    accelerator: str | None = None
    chips: int | None = None
    accelerator_hours: float | None = None
    accelerator_hours_est: float | None = None
    # scheduling: the lease of the worker that owns the run (lease_token is its fencing token), where it
    # runs, how often it was interrupted, and its training / evaluation time and throughput
    lease_owner: str | None = None
    lease_token: int = 0
    lease_expires_at: datetime | None = None
    heartbeat_at: datetime | None = None
    interruptions: int = 0
    node: str | None = None
    train_seconds: float = 0.0
    eval_seconds: float = 0.0
    steps_per_second: float | None = None


class ScoreRecord(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    run_id: int
    step: int
    benchmark: str
    metric: str
    judge: str
    value: float
    created_at: datetime | None = None  # when recorded (set by the registry; ignored when adding)


class ArtifactRecord(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    run_id: int
    step: int
    kind: str
    uri: str


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
    priority: int = 0
    max_concurrent: int | None = None


class RunEventRecord(BaseModel):
    """One scheduling event of a run (``run_events``)."""

    model_config = ConfigDict(from_attributes=True)
    id: int
    run_id: int
    at: datetime
    kind: str
    node: str | None
    detail: str | None


class LeaseGrant(BaseModel):
    """What :meth:`Registry.acquire_lease` answered.

    ``state``: ``acquired`` (``token`` is the new fencing token), ``done`` (the run is finished, imported
    or cancelled, or failed since it was queued: ``status`` and ``reason`` say which), ``leased`` (a live
    lease of ``owner`` on ``node``), ``busy`` (run ``blocker``, sharing the work directory, holds a live
    lease) or ``moved`` (someone queued or leased it since the caller read ``expect_token``)."""

    state: Literal["acquired", "done", "leased", "busy", "moved"]
    token: int | None = None
    status: str | None = None
    reason: str | None = None
    owner: str | None = None
    node: str | None = None
    blocker: int | None = None
    attempt: int | None = None  # acquired: the run's attempt number this lease starts (1 = first)
    run: RunRecord | None = None  # acquired: the run as the lease left it (read just after)


class LeaseRequest(BaseModel):
    """A lease a worker asks for: run ``run_id`` for ``owner``, if its token is still ``expect_token``
    (see :meth:`Registry.acquire_lease`)."""

    run_id: int
    owner: str
    expect_token: int | None = None


class LeaseEvent(BaseModel):
    """An event of a lease holder's attempt, written with its next fenced write."""

    kind: str
    detail: str | None = None
    at: datetime


class LeaseState(BaseModel):
    """A run's scheduling state as a driver polls it."""

    run_id: int
    status: str
    reason: str | None
    token: int
    owner: str | None
    expires_at: datetime | None
    node: str | None
    live: bool  # leased, and the lease has not expired

    @property
    def expired(self) -> bool:
        return self.owner is not None and not self.live


class PlannedMember(BaseModel):
    """What ``record_plan`` needs of each planned run (a subset of :class:`i1lab.plan.planner.PlannedRun`)."""

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
    accelerator_hours_est: float | None = None


class ImportConflict(I1labError):
    """An imported line that contradicts the registry (``line`` is the file's line number)."""

    def __init__(self, line: int, message: str) -> None:
        super().__init__(f"line {line}: {message}")
        self.line = line
        self.detail = message


class ImportedScore(BaseModel):
    benchmark: str
    metric: str
    judge: str
    step: int
    value: float


class ImportedRun(BaseModel):
    """A run trained elsewhere: its spec as given, its content hash, its study membership and scores."""

    line: int
    study: str
    name: str
    baseline: bool
    spec: dict[str, Any]
    hash: str
    params: int | None = None
    scores: list[ImportedScore] = []


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


_FIELD_TEXTS: dict[Any, str] = {}  # (type, value) -> field_text: a study's runs share most values


def field_text(value: Any) -> str:
    """How a spec value is written in ``run_fields.value_text`` (and how query values are matched)."""
    try:
        key: Any = (
            (list, tuple((type(x), x) for x in value)) if isinstance(value, list) else (type(value), value)
        )
        text = _FIELD_TEXTS.get(key)
    except TypeError:  # not hashable (a list of lists or mappings)
        return _field_text(value)
    if text is None:
        if len(_FIELD_TEXTS) > 100_000:
            _FIELD_TEXTS.clear()
        text = _FIELD_TEXTS[key] = _field_text(value)
    return text


def _field_text(value: Any) -> str:
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, int | float):
        text = json.dumps(value)
    elif isinstance(value, str):
        text = value
    elif value is None:
        text = "null"
    else:
        text = json.dumps(value, sort_keys=True)
    return text[:TEXT_CAP]


FIELD_COLUMNS = ("run_id", "key", "value_text", "value_num")


def field_values(run_id: int, key: str, value: Any) -> tuple[int, str, str, float | None]:
    """A ``run_fields`` row's values, in ``FIELD_COLUMNS`` order."""
    num: float | None = None
    if isinstance(value, bool | int | float):
        num = float(value)
    return (run_id, key, field_text(value), num)


def field_row(run_id: int, key: str, value: Any) -> dict[str, Any]:
    return dict(zip(FIELD_COLUMNS, field_values(run_id, key, value), strict=True))


def planned_run_rows(members: Sequence[PlannedMember], prov: Any, *, imported: bool) -> list[dict[str, Any]]:
    """The ``runs`` rows of planned members, one per hash: queued with this process's provenance
    ``prov`` (git commit, dirty flag, package versions), or ``imported`` (trained elsewhere: none)."""
    runs: dict[str, dict[str, Any]] = {}
    for m in members:
        runs.setdefault(
            m.hash,
            {
                "hash": m.hash,
                "spec": m.spec,
                "status": "imported" if imported else "queued",
                "step": 0,
                "total_steps": m.total_steps,
                "params": m.params,
                "workdir": m.workdir,
                "imported": imported,
                "attempts": 0,
                "git_commit": None if imported else prov.git_commit,
                "git_dirty": None if imported else prov.git_dirty,
                "versions": None if imported else prov.versions,
                "queued_at": None if imported else now(),
                "wall_seconds": 0.0,
                "stage": 0,
                "accelerator_hours_est": m.accelerator_hours_est,
            },
        )
    return list(runs.values())


def chips_of(accelerator: str) -> int | None:
    """``tpu-v6e-64`` -> 64, ``gpu:8`` -> 8, ``cpu`` -> 1; None when unreadable."""
    try:
        if accelerator.startswith("tpu-"):
            return int(accelerator.rsplit("-", 1)[1])
        _, _, n = accelerator.partition(":")
        return int(n or 1)
    except ValueError:
        return None


def run_facts(spec: Mapping[str, Any]) -> dict[str, Any]:
    """Columns derived from a resolved spec: lineage and the accelerator it asks for."""
    data = spec.get("data") if isinstance(spec.get("data"), Mapping) else {}
    resources = spec.get("resources") if isinstance(spec.get("resources"), Mapping) else {}
    assert isinstance(data, Mapping) and isinstance(resources, Mapping)
    resume = data.get("resume_from")
    resolution = data.get("resolution")
    accelerator = resources.get("accelerator")
    return {
        "resumed_from": resume if isinstance(resume, str) else None,
        "resolution": resolution
        if isinstance(resolution, int) and not isinstance(resolution, bool)
        else None,
        "accelerator": accelerator if isinstance(accelerator, str) else None,
        "chips": chips_of(accelerator) if isinstance(accelerator, str) else None,
    }


def summarize(
    scores: Iterable[tuple[int, str, str, str, int, float]],
) -> dict[tuple[Any, ...], dict[str, Any]]:
    """Latest (highest step) and best (highest value, earliest step) per (run, benchmark, metric, judge)."""
    out: dict[tuple[Any, ...], dict[str, Any]] = {}
    for rid, bench, metric, judge, step, value in scores:
        key = (rid, bench, metric, judge)
        row = out.get(key)
        if row is None:
            out[key] = {
                "run_id": rid,
                "benchmark": bench,
                "metric": metric,
                "judge": judge,
                "latest_step": step,
                "latest_value": value,
                "best_step": step,
                "best_value": value,
            }
            continue
        if step > row["latest_step"]:
            row["latest_step"], row["latest_value"] = step, value
        if value > row["best_value"] or (value == row["best_value"] and step < row["best_step"]):
            row["best_step"], row["best_value"] = step, value
    return out


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
        self._write_engine = writer(self.engine)
        self._writers = sessionmaker(self._write_engine, expire_on_commit=False)
        self._gate = write_gate(self.engine)
        self._raw = self._gate is not None  # a SQLite file: lease transactions on the DBAPI cursor

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @contextmanager
    def session(self, *, write: bool = False) -> Iterator[Session]:
        """One transaction; ``write=True`` for any transaction that writes (see the module doc)."""
        if write and self._gate is not None:
            with self._gate.hold(), self._writers() as session, session.begin():
                yield session
            return
        maker = self._writers if write else self._sessions
        with maker() as session, session.begin():
            yield session

    @contextmanager
    def _connect(self) -> Iterator[Connection]:
        """One write transaction for the lease methods a worker and a driver call once or more per run,
        which need no ORM session: on SQLite driven on the DBAPI cursor (:class:`RawTransaction`, the
        same ``execute`` for what they use), on PostgreSQL a Core connection."""
        if self._raw:
            with raw_write(self.engine, self._gate) as tx:
                yield cast(Connection, tx)
            return
        with self._write_engine.begin() as conn:
            yield conn

    def _insert_statement(self, table: Table) -> Any:
        """An INSERT into ``table`` in this database's dialect (it takes ``on_conflict_*`` clauses)."""
        return (pg_insert if self.dialect == "postgresql" else sqlite_insert)(table)

    def _insert(
        self,
        session: Session,
        table: Any,
        rows: list[dict[str, Any]],
        keys: list[str],
        update_cols: Sequence[str] = (),
    ) -> None:
        """Insert rows; rows whose unique ``keys`` exist are left alone or get ``update_cols`` replaced.

        One statement per set of columns, executed with the rows as parameters (``executemany``): the
        statement is compiled once however many rows there are. Rows keep their order within a set of
        columns, and the sets go in a fixed order (a stable lock order on PostgreSQL)."""
        if not rows:
            return
        core = getattr(table, "__table__", table)  # a Core table: no ORM bulk-insert machinery
        groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
        for row in rows:
            groups.setdefault(tuple(sorted(row)), []).append(row)
        for cols in sorted(groups):
            stmt = self._insert_statement(core)
            if update_cols:
                stmt = stmt.on_conflict_do_update(
                    index_elements=keys, set_={c: stmt.excluded[c] for c in update_cols}
                )
            else:
                stmt = stmt.on_conflict_do_nothing(index_elements=keys)
            group = groups[cols]
            for i in range(0, len(group), BATCH):
                session.execute(stmt, group[i : i + BATCH])

    # --- studies and runs -------------------------------------------------------------------------
    def existing(self, hashes: Iterable[str]) -> dict[str, RunRecord]:
        hashes = list(hashes)
        out: dict[str, RunRecord] = {}
        with self.session() as s:
            for i in range(0, len(hashes), CHUNK):
                chunk = hashes[i : i + CHUNK]
                for row in s.scalars(select(RunRow).where(RunRow.hash.in_(chunk))):
                    out[row.hash] = RunRecord.model_validate(row)
        return out

    def existing_runs(self, hashes: Iterable[str]) -> dict[str, ExistingRun]:
        """Runs already registered under these hashes, with the study/name of each membership."""
        from i1lab.plan.planner import ExistingRun

        found = self.existing(hashes)
        names: dict[int, list[str]] = {}
        with self.session() as s:
            ids = [r.id for r in found.values()]
            for i in range(0, len(ids), CHUNK):
                rows = s.execute(
                    select(StudyRunRow.run_id, StudyRow.name, StudyRunRow.name)
                    .join(StudyRow, StudyRow.id == StudyRunRow.study_id)
                    .where(StudyRunRow.run_id.in_(ids[i : i + CHUNK]))
                )
                for run_id, study, name in rows:
                    names.setdefault(run_id, []).append(f"{study}/{name}")
        return {
            h: ExistingRun(id=r.id, hash=h, status=r.status, step=r.step, names=sorted(names.get(r.id, [])))
            for h, r in found.items()
        }

    def _study_id(
        self,
        s: Session,
        study: str,
        *,
        file: str | None = None,
        profile: str | None = None,
        description: str | None = None,
        set_profile: bool = True,
    ) -> int:
        """Create the study if needed and lock its row until the transaction ends (one writer per study)."""
        t = now()
        self._insert(
            s,
            StudyRow,
            [
                {
                    "name": study,
                    "file": file,
                    "profile": profile,
                    "description": description,
                    "created_at": t,
                    "updated_at": t,
                }
            ],
            ["name"],
        )
        row = s.execute(select(StudyRow).where(StudyRow.name == study).with_for_update()).scalar_one()
        row.updated_at = t
        row.file = file or row.file
        row.profile = profile if set_profile else row.profile
        row.description = description or row.description
        return row.id

    def _insert_runs(self, s: Session, rows: list[dict[str, Any]]) -> dict[str, int]:
        """Insert runs missing by hash (with their flattened fields); returns hash -> id of all of them.

        Only the runs missing get fields: a run's fields are written with it, once (a study submitted
        again rewrites none)."""
        t = now()
        hashes = [r["hash"] for r in rows]
        before: set[str] = set()
        for i in range(0, len(hashes), CHUNK):
            before.update(s.scalars(select(RunRow.hash).where(RunRow.hash.in_(hashes[i : i + CHUNK]))))
        for row in rows:
            row.setdefault("created_at", t)
            row.setdefault("updated_at", t)
            row.update({k: v for k, v in run_facts(row["spec"]).items() if k not in row})
        staged = [r["hash"] for r in rows if r.get("resumed_from")]
        rows = [r for r in rows if r["hash"] not in before]
        self._insert(s, RunRow, sorted(rows, key=lambda r: r["hash"]), ["hash"])
        ids: dict[str, int] = {}
        for i in range(0, len(hashes), CHUNK):
            found = s.execute(select(RunRow.hash, RunRow.id).where(RunRow.hash.in_(hashes[i : i + CHUNK])))
            ids.update({digest: rid for digest, rid in found})
        fields: list[tuple[int, str, str, float | None]] = []
        keys: set[str] = set()
        for row in rows:
            flat = flatten(row["spec"])
            keys.update(flat)
            run_id = ids[row["hash"]]
            fields.extend(field_values(run_id, k, v) for k, v in flat.items())
        self._insert(s, FieldKeyRow, [{"key": k} for k in sorted(keys)], ["key"])
        fields.sort()  # by (run_id, key): a stable lock and page order
        stmt = self._insert_statement(cast(Table, RunFieldRow.__table__)).on_conflict_do_nothing(
            index_elements=["run_id", "key"]
        )
        for i in range(0, len(fields), BATCH):
            execute_many(s.connection(), stmt, FIELD_COLUMNS, fields[i : i + BATCH])
        self._set_stages(s, staged)  # also of runs recorded before their parent was
        return ids

    def _set_stages(self, s: Session, hashes: list[str]) -> None:
        """``stage`` = number of ancestors along ``resumed_from`` (0 for a run trained from scratch)."""
        if not hashes:
            return
        parent_of: dict[str, str | None] = {}
        todo = list(hashes)
        while todo:
            chunk, todo = todo[:CHUNK], todo[CHUNK:]
            for digest, parent in s.execute(
                select(RunRow.hash, RunRow.resumed_from).where(RunRow.hash.in_(chunk))
            ):
                parent_of[digest] = parent
                if parent and parent not in parent_of and len(parent_of) < 100_000:
                    todo.append(parent)

        def depth(digest: str, seen: frozenset[str] = frozenset()) -> int:
            parent = parent_of.get(digest)
            if parent is None or parent not in parent_of or digest in seen:
                return 0
            return depth(parent, seen | {digest}) + 1

        for digest in hashes:
            s.execute(update(RunRow).where(RunRow.hash == digest).values(stage=depth(digest)))

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

        Idempotent: recording the same plan twice changes nothing (a run is keyed by its hash). New runs
        get the provenance of this process (git commit, dirty flag, package versions)."""
        from i1lab.registry.provenance import capture

        run_rows = planned_run_rows(members, capture(), imported=imported)
        with self.session(write=True) as s:
            study_id = self._study_id(s, study, file=file, profile=profile, description=description)
            ids = self._insert_runs(s, run_rows)
            s.execute(delete(StudyRunRow).where(StudyRunRow.study_id == study_id))
            memberships = [
                {
                    "study_id": study_id,
                    "name": m.name,
                    "run_id": ids[m.hash],
                    "label": m.label,
                    "is_baseline": m.is_baseline,
                    "baseline": m.baseline,
                    "varied": m.varied,
                    "position": pos,
                }
                for pos, m in enumerate(members)
            ]
            if memberships:  # a Core executemany: no ORM objects to build and flush
                s.execute(insert(cast(Table, StudyRunRow.__table__)), memberships)
            return {m.name: ids[m.hash] for m in members}

    def add_members(
        self,
        study: str,
        members: list[PlannedMember],
        *,
        file: str | None = None,
        profile: str | None = None,
        description: str | None = None,
    ) -> dict[str, int]:
        """Create the study and any missing runs (queued); add these members after the study's others,
        which are kept (a member of the same name is replaced in place). Returns name -> run id.

        Unlike :meth:`record_plan`, which sets a study's whole membership, this grows a study one
        member at a time (a search adds each trial as it is asked)."""
        from i1lab.registry.provenance import capture

        run_rows = planned_run_rows(members, capture(), imported=False)
        with self.session(write=True) as s:
            study_id = self._study_id(s, study, file=file, profile=profile, description=description)
            ids = self._insert_runs(s, run_rows)
            current = {
                name: pos
                for name, pos in s.execute(
                    select(StudyRunRow.name, StudyRunRow.position).where(StudyRunRow.study_id == study_id)
                )
            }
            position = max(current.values(), default=-1) + 1
            for m in members:
                if m.name in current:
                    s.execute(
                        delete(StudyRunRow).where(
                            StudyRunRow.study_id == study_id, StudyRunRow.name == m.name
                        )
                    )
                s.add(
                    StudyRunRow(
                        study_id=study_id,
                        name=m.name,
                        run_id=ids[m.hash],
                        label=m.label,
                        is_baseline=m.is_baseline,
                        baseline=m.baseline or None,
                        varied=m.varied,
                        position=current.get(m.name, position),
                    )
                )
                if m.name not in current:
                    position += 1
            return {m.name: ids[m.hash] for m in members}

    def record_imported(self, runs: list[ImportedRun]) -> dict[tuple[str, str], int]:
        """Record runs trained elsewhere, their memberships and scores, all in one transaction.

        A study gains the imported members beside the ones it has. Re-importing the same lines changes
        nothing. Refused (nothing written): a spec whose hash is a run trained here, or a study name
        already naming another run. Returns (study, name) -> run id."""
        t = now()
        with self.session(write=True) as s:
            hashes = sorted({r.hash for r in runs})
            for i in range(0, len(hashes), CHUNK):
                for digest, imported in s.execute(
                    select(RunRow.hash, RunRow.imported).where(RunRow.hash.in_(hashes[i : i + CHUNK]))
                ):
                    if not imported:
                        line = next(r.line for r in runs if r.hash == digest)
                        raise ImportConflict(
                            line,
                            f"the spec is that of run {digest[:12]} trained here; "
                            "imported results cannot be added to it",
                        )
            rows: dict[str, dict[str, Any]] = {}
            for r in runs:
                last = max((sc.step for sc in r.scores), default=0)
                row = rows.setdefault(
                    r.hash,
                    {
                        "hash": r.hash,
                        "spec": r.spec,
                        "status": "imported",
                        "step": last,
                        "total_steps": last,
                        "params": r.params,
                        "imported": True,
                        "attempts": 0,
                        "wall_seconds": 0.0,
                        "stage": 0,
                        "finished_at": t,
                    },
                )
                row["step"] = row["total_steps"] = max(row["step"], last)
            ids = self._insert_runs(s, list(rows.values()))
            for digest, row in rows.items():
                s.execute(
                    update(RunRow)
                    .where(RunRow.hash == digest, RunRow.step < row["step"])
                    .values(step=row["step"], total_steps=row["step"], updated_at=t)
                )
                if row["params"] is not None:
                    s.execute(update(RunRow).where(RunRow.hash == digest).values(params=row["params"]))
            by_study: dict[str, list[ImportedRun]] = {}
            for r in runs:
                by_study.setdefault(r.study, []).append(r)
            for study, items in sorted(by_study.items()):
                study_id = self._study_id(s, study, description="imported results", set_profile=False)
                self._link_imported(s, study_id, study, items, ids)
            self._add_scores(
                s,
                [ScoreRecord(run_id=ids[r.hash], **sc.model_dump()) for r in runs for sc in r.scores],
            )
            return {(r.study, r.name): ids[r.hash] for r in runs}

    def _link_imported(
        self, s: Session, study_id: int, study: str, items: list[ImportedRun], ids: dict[str, int]
    ) -> None:
        current = {m.name: m for m in s.scalars(select(StudyRunRow).where(StudyRunRow.study_id == study_id))}
        baselines = [m.name for m in current.values() if m.is_baseline]
        baselines += [r.name for r in items if r.baseline and r.name not in baselines]
        specs = {r.name: flatten(r.spec) for r in items}
        for m in current.values():
            if m.is_baseline and m.name not in specs:
                spec = s.scalar(select(RunRow.spec).where(RunRow.id == m.run_id))
                specs[m.name] = flatten(spec or {})

        def baseline_of(name: str) -> str | None:
            _, mark, seed = name.partition("#")
            same_seed = [b for b in baselines if mark and b.endswith(f"#{seed}")]
            found = same_seed or baselines
            return found[0] if found else None

        position = max((m.position for m in current.values()), default=-1) + 1
        for r in items:
            run_id = ids[r.hash]
            have = current.get(r.name)
            if have is not None:
                if have.run_id != run_id:
                    raise ImportConflict(
                        r.line, f"{study}/{r.name} already names another run (id {have.run_id})"
                    )
                continue
            base = r.name if r.baseline else baseline_of(r.name)
            own, ref = specs[r.name], specs.get(base or "", {})
            varied = {k: v for k, v in own.items() if k not in ref or ref[k] != v} if base else {}
            s.add(
                StudyRunRow(
                    study_id=study_id,
                    name=r.name,
                    run_id=run_id,
                    label=r.name,
                    is_baseline=r.baseline,
                    baseline=base,
                    varied={} if r.baseline else varied,
                    position=position,
                )
            )
            position += 1

    def run(self, run_id: int) -> RunRecord:
        """One run by id (on a SQLite file read on the DBAPI cursor: a worker reads one per run)."""
        if self._raw:
            with raw_read(self.engine) as raw:
                row = raw.execute(_run_statement(), {"run_id": run_id}).first()
        else:
            with self.engine.connect() as conn:
                row = conn.execute(_run_statement(), {"run_id": run_id}).first()
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

    # --- leases: exactly-once execution of runs ----------------------------------------------------
    # A worker trains a run only while it holds the run's lease: ``lease_owner`` set and
    # ``lease_expires_at`` in the future, renewed by a heartbeat. ``lease_token`` is the fencing token: it
    # grows by one whenever ownership changes (acquired, released, taken over, interrupted), and every
    # write a worker makes is conditional on the token it was given still being current, so a worker
    # that lost its lease (partitioned, paused, presumed dead) can no longer change the run.

    _LOCKED = (
        RunRow.id,
        RunRow.status,
        RunRow.reason,
        RunRow.lease_owner,
        RunRow.lease_token,
        RunRow.lease_expires_at,
        RunRow.heartbeat_at,
        RunRow.node,
        RunRow.workdir,
        RunRow.started_at,
        RunRow.wall_seconds,
        RunRow.chips,
        RunRow.attempts,
    )

    def _lock_run(self, s: Session | Connection, run_id: int) -> Any:
        row = _conn(s).execute(_lock_statement(self._LOCKED), {"run_id": run_id}).first()
        if row is None:
            raise I1labError(f"no run with id {run_id}")
        return row

    @staticmethod
    def _event(
        s: Session | Connection, run_id: int, kind: str, node: str | None, detail: str | None, t: datetime
    ) -> None:
        # a prepared Core insert: no ORM unit of work to flush for a row nobody reads back here
        row = {"run_id": run_id, "at": t, "kind": kind, "node": node, "detail": detail}
        _conn(s).execute(_EVENT_INSERT, row)

    @staticmethod
    def _stop_clock(row: Any, t: datetime, until: datetime | None = None) -> dict[str, Any]:
        """wall_seconds (and accelerator-hours) with the current attempt's time added, if it ran."""
        if row.status != "running" or row.started_at is None:
            return {}
        end = until if until is not None and until >= row.started_at else t
        wall = (row.wall_seconds or 0.0) + max(0.0, (end - row.started_at).total_seconds())
        out: dict[str, Any] = {"wall_seconds": wall}
        if row.chips is not None:
            out["accelerator_hours"] = wall / 3600 * row.chips
        return out

    def _take_over(self, s: Session | Connection, run_id: int, row: Any, t: datetime, why: str) -> None:
        """Clear an expired lease whose holder never released it: one interruption of the run."""
        values = {
            "lease_owner": None,
            "lease_expires_at": None,
            "lease_token": row.lease_token + 1,
            "interruptions": RunRow.interruptions + 1,
            "status": "queued",
            "queued_at": t,
            "updated_at": t,
            **self._stop_clock(row, t, row.heartbeat_at),
        }
        _conn(s).execute(update(RunRow).where(RunRow.id == run_id).values(**values))
        self._event(s, run_id, "interrupted", row.node, why, t)

    def queue_runs(self, run_ids: Iterable[int]) -> dict[int, LeaseState]:
        """Make runs ready to be leased, without disturbing one that is leased and live.

        Finished and imported runs are left alone; a run whose lease expired is taken over (counted as an
        interrupted attempt); any other run (new, failed, cancelled, interrupted) becomes ``queued``. The
        returned state carries the fencing token a launch should expect (``acquire_lease``).

        A few statements per chunk of runs, whatever its size: the rows are locked and read together (in
        id order), the runs to queue updated by one statement and their events inserted by another."""
        t = now()
        out: dict[int, LeaseState] = {}
        ids = sorted(set(run_ids))
        with self.session(write=True) as s:
            conn = s.connection()
            for i in range(0, len(ids), CHUNK):
                chunk = ids[i : i + CHUNK]
                rows = {r.id: r for r in conn.execute(_lock_many_statement(self._LOCKED), {"ids": chunk})}
                missing = [r for r in chunk if r not in rows]
                if missing:
                    raise I1labError(f"no run with id {missing[0]}")
                live = {r: _live(row, t) for r, row in rows.items()}
                todo = [r for r in chunk if rows[r].status not in ("finished", "imported") and not live[r]]
                expired = [r for r in todo if rows[r].lease_owner is not None]
                plain = [r for r in todo if rows[r].lease_owner is None]
                for run_id in expired:
                    row = rows[run_id]
                    self._take_over(s, run_id, row, t, f"lease expired (last heartbeat {row.heartbeat_at})")
                requeue = [r for r in plain if rows[r].status != "queued"]
                if requeue:
                    conn.execute(
                        update(RunRow)
                        .where(RunRow.id.in_(requeue))
                        .values(status="queued", reason=None, queued_at=t, updated_at=t)
                    )
                if plain:
                    events = [
                        {
                            "run_id": r,
                            "at": t,
                            "kind": "queued",
                            "node": None,
                            "detail": f"was {rows[r].status}",
                        }
                        for r in plain
                    ]
                    conn.execute(_EVENT_INSERT, events)
                if todo:
                    rows.update(
                        (r.id, r) for r in conn.execute(_lock_many_statement(self._LOCKED), {"ids": todo})
                    )
                out.update((r, _lease_state(rows[r], live[r])) for r in chunk)
        return out

    def acquire_lease(
        self,
        run_id: int,
        owner: str,
        *,
        ttl: float,
        node: str | None = None,
        expect_token: int | None = None,
    ) -> LeaseGrant:
        """Take run ``run_id``'s lease for ``owner`` if nobody holds it (or its holder's lease expired).

        Atomic: the rows of every run sharing the work directory are locked (in id order) and the lease
        is written by an UPDATE conditional on the token read, so of racing callers exactly one wins.
        ``expect_token`` (the token :meth:`queue_runs` returned) makes the call fail as ``moved`` or
        ``done`` if anyone leased the run since. A run is refused while another run sharing its work
        directory holds a live lease (one training per folder). On success the run is ``running``, its
        attempt counted, and the new token returned."""
        with self._connect() as conn:
            grant = self._acquire(
                conn, LeaseRequest(run_id=run_id, owner=owner, expect_token=expect_token), ttl, node
            )
        return self._with_run(grant, run_id)

    def _with_run(self, grant: LeaseGrant, run_id: int) -> LeaseGrant:
        """An acquired grant with the run's record. On SQLite it is read once the lease's transaction
        has ended (the lease holder is the only writer of the run from then on), outside the database's
        one write lock; PostgreSQL locks rows, and the record was read in the transaction (``_acquire``),
        a round trip fewer than a connection of its own."""
        if grant.state == "acquired" and grant.run is None:
            grant.run = self.run(run_id)
        return grant

    def _acquire(
        self, conn: Connection, req: LeaseRequest, ttl: float, node: str | None, t: datetime | None = None
    ) -> LeaseGrant:
        """:meth:`acquire_lease` inside the caller's write transaction (at time ``t``: now)."""
        from i1lab.registry.provenance import capture

        t = t or now()
        prov = capture()
        run_id, owner, expect_token = req.run_id, req.owner, req.expect_token
        # the run and every run sharing its work directory, locked in id order, in one statement
        sharing = conn.execute(_sharing_statement(self._LOCKED), {"run_id": run_id, "dir_of": run_id}).all()
        row = next((r for r in sharing if r.id == run_id), None)
        if row is None:
            raise I1labError(f"no run with id {run_id}")
        live = _live(row, t)
        if row.status in ("finished", "imported", "cancelled"):
            return LeaseGrant(state="done", status=row.status, reason=row.reason)
        if live:
            return LeaseGrant(state="leased", owner=row.lease_owner, node=row.node, status=row.status)
        if expect_token is not None and row.lease_token != expect_token:
            if row.status == "failed":
                return LeaseGrant(state="done", status="failed", reason=row.reason)
            return LeaseGrant(state="moved", status=row.status)
        # the rows sharing the work directory are locked: their leases read above are current
        blocker = next((r.id for r in sharing if r.id != run_id and _live(r, t)), None)
        if blocker is not None:
            return LeaseGrant(state="busy", blocker=blocker, status=row.status)
        if row.lease_owner is not None:  # expired and never released: its holder is gone
            self._take_over(conn, run_id, row, t, f"lease expired (last heartbeat {row.heartbeat_at})")
            row = self._lock_run(conn, run_id)
        token = row.lease_token + 1
        done = conn.execute(
            _grant_statement(),
            {
                "g_id": run_id,
                "g_old": row.lease_token,
                "g_owner": owner,
                "g_token": token,
                "g_expires": t + timedelta(seconds=ttl),
                "g_beat": t,
                "g_node": node,
                "g_started": t,
                "g_commit": prov.git_commit,
                "g_dirty": prov.git_dirty,
                "g_versions": prov.versions,
                "g_updated": t,
            },
        )
        if _rowcount(done) != 1:  # cannot happen while the row is locked; refuse rather than guess
            return LeaseGrant(state="moved", status=row.status)
        self._event(conn, run_id, "leased", node, f"token {token}, owner {owner}", t)
        record = None
        if not self._raw:  # see _with_run
            record = RunRecord.model_validate(conn.execute(_run_statement(), {"run_id": run_id}).first())
        return LeaseGrant(
            state="acquired", token=token, node=node, attempt=(row.attempts or 0) + 1, run=record
        )

    def renew_lease(
        self,
        run_id: int,
        token: int,
        ttl: float,
        *,
        events: Sequence[LeaseEvent] = (),
        event_node: str | None = None,
        **values: Any,
    ) -> bool:
        """Heartbeat: extend the lease by ``ttl`` seconds (and write ``values`` and ``events``, on
        ``event_node``) if ``token`` still holds it, in one transaction. False: the lease is lost (nothing
        written); the caller must stop."""
        t = now()
        with self._connect() as s:
            done = _set_run(
                s,
                run_id,
                {
                    "lease_expires_at": t + timedelta(seconds=ttl),
                    "heartbeat_at": t,
                    "updated_at": t,
                    **values,
                },
                token,
            )
            if _rowcount(done) != 1:
                return False
            for e in events:
                self._event(s, run_id, e.kind, event_node, e.detail, e.at)
            return True

    def fenced_update(self, run_id: int, token: int, **values: Any) -> bool:
        """Write run columns (progress, timings) only if ``token`` is the current fencing token."""
        with self.session(write=True) as s:
            done = s.connection().execute(
                update(RunRow)
                .where(RunRow.id == run_id, RunRow.lease_token == token, RunRow.lease_owner.is_not(None))
                .values(updated_at=now(), **values)
            )
            return bool(_rowcount(done) == 1)

    def _holds(self, s: Session, run_id: int, token: int) -> bool:
        row = self._lock_run(s, run_id)
        return bool(row.lease_token == token and row.lease_owner is not None)

    def fenced_checkpoint(
        self, run_id: int, token: int, step: int, path: str | None, permanent: bool
    ) -> bool:
        """:meth:`add_checkpoint`, only if ``token`` is the current fencing token."""
        with self.session(write=True) as s:
            if not self._holds(s, run_id, token):
                return False
            self._insert(
                s,
                CheckpointRow,
                [{"run_id": run_id, "step": step, "path": path, "permanent": permanent, "created_at": now()}],
                ["run_id", "step"],
            )
            return True

    def fenced_scores(
        self,
        run_id: int,
        token: int,
        scores: list[ScoreRecord],
        *,
        eval_seconds: float = 0.0,
        node: str | None = None,
        detail: str | None = None,
    ) -> bool:
        """Record a checkpoint's scores and the time its evaluation took, only if ``token`` is current;
        adds an ``evaluated`` event."""
        t = now()
        with self.session(write=True) as s:
            if not self._holds(s, run_id, token):
                return False
            self._add_scores(s, scores)
            s.connection().execute(
                update(RunRow)
                .where(RunRow.id == run_id)
                .values(eval_seconds=RunRow.eval_seconds + eval_seconds, updated_at=t)
            )
            self._event(s, run_id, "evaluated", node, detail, t)
            return True

    def fenced_event(self, run_id: int, token: int, kind: str, node: str | None, detail: str | None) -> bool:
        with self.session(write=True) as s:
            if not self._holds(s, run_id, token):
                return False
            self._event(s, run_id, kind, node, detail, now())
            return True

    def finish_lease(
        self,
        run_id: int,
        token: int,
        status: Literal["finished", "failed", "cancelled"],
        reason: str | None = None,
        *,
        events: Sequence[LeaseEvent] = (),
        **values: Any,
    ) -> bool:
        """End the attempt holding ``token``: set the terminal status, stop the clock, release the lease
        (the token moves on) and record the event (after ``events``, the attempt's own, not written
        yet), in one transaction. False (nothing written) if the token is stale."""
        with self._connect() as conn:
            return self._finish(conn, run_id, token, status, reason, events, values)

    def finish_lease_and_acquire(
        self,
        run_id: int,
        token: int,
        status: Literal["finished", "failed", "cancelled"],
        reason: str | None = None,
        *,
        events: Sequence[LeaseEvent] = (),
        then: LeaseRequest,
        ttl: float,
        node: str | None = None,
        **values: Any,
    ) -> tuple[bool, LeaseGrant]:
        """:meth:`finish_lease`, then :meth:`acquire_lease` of the run ``then`` names for the same
        worker, in one transaction: a worker running a batch of short runs hands itself the next run's
        lease as it records a run's end (one transaction per run instead of two). The two are
        independent: a stale ``token`` writes nothing of the first run and the next lease is still
        tried. The rows are locked in id order first (PostgreSQL: no deadlock with another
        transaction locking both)."""
        with self._connect() as conn:
            if self.dialect == "postgresql":
                conn.execute(_pair_lock_statement(self._LOCKED), {"a": run_id, "b": then.run_id})
            t = now()  # the next lease starts as the run ends
            ok = self._finish(conn, run_id, token, status, reason, events, values, t)
            grant = self._acquire(conn, then, ttl, node, t)
        return ok, self._with_run(grant, then.run_id)

    def _finish(
        self,
        conn: Connection,
        run_id: int,
        token: int,
        status: Literal["finished", "failed", "cancelled"],
        reason: str | None,
        events: Sequence[LeaseEvent],
        values: Mapping[str, Any],
        t: datetime | None = None,
    ) -> bool:
        """:meth:`finish_lease` inside the caller's write transaction (at time ``t``: now)."""
        t = t or now()
        row = self._lock_run(conn, run_id)
        if row.lease_token != token or row.lease_owner is None:
            return False
        _set_run(
            conn,
            run_id,
            {
                "status": status,
                "reason": reason,
                "finished_at": t,
                "updated_at": t,
                "lease_owner": None,
                "lease_expires_at": None,
                "lease_token": token + 1,
                **self._stop_clock(row, t),
                **values,
            },
        )
        # the attempt's own events, then its end, in one statement
        ends = [*events, LeaseEvent(kind=status, detail=reason, at=t)]
        rows = [
            {"run_id": run_id, "at": e.at, "kind": e.kind, "node": row.node, "detail": e.detail} for e in ends
        ]
        conn.execute(_EVENT_INSERT, rows)
        return True

    def interrupt_lease(
        self,
        run_id: int,
        owner: str,
        detail: str,
        *,
        status: Literal["queued", "failed", "cancelled"] = "queued",
        reason: str | None = None,
        interrupted: bool = True,
    ) -> bool:
        """A driver's verdict on an attempt it launched whose worker died (or was stopped): if ``owner``
        still holds the lease, release it (the token moves on, fencing out the worker should it still be
        alive), count one interruption (if ``interrupted``), stop the clock at the last heartbeat and set
        ``status``. False if ``owner`` does not hold the lease (it never started, or lost it)."""
        t = now()
        with self.session(write=True) as s:
            row = self._lock_run(s, run_id)
            if row.lease_owner != owner:
                return False
            values: dict[str, Any] = {
                "status": status,
                "reason": reason,
                "updated_at": t,
                "lease_owner": None,
                "lease_expires_at": None,
                "lease_token": row.lease_token + 1,
                **self._stop_clock(row, t, row.heartbeat_at),
            }
            if status == "queued":
                values["queued_at"] = t
            else:
                values["finished_at"] = t
            if interrupted:
                values["interruptions"] = RunRow.interruptions + 1
                self._event(s, run_id, "interrupted", row.node, detail, t)
            s.connection().execute(update(RunRow).where(RunRow.id == run_id).values(**values))
            if status != "queued":
                self._event(s, run_id, status, row.node, reason or detail, t)
            return True

    def settle_run(self, run_id: int, status: Literal["failed", "cancelled"], reason: str) -> bool:
        """Give a run nobody holds a terminal status (a driver giving up on it). False if it is leased
        and live, or has a terminal status already (whose reason stands)."""
        t = now()
        with self.session(write=True) as s:
            row = self._lock_run(s, run_id)
            live = _live(row, t)
            if live or row.status in ("finished", "imported", "failed", "cancelled"):
                return False
            s.connection().execute(
                update(RunRow)
                .where(RunRow.id == run_id)
                .values(
                    status=status,
                    reason=reason,
                    finished_at=t,
                    updated_at=t,
                    lease_owner=None,
                    lease_expires_at=None,
                    lease_token=row.lease_token + (1 if row.lease_owner is not None else 0),
                )
            )
            self._event(s, run_id, status, None, reason, t)
            return True

    def lease_states(self, run_ids: Iterable[int]) -> dict[int, LeaseState]:
        ids = sorted(set(run_ids))
        t = now()
        out: dict[int, LeaseState] = {}
        with self.session() as s:
            for i in range(0, len(ids), CHUNK):
                for r in s.execute(
                    select(
                        RunRow.id,
                        RunRow.status,
                        RunRow.reason,
                        RunRow.lease_token,
                        RunRow.lease_owner,
                        RunRow.lease_expires_at,
                        RunRow.node,
                    ).where(RunRow.id.in_(ids[i : i + CHUNK]))
                ):
                    out[r.id] = _lease_state(r, _live(r, t))
        return out

    def add_event(self, run_id: int, kind: str, node: str | None = None, detail: str | None = None) -> None:
        with self.session(write=True) as s:
            self._event(s, run_id, kind, node, detail, now())

    def events(
        self, run_ids: Iterable[int] | None = None, kinds: Iterable[str] | None = None
    ) -> list[RunEventRecord]:
        """Scheduling events, oldest first (of these runs / of these kinds)."""
        q = select(RunEventRow).order_by(RunEventRow.id)
        if run_ids is not None:
            q = q.where(RunEventRow.run_id.in_(sorted(set(run_ids))))
        if kinds is not None:
            q = q.where(RunEventRow.kind.in_(list(kinds)))
        with self.session() as s:
            return [RunEventRecord.model_validate(r) for r in s.scalars(q)]

    # --- scheduling policy -------------------------------------------------------------------------
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

    # --- scores ------------------------------------------------------------------------------------
    def add_scores(self, scores: list[ScoreRecord]) -> None:
        """Record scores; a score already present for the same key is replaced."""
        if not scores:
            return
        with self.session(write=True) as s:
            self._add_scores(s, scores)

    def _add_scores(self, s: Session, scores: list[ScoreRecord]) -> None:
        if not scores:
            return
        t = now()
        latest: dict[tuple[Any, ...], ScoreRecord] = {}
        for sc in scores:  # the last of duplicates wins, as if recorded one after another
            latest[(sc.run_id, sc.step, sc.benchmark, sc.metric, sc.judge)] = sc
        rows = [{**latest[k].model_dump(), "created_at": t} for k in sorted(latest)]  # replaces any given
        self._insert(
            s, ScoreRow, rows, ["run_id", "step", "benchmark", "metric", "judge"], ["value", "created_at"]
        )
        keys = sorted({(sc.benchmark, sc.metric, sc.judge) for sc in latest.values()})
        self._insert(
            s,
            ScoreKeyRow,
            [{"benchmark": b, "metric": m, "judge": j} for b, m, j in keys],
            ["benchmark", "metric", "judge"],
        )
        self._refresh_summaries(s, sorted({(sc.run_id, sc.benchmark, sc.metric, sc.judge) for sc in scores}))
        self._refresh_vectors(s, sorted({(sc.run_id, sc.step) for sc in scores}))

    def _claim(
        self,
        s: Session,
        table: Any,
        cols: Sequence[Any],
        keys: Sequence[tuple[Any, ...]],
        filler: dict[str, Any],
    ) -> None:
        """Create the rows of ``table`` with these key values (``cols``) that are missing (``filler``
        for their other columns), then, on PostgreSQL, lock them all in key order: a concurrent writer
        of the same keys waits here until this transaction ends, and then reads what it wrote."""
        names = [c.key for c in cols]
        rows = [dict(zip(names, k, strict=True), **filler) for k in keys]
        self._insert(s, table, rows, names)
        if self.dialect == "postgresql":
            s.execute(select(cols[0]).where(tuple_(*cols).in_(keys)).order_by(*cols).with_for_update()).all()

    def _refresh_vectors(self, s: Session, checkpoints: list[tuple[int, int]]) -> None:
        """Recompute the score vectors of these (run, step) checkpoints from the scores themselves.

        As for the summaries: the vector rows are created if missing and locked (in key order) before
        the scores are read, so a concurrent writer of the same checkpoint waits, then sees these scores."""
        cols = (ScoreVectorRow.run_id, ScoreVectorRow.step)
        for i in range(0, len(checkpoints), 200):
            chunk = checkpoints[i : i + 200]
            self._claim(s, ScoreVectorRow, cols, chunk, {"entries": b""})
            found: dict[tuple[int, int], list[tuple[int, float]]] = {}
            sc = ScoreRow
            for run_id, step, bench, metric, judge, value in s.execute(
                select(sc.run_id, sc.step, sc.benchmark, sc.metric, sc.judge, sc.value).where(
                    tuple_(sc.run_id, sc.step).in_(chunk)
                )
            ):
                found.setdefault((run_id, step), []).append(
                    (vectors.key_id(bench, metric, judge), float(value))
                )
            packed = [vectors.pack(found.get(c, [])) for c in chunk]
            rows = [{"run_id": r, "step": st, "entries": p} for (r, st), p in zip(chunk, packed, strict=True)]
            s.execute(update(ScoreVectorRow), rows)

    def _refresh_summaries(self, s: Session, keys: list[tuple[int, str, str, str]]) -> None:
        """Recompute the latest / best summary of these score keys from the scores themselves.

        The summary rows are created if missing, then locked (in key order) before the scores are read,
        so a concurrent writer of the same key waits and then sees this transaction's scores."""
        cols = (
            ScoreSummaryRow.run_id,
            ScoreSummaryRow.benchmark,
            ScoreSummaryRow.metric,
            ScoreSummaryRow.judge,
        )
        score_cols = (ScoreRow.run_id, ScoreRow.benchmark, ScoreRow.metric, ScoreRow.judge)
        for i in range(0, len(keys), 200):
            chunk = keys[i : i + 200]
            placeholder = {"latest_step": -1, "latest_value": 0.0, "best_step": -1, "best_value": 0.0}
            self._claim(s, ScoreSummaryRow, cols, chunk, placeholder)
            found = s.execute(
                select(*score_cols, ScoreRow.step, ScoreRow.value).where(tuple_(*score_cols).in_(chunk))
            ).all()
            summary = summarize((r[0], r[1], r[2], r[3], r[4], r[5]) for r in found)
            if summary:
                s.execute(update(ScoreSummaryRow), [summary[k] for k in sorted(summary)])

    def scores(self, run_ids: Iterable[int]) -> list[ScoreRecord]:
        ids = list(run_ids)
        out: list[ScoreRecord] = []
        with self.session() as s:
            for i in range(0, len(ids), CHUNK):
                rows = s.execute(
                    select(
                        ScoreRow.run_id,
                        ScoreRow.step,
                        ScoreRow.benchmark,
                        ScoreRow.metric,
                        ScoreRow.judge,
                        ScoreRow.value,
                        ScoreRow.created_at,
                    ).where(ScoreRow.run_id.in_(ids[i : i + CHUNK]))
                )
                out.extend(
                    ScoreRecord(
                        run_id=r[0],
                        step=r[1],
                        benchmark=r[2],
                        metric=r[3],
                        judge=r[4],
                        value=r[5],
                        created_at=r[6],
                    )
                    for r in rows
                )
        out.sort(key=lambda sc: (sc.run_id, sc.step, sc.benchmark, sc.metric))
        return out

    def score_summaries(self, run_ids: Iterable[int]) -> list[dict[str, Any]]:
        """The latest / best summary rows of these runs (what score filters compare against)."""
        ids = list(run_ids)
        out: list[dict[str, Any]] = []
        with self.session() as s:
            for i in range(0, len(ids), CHUNK):
                out.extend(
                    dict(r._mapping)
                    for r in s.execute(
                        select(ScoreSummaryRow.__table__).where(
                            ScoreSummaryRow.run_id.in_(ids[i : i + CHUNK])
                        )
                    )
                )
        return out

    # --- artifacts ---------------------------------------------------------------------------------
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
                known = [r for (r,) in s.execute(select(StudyRow.name).order_by(StudyRow.name).limit(21))]
                listed = ", ".join(known[:20]) + (", ..." if len(known) > 20 else "") or "none"
                raise I1labError(f"no study named {name!r} in the registry (known: {listed})")
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
        scores = self.scores({r.id for *_, r in members})
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

    def field_keys(self) -> list[str]:
        """Every flattened spec key recorded so far."""
        with self.session() as s:
            return [k for (k,) in s.execute(select(FieldKeyRow.key).order_by(FieldKeyRow.key))]

    def count(self, table: Any) -> int:
        with self.session() as s:
            return int(s.scalar(select(func.count()).select_from(table)) or 0)
