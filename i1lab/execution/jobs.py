"""Detached studies: a study submitted as a Ray Job, which outlives the client that submitted it.

``i1lab submit STUDY --detach`` plans and validates the study here (no JAX, no cluster), then submits
``i1lab submit STUDY ...`` (without ``--detach``) as a Ray Job: the job's driver runs on the cluster's
head node, records the plan and schedules the runs exactly as a foreground ``submit`` would. The job's
id is recorded under ``$I1LAB_HOME/jobs/<study>.json`` so that ``status``, ``logs``, ``cancel`` and
``resume`` find it later.

With no ``--address`` (the embedded default) there is no cluster that outlives the client, so i1lab
keeps one: a Ray head node on loopback with its job server, started with ``ray start --head --block``
in its own session and recorded under ``$I1LAB_HOME/ray/`` (address, process id, token). It uses Ray's
token authentication with a token of its own (``$I1LAB_HOME/ray/auth_token``, readable by the owner only).

Reading a job's state and logs, stopping it, and submitting to a job server URL use the Jobs REST API
directly (importing Ray costs a client a second or more, so ``status``, ``cancel`` and ``submit
--detach`` stay fast); a GCS or ``ray://`` address and following a job's log (``logs --follow``) use
:class:`ray.job_submission.JobSubmissionClient`.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shlex
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from rich.console import Console

from i1lab import paths
from i1lab.errors import I1labError

ACTIVE_JOB = ("PENDING", "RUNNING")
TERMINAL_JOB = ("SUCCEEDED", "FAILED", "STOPPED")
HEAD_START_SECONDS = 120.0
#: environment variables a job's driver needs to find the same registry, MLflow store and files
FORWARDED_ENV = (
    "I1LAB_DATABASE_URL",
    "MLFLOW_TRACKING_URI",
    "I1LAB_BENCHMARKS_DIR",
    "I1LAB_WEIGHTS_DIR",
    "I1LAB_DATA_DIR",
    "I1LAB_WORKER_THREADS",
    "JAX_PLATFORMS",
    "I1LAB_LEASE_SECONDS",
)


class JobRecord(BaseModel):
    """What ``submit --detach`` remembers of a study's Ray Job (``$I1LAB_HOME/jobs/<study>.json``)."""

    study: str
    job_id: str
    address: str  # the job server's URL (Ray dashboard), e.g. http://127.0.0.1:8265
    local_head: bool  # submitted to i1lab's own local head (its token lives under $I1LAB_HOME/ray)
    study_file: str  # absolute
    profile: str | None = None
    options: list[str] = []  # further ``i1lab submit`` options given to the job (e.g. --no-mlflow)
    entrypoint: str
    submitted_at: datetime


class HeadRecord(BaseModel):
    """i1lab's persistent local Ray head (``$I1LAB_HOME/ray/head.json``)."""

    pid: int  # the ``ray start --head --block`` process; SIGTERM stops the whole node
    gcs_address: str
    dashboard_url: str
    temp_dir: str
    log: str
    started_at: datetime


class JobState(BaseModel):
    """A job's state as the job server reports it; ``status`` is ``UNREACHABLE`` if it cannot be asked."""

    job_id: str
    status: str
    message: str | None = None
    start_time: datetime | None = None
    end_time: datetime | None = None
    address: str

    @property
    def active(self) -> bool:
        return self.status in ACTIVE_JOB


# --- records --------------------------------------------------------------------------------------
def _write_atomic(path: Path, text: str, mode: int | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    if mode is not None:
        tmp.chmod(mode)
    tmp.replace(path)


def jobs_dir() -> Path:
    return paths.home() / "jobs"


def ray_dir() -> Path:
    return paths.home() / "ray"


def job_record(study: str) -> JobRecord | None:
    """The study's latest detached job, if it was ever submitted with ``--detach``."""
    import re

    # i1lab.spec.study.NAME_PATTERN (not imported: it pulls in the whole spec package)
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.\-]*", study):
        return None  # not a study name (e.g. a run reference): never a path outside jobs/
    path = jobs_dir() / f"{study}.json"
    if not path.is_file():
        return None
    try:
        return JobRecord.model_validate_json(path.read_text())
    except ValueError as exc:
        raise I1labError(f"{path}: unreadable job record ({exc.__class__.__name__}); delete it") from None


def save_job_record(record: JobRecord) -> None:
    _write_atomic(jobs_dir() / f"{record.study}.json", record.model_dump_json(indent=2) + "\n")


def read_head() -> HeadRecord | None:
    path = ray_dir() / "head.json"
    if not path.is_file():
        return None
    try:
        return HeadRecord.model_validate_json(path.read_text())
    except ValueError:
        return None


def local_token() -> str | None:
    path = ray_dir() / "auth_token"
    return path.read_text().strip() if path.is_file() else None


# --- talking to a job server without Ray (REST) ---------------------------------------------------
def _auth_token(local_head: bool) -> str | None:
    """The bearer token for a job server: i1lab's own for its local head, else Ray's usual sources."""
    if local_head:
        return local_token()
    if os.environ.get("RAY_AUTH_TOKEN"):
        return os.environ["RAY_AUTH_TOKEN"].strip()
    if os.environ.get("RAY_AUTH_MODE", "").lower() != "token":
        return None
    path = Path(os.environ.get("RAY_AUTH_TOKEN_PATH") or Path.home() / ".ray" / "auth_token")
    return path.read_text().strip() if path.is_file() else None


def _get(url: str, token: str | None, timeout: float = 3.0) -> Any:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout) as resp:
        return json.loads(resp.read())


def _ms(value: Any) -> datetime | None:
    return datetime.fromtimestamp(value / 1000, UTC).replace(tzinfo=None) if value else None


def job_state(record: JobRecord, timeout: float = 3.0) -> JobState:
    """Ask the job server how the recorded job is doing (REST, no Ray import)."""
    url = f"{record.address.rstrip('/')}/api/jobs/{record.job_id}"
    try:
        info = _get(url, _auth_token(record.local_head), timeout)
    except urllib.error.HTTPError as exc:
        what = "no such job on the cluster" if exc.code == 404 else f"HTTP {exc.code} {exc.reason}"
        return JobState(job_id=record.job_id, status="UNREACHABLE", message=what, address=record.address)
    except (OSError, ValueError) as exc:
        return JobState(
            job_id=record.job_id,
            status="UNREACHABLE",
            message=f"{type(exc).__name__}: {exc}",
            address=record.address,
        )
    return JobState(
        job_id=record.job_id,
        status=str(info.get("status", "UNKNOWN")),
        message=info.get("message"),
        start_time=_ms(info.get("start_time")),
        end_time=_ms(info.get("end_time")),
        address=record.address,
    )


# --- i1lab's local head ---------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _pid_alive(pid: int) -> bool:
    """The process exists and is not a zombie (an exited child not yet reaped)."""
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)  # reap it if it is our exited child
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def head_alive(head: HeadRecord, timeout: float = 2.0) -> bool:
    """The recorded head's process runs and its job server answers."""
    if not _pid_alive(head.pid):
        return False
    try:
        _get(f"{head.dashboard_url}/api/version", local_token(), timeout)
    except (OSError, ValueError):
        return False
    return True


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    import fcntl

    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def ray_executable() -> str:
    found = Path(sys.executable).parent / "ray"
    return str(found) if found.is_file() else "ray"


def ensure_local_head(console: Console | None = None) -> HeadRecord:
    """i1lab's local Ray head, started (``ray start --head`` on loopback, with the job server) if none
    answers. It runs in its own session, so it outlives this process; ``stop_local_head`` ends it."""
    with _locked(ray_dir() / "head.lock"):
        head = read_head()
        if head is not None and head_alive(head):
            return head
        if head is not None and _pid_alive(head.pid):  # recorded but not answering: replace it
            _terminate(head.pid)
        return _start_head(console)


def _start_head(console: Console | None) -> HeadRecord:
    folder = ray_dir()
    folder.mkdir(parents=True, exist_ok=True)
    token = secrets.token_hex(32)
    _write_atomic(folder / "auth_token", token + "\n", mode=0o600)
    port, dashboard = _free_port(), _free_port()
    # Ray's unix sockets live under the temp dir, whose path must stay short.
    temp = Path("/tmp") / f"i1lab-ray-{secrets.token_hex(4)}"
    log = folder / "head.log"
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": token}
    env.pop("RAY_ADDRESS", None)
    cmd = [
        ray_executable(),
        "start",
        "--head",
        "--block",
        "--node-ip-address=127.0.0.1",
        f"--port={port}",
        "--include-dashboard=true",
        "--dashboard-host=127.0.0.1",
        f"--dashboard-port={dashboard}",
        # fixed defaults (10001, 52365, 8080) would collide with any other Ray node on this machine
        f"--ray-client-server-port={_free_port()}",
        f"--dashboard-agent-listen-port={_free_port()}",
        f"--metrics-export-port={_free_port()}",
        f"--num-cpus={os.cpu_count() or 1}",
        "--disable-usage-stats",
        f"--temp-dir={temp}",
    ]
    if console is not None:
        console.print("starting a local Ray head for detached studies (ray start --head, loopback) ...")
    with log.open("w") as out:
        proc = subprocess.Popen(
            cmd,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    head = HeadRecord(
        pid=proc.pid,
        gcs_address=f"127.0.0.1:{port}",
        dashboard_url=f"http://127.0.0.1:{dashboard}",
        temp_dir=str(temp),
        log=str(log),
        started_at=datetime.now(UTC).replace(tzinfo=None),
    )
    deadline = time.monotonic() + HEAD_START_SECONDS
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = " | ".join(log.read_text().strip().splitlines()[-3:])
            raise I1labError(
                f"the local Ray head did not start (exit {proc.returncode}): {tail} (log: {log})"
            )
        try:
            _get(f"{head.dashboard_url}/api/jobs/", token, 2.0)
            break
        except (OSError, ValueError):
            time.sleep(0.3)
    else:
        _terminate(proc.pid)
        raise I1labError(
            f"the local Ray head's job server did not answer within {HEAD_START_SECONDS:.0f} s ({log})"
        )
    _write_atomic(folder / "head.json", head.model_dump_json(indent=2) + "\n")
    _warm_up(head, token)
    return head


def _warm_up(head: HeadRecord, token: str, timeout: float = 60.0) -> None:
    """Run one empty job: a fresh head's first job submission waits seconds for the job machinery to
    start; this one takes that wait, so the first real ``--detach`` returns as fast as the next."""
    job_id = f"i1lab-warm-up-{secrets.token_hex(3)}"
    try:
        _submit(head.dashboard_url, {"entrypoint": "true", "submission_id": job_id}, local_head=True)
    except I1labError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if _get(f"{head.dashboard_url}/api/jobs/{job_id}", token).get("status") in TERMINAL_JOB:
                return
        except (OSError, ValueError):
            return
        time.sleep(0.3)


def _terminate(pid: int, timeout: float = 30.0) -> None:
    """SIGTERM the head's ``ray start --block`` process (it stops the node's processes), then SIGKILL."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _pid_alive(pid):
            return
        time.sleep(0.2)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)  # the head runs in its own session: its group is its own
    deadline = time.monotonic() + 10.0
    while _pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.2)


def stop_local_head() -> bool:
    """Stop i1lab's local head if one is recorded; True if one was running."""
    with _locked(ray_dir() / "head.lock"):
        head = read_head()
        if head is None:
            return False
        running = _pid_alive(head.pid)
        if running:
            _terminate(head.pid)
        (ray_dir() / "head.json").unlink(missing_ok=True)
        import shutil

        shutil.rmtree(head.temp_dir, ignore_errors=True)
        return running


# --- the Ray Jobs SDK -------------------------------------------------------------------------------
@contextlib.contextmanager
def _sdk_env(local_head: bool) -> Iterator[None]:
    """The SDK reads ``RAY_ADDRESS``/``RAY_API_SERVER_ADDRESS`` over its argument and the token from
    the environment: point both at the job server we mean while a client is made and used."""
    saved = {
        k: os.environ.get(k)
        for k in ("RAY_ADDRESS", "RAY_API_SERVER_ADDRESS", "RAY_AUTH_MODE", "RAY_AUTH_TOKEN")
    }
    os.environ.pop("RAY_ADDRESS", None)
    os.environ.pop("RAY_API_SERVER_ADDRESS", None)
    if local_head:
        token = local_token()
        if token:
            os.environ["RAY_AUTH_MODE"] = "token"
            os.environ["RAY_AUTH_TOKEN"] = token
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _client(address: str) -> Any:
    import logging

    from ray.job_submission import JobSubmissionClient

    logging.getLogger("ray").setLevel(logging.WARNING)  # after the import, which sets it
    logging.getLogger("ray.dashboard.modules.job.sdk").setLevel(logging.WARNING)

    try:
        return JobSubmissionClient(address)
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise I1labError(
            f"cannot reach the Ray job server at {address}: {type(exc).__name__}: {first}"
        ) from None


def _job_id(study: str) -> str:
    return f"i1lab-{study}-{datetime.now(UTC):%Y%m%d-%H%M%S}-{secrets.token_hex(3)}"


def job_env() -> dict[str, str]:
    """What the job's driver must see: the same home (absolute), registry and stores as this client."""
    env = {
        "I1LAB_HOME": str(paths.home()),
        "PYTHONUNBUFFERED": "1",
        # the scheduler's ray.init sets some of these variables again (same values): let Ray merge them
        "RAY_OVERRIDE_JOB_RUNTIME_ENV": "1",
    }
    env.update({k: os.environ[k] for k in FORWARDED_ENV if os.environ.get(k)})
    return env


def entrypoint(study_file: Path, profile: str | None, options: list[str]) -> str:
    """The job's command: the same ``i1lab submit`` without ``--detach``, no live display.

    The interpreter is this client's (``$I1LAB_JOB_PYTHON`` overrides it, e.g. for a cluster whose
    image keeps i1lab elsewhere)."""
    python = os.environ.get("I1LAB_JOB_PYTHON") or sys.executable
    argv = [python, "-m", "i1lab", "submit", str(study_file)]
    if profile:
        argv += ["--profile", profile]
    return shlex.join([*argv, "--no-progress", *options])


def submit_detached(
    study_file: Path,
    profile: str | None,
    *,
    address: str | None,
    options: list[str],
    budget_hours: float | None,
    console: Console,
) -> JobRecord:
    """Validate and plan the study here, then submit it as a Ray Job and record the job's id."""
    from i1lab.plan.planner import expand, make_plan
    from i1lab.spec import load_study

    study_file = study_file.resolve()
    study = load_study(study_file)
    variants = expand(study, profile)  # spec errors surface here, before anything is submitted
    existing = {}
    if paths.registry_exists():
        from i1lab.registry import Registry

        existing = Registry().existing_runs(v.hash for v in variants)
    plan = make_plan(study, variants, existing, profile)
    plan.check_budget(budget_hours)
    prior = job_record(plan.study)
    if prior is not None:
        state = job_state(prior)
        if state.active:
            raise I1labError(
                f"study {plan.study} already has a running job {prior.job_id} ({state.status}); "
                f"`i1lab cancel {plan.study}` first, or follow it with `i1lab logs {plan.study} --follow`"
            )
    local = not address
    if local:
        head = ensure_local_head(console)
        target = head.dashboard_url
        console.print(
            f"no --address: using i1lab's local Ray head at {target} (pid {head.pid}, recorded in "
            f"{ray_dir()}); it keeps running after this command — stop it with `kill {head.pid}`",
            markup=False,
            highlight=False,
        )
    else:
        assert address is not None
        target = address
    job_id = _job_id(plan.study)
    command = entrypoint(study_file, profile, options)
    request = {
        "entrypoint": command,
        "submission_id": job_id,
        "runtime_env": {"env_vars": job_env()},
        "metadata": {"i1lab_study": plan.study, "i1lab_home": str(paths.home())},
    }
    server = _submit(target, request, local)
    record = JobRecord(
        study=plan.study,
        job_id=job_id,
        address=server,
        local_head=local,
        study_file=str(study_file),
        profile=profile,
        options=options,
        entrypoint=command,
        submitted_at=datetime.now(UTC).replace(tzinfo=None),
    )
    save_job_record(record)
    s = plan.summary()
    console.print(
        f"study {plan.study}: {s['runs']} runs — {s['new']} new, {s['reused']} reused, "
        f"{s['resume']} to resume; submitted as Ray job {job_id} to {server}",
        markup=False,
        highlight=False,
    )
    console.print(
        f"follow it with `i1lab status {plan.study}`, `i1lab logs {plan.study} --follow`; "
        f"stop it with `i1lab cancel {plan.study}`",
        markup=False,
        highlight=False,
    )
    return record


def _submit(address: str, request: dict[str, Any], local_head: bool) -> str:
    """Submit a job; returns the job server's URL. A job server URL (``http(s)://``) is sent the Jobs
    REST API's request directly — importing Ray would cost the client a second or more — any other
    address (a GCS ``host:port``, ``ray://``) goes through :class:`JobSubmissionClient`, which finds the
    job server from it."""
    if address.startswith(("http://", "https://")):
        url = f"{address.rstrip('/')}/api/jobs/"
        token = _auth_token(local_head)
        headers = {
            "Content-Type": "application/json",
            **({"Authorization": f"Bearer {token}"} if token else {}),
        }
        body = json.dumps(request).encode()
        try:
            with urllib.request.urlopen(
                urllib.request.Request(url, data=body, headers=headers, method="POST"), timeout=30
            ) as resp:
                json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode("utf-8", "replace").strip().splitlines()
            why = detail[-1][:300] if detail else exc.reason
            raise I1labError(f"job submission to {address} failed: HTTP {exc.code}: {why}") from None
        except (OSError, ValueError) as exc:
            raise I1labError(f"cannot reach the Ray job server at {address}: {exc}") from None
        return address.rstrip("/")
    with _sdk_env(local_head):
        client = _client(address)
        try:
            client.submit_job(**request)
        except Exception as exc:
            raise I1labError(f"job submission to {address} failed: {type(exc).__name__}: {exc}") from None
        return str(getattr(client, "_address", address))


def _call(record: JobRecord, method: str, suffix: str, timeout: float = 30.0) -> Any:
    """A Jobs REST API call about the recorded job (``record.address`` is its job server's URL)."""
    url = f"{record.address.rstrip('/')}/api/jobs/{record.job_id}{suffix}"
    token = _auth_token(record.local_head)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    request = urllib.request.Request(
        url, headers=headers, method=method, data=b"" if method == "POST" else None
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as resp:
            return json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        detail = exc.read().decode("utf-8", "replace").strip().splitlines()
        why = detail[-1][:300] if detail else exc.reason
        raise I1labError(f"job {record.job_id} at {record.address}: HTTP {exc.code}: {why}") from None
    except (OSError, ValueError) as exc:
        raise I1labError(f"cannot reach the Ray job server at {record.address}: {exc}") from None


def stop_job(record: JobRecord, timeout: float = 60.0) -> JobState:
    """Ask Ray to stop the job (SIGTERM to its driver, then SIGKILL) and wait until it has stopped."""
    _call(record, "POST", "/stop")
    deadline = time.monotonic() + timeout
    state = job_state(record)
    while state.status not in TERMINAL_JOB and time.monotonic() < deadline:
        time.sleep(0.3)
        state = job_state(record)
    return state


def job_logs(record: JobRecord, *, follow: bool, write: Callable[[str], None]) -> None:
    """The job driver's output so far; with ``follow``, stream it (``JobSubmissionClient.tail_job_logs``)
    until the job ends."""
    if not follow:
        write(str(_call(record, "GET", "/logs").get("logs", "")))
        return
    import asyncio

    with _sdk_env(record.local_head):
        client = _client(record.address)

        async def tail() -> None:
            async for chunk in client.tail_job_logs(record.job_id):
                write(chunk)

        try:
            asyncio.run(tail())
        except Exception as exc:
            raise I1labError(
                f"log stream of job {record.job_id} ended: {type(exc).__name__}: {exc}"
            ) from None


# --- cancel and resume ------------------------------------------------------------------------------
class CancelReport(BaseModel):
    study: str
    job: JobState | None
    cancelled: list[str]


def mark_cancelled(study: str, reason: str) -> list[str]:
    """Cancel the study's unfinished runs in the registry; returns their names. Checkpoints stay.

    A leased run's lease is released (its fencing token moves on), so a worker still training it —
    under a foreground ``i1lab submit`` elsewhere, say — loses the lease and stops at its next step;
    an unleased run is settled as cancelled. Each records a ``cancelled`` event."""
    from i1lab.registry import Registry

    registry = Registry()
    if study not in {s.name for s in registry.studies()}:
        return []  # a detached job stopped before it recorded its plan
    members = registry.members(study)
    active = {m.run.id: m.name for m in members if m.run.status in ("queued", "running")}
    done: list[str] = []
    for _ in range(3):  # a run whose lease changed hands meanwhile is looked at again
        if not active:
            break
        states = registry.lease_states(active)
        for run_id, st in states.items():
            if st.status not in ("queued", "running"):
                active.pop(run_id)
                continue
            if st.owner is not None:
                ok = registry.interrupt_lease(
                    run_id, st.owner, reason, status="cancelled", reason=reason, interrupted=False
                )
            else:
                ok = registry.settle_run(run_id, "cancelled", reason)
            if ok:
                done.append(active.pop(run_id))
    return done


def cancel_study(study: str, console: Console) -> CancelReport:
    """Stop the study's detached job (its Ray tasks end with their driver) and mark unfinished runs
    cancelled. Checkpoints are left where they are, so ``resume`` continues from them."""
    from i1lab.registry import Registry

    record = job_record(study)
    state = job_state(record) if record is not None else None
    if record is None or state is None or not state.active:
        Registry().study(study)  # a one-line error for an unknown study
    reason = "cancelled by `i1lab cancel`"
    if record is not None and state is not None and state.active:
        # The job first: its driver ends, and Ray ends the driver's tasks with it.
        console.print(f"stopping Ray job {record.job_id} ...", markup=False)
        state = stop_job(record)
        if state.status not in TERMINAL_JOB:
            raise I1labError(f"job {record.job_id} is still {state.status} after being asked to stop")
    # Then the registry: leases are released (fencing out any worker still alive), runs cancelled.
    names = mark_cancelled(study, reason) if paths.registry_exists() else []
    if record is None:
        console.print(
            f"study {study} has no detached job; {len(names)} run(s) cancelled in the registry "
            "(a worker training one loses its lease and stops at its next step)",
            markup=False,
        )
    else:
        assert state is not None
        console.print(
            f"job {record.job_id}: {state.status}; {len(names)} run(s) marked cancelled, checkpoints kept "
            f"(`i1lab resume {study}` continues them)",
            markup=False,
        )
    return CancelReport(study=study, job=state, cancelled=names)


def resume_study(
    study: str,
    *,
    detach: bool | None,
    address: str | None,
    console: Console,
) -> JobRecord | None:
    """Submit the study again: finished runs are reused, the others resume from their checkpoints.

    Detached if it was detached before (or ``detach``), to the same cluster unless ``address``."""
    from i1lab.registry import Registry

    record = job_record(study)
    if record is not None:
        state = job_state(record)
        if state.active:
            raise I1labError(f"study {study} is still running as job {record.job_id}; nothing to resume")
        study_file, profile, options = Path(record.study_file), record.profile, record.options
    else:
        rec = Registry().study(study)
        if not rec.file:
            raise I1labError(f"study {study} has no study file recorded; submit it with `i1lab submit FILE`")
        study_file, profile, options = Path(rec.file), rec.profile, []
    if not study_file.is_file():
        raise I1labError(f"study {study}: its study file {study_file} is gone; submit it again from its file")
    if detach is None:
        detach = record is not None
    if detach:
        target = address
        if target is None and record is not None and not record.local_head:
            target = record.address
        return submit_detached(
            study_file, profile, address=target, options=options, budget_hours=None, console=console
        )
    from i1lab.execution.submit import submit_study

    submit_study(
        study_file,
        profile,
        address=address,
        progress=True,
        mlflow="--no-mlflow" not in options,
        console=console,
    )
    return None
