"""Preemption with real processes: ``kill -9`` a CPU run after its first checkpoint, start it again with
the same command, and it ends bitwise equal (params, EMA, optimizer state) to an uninterrupted run."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import EXPERIMENTS
from tests.core.test_train_step import SMALL, shared_xla_cache

STEPS = 60
CADENCE = {
    "train.steps": STEPS,
    "train.checkpoint_every": 10,
    "train.keep_every": 30,
    "train.log_every": 10,
}


def study_text() -> str:
    """The baseline's tiny profile with the train tests' small model (``SMALL``: its compiled step is
    the in-process runner tests' one, so the shared XLA cache serves both)."""
    overrides = {**SMALL, **CADENCE}
    lines = [f"    {key}: {json.dumps(value)}" for key, value in overrides.items()]
    return "\n".join(
        ["study: kill_micro", f"extends: {EXPERIMENTS / 'baseline.yaml'}", "profiles:", "  tiny:", *lines]
    )


def _env(home: Path, cache: str) -> dict[str, str]:
    # one on-disk XLA cache: the three training processes compile once
    return {
        **os.environ,
        "I1LAB_HOME": str(home),
        "JAX_COMPILATION_CACHE_DIR": cache,
        "JAX_PLATFORMS": "cpu",
        "COLUMNS": "200",
    }


def _train_cmd(study: Path, workdir: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "i1lab",
        "train",
        str(study),
        "--profile",
        "tiny",
        "--workdir",
        str(workdir),
        "--no-evaluate",
    ]


def _inspect(workdir: Path, env: dict[str, str]) -> dict[str, object]:
    res = subprocess.run(
        [sys.executable, "-m", "i1lab", "inspect", str(workdir), "--json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert res.returncode == 0, res.stderr
    info: dict[str, object] = json.loads(res.stdout)
    return info


def _losses(workdir: Path) -> list[tuple[int, float, float]]:
    lines = [json.loads(x) for x in (workdir / "metrics.jsonl").read_text().splitlines()]
    return [(x["step"], x["loss"], x["grad_norm"]) for x in lines]


def test_kill_9_and_restart_ends_bitwise_equal_to_an_uninterrupted_run(
    home: Path, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    study = tmp_path / "kill.yaml"
    study.write_text(study_text())
    env = _env(home, shared_xla_cache(tmp_path_factory))
    straight, killed = tmp_path / "straight", tmp_path / "killed"

    ref = subprocess.run(
        _train_cmd(study, straight), capture_output=True, text=True, env=env, timeout=300, check=False
    )
    assert ref.returncode == 0, ref.stderr[-2000:]

    # kill somewhere in the first 70% of the time the reference run took after its first checkpoint
    records = [json.loads(x) for x in (straight / "metrics.jsonl").read_text().splitlines()]
    span = sum(r["step_time"] * 10 for r in records if r["step"] > 10)
    delay = random.Random().uniform(0.0, 0.7 * span)
    log = (tmp_path / "first.log").open("w")
    proc = subprocess.Popen(_train_cmd(study, killed), stdout=log, stderr=log, env=env)
    deadline = time.monotonic() + 180
    while not (killed / "checkpoints" / "10").is_dir():  # Orbax renames the folder when complete
        assert proc.poll() is None, (tmp_path / "first.log").read_text()[-2000:]
        assert time.monotonic() < deadline, "no first checkpoint within 180 s"
        time.sleep(0.02)
    time.sleep(delay)
    assert proc.poll() is None, f"the run finished within {delay:.2f}s of its first checkpoint ({span=:.2f})"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    log.close()
    assert proc.returncode == -signal.SIGKILL
    on_disk = sorted(int(p.name) for p in (killed / "checkpoints").iterdir() if p.name.isdigit())
    assert on_disk and on_disk[-1] < STEPS, on_disk

    again = subprocess.run(
        _train_cmd(study, killed), capture_output=True, text=True, env=env, timeout=300, check=False
    )
    assert again.returncode == 0, again.stderr[-2000:]
    resumed = [line for line in again.stderr.splitlines() if line.startswith("resumed from checkpoint")]
    assert resumed and 10 <= int(resumed[0].split()[-1]) < STEPS, (delay, again.stderr[-2000:])

    a, b = _inspect(straight, env), _inspect(killed, env)
    assert a["step"] == b["step"] == STEPS
    assert a["data_position"] == b["data_position"]
    assert a["digests"] == b["digests"], f"killed after {delay:.2f}s: {a['digests']} != {b['digests']}"
    assert all(isinstance(d, str) and len(d) == 64 for d in a["digests"].values())  # type: ignore[attr-defined]
    # the metric log reads as one run: the lines the killed attempt wrote past its checkpoint are gone
    assert _losses(killed) == _losses(straight)
