"""Opening the registry database: engine settings, SQLite pragmas, Alembic migration to head."""

from __future__ import annotations

import os
import threading
from collections import namedtuple
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, nullcontext
from functools import cache
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, inspect, text
from sqlalchemy.engine import Connection
from sqlalchemy.pool import NullPool, QueuePool
from sqlalchemy.sql.expression import ClauseElement

from i1lab.errors import I1labError

MIGRATIONS = Path(__file__).parent / "migrations"
MIGRATION_LOCK_KEY = 0x6931_6C61_6200  # PostgreSQL advisory lock held while migrating ("i1lab")


@cache
def head_revision() -> str:
    """The newest migration id, read from the migration files (without importing Alembic)."""
    heads = []
    revised = set()
    for script in (MIGRATIONS / "versions").glob("[0-9]*.py"):
        ns: dict[str, object] = {}
        for line in script.read_text().splitlines():
            if line.startswith(("revision =", "down_revision =")):
                exec(line, {}, ns)
        heads.append(str(ns["revision"]))
        if ns.get("down_revision"):
            revised.add(str(ns["down_revision"]))
    remaining = [h for h in heads if h not in revised]
    if len(remaining) != 1:
        raise RuntimeError(f"migrations must have exactly one head, found {remaining}")
    return remaining[0]


WRITE = "i1lab_write"
MMAP_BYTES = 0x7FFF0000  # SQLite's default upper bound for mmap_size
CACHE_KIB = 131_072  # page cache per connection, at most (allocated as pages are read)


def _sqlite_pragmas(dbapi_conn: object, _record: object) -> None:
    # The driver must not open transactions by itself: ``_sqlite_begin`` does, choosing their kind.
    dbapi_conn.isolation_level = None  # type: ignore[attr-defined]
    cursor = dbapi_conn.cursor()  # type: ignore[attr-defined]
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=60000")
    cursor.execute("PRAGMA foreign_keys=ON")
    # Read through a memory map: connections are short-lived (no pool), and a mapped file needs no
    # copy into each new connection's page cache.
    cursor.execute(f"PRAGMA mmap_size={MMAP_BYTES}")
    # A pooled connection keeps the index pages it read: repeated questions over a large registry
    # (the dashboard, a notebook) find them there (SQLite's default cache is 2 MiB; this is a bound).
    cursor.execute(f"PRAGMA cache_size=-{CACHE_KIB}")
    cursor.close()


def _sqlite_begin(conn: Connection) -> None:
    """Writers take SQLite's write lock when their transaction begins (``BEGIN IMMEDIATE``).

    A deferred transaction that reads and then writes cannot wait for the lock: if another writer
    committed since its read, SQLite fails it at once with "database is locked" whatever the busy
    timeout. Taking the lock up front makes every writer wait its turn (up to ``busy_timeout``) instead.
    Readers begin deferred and never block or get blocked (WAL)."""
    conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get(WRITE) else "BEGIN")


def make_engine(url: str) -> Engine:
    """An engine for the registry. SQLite: WAL journal, a 60 s busy timeout, foreign keys, and
    immediate write transactions on engines derived with :func:`writer`; PostgreSQL: a checked pool."""
    if url.startswith("sqlite"):
        path = url.split(":///", 1)[-1]
        in_memory = not path or path == ":memory:"
        if not in_memory:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        # A file database keeps its connections open in a pool: closing the last connection of a WAL
        # database checkpoints it, deletes its -wal file and unmaps it, which would tax every session.
        # (A process forked after using the engine must call ``engine.dispose(close=False)`` first.)
        engine = create_engine(
            url,
            poolclass=NullPool if in_memory else QueuePool,
            connect_args={"timeout": 60, "check_same_thread": False},
        )
        event.listen(engine, "connect", _sqlite_pragmas)
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    return create_engine(url, pool_pre_ping=True)


def fetch_rows(conn: Connection, stmt: ClauseElement) -> list[tuple[Any, ...]]:
    """The rows of a SQLAlchemy statement as the driver returns them (plain tuples).

    For large results of plain columns: the statement is compiled by SQLAlchemy as usual (values stay
    bound parameters) and run on the connection's own DBAPI cursor, inside its transaction, skipping
    SQLAlchemy's per-row objects and result processors (about 2 us a row). Values come back as the
    driver gives them (SQLite: booleans as 0/1), and bound values must be plain numbers and strings."""
    compiled: Any = stmt.compile(dialect=conn.dialect, compile_kwargs={"render_postcompile": True})
    params = compiled.params
    args: Any = tuple(params[name] for name in compiled.positiontup or ()) if compiled.positional else params
    cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
    try:
        cursor.execute(str(compiled), args)
        return list(cursor.fetchall())
    finally:
        cursor.close()


class WriteGate:
    """Writers to one SQLite file take turns on an exclusive ``flock`` of ``<database>.write.lock``,
    held from before ``BEGIN IMMEDIATE`` until the transaction has ended.

    SQLite alone makes a writer that finds the database locked poll for it, sleeping 1, 2, 5, 10 ms...
    between tries (its busy handler): with a few processes writing short transactions (workers
    leasing and finishing runs, a driver queueing them) most of a transaction's time was that sleep.
    A blocked ``flock`` is woken by the kernel the moment the holder lets go. Re-entrant per thread;
    each thread has its own descriptor, so threads of one process take turns too."""

    def __init__(self, database: str) -> None:
        self.path = f"{database}.write.lock"
        self._local = threading.local()

    @contextmanager
    def hold(self) -> Iterator[None]:
        import fcntl

        local = self._local
        if getattr(local, "pid", None) != os.getpid():
            # first use in this thread, or a forked child: a descriptor inherited across fork shares
            # its lock with the parent's, so the child opens its own
            local.pid, local.handle, local.depth = os.getpid(), None, 0
        depth = local.depth
        if depth == 0:
            if local.handle is None:
                local.handle = open(self.path, "a")  # noqa: SIM115 (kept for the thread's life)
            fcntl.flock(local.handle, fcntl.LOCK_EX)
        local.depth = depth + 1
        try:
            yield
        finally:
            local.depth -= 1
            if local.depth == 0:
                fcntl.flock(local.handle, fcntl.LOCK_UN)


class _Prepared:
    """A Core statement compiled once for SQLite, with its bind and result processors."""

    __slots__ = ("binds", "compiled", "names", "results", "row", "sql", "stmt")

    def __init__(self, stmt: Any, dialect: Any, columns: Sequence[str] | None) -> None:
        self.stmt = stmt  # kept alive: the cache is keyed by its id
        compiled: Any = stmt.compile(dialect=dialect, column_keys=list(columns) if columns else None)
        self.compiled = compiled
        self.sql = str(compiled)
        self.names = tuple(compiled.positiontup or ())
        self.binds = dict(compiled._bind_processors)
        selected = list(getattr(stmt, "selected_columns", ()))
        self.results = [c.type._cached_result_processor(dialect, None) for c in selected]
        self.row: Any = namedtuple("Row", [c.key for c in selected], rename=True) if selected else None

    def args(self, params: Mapping[str, Any]) -> tuple[Any, ...]:
        """The DBAPI arguments of one execution, in the compiled statement's order, bind-processed."""
        values = self.compiled.construct_params(params)
        binds = self.binds
        return tuple(binds[n](values[n]) if n in binds else values[n] for n in self.names)


class RawResult:
    """What :meth:`RawTransaction.execute` returns: the rows (attribute access) and the row count."""

    __slots__ = ("rowcount", "rows")

    def __init__(self, rows: list[Any], rowcount: int) -> None:
        self.rows, self.rowcount = rows, rowcount

    def first(self) -> Any:
        return self.rows[0] if self.rows else None

    def all(self) -> list[Any]:
        return self.rows


_PREPARED: dict[tuple[str, int, tuple[str, ...]], _Prepared] = {}


class RawTransaction:
    """A SQLite write transaction driven on the DBAPI cursor: Core statements compiled once (by
    SQLAlchemy, with its type processing) and executed without SQLAlchemy's per-call machinery (about
    15 us a statement instead of 150). For the lease methods a worker calls for every run; it offers
    the part of :class:`sqlalchemy.engine.Connection` they use: ``execute(stmt, params)``."""

    def __init__(self, cursor: Any, dialect: Any) -> None:
        self.cursor, self.dialect = cursor, dialect

    def execute(
        self, stmt: Any, params: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None = None
    ) -> RawResult:
        """Run ``stmt`` with ``params``; a list of parameter sets runs it once per set (``executemany``,
        for an INSERT of rows with the same keys)."""
        if isinstance(params, Sequence):
            return self._execute_many(stmt, params)
        params = params or {}
        prep = self._prepared(stmt, tuple(params) if getattr(stmt, "is_insert", False) else ())
        cur = self.cursor
        cur.execute(prep.sql, prep.args(params))
        rows: list[Any] = []
        if prep.row is not None:
            results = prep.results
            make = prep.row._make
            rows = [
                make(p(v) if p is not None else v for p, v in zip(results, r, strict=True))
                for r in cur.fetchall()
            ]
        return RawResult(rows, cur.rowcount)

    def _execute_many(self, stmt: Any, rows: Sequence[Mapping[str, Any]]) -> RawResult:
        if not rows:
            return RawResult([], 0)
        prep = self._prepared(stmt, tuple(rows[0]))
        self.cursor.executemany(prep.sql, [prep.args(params) for params in rows])
        return RawResult([], self.cursor.rowcount)

    def _prepared(self, stmt: Any, columns: tuple[str, ...]) -> _Prepared:
        """``stmt`` compiled for these INSERT columns (none for other statements), once per process."""
        key = (self.dialect.name, id(stmt), columns)
        prep = _PREPARED.get(key)
        if prep is None or prep.stmt is not stmt:
            prep = _Prepared(stmt, self.dialect, columns)
            if len(_PREPARED) > 256:  # statements built per call (rare paths) do not pile up
                _PREPARED.clear()
            _PREPARED[key] = prep
        return prep


@contextmanager
def raw_write(engine: Engine, gate: WriteGate | None) -> Iterator[RawTransaction]:
    """One ``BEGIN IMMEDIATE`` transaction on a pooled SQLite connection (through ``gate``, which is
    held only from ``BEGIN`` to ``COMMIT``: the pool's checkout and checkin happen outside it)."""
    fairy = engine.raw_connection()
    try:
        cursor = fairy.driver_connection.cursor()  # type: ignore[union-attr]
        with gate.hold() if gate is not None else nullcontext():
            cursor.execute("BEGIN IMMEDIATE")
            try:
                yield RawTransaction(cursor, engine.dialect)
            except BaseException:
                cursor.execute("ROLLBACK")
                raise
            cursor.execute("COMMIT")
        cursor.close()
    finally:
        fairy.close()


@contextmanager
def raw_read(engine: Engine) -> Iterator[RawTransaction]:
    """Statements that only read, on a pooled SQLite connection's cursor (no transaction, no gate)."""
    fairy = engine.raw_connection()
    try:
        cursor = fairy.driver_connection.cursor()  # type: ignore[union-attr]
        yield RawTransaction(cursor, engine.dialect)
        cursor.close()
    finally:
        fairy.close()


def write_gate(engine: Engine) -> WriteGate | None:
    """The gate of a SQLite file database (None for PostgreSQL and in-memory SQLite)."""
    database = engine.url.database
    if engine.dialect.name != "sqlite" or not database or database == ":memory:":
        return None
    return WriteGate(database)


def execute_many(
    conn: Connection, stmt: ClauseElement, columns: Sequence[str], rows: Sequence[Sequence[Any]]
) -> None:
    """Run an INSERT of plain values (numbers, strings, None) for many rows on the connection's own
    DBAPI cursor, inside its transaction: compiled once by SQLAlchemy, then the driver's executemany
    with tuples (about 3 us a row instead of SQLAlchemy's 15, which builds a parameter dict per row).
    ``rows`` hold the values of ``columns`` in that order."""
    compiled: Any = stmt.compile(dialect=conn.dialect, column_keys=list(columns))
    cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
    try:
        if compiled.positional:
            order = [columns.index(name) for name in compiled.positiontup]
            same = order == list(range(len(columns)))
            cursor.executemany(str(compiled), rows if same else [tuple(r[i] for i in order) for r in rows])
        else:
            cursor.executemany(str(compiled), [dict(zip(columns, r, strict=True)) for r in rows])
    finally:
        cursor.close()


def writer(engine: Engine) -> Engine:
    """The same engine, marked so that its transactions begin as writers (see ``_sqlite_begin``)."""
    return engine.execution_options(**{WRITE: True})


def current_revision(conn: Connection) -> str | None:
    if not inspect(conn).has_table("alembic_version"):
        return None
    row = conn.execute(text("SELECT version_num FROM alembic_version")).first()
    return str(row[0]) if row else None


@contextmanager
def _migration_lock(engine: Engine) -> Iterator[None]:
    """One migrating process at a time: an exclusive lock on ``<database>.migrate.lock`` for SQLite (two
    processes opening a new registry at once would otherwise both start writing and one would fail with
    "database is locked"), a session advisory lock for PostgreSQL."""
    if engine.dialect.name == "postgresql":
        with engine.connect() as conn:
            conn.execute(text("SELECT pg_advisory_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
            try:
                yield
            finally:
                conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": MIGRATION_LOCK_KEY})
                conn.commit()
        return
    database = engine.url.database
    if engine.dialect.name != "sqlite" or not database or database == ":memory:":
        yield
        return
    import fcntl

    with open(f"{database}.migrate.lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def migrate(engine: Engine) -> None:
    """Upgrade the schema to the newest migration; a no-op (one query) when already there."""
    with engine.connect() as conn:
        if current_revision(conn) == head_revision():
            return
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    with _migration_lock(engine):
        with engine.connect() as conn:  # another process may have migrated while this one waited
            if current_revision(conn) == head_revision():
                return
        with engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")
    with engine.connect() as conn:
        if current_revision(conn) != head_revision():
            raise I1labError("registry migration did not reach the head revision")
