"""Leases, the registry's half: a run trains on at most one worker at a time.

A worker trains a run only while it holds the run's lease: ``lease_owner`` set and ``lease_expires_at``
in the future, renewed by a heartbeat (the holder's half: :mod:`i1lab.registry.lease_holder`).
``lease_token`` is the fencing token: it grows by one whenever ownership changes (acquired, released,
taken over, interrupted), and every write a worker makes is conditional on the token it was given still
being current, so a worker that lost its lease (partitioned, paused, presumed dead) can no longer change
the run.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel
from sqlalchemy import bindparam, or_, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from i1lab.errors import I1labError
from i1lab.registry.base import CHUNK, connection_of, run_statement
from i1lab.registry.records import RunRecord, now
from i1lab.registry.runs import EVENT_INSERT, RunsMixin
from i1lab.registry.schema import CheckpointRow, RunRow
from i1lab.registry.scores import ScoresMixin


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


class LeasesMixin(RunsMixin, ScoresMixin):
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
        row = connection_of(s).execute(_lock_statement(self._LOCKED), {"run_id": run_id}).first()
        if row is None:
            raise I1labError(f"no run with id {run_id}")
        return row

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
        connection_of(s).execute(update(RunRow).where(RunRow.id == run_id).values(**values))
        self._event(s, run_id, "interrupted", row.node, why, t, cause="dead-worker")

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
                    conn.execute(EVENT_INSERT, events)
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
            record = RunRecord.model_validate(conn.execute(run_statement(), {"run_id": run_id}).first())
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
        """:meth:`add_checkpoint`, only if ``token`` is the current fencing token. The run's recorded step
        becomes at least ``step`` in the same transaction: progress is written every few seconds, so
        without it the registry could show a step below the run's latest checkpoint (and a resumed
        attempt, until its first progress write, a step below the one it resumed from)."""
        with self.session(write=True) as s:
            if not self._holds(s, run_id, token):
                return False
            self._insert(
                s,
                CheckpointRow,
                [{"run_id": run_id, "step": step, "path": path, "permanent": permanent, "created_at": now()}],
                ["run_id", "step"],
            )
            s.connection().execute(
                update(RunRow)
                .where(RunRow.id == run_id, RunRow.step < step)
                .values(step=step, updated_at=now())
            )
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
        conn.execute(EVENT_INSERT, rows)
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
        cause: str | None = "dead-worker",
    ) -> bool:
        """A driver's verdict on an attempt it launched whose worker died (or was stopped): if ``owner``
        still holds the lease, release it (the token moves on, fencing out the worker should it still be
        alive), count one interruption (if ``interrupted``, with an ``interrupted`` event of ``cause``),
        stop the clock at the last heartbeat and set ``status``. False if ``owner`` does not hold the
        lease (it never started, or lost it)."""
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
                self._event(s, run_id, "interrupted", row.node, detail, t, cause=cause)
            s.connection().execute(update(RunRow).where(RunRow.id == run_id).values(**values))
            if status != "queued":
                self._event(s, run_id, status, row.node, reason or detail, t)
            return True

    def interrupt_held(
        self,
        run_id: int,
        token: int,
        cause: str,
        detail: str,
        *,
        events: Sequence[LeaseEvent] = (),
        **values: Any,
    ) -> bool:
        """The worker holding ``token`` ends its attempt as interrupted (a notice to stop, a lost device):
        the run is queued again, its lease released (the token moves on), one interruption counted, the
        clock stopped, ``values`` (its step, training seconds) written and the attempt's own ``events``
        recorded before an ``interrupted`` event of ``cause``, in one transaction. The driver then retries
        it. False (nothing written) if the token is stale."""
        t = now()
        with self.session(write=True) as s:
            row = self._lock_run(s, run_id)
            if row.lease_token != token or row.lease_owner is None:
                return False
            s.connection().execute(
                update(RunRow)
                .where(RunRow.id == run_id)
                .values(
                    status="queued",
                    reason=None,
                    queued_at=t,
                    updated_at=t,
                    lease_owner=None,
                    lease_expires_at=None,
                    lease_token=token + 1,
                    interruptions=RunRow.interruptions + 1,
                    **self._stop_clock(row, t),
                    **values,
                )
            )
            for e in events:
                self._event(s, run_id, e.kind, row.node, e.detail, e.at)
            self._event(s, run_id, "interrupted", row.node, detail, t, cause=cause)
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
