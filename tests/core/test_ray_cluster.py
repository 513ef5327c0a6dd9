"""Scheduling on a real multi-node Ray cluster started by the test: two nodes, one fake TPU slice each."""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

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
    train.keep_every: 20
    train.log_every: 5
    sampling.steps: 4
    eval.prompts_per_tag: 1
    eval.images_per_prompt: 1
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(predicate: object, timeout: float, what: str, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.5)
    raise AssertionError(f"{what} did not happen within {timeout:.0f} s; log:\n{log.read_text()[-3000:]}")


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[tuple[str, dict[str, str]]]:
    """A head node and a worker node, each declaring one v6e-8 slice; token auth on every process."""
    port = free_port()
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32)}
    temp = Path("/tmp") / f"i1ray{port}"
    common = [
        "--num-cpus=1",
        f"--resources={SLICE}",
        "--disable-usage-stats",
        "--block",
        f"--temp-dir={temp}",
    ]
    head_log, worker_log = tmp_path / "head.log", tmp_path / "worker.log"
    procs = []
    try:
        with head_log.open("w") as log:
            procs.append(
                subprocess.Popen(
                    [str(RAY), "start", "--head", f"--port={port}", "--include-dashboard=false", *common],
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            )
        address = f"127.0.0.1:{port}"
        with worker_log.open("w") as log:
            procs.append(
                subprocess.Popen(
                    [str(RAY), "start", f"--address={address}", *common],
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            )

        def two_nodes() -> bool:
            res = subprocess.run(
                [str(RAY), "status", f"--address={address}"],
                env=env,
                capture_output=True,
                text=True,
                check=False,
                timeout=30,
            )
            return "2.0 TPU-v6e-8-head" in res.stdout or "0.0/2.0 TPU-v6e-8-head" in res.stdout

        wait_for(two_nodes, 90, "two Ray nodes with a slice each", worker_log)
        yield address, env
    finally:
        for proc in reversed(procs):
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
        shutil.rmtree(temp, ignore_errors=True)


def test_tpu_study_uses_at_most_one_run_per_slice(
    cluster: tuple[str, dict[str, str]], home: Path, tmp_path: Path
) -> None:
    address, env = cluster
    study = tmp_path / "tpu.yaml"
    study.write_text(STUDY.format(adapter=EXPERIMENTS / "adapter_size.yaml"))
    res = subprocess.run(
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
        ],
        env={**env, "I1LAB_HOME": str(home), "COLUMNS": "200"},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert res.returncode == 0, res.stdout + res.stderr
    from i1lab.registry import Registry

    members = Registry().members("tpu_micro")
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
