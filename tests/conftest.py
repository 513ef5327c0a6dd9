"""Shared fixtures: every test gets its own I1LAB_HOME; CPU-only JAX."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

os.environ.setdefault("JAX_PLATFORMS", "cpu")
# One persistent XLA compilation cache for the whole session, shared by every process the tests start
# (runs, Ray workers, CLI subprocesses): the tiny models of many tests compile to the same programs.
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
    import atexit
    import shutil
    import tempfile

    os.environ["JAX_COMPILATION_CACHE_DIR"] = tempfile.mkdtemp(prefix="i1lab-test-xla-")
    atexit.register(shutil.rmtree, os.environ["JAX_COMPILATION_CACHE_DIR"], ignore_errors=True)
REPO = Path(__file__).resolve().parents[1]
EXPERIMENTS = REPO / "experiments"


# Modules that start real clusters and servers or assert wall-clock limits: they run on their own
# (``make test`` runs them after the others, which share the cores two at a time), so that contention
# from a neighbouring test cannot push them past their limits.
SERIAL_MODULES = frozenset(
    {
        "tests/core/test_data_parallel.py",
        "tests/core/test_end_to_end.py",
        "tests/core/test_hostile_input.py",
        "tests/core/test_jobs.py",
        "tests/core/test_judge_placement.py",
        "tests/core/test_leases.py",
        "tests/core/test_multi_host.py",
        "tests/core/test_policy.py",
        "tests/core/test_preemption.py",
        "tests/core/test_preemption_signals.py",
        "tests/core/test_ray_cluster.py",
        "tests/core/test_search.py",
        "tests/core/test_topology.py",
        "tests/core/test_train_kill.py",
        "tests/core/test_train_runner.py",
        "tests/dashboard/test_browser.py",
        "tests/dashboard/test_startup.py",
    }
)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "serial: runs alone, not beside another test (see SERIAL_MODULES)")
    missing = sorted(m for m in SERIAL_MODULES if not (REPO / m).is_file())
    if missing:  # a renamed module would silently lose its place in the serial part
        raise pytest.UsageError(f"tests/conftest.py SERIAL_MODULES: no such module: {', '.join(missing)}")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if item.path.relative_to(REPO).as_posix() in SERIAL_MODULES:
            item.add_marker(pytest.mark.serial)


#: The official benchmark files the tests read: the fixture copies next to the repository (shared/),
#: named explicitly before any test module is imported (i1lab itself looks only where `i1lab evals fetch`
#: puts them, or at ``$I1LAB_BENCHMARKS_DIR``).
BENCHMARK_FIXTURES = REPO.parent / "shared" / "benchmarks"
os.environ.setdefault("I1LAB_BENCHMARKS_DIR", str(BENCHMARK_FIXTURES))


@pytest.fixture(autouse=True)
def _own_judges_dir(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Official judging environments a test builds stay in its own folder; none of the user's is seen."""
    monkeypatch.setenv("I1LAB_JUDGES_DIR", str(tmp_path_factory.mktemp("judges")))


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


# --- real services on loopback, started per test: an MLflow tracking server, a multi-node Ray cluster ---
def wait_until(predicate: Callable[[], bool], timeout: float, what: str, logs: list[Path]) -> None:
    """Poll ``predicate`` until it holds; after ``timeout`` seconds fail with the tail of each log."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            tails = "\n".join(f"--- {p.name}:\n{p.read_text()[-1500:]}" for p in logs if p.is_file())
            pytest.fail(f"{what} did not happen within {timeout:.0f} s\n{tails}", pytrace=False)
        time.sleep(0.5)


def _stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for proc in reversed(procs):
        proc.terminate()
    for proc in procs:
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture
def start_mlflow(tmp_path: Path) -> Iterator[Callable[[str], str]]:
    """``start(backend_store_uri) -> url``: a real ``mlflow server`` on a loopback port (up in 120 s)."""
    import sys
    import urllib.request

    procs: list[subprocess.Popen[bytes]] = []

    def start(backend: str) -> str:
        port, log = _free_port(), tmp_path / f"mlflow-server-{len(procs)}.log"
        artifacts = str(tmp_path / f"mlflow-artifacts-{len(procs)}")
        where = [
            "--artifacts-destination",
            artifacts,
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
        ]
        with log.open("w") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", backend, *where],
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**os.environ, "MLFLOW_TRACKING_URI": ""},
            )
        procs.append(proc)
        url = f"http://127.0.0.1:{port}"

        def healthy() -> bool:
            if proc.poll() is not None:
                pytest.fail(f"mlflow server exited: {log.read_text()[-1500:]}", pytrace=False)
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as resp:
                    return bool(resp.status == 200)
            except OSError:
                return False

        wait_until(healthy, 120, "mlflow server answering /health", [log])
        return url

    yield start
    _stop(procs)


@pytest.fixture
def start_ray(tmp_path: Path) -> Iterator[Callable[..., tuple[str, dict[str, str]]]]:
    """``start(nodes, env=...) -> (address, env)``: a real Ray cluster of ``len(nodes)`` nodes on this
    machine (``ray start --head`` plus workers), each node declaring one CPU and the custom resources
    given as a JSON string (``"{}"`` for none), with token authentication on every process. Ray
    advertises its own node address even when asked for loopback, hence the token."""
    import secrets
    import shutil
    import sys

    ray = str(Path(sys.executable).parent / "ray")
    procs: list[subprocess.Popen[bytes]] = []
    temps: list[Path] = []

    def start(nodes: list[str], env: dict[str, str] | None = None) -> tuple[str, dict[str, str]]:
        port = _free_port()
        full = {
            **os.environ,
            **(env or {}),
            "RAY_AUTH_MODE": "token",
            "RAY_AUTH_TOKEN": secrets.token_hex(32),
        }
        temp = Path("/tmp") / f"i1ray{port}"
        temps.append(temp)
        address, logs = f"127.0.0.1:{port}", []
        for i, resources in enumerate(nodes):
            role = (
                ["--head", f"--port={port}", "--include-dashboard=false"]
                if i == 0
                else [f"--address={address}"]
            )
            common = ["--disable-usage-stats", "--block", f"--temp-dir={temp}"]
            log = tmp_path / f"ray-node-{port}-{i}.log"
            logs.append(log)
            with log.open("w") as out:
                procs.append(
                    subprocess.Popen(
                        [ray, "start", *role, "--num-cpus=1", f"--resources={resources}", *common],
                        env=full,
                        stdout=out,
                        stderr=subprocess.STDOUT,
                        start_new_session=True,
                    )
                )

        def all_nodes() -> bool:
            done = subprocess.run(
                [ray, "status", f"--address={address}"], env=full, capture_output=True, text=True, timeout=30
            )
            return f"{float(len(nodes))} CPU" in done.stdout or f"/{float(len(nodes))} CPU" in done.stdout

        wait_until(all_nodes, 120, f"a Ray cluster of {len(nodes)} nodes", logs)
        return address, full

    yield start
    _stop(procs)
    for temp in temps:
        shutil.rmtree(temp, ignore_errors=True)
