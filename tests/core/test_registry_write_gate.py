"""The SQLite write gate: writers to one registry file take turns on a flock, across threads and processes."""

from __future__ import annotations

import fcntl
import os
import threading
import time
from pathlib import Path

from sqlalchemy import func, insert, select

from i1lab.registry import Registry
from i1lab.registry.db import WriteGate
from i1lab.registry.schema import StudyRow
from i1lab.registry.store import now


def _entered_within(gate: WriteGate, seconds: float) -> tuple[threading.Event, threading.Event]:
    """Start a thread that holds ``gate`` until told to let go; returns (entered, release)."""
    entered, release = threading.Event(), threading.Event()

    def hold() -> None:
        with gate.hold():
            entered.set()
            release.wait(10)

    threading.Thread(target=hold, daemon=True).start()
    entered.wait(seconds)
    return entered, release


def test_threads_take_turns_and_holding_is_reentrant(tmp_path: Path) -> None:
    gate = WriteGate(str(tmp_path / "registry.db"))
    with gate.hold():
        with gate.hold():  # nested in the same thread: no deadlock
            pass
        # still held after the inner block: another thread must wait
        entered, release = _entered_within(gate, 0.3)
        assert not entered.is_set()
    assert entered.wait(5), "the waiting thread never got the gate after it was let go"
    release.set()


def test_another_process_is_kept_out_while_held(tmp_path: Path) -> None:
    gate = WriteGate(str(tmp_path / "registry.db"))
    with gate.hold():
        pid = os.fork()
        if pid == 0:  # the child: its own descriptor, so the parent's lock excludes it
            code = 0
            try:
                with open(gate.path, "a") as handle:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                code = 7
            os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.WEXITSTATUS(status) == 7
    with open(gate.path, "a") as handle:  # free again once the block ends
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        fcntl.flock(handle, fcntl.LOCK_UN)


def test_a_forked_child_does_not_inherit_the_parents_hold(tmp_path: Path) -> None:
    gate = WriteGate(str(tmp_path / "registry.db"))
    with gate.hold():
        pid = os.fork()
        if pid == 0:  # the child uses the same gate object: it must open its own lock and wait
            entered, release = _entered_within(gate, 0.5)
            release.set()
            os._exit(3 if entered.is_set() else 0)
        _, status = os.waitpid(pid, 0)
    assert os.WEXITSTATUS(status) == 0, "the forked child entered the gate its parent held"


def test_registry_writers_in_threads_all_land(tmp_path: Path) -> None:
    """Several threads writing through one registry (each its own transaction, read then write): every
    write lands and the gate file sits beside the database."""
    reg = Registry(f"sqlite:///{tmp_path / 'registry.db'}")
    errors: list[BaseException] = []
    writes = 40

    def write(study: str) -> None:
        try:
            for i in range(writes // 4):
                with reg.session(write=True) as s:
                    n = s.scalar(select(func.count()).select_from(StudyRow))
                    t = now()
                    s.execute(insert(StudyRow).values(name=f"{study}-{i}-{n}", created_at=t, updated_at=t))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(f"s{n}",)) for n in range(4)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    assert time.monotonic() - t0 < 60
    assert (tmp_path / "registry.db.write.lock").exists()
    with reg.session() as s:
        assert s.scalar(select(func.count()).select_from(StudyRow)) == writes
