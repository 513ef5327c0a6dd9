"""Optuna's storage on the registry's database.

Optuna's tables (``studies``, ``trials``, its own ``alembic_version``...) have the same names as some of
the registry's, so they live beside them rather than among them:

- PostgreSQL: the registry's database, in the schema ``optuna`` (created on first use; Optuna's
  connections put it alone on their ``search_path``);
- SQLite: a second file next to the registry's, ``<name>.optuna.db`` (``registry.optuna.db``), in WAL
  mode, where every transaction takes the write lock when it begins (``BEGIN IMMEDIATE``) and waits up
  to 60 s for it: concurrent writers queue instead of failing with "database is locked".

:func:`search_exists` answers "is this study name a search?" with one plain query and without
importing Optuna (``i1lab compare`` and the dashboard ask it for every study they show).
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import SQLAlchemyError

from i1lab import paths
from i1lab.errors import I1labError

if TYPE_CHECKING:
    from optuna.storages import RDBStorage

SCHEMA = "optuna"
BUSY_MS = 60_000


def sqlite_file(registry_url: str) -> Path | None:
    """The Optuna file beside a SQLite registry (None for a server database). Pure."""
    if not registry_url.startswith("sqlite"):
        return None
    path = registry_url.split(":///", 1)[-1] if ":///" in registry_url else ""
    if not path or path == ":memory:":
        raise I1labError("searches need a registry in a file or on a server, not an in-memory database")
    registry = Path(path)
    return registry.with_name(f"{registry.stem}.optuna{registry.suffix or '.db'}")


def storage_target(registry_url: str, readonly: bool = False) -> tuple[str, dict[str, Any]]:
    """``(url, engine_kwargs)`` of the Optuna storage of a registry; ``readonly``: connections that
    cannot write (SQLite ``mode=ro``, PostgreSQL read-only transactions). Pure."""
    file = sqlite_file(registry_url)
    if file is not None:
        url = f"sqlite:///file:{file.resolve()}?mode=ro&uri=true" if readonly else f"sqlite:///{file}"
        return url, {"connect_args": {"timeout": BUSY_MS / 1000}}
    options = f"-c search_path={SCHEMA}" + (" -c default_transaction_read_only=on" if readonly else "")
    return registry_url, {"connect_args": {"options": options}, "pool_pre_ping": True}


def _sqlite_connect(dbapi_conn: Any, _record: object) -> None:
    # The driver must not begin transactions itself: `_sqlite_begin` does, as a writer.
    dbapi_conn.isolation_level = None
    cursor = dbapi_conn.cursor()
    cursor.execute(f"PRAGMA busy_timeout={BUSY_MS}")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def _sqlite_begin(conn: Connection) -> None:
    # A deferred transaction that reads, then writes fails at once when another writer committed in
    # between, whatever the busy timeout; one that takes the lock first waits its turn instead.
    conn.exec_driver_sql("BEGIN IMMEDIATE")


def _prepare_sqlite(file: Path) -> None:
    file.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(file, timeout=BUSY_MS / 1000)
    try:
        if conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
            conn.execute("PRAGMA journal_mode=WAL")  # persistent: set once per file
    finally:
        conn.close()


def _prepare_schema(url: str) -> None:
    engine = create_engine(url)
    try:
        for attempt in range(5):
            try:
                with engine.begin() as conn:
                    conn.execute(text(f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}"))
                return
            except SQLAlchemyError:
                # two processes creating the schema at once: one of them fails on the catalog's
                # unique index; the schema exists when it retries
                if attempt == 4:
                    raise
                time.sleep(0.2 * (attempt + 1))
    finally:
        engine.dispose()


def open_storage(registry_url: str | None = None, *, readonly: bool = False) -> RDBStorage:
    """Optuna's RDB storage on the registry database (see the module doc); tables created on first use."""
    import optuna
    from optuna.storages import RDBStorage

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    url = registry_url or paths.database_url()
    target, kwargs = storage_target(url, readonly)
    file = sqlite_file(url)
    if readonly and not search_storage_exists(url):
        raise I1labError(f"no search has been run on the registry at {url}")
    try:
        if file is not None and not readonly:
            _prepare_sqlite(file)
        elif file is None and not readonly:
            _prepare_schema(url)
        for attempt in range(3):
            try:
                storage = RDBStorage(
                    target,
                    engine_kwargs=kwargs,
                    skip_table_creation=readonly,
                    skip_compatibility_check=readonly,
                )
                break
            except (SQLAlchemyError, optuna.exceptions.StorageInternalError):
                if attempt == 2:
                    raise
                time.sleep(0.5 * (attempt + 1))  # two processes creating Optuna's tables at once
    except (SQLAlchemyError, sqlite3.Error, OSError) as exc:
        detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise I1labError(f"cannot open the search storage of {url}: {detail}") from None
    if file is not None and not readonly:
        engine: Engine = storage.engine
        event.listen(engine, "connect", _sqlite_connect)
        event.listen(engine, "begin", _sqlite_begin)
        engine.dispose()  # connections opened while creating the tables lack the settings above
    return storage


def search_storage_exists(registry_url: str) -> bool:
    file = sqlite_file(registry_url)
    return file.is_file() if file is not None else True


def search_exists(name: str, registry_url: str | None = None, engine: Engine | None = None) -> bool:
    """Whether ``name`` is a search in the Optuna storage of this registry (no Optuna import).

    ``engine``: an engine on the registry database to reuse (PostgreSQL)."""
    url = registry_url or paths.database_url()
    file = sqlite_file(url)
    if file is not None:
        if not file.is_file():
            return False
        try:
            lite = sqlite3.connect(f"file:{file}?mode=ro", uri=True, timeout=BUSY_MS / 1000)
            try:
                row = lite.execute("SELECT 1 FROM studies WHERE study_name = ?", (name,)).fetchone()
            finally:
                lite.close()
        except sqlite3.Error:
            return False
        return row is not None
    own = engine is None
    eng = engine if engine is not None else create_engine(url)
    try:
        with eng.connect() as conn:
            found = conn.execute(
                text(f"SELECT 1 FROM {SCHEMA}.studies WHERE study_name = :name"), {"name": name}
            ).first()
        return found is not None
    except SQLAlchemyError:
        return False
    finally:
        if own:
            eng.dispose()
