"""The training loop in process: resumption consumes exactly the examples of an uninterrupted run,
corrupt checkpoints fall back to the previous one, a NaN stops the run at once with its reason in the
registry, storage failures are one line, and checkpoint events / evaluation never block training."""

from __future__ import annotations

import builtins
import errno
import io
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from i1lab.errors import I1labError
from i1lab.spec.run import RunSpec
from i1lab.train.inspection import inspect_workdir
from i1lab.train.runner import Hooks, train
from tests.core.test_train_step import shared_xla_cache, tiny_spec

#: 16 steps; checkpoints at 4, 8, 12, 16 (8 and 16 permanent); no logging step between 3 and 16.
CADENCE = {
    "train.steps": 16,
    "train.checkpoint_every": 4,
    "train.keep_every": 8,
    "train.log_every": 100,
}


def run_spec(**kw: Any) -> RunSpec:
    return tiny_spec(**{**CADENCE, **kw})


class Stop(Exception):
    """Raised by a hook to interrupt a run at a chosen step."""


@dataclass
class Record:
    batches: dict[int, list[tuple[str, int]]] = field(default_factory=dict)
    checkpoints: list[tuple[int, bool, bool]] = field(default_factory=list)  # step, permanent, on disk
    steps_done: list[tuple[int, float]] = field(default_factory=list)
    evals: list[tuple[int, str, float, float]] = field(default_factory=list)  # step, thread, start, end
    notes: list[str] = field(default_factory=list)


def hooks(record: Record, stop_at: int | None = None, eval_seconds: float = 0.0) -> Hooks:
    def on_batch(step: int, ids: dict[str, np.ndarray]) -> None:
        record.batches[step] = [(str(s), int(i)) for s, i in zip(ids["source"], ids["index"], strict=True)]

    def on_step(step: int) -> None:
        record.steps_done.append((step, time.perf_counter()))
        if stop_at is not None and step == stop_at:
            raise Stop(step)

    def on_checkpoint(step: int, permanent: bool, path: str) -> None:
        record.checkpoints.append((step, permanent, (Path(path) / "state").is_dir()))

    def on_eval(step: int, ema: Any) -> None:
        t0 = time.perf_counter()
        time.sleep(eval_seconds if step == 8 else 0.0)
        record.evals.append((step, threading.current_thread().name, t0, time.perf_counter()))

    def on_start(step: int, notes: list[str]) -> None:
        record.notes += notes

    return Hooks(
        on_step=on_step, on_checkpoint=on_checkpoint, on_eval=on_eval, on_start=on_start, on_batch=on_batch
    )


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    root = tmp_path_factory.mktemp("runner")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("I1LAB_HOME", str(root / "home"))
        mp.setenv("JAX_COMPILATION_CACHE_DIR", shared_xla_cache(tmp_path_factory))
        yield root


@pytest.fixture(scope="module")
def reference(env: Path) -> tuple[Path, Record]:
    """One uninterrupted run, with a slow evaluation at step 8."""
    record = Record()
    train(run_spec(), env / "reference", hooks(record, eval_seconds=3.0))
    return env / "reference", record


def test_events_and_evaluation_do_not_block_training(reference: tuple[Path, Record]) -> None:
    workdir, record = reference
    # on_checkpoint once each save is durable; permanent ones also leave an event file
    assert [(s, p) for s, p, _ in record.checkpoints] == [(4, False), (8, True), (12, False), (16, True)]
    assert all(on_disk for _, _, on_disk in record.checkpoints)
    events = sorted((workdir / "events").glob("*.json"))
    assert [e.name for e in events] == ["00000008.json", "00000016.json"]
    event = json.loads(events[0].read_text())
    assert event["step"] == 8 and event["permanent"] and event["data"]["batches"] == 8
    assert set(event["digests"]) == {"params", "ema", "opt_state"} and event["precision"] == "float32"
    # evaluation ran in the background: training went on while the 3 s evaluation of step 8 ran
    (step8, thread, start, end), (step16, _, _, _) = record.evals
    assert (step8, step16) == (8, 16) and thread.startswith("i1lab-eval")
    assert any(start < t < end for s, t in record.steps_done if s > 8), "training waited for evaluation"
    assert record.notes == []


def test_a_resumed_run_consumes_exactly_the_examples_of_an_uninterrupted_one(
    env: Path, reference: tuple[Path, Record]
) -> None:
    ref_dir, ref = reference
    workdir = env / "interrupted"
    first = Record()
    with pytest.raises(Stop):
        train(run_spec(), workdir, hooks(first, stop_at=11))
    assert sorted(first.batches) == list(range(11))
    second = Record()
    summary = train(run_spec(), workdir, hooks(second))
    assert second.notes == ["resumed from checkpoint 8"] and summary["step"] == 16
    assert sorted(second.batches) == list(range(8, 16))
    consumed = [first.batches[s] for s in range(8)] + [second.batches[s] for s in range(8, 16)]
    assert consumed == [ref.batches[s] for s in range(16)]  # nothing repeated, nothing skipped
    assert len({ex for batch in consumed for ex in batch}) > 50  # (and the batches are not trivial)
    a, b = inspect_workdir(ref_dir), inspect_workdir(workdir)
    assert a["digests"] == b["digests"] and a["data_position"] == b["data_position"]
    assert b["data_position"]["examples"] == 16 * 4
    # the metric log reads as one run
    assert (workdir / "metrics.jsonl").read_text().count("\n") == (
        ref_dir / "metrics.jsonl"
    ).read_text().count("\n")


def _corrupt(checkpoint: Path, how: str) -> None:
    data = sorted((checkpoint / "state").rglob("*"), key=lambda p: p.stat().st_size if p.is_file() else -1)
    largest = data[-1]
    if how == "garbage":  # bytes overwritten in place (a bad disk, a partial copy)
        raw = bytearray(largest.read_bytes())
        mid = len(raw) // 2
        raw[mid : mid + 4096] = os.urandom(min(4096, len(raw) - mid))
        largest.write_bytes(bytes(raw))
    elif how == "missing":  # a file lost
        largest.unlink()
    elif how == "partial":  # killed before Orbax's final rename: a temporary folder, not a checkpoint
        checkpoint.rename(checkpoint.with_name(f"{checkpoint.name}.orbax-checkpoint-tmp-1795667002"))
    elif how == "digest":  # arrays that restore fine but are not what was saved
        meta = checkpoint / "meta" / "metadata"
        record = json.loads(meta.read_text())
        record["digests"]["params"] = "0" * 64
        meta.write_text(json.dumps(record))


# Orbax leaves un-awaited coroutines behind when TensorStore fails on damaged files: noise, not errors
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
@pytest.mark.parametrize("how", ["garbage", "missing", "digest", "partial"])
def test_a_corrupt_newest_checkpoint_falls_back_to_the_previous_one(
    env: Path, reference: tuple[Path, Record], how: str
) -> None:
    template = env / "stopped_at_14"
    if not template.exists():
        with pytest.raises(Stop):
            train(run_spec(), template, hooks(Record(), stop_at=14))
    assert sorted(int(p.name) for p in (template / "checkpoints").iterdir() if p.name.isdigit()) == [8, 12]
    workdir = env / f"corrupt_{how}"
    shutil.copytree(template, workdir)
    _corrupt(workdir / "checkpoints" / "12", how)
    record = Record()
    train(run_spec(), workdir, hooks(record))
    assert record.notes[-1] == "resumed from checkpoint 8", record.notes
    if how == "partial":  # never looked like a checkpoint; the leftover is cleaned up
        assert len(record.notes) == 1 and not (workdir / "corrupt").exists()
        assert not list((workdir / "checkpoints").glob("*.orbax-checkpoint-tmp-*"))
    else:
        assert record.notes[0].startswith("skipped corrupt checkpoint step 12: ")
        assert [p.name.split("-")[0] for p in (workdir / "corrupt").iterdir()] == ["12"]
    assert inspect_workdir(workdir)["digests"] == inspect_workdir(reference[0])["digests"]


def test_a_resume_onto_another_data_stream_is_refused(env: Path, reference: tuple[Path, Record]) -> None:
    workdir = env / "other_stream"
    shutil.copytree(reference[0], workdir)
    with pytest.raises(I1labError, match="different data stream or batch size"):
        train(run_spec(**{"data.long_caption_fraction": 0.5}), workdir, Hooks())


def test_a_nan_loss_stops_the_run_at_once_and_the_registry_records_why(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from i1lab.execution import worker
    from i1lab.registry import PlannedMember, Registry
    from i1lab.train import runner

    real_batch = runner.step_batch

    def poisoned(spec: RunSpec, stream: Any, encoder: Any, step: int, dp: Any = None) -> Any:
        batch, ids = real_batch(spec, stream, encoder, step, dp)
        if step == 5:  # the sixth step sees a NaN pixel
            batch = {**batch, "latents": batch["latents"].at[0, 0, 0, 0].set(float("nan"))}
        return batch, ids

    monkeypatch.setattr(runner, "step_batch", poisoned)
    spec = run_spec(**{"eval.benchmarks": ["shapes"]})
    reg = Registry()
    member = PlannedMember(
        name="baseline",
        label="baseline",
        hash="e" * 64,
        is_baseline=True,
        baseline="baseline",
        varied={},
        spec=spec.model_dump(mode="json"),
        total_steps=16,
    )
    run_id = reg.record_plan("nan", [member])["baseline"]
    outcome = worker.execute_run(run_id, None, str(tmp_path / "run"))
    assert outcome.status == "failed" and outcome.reason == "loss became nan at step 6"
    assert reg.run(run_id).status == "failed" and reg.run(run_id).reason == "loss became nan at step 6"
    # logging is every 100 steps: the per-step flag caught it; nothing past step 4 was saved
    steps = [json.loads(x)["step"] for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3]
    assert sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir() if p.name.isdigit()) == ["4"]


def test_a_full_disk_is_one_clear_line(env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    workdir = env / "full"
    real_open = io.open

    def full_disk_open(file: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        if str(file).startswith(str(workdir)) and any(m in mode for m in "wax"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(file))
        return real_open(file, mode, *args, **kwargs)

    def on_step(step: int) -> None:
        if step == 2:  # the disk fills up during the run: the next write (the metric line) fails
            monkeypatch.setattr(builtins, "open", full_disk_open)
            monkeypatch.setattr(io, "open", full_disk_open)

    with pytest.raises(I1labError) as info:
        train(run_spec(), workdir, Hooks(on_step=on_step))
    monkeypatch.undo()
    message = str(info.value)
    assert message == f"disk full while writing training outputs in {workdir}: No space left on device"
    assert "\n" not in message


def test_a_full_disk_during_a_checkpoint_save_is_one_clear_line(
    env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from i1lab.train import checkpoint

    def full(self: Any, *args: Any, **kwargs: Any) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(checkpoint.ocp.CheckpointManager, "save", full)
    with pytest.raises(I1labError, match=r"^disk full while writing training outputs in .*: No space left"):
        train(run_spec(), env / "full_ckpt", Hooks())


def test_an_unwritable_work_directory_is_one_clear_line(tmp_path: Path) -> None:
    """A real read-only folder: a read-only tmpfs mounted in a private mount namespace when the tests
    run as root (root writes through permission bits), else a folder without write permission."""
    from tests.conftest import EXPERIMENTS

    study = tmp_path / "study.yaml"
    study.write_text(f"study: ro\nextends: {EXPERIMENTS / 'baseline.yaml'}\n")
    locked = tmp_path / "locked"
    locked.mkdir()
    cmd = [sys.executable, "-m", "i1lab", "train", str(study), "--profile", "tiny"]
    cmd += ["--workdir", str(locked / "run"), "--no-evaluate"]
    if os.geteuid() == 0:
        probe = subprocess.run(["unshare", "-m", "true"], capture_output=True, check=False)
        if probe.returncode != 0:
            pytest.skip("running as root without mount namespaces: no way to make a folder read-only")
        mount = f"mount -t tmpfs -o ro tmpfs {locked} && exec " + " ".join(cmd)
        cmd = ["unshare", "-m", "--propagation", "private", "sh", "-c", mount]
    else:
        os.chmod(locked, 0o555)
    env = {**os.environ, "I1LAB_HOME": str(tmp_path / "home"), "COLUMNS": "300"}
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120, check=False)
    os.chmod(locked, 0o755)
    assert res.returncode == 2, res.stderr
    reason = "Read-only file system" if os.geteuid() == 0 else "Permission denied"
    assert res.stderr == f"error: work directory {locked / 'run'} is not writable (spec.json): {reason}\n"
