"""The registry's handle on its database: engines, sessions and the upsert every subject writes with.

Concurrency: many processes (Ray workers, importers, the driver) write at once. Every write is one short
transaction; inserts are upserts keyed by natural keys (a run's hash, a score's (run, step, benchmark,
metric, judge)), so repeated or racing writes converge instead of failing. On SQLite a write transaction
takes the write lock when it begins (``BEGIN IMMEDIATE``, see :mod:`i1lab.registry.db`) and waits its
turn; on PostgreSQL rows are locked in a fixed order so that racing writers cannot deadlock.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, cast

from sqlalchemy import Engine, Table, bindparam, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session, sessionmaker

from i1lab import paths
from i1lab.errors import I1labError
from i1lab.registry.db import make_engine, migrate, raw_write, write_gate, writer
from i1lab.registry.schema import RunRow

CHUNK = 500  # values per IN (...) list (well under SQLite's bound-parameter limit)
BATCH = 5000  # rows per executemany call of an insert (bounds the driver's parameter buffers)


def connection_of(s: Session | Connection) -> Connection:
    """The Core connection of a session's transaction (or the connection itself)."""
    return s.connection() if isinstance(s, Session) else s


@functools.cache
def run_statement() -> Any:
    """One run's row by ``:run_id`` (every column, as a Core row)."""
    return select(cast(Table, RunRow.__table__)).where(RunRow.id == bindparam("run_id"))


class RegistryBase:
    """A handle on the registry database (SQLite under ``$I1LAB_HOME`` or ``$I1LAB_DATABASE_URL``); each
    subject of :class:`i1lab.registry.Registry` adds its methods to it."""

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
