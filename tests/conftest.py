"""Shared fixtures: every test gets its own I1LAB_HOME; CPU-only JAX."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ.setdefault("JAX_PLATFORMS", "cpu")
REPO = Path(__file__).resolve().parents[1]
EXPERIMENTS = REPO / "experiments"


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    h = tmp_path / "home"
    monkeypatch.setenv("I1LAB_HOME", str(h))
    monkeypatch.delenv("I1LAB_DATABASE_URL", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    return h


# --- a real PostgreSQL server for the registry tests (started once per session) -------------------
def _pg_binary(name: str) -> str | None:
    import glob
    import shutil

    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), key=lambda p: int(p.split("/")[4]))
    return found[-1] if found else shutil.which(name)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """A PostgreSQL server on a free loopback port, in a temporary folder, for this test session.

    Yields a libpq URL to its ``postgres`` database (user ``postgres``, trust auth). Run as root, the
    server runs as the ``postgres`` system user (created if missing): PostgreSQL refuses to run as root.
    A missing PostgreSQL fails the tests that need it (``scripts/install.sh --test`` installs it)."""
    import shutil
    import subprocess
    import tempfile

    initdb, pg_ctl = _pg_binary("initdb"), _pg_binary("pg_ctl")
    if not initdb or not pg_ctl:
        pytest.fail(
            "PostgreSQL server programs (initdb, pg_ctl) not found: install them with "
            "`bash scripts/install.sh --test` (Debian package postgresql)",
            pytrace=False,
        )
    root = Path(tempfile.mkdtemp(prefix="i1lab-pg-"))
    prefix: list[str] = []
    if os.geteuid() == 0:
        import pwd

        try:
            user = pwd.getpwnam("postgres")
        except KeyError:
            subprocess.run(
                ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", "postgres"],
                check=True,
                capture_output=True,
            )
            user = pwd.getpwnam("postgres")
        os.chown(root, user.pw_uid, user.pw_gid)
        prefix = ["runuser", "-u", "postgres", "--"]
    data, port = root / "data", _free_port()

    def run(*args: str) -> None:
        done = subprocess.run([*prefix, *args], capture_output=True, text=True, timeout=120, check=False)
        if done.returncode != 0:
            log = (root / "server.log").read_text() if (root / "server.log").is_file() else ""
            tail = (done.stdout + done.stderr + log).strip().splitlines()[-5:]
            pytest.fail(f"PostgreSQL: {' '.join(args[:2])} failed: {' | '.join(tail)}", pytrace=False)

    run(initdb, "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-locale")
    options = (
        f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off "
        "-c full_page_writes=off -c max_connections=200"
    )
    run(pg_ctl, "-D", str(data), "-l", str(root / "server.log"), "-o", options, "-w", "-t", "60", "start")
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(
            [*prefix, pg_ctl, "-D", str(data), "-m", "immediate", "-w", "stop"], capture_output=True
        )
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def postgres_url(postgres_server: str) -> Iterator[str]:
    """A fresh, empty database on the session's PostgreSQL server (dropped afterwards)."""
    import uuid

    import psycopg

    name = f"i1lab_{uuid.uuid4().hex[:12]}"
    admin = postgres_server.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')  # a generated identifier, not user input
    yield postgres_server.rsplit("/", 1)[0] + f"/{name}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
