"""Opening the registry so that nothing can write to it (the dashboard's view).

SQLite is opened through a ``mode=ro`` connection with ``PRAGMA query_only`` (a write fails with "attempt
to write a readonly database"), PostgreSQL with ``default_transaction_read_only`` (a write fails in the
server)."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.pool import NullPool

from i1lab import paths
from i1lab.errors import I1labError
from i1lab.registry import Registry


def sqlite_path(url: str) -> Path | None:
    """The file of a ``sqlite:///...`` URL (None for an in-memory database or another backend)."""
    if not url.startswith("sqlite"):
        return None
    path = url.split(":///", 1)[-1] if ":///" in url else ""
    path = path.split("?", 1)[0]
    return Path(path) if path and path != ":memory:" else None


def _readonly_pragmas(dbapi_conn: Any, _record: object) -> None:
    cursor = dbapi_conn.cursor()
    cursor.execute("PRAGMA query_only=ON")
    cursor.execute("PRAGMA busy_timeout=60000")
    cursor.close()


def readonly_engine(url: str) -> Engine:
    """An engine that cannot write: SQLite opened with ``mode=ro``, PostgreSQL in read-only transactions."""
    if url.startswith("sqlite"):
        path = sqlite_path(url)
        if path is None or not path.is_file():
            raise I1labError(
                f"no registry at {path or url}: run a study first (i1lab submit), or point "
                "I1LAB_HOME / I1LAB_DATABASE_URL at an existing registry"
            )
        uri = f"{path.resolve().as_uri()}?mode=ro"

        def connect() -> sqlite3.Connection:
            return sqlite3.connect(uri, uri=True, timeout=60, check_same_thread=False)

        engine = create_engine("sqlite+pysqlite://", creator=connect, poolclass=NullPool)
        event.listen(engine, "connect", _readonly_pragmas)
        return engine
    connect_args: dict[str, Any] = {}
    if url.startswith("postgresql"):
        connect_args["options"] = "-c default_transaction_read_only=on"
    return create_engine(url, pool_pre_ping=True, connect_args=connect_args)


def open_registry(url: str | None = None) -> Registry:
    """The registry at ``url`` (default: ``$I1LAB_DATABASE_URL`` or ``$I1LAB_HOME/registry.db``), read-only.

    A registry whose schema is older than this i1lab cannot be migrated from here: run any writing
    i1lab command (e.g. ``i1lab status``) once first."""
    url = url or paths.database_url()
    return Registry(url, engine=readonly_engine(url))


def mlflow_experiment_id(tracking_uri: str, study: str) -> str | None:
    """The id of the study's active experiment in an MLflow store database (SQLite or another SQL
    backend), read-only; None when there is none or the URI is not a database."""
    sql = "SELECT experiment_id FROM experiments WHERE name = :name AND lifecycle_stage = 'active'"
    if tracking_uri.startswith("sqlite"):
        path = sqlite_path(tracking_uri)
        if path is None or not path.is_file():
            return None
        with sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=5) as conn:
            row = conn.execute(sql.replace(":name", "?"), (study,)).fetchone()
        return str(row[0]) if row else None
    if "://" in tracking_uri and not tracking_uri.startswith(("file:", "databricks")):
        engine = readonly_engine(tracking_uri)
        try:
            with engine.connect() as conn:
                value = conn.execute(text(sql), {"name": study}).scalar()
        finally:
            engine.dispose()
        return str(value) if value is not None else None
    return None
