"""Leases, the holder's half: a run trains on at most one worker at a time, however many submitters or
retries there are.

A worker trains a run only while it holds the run's lease in the registry (the registry's half:
:mod:`i1lab.registry.leases`): it acquires it atomically before training, a heartbeat thread renews it
every quarter of its time-to-live, and every write it makes about the run (progress, checkpoints, scores,
events, the final status) is conditional on its fencing token still being the current one. A worker whose
lease was taken over (it stalled past the time-to-live, its node was presumed dead, the run was cancelled)
finds out at its next heartbeat or write and stops at its next step with :class:`LeaseLost`.

The time-to-live is ``$I1LAB_LEASE_SECONDS`` (default 30 s): how long a dead worker's run waits before
another submitter may take it over when nobody saw the worker die (a driver that sees its task die
releases the lease at once).
"""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from typing import TYPE_CHECKING, Any, Literal

from i1lab.errors import I1labError
from i1lab.registry.leases import LeaseEvent, LeaseGrant, LeaseRequest
from i1lab.registry.records import now

if TYPE_CHECKING:
    from collections.abc import Sequence

    from i1lab.registry import EvaluationRef, Registry, ScoreRecord
    from i1lab.registry.records import PromptScoreRecord

DEFAULT_LEASE_SECONDS = 30.0
LEASE_ENV = "I1LAB_LEASE_SECONDS"


class LeaseLost(I1labError):
    """This worker no longer holds the run's lease: another owns the run now, so this one must stop."""


def lease_seconds() -> float:
    """The lease time-to-live (``$I1LAB_LEASE_SECONDS``, default 30)."""
    raw = os.environ.get(LEASE_ENV, "").strip()
    if not raw:
        return DEFAULT_LEASE_SECONDS
    try:
        value = float(raw)
    except ValueError:
        raise I1labError(f"${LEASE_ENV}: {raw!r} is not a number of seconds") from None
    if not value > 0:
        raise I1labError(f"${LEASE_ENV}: must be above 0 seconds (got {raw})")
    return value


def new_owner() -> str:
    """A lease owner name unique to this attempt."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:12]}"


class _Heartbeats:
    """One daemon thread per process renews every lease the process holds (a worker holds one at a
    time), each every quarter of its time-to-live: an attempt starts and ends without starting or
    joining a thread of its own."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._due: dict[Lease, float] = {}  # lease -> when its next heartbeat is due (monotonic)
        self._thread: threading.Thread | None = None
        self._pid = 0
        self._wake = 0.0  # when the thread wakes up next by itself (monotonic)

    def add(self, lease: Lease) -> None:
        with self._cond:
            if self._thread is None or self._pid != os.getpid() or not self._thread.is_alive():
                self._pid = os.getpid()  # a forked child starts its own thread
                self._wake = 0.0
                self._thread = threading.Thread(target=self._run, name="i1lab-leases", daemon=True)
                self._thread.start()
            due = time.monotonic() + lease.interval
            self._due[lease] = due
            if due < self._wake:  # else the thread wakes up in time anyway (a batch of short runs
                self._cond.notify()  # adds a lease per run: no thread switch for each)

    def remove(self, lease: Lease) -> None:
        with self._cond:
            self._due.pop(lease, None)
        # a heartbeat of it in progress ends first (later ones see it stopped); one stuck on an
        # unreachable registry is not waited for longer than a thread join used to be
        if lease._renewing.acquire(timeout=5):
            lease._renewing.release()

    def _run(self) -> None:
        while True:
            with self._cond:
                t = time.monotonic()
                due = [lease for lease, at in self._due.items() if at <= t]
                if not due:
                    self._wake = min(self._due.values(), default=t + 60.0)
                    self._cond.wait(self._wake - t)
                    continue
                self._wake = 0.0  # renewing now: a lease added meanwhile notifies
                for lease in due:
                    self._due[lease] = t + lease.interval
            for lease in due:
                lease._beat()
                if lease.lost:
                    with self._cond:
                        self._due.pop(lease, None)


class Lease:
    """A lease this process holds on a run, kept alive by a heartbeat thread; fenced writes go through it.

    Every write returns False (and marks the lease lost) when the token is no longer current;
    :meth:`check` raises :class:`LeaseLost` once it is."""

    def __init__(self, registry: Registry, run_id: int, token: int, ttl: float, node: str | None) -> None:
        self.registry = registry
        self.run_id = run_id
        self.token = token
        self.ttl = ttl
        self.node = node
        self._lost = threading.Event()
        self._stop = threading.Event()
        self._renewing = threading.Lock()  # held by the heartbeat while it renews this lease
        self._confirmed = time.monotonic()  # when the registry last confirmed the lease
        self._lock = threading.Lock()
        self._pending: list[LeaseEvent] = []  # deferred events (see :meth:`event`)
        self.handed: LeaseGrant | None = None  # the lease :meth:`finish` took for ``then``

    # --- heartbeat -------------------------------------------------------------------------------
    @property
    def interval(self) -> float:
        """Seconds between heartbeats: a quarter of the time-to-live."""
        return max(0.2, self.ttl / 4)

    def start(self) -> Lease:
        _HEARTBEATS.add(self)
        return self

    def stop(self) -> None:
        """No heartbeat of this lease runs after this returns."""
        self._stop.set()
        _HEARTBEATS.remove(self)

    def _beat(self) -> None:
        """One heartbeat (called by the process's heartbeat thread), unless the lease was stopped."""
        with self._renewing:
            if not self._stop.is_set():
                self.renew()

    def _take_events(self) -> list[LeaseEvent]:
        with self._lock:
            events, self._pending = self._pending, []
        return events

    def _put_back(self, events: list[LeaseEvent]) -> None:
        with self._lock:
            self._pending[:0] = events

    def renew(self, **values: Any) -> bool:
        """Extend the lease (writing ``values`` and the deferred events with it). A registry that cannot
        be reached for longer than the time-to-live counts as a lost lease: someone may have taken the
        run over meanwhile."""
        if self._lost.is_set():
            return False
        events = self._take_events()
        try:
            ok = self.registry.renew_lease(
                self.run_id, self.token, self.ttl, events=events, event_node=self.node, **values
            )
        except Exception:
            self._put_back(events)
            if time.monotonic() - self._confirmed > self.ttl:
                self._lost.set()
            return False
        if ok:
            self._confirmed = time.monotonic()
        else:
            self._lost.set()
        return ok

    # --- state -----------------------------------------------------------------------------------
    @property
    def lost(self) -> bool:
        return self._lost.is_set()

    def check(self) -> None:
        if self._lost.is_set():
            raise LeaseLost(
                f"run {self.run_id}: lease lost (token {self.token} is no longer current); stopped"
            )

    def _fenced(self, ok: bool) -> bool:
        if not ok:
            self._lost.set()
        return ok

    # --- fenced writes ---------------------------------------------------------------------------
    def _flush(self) -> None:
        """Write deferred events before another fenced write, so that events keep their order."""
        if self._pending:
            self.renew()

    def checkpoint(self, step: int, path: str | None, permanent: bool) -> bool:
        self._flush()
        return self._fenced(self.registry.fenced_checkpoint(self.run_id, self.token, step, path, permanent))

    def scores(
        self,
        scores: list[ScoreRecord],
        *,
        steps: Sequence[EvaluationRef] = (),
        eval_seconds: float,
        detail: str | None,
        prompts: Sequence[PromptScoreRecord] = (),
    ) -> bool:
        """Record an evaluation's scores (and per-prompt values) and mark its ``steps`` done, in one
        transaction (fenced)."""
        self._flush()
        return self._fenced(
            self.registry.fenced_scores(
                self.run_id,
                self.token,
                scores,
                steps=steps,
                eval_seconds=eval_seconds,
                node=self.node,
                detail=detail,
                prompts=prompts,
            )
        )

    def event(self, kind: str, detail: str | None = None, *, defer: bool = False) -> bool:
        """Record an event of this attempt; ``defer``: with the next fenced write (a progress update, a
        heartbeat, the final status) instead of a transaction of its own. Its time is now either way."""
        if defer:
            if self._lost.is_set():
                return False
            with self._lock:
                self._pending.append(LeaseEvent(kind=kind, detail=detail, at=now()))
            return True
        self._flush()
        return self._fenced(self.registry.fenced_event(self.run_id, self.token, kind, self.node, detail))

    def interrupt(self, cause: str, detail: str, **values: Any) -> bool:
        """End this attempt as interrupted by ``cause`` (after the deferred events): the run is queued
        again for the driver to retry and the lease released (fenced)."""
        ok = self.registry.interrupt_held(
            self.run_id, self.token, cause, detail, events=self._take_events(), **values
        )
        self._stop.set()
        return self._fenced(ok)

    def finish(
        self,
        status: Literal["finished", "failed", "cancelled"],
        reason: str | None = None,
        *,
        then: LeaseRequest | None = None,
        **values: Any,
    ) -> bool:
        """Record the terminal status (after the deferred events) and release the lease (fenced).

        ``then``: in the same transaction, take that run's lease for this worker (the next run of a
        batch); the answer is left in :attr:`handed`."""
        if then is None:
            ok = self.registry.finish_lease(
                self.run_id, self.token, status, reason, events=self._take_events(), **values
            )
        else:
            ok, self.handed = self.registry.finish_lease_and_acquire(
                self.run_id,
                self.token,
                status,
                reason,
                events=self._take_events(),
                then=then,
                ttl=self.ttl,
                node=self.node,
                **values,
            )
        self._stop.set()
        return self._fenced(ok)


_HEARTBEATS = _Heartbeats()
