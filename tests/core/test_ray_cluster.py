"""Scheduling on a real multi-node Ray cluster started by the test: two nodes, one fake TPU slice each.

:func:`ray_cluster` starts the cluster (``ray start --head`` plus worker nodes, each ``ray start`` in a
session of its own so that one node can be killed whole); the preemption tests reuse it."""

from __future__ import annotations

import contextlib
import functools
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

EXPERIMENTS = Path(__file__).resolve().parents[2] / "experiments"
RAY = Path(sys.executable).parent / "ray"
SLICE = '{"TPU": 4, "TPU-v6e-8-head": 1}'

STUDY = """\
study: tpu_micro
extends: {adapter}
axes:
  model.adapter:
    - {{type: transformer, blocks: 1}}
    - {{type: transformer, blocks: 2}}
profiles:
  tiny:
    resources.accelerator: tpu-v6e-8
    train.steps: 20
    train.checkpoint_every: 10
    train.keep_every: 10
    train.log_every: 5
    sampling.steps: 4
    eval.prompts_per_tag: 1
    eval.images_per_prompt: 1
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(predicate: Callable[[], bool], timeout: float, what: str, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.25)
    raise AssertionError(f"{what} did not happen within {timeout:.0f} s; log:\n{log.read_text()[-3000:]}")


@dataclass
class Cluster:
    address: str
    env: dict[str, str]
    head: subprocess.Popen[bytes]
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)
    #: start one more worker node (``ray start`` arguments, extra environment); returns once it is up
    add_worker: Callable[[list[str], dict[str, str]], subprocess.Popen[bytes]] | None = None

    def kill_node(self, proc: subprocess.Popen[bytes]) -> list[int]:
        """SIGKILL every process of a node, as a preempted machine would vanish."""
        return kill_session(proc)


def kill_session(proc: subprocess.Popen[bytes]) -> list[int]:
    """SIGKILL every process of the session ``proc`` leads (a node: its ``ray start``, raylet, agents
    and Ray workers, which have process groups of their own). Returns the killed pids."""
    killed = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if os.getsid(int(entry.name)) == proc.pid:
                os.kill(int(entry.name), signal.SIGKILL)
                killed.append(int(entry.name))
        except (ProcessLookupError, PermissionError):
            continue
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=30)
    return killed


def node_of(cluster: Cluster, pid: int) -> subprocess.Popen[bytes] | None:
    """The worker node whose session process ``pid`` belongs to."""
    try:
        sid = os.getsid(pid)
    except ProcessLookupError:
        return None
    return next((w for w in cluster.workers if w.pid == sid), None)


@contextmanager
def ray_cluster(
    tmp_path: Path,
    workers: int,
    *,
    head_cpus: int = 1,
    head_resources: str | None = SLICE,
    worker_args: list[list[str]] | None = None,
    worker_env: list[dict[str, str]] | None = None,
) -> Iterator[Cluster]:
    """A head node and ``workers`` worker nodes, each worker declaring one v6e-8 slice (or, with
    ``worker_args``, what those arguments of ``ray start`` declare, with ``worker_env`` added to its
    environment); token auth on every process;
    node failures detected within about two seconds."""
    port = free_port()
    env = {
        **os.environ,
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN": secrets.token_hex(32),
        "RAY_health_check_period_ms": "500",
        "RAY_health_check_timeout_ms": "1000",
        "RAY_health_check_failure_threshold": "3",
    }
    temp = Path("/tmp") / f"i1ray{port}"
    common = ["--disable-usage-stats", "--block", f"--temp-dir={temp}"]
    address = f"127.0.0.1:{port}"
    procs: list[subprocess.Popen[bytes]] = []

    def start(args: list[str], log: Path, extra: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        with log.open("w") as out:
            proc = subprocess.Popen(
                [str(RAY), "start", *args, *common],
                env={**env, **(extra or {})},
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own session: a node can be killed whole
            )
        procs.append(proc)
        return proc

    def up(log: Path) -> bool:
        return "Ray runtime started" in log.read_text()

    try:
        head_log = tmp_path / "head.log"
        head_args = ["--head", f"--port={port}", "--include-dashboard=false", f"--num-cpus={head_cpus}"]
        if head_resources:
            head_args.append(f"--resources={head_resources}")
        head = start(head_args, head_log)
        cluster = Cluster(address=address, env=env, head=head)
        # The first worker starts with the head (it waits for the head's GCS); the others one at a time
        # after it: raylets registering together time out on a busy machine.
        for i in range(workers):
            log = tmp_path / f"worker{i}.log"
            declared = worker_args[i] if worker_args is not None else [f"--resources={SLICE}"]
            args = [f"--address={address}", "--num-cpus=1", *declared]
            cluster.workers.append(start(args, log, worker_env[i] if worker_env is not None else None))
            if i == 0:
                wait_for(lambda: up(head_log), 90, "the Ray head node", head_log)
            wait_for(functools.partial(up, log), 90, f"Ray worker node {log.stem}", log)
        wait_for(lambda: up(head_log), 90, "the Ray head node", head_log)

        def add_worker(declared: list[str], extra: dict[str, str]) -> subprocess.Popen[bytes]:
            log = tmp_path / f"worker{len(cluster.workers)}.log"
            proc = start([f"--address={address}", "--num-cpus=1", *declared], log, extra)
            cluster.workers.append(proc)
            wait_for(functools.partial(up, log), 90, f"Ray worker node {log.stem}", log)
            return proc

        cluster.add_worker = add_worker
        yield cluster
    finally:
        # SIGKILL every node's whole session: a SIGTERM'd node drains for up to 30 s
        for proc in reversed(procs):
            kill_session(proc)
        shutil.rmtree(temp, ignore_errors=True)


def submit(study: Path, address: str, env: dict[str, str], home: Path, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "i1lab",
            "submit",
            str(study),
            "--profile",
            "tiny",
            "--no-progress",
            "--no-mlflow",
            "--address",
            address,
            *extra,
        ],
        env={**env, "I1LAB_HOME": str(home), "COLUMNS": "200"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def checkpointed_run(proc: subprocess.Popen[str], home: Path, timeout: float = 240) -> tuple[Any, Any, int]:
    """Wait until the submitted study's first run is running with a checkpoint recorded: ``(registry,
    run, pid of the process holding its lease)``."""
    from i1lab.errors import I1labError
    from i1lab.registry import Registry

    deadline = time.monotonic() + timeout
    while True:
        assert proc.poll() is None, proc.communicate()[0]
        assert time.monotonic() < deadline, f"no checkpoint of a running run within {timeout:.0f} s"
        time.sleep(0.1)
        if not (home / "registry.db").is_file():
            continue
        try:
            registry = Registry()
            runs = registry.runs()
        except I1labError:  # the submitter is creating the registry this very moment
            continue
        if runs and runs[0].status == "running" and registry.checkpoints(runs[0].id):
            started = next(e for e in registry.events([runs[0].id]) if e.kind == "started")
            return registry, runs[0], int((started.detail or "").split()[1].rstrip(","))


def test_tpu_study_uses_at_most_one_run_per_slice_and_evaluates_beside_training(
    home: Path, tmp_path: Path
) -> None:
    study = tmp_path / "tpu.yaml"
    study.write_text(STUDY.format(adapter=EXPERIMENTS / "adapter_size.yaml"))
    with ray_cluster(tmp_path, 1) as cluster:  # the head and one worker: two slices
        proc = submit(study, cluster.address, cluster.env, home)
        out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, out
    from i1lab.registry import Registry

    registry = Registry()
    members = registry.members("tpu_micro")
    assert len(members) == 3 and all(m.run.status == "finished" for m in members)
    spans = [(m.run.started_at, m.run.finished_at) for m in members]
    assert all(start and end for start, end in spans)
    # at no instant do more runs overlap than there are slices (2)
    events = sorted([(s, 1) for s, _ in spans] + [(e, -1) for _, e in spans])  # type: ignore[misc]
    running = peak = 0
    for _, delta in events:
        running += delta
        peak = max(peak, running)
    assert peak == 2  # both slices were used, never more runs than slices
    for m in members:
        run = m.run
        assert run.node and run.node.count("/") == 2  # hostname/IP/Ray node id
        assert run.train_seconds > 0 and run.eval_seconds > 0 and (run.steps_per_second or 0) > 0
        log = registry.events([run.id])
        started = [e for e in log if e.kind == "started"]
        assert len(started) == 1 and run.attempts == 1 and run.interruptions == 0
        trainer_pid = started[0].detail.split()[1].rstrip(",")  # type: ignore[union-attr]
        trained = next(e for e in log if e.kind == "trained")
        evaluated = {int(e.detail.split()[1]): e for e in log if e.kind == "evaluated"}  # type: ignore[union-attr]
        assert sorted(evaluated) == [10, 20]
        for e in evaluated.values():
            # scored by a separate Ray task (another process), which read the checkpoint from disk
            assert "evaluation task" in (e.detail or "") and f"pid {trainer_pid})" not in (e.detail or "")
        # each node's only CPU was the training's: step 10 could only be scored once training had
        # finished, so training went on to step 20 without waiting for its evaluation
        assert evaluated[10].at >= trained.at
        assert {(s.step, s.benchmark) for s in m.scores if s.metric == "overall"} == {
            (10, "shapes"),
            (20, "shapes"),
        }
        kinds = [e.kind for e in log if e.kind != "evaluated"]
        assert kinds == ["queued", "leased", "started", "trained", "finished"]
