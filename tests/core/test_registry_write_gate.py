"""The SQLite write gate: writers to one registry file take turns on a flock, across threads and processes."""

from __future__ import annotations

import fcntl
import os
import threading
import time
from pathlib import Path

from sqlalchemy import func, insert, select, update

from i1lab.registry import Registry
from i1lab.registry.db import WriteGate
from i1lab.registry.records import now
from i1lab.registry.schema import RunRow, StudyRow


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


def test_a_raw_lease_transaction_commits_whole_or_not_at_all(tmp_path: Path) -> None:
    """The lease methods' SQLite transactions run on the DBAPI cursor: datetimes and JSON go through
    SQLAlchemy's type processing both ways, and an error inside rolls the whole transaction back."""
    from i1lab.registry import PlannedMember
    from i1lab.registry.db import raw_write

    reg = Registry(f"sqlite:///{tmp_path / 'registry.db'}")
    member = PlannedMember(
        name="a", label="a", hash="ab" * 32, is_baseline=True, baseline="a", varied={},
        spec={"name": "a"}, total_steps=3, workdir=str(tmp_path / "w"),
    )  # fmt: skip
    run_id = reg.record_plan("s", [member])["a"]
    grant = reg.acquire_lease(run_id, "me", ttl=30, node="n1")
    assert grant.state == "acquired" and grant.token == 1
    state = reg.lease_states([run_id])[run_id]
    assert state.owner == "me" and state.live and state.expires_at is not None
    assert reg.run(run_id).versions  # JSON written through the raw path reads back as a dict
    try:
        with raw_write(reg.engine, reg._gate) as tx:
            tx.execute(update(RunRow).where(RunRow.id == run_id).values(status="failed"))
            raise RuntimeError("boom")
    except RuntimeError:
        pass
    assert reg.run(run_id).status == "running"  # rolled back
    assert reg.finish_lease(run_id, 1, "finished", step=3)
    assert not reg.finish_lease(run_id, 1, "finished")  # the token moved on: fenced out
    done = reg.run(run_id)
    assert (done.status, done.step, done.lease_token, done.lease_owner) == ("finished", 3, 2, None)
    assert [e.kind for e in reg.events([run_id])][-2:] == ["leased", "finished"]
