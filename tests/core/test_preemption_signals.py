"""Hard stops (issue #23): a notice to stop makes a clean save, a lost device is an interruption.

- SIGTERM to a training process (``i1lab train``) mid-run: it finishes the step it is in, writes a
  checkpoint at exactly that step (not the previous periodic one), exits as interrupted (code 75), and
  started again resumes from that step and ends bitwise equal to an uninterrupted run.
- Under the scheduler: a run whose step raises JAX's runtime error with a real lost-device text is retried
  as an interruption (cause ``lost-device``) and finishes; a run whose loss turns NaN fails, not retried.
- The classifier on the error texts JAX raised in public reports, the TPU VM detection and the metadata
  server's notices (a server on loopback standing in for ``metadata.google.internal``).

Run as ``python -m tests.core.test_preemption_signals STEP FOLDER ARGS...`` it is ``i1lab ARGS...`` that
pauses after training step STEP until FOLDER/sent exists (having written FOLDER/at): the test sends
SIGTERM to it there, so it knows the step the signal arrived in.
"""

from __future__ import annotations

import http.server
import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from i1lab.train.preemption import (
    EXIT_INTERRUPTED,
    KINDS,
    PATTERNS,
    MetadataWatch,
    StopRequest,
    classify,
    classify_text,
    metadata_notice,
    on_tpu_vm,
    watch,
)
from tests.conftest import EXPERIMENTS
from tests.core.test_train_kill import _env, _losses, _train_cmd, study_text
from tests.core.test_train_step import SMALL, shared_xla_cache

# --- the classifier, on texts JAX raised (the source of each is in i1lab.train.preemption.PATTERNS) ----

LOST = [
    # ayaka14732/llama-2-jax#20
    (
        "DEADLINE_EXCEEDED: Barrier timed out. Barrier_id: PjRT_Client_Connect. Timed out task names:\n"
        "/job:jax_worker/replica:0/task:1\n/job:jax_worker/replica:0/task:6",
        "lost-host",
    ),
    # alpa-projects/alpa#826
    ("DEADLINE_EXCEEDED: Connect() timed out after 0 with 1 attempts.", "lost-host"),
    # marin-community/marin#7430: the coordination service's RPC dropped, grpc status 14
    ("UNAVAILABLE: Socket closed", "lost-host"),
    ("INTERNAL: RPC failed: recvmsg: Connection reset by peer (grpc_status:14)", "lost-host"),
    # jax-ml/jax#9642
    (
        "INTERNAL: Core halted unexpectedly: No error message available as no compiler metadata "
        "was provided.",
        "lost-device",
    ),
    # vllm-project/tpu-inference#412
    (
        "INTERNAL: Core halted unexpectedly: INTERNAL: Accelerator device halted prematurely, perhaps due to "
        "an on-device check-failure. Node 0 halted unexpectedly at tag:pc TensorCoreSequencer:20:0xa",
        "lost-device",
    ),
    # jax-ml/jax#22747
    (
        "INTERNAL: external/xla/xla/service/gpu/nccl_utils.cc:305: NCCL operation ncclCommInitRank(&comm, "
        "nranks, id, rank) failed: unhandled system error (run with NCCL_DEBUG=INFO for details).",
        "lost-device",
    ),
    # jax-ml/jax#17399
    (
        "INTERNAL: Failed to execute XLA Runtime executable: run time error: custom call "
        "'xla.gpu.all_reduce' failed: external/xla/xla/service/gpu/nccl_utils.cc:275: NCCL operation "
        "ncclCommInitRank(&comm, nranks, id, rank) failed: unhandled cuda error",
        "lost-device",
    ),
    # XLA's kernel-launch text (jaxleyverse/jaxley#53) with the sticky launch failure (JuliaGPU/CUDA.jl#606)
    (
        "INTERNAL: Failed to execute XLA Runtime executable: run time error: custom call "
        "'xla.gpu.func.launch' failed: Failed to launch CUDA kernel: fusion_1560 with block dimensions: "
        "160x1x1 and grid dimensions: 1x1x1: CUDA_ERROR_LAUNCH_FAILED: unspecified launch failure",
        "lost-device",
    ),
    # named in issue #23
    ("INTERNAL: The TPU is in a bad state and must be reset", "lost-device"),
    ("UNKNOWN: slice health check failed", "lost-device"),
]

NOT_LOST = [
    # a program's own bug (jaxleyverse/jaxley#53): retrying runs into it again
    "INTERNAL: Failed to execute XLA Runtime executable: run time error: custom call 'xla.gpu.func.launch' "
    "failed: Failed to launch CUDA kernel: fusion_1560 with block dimensions: 160x1x1 and grid dimensions: "
    "1x1x1: CUDA_ERROR_ILLEGAL_ADDRESS: an illegal memory access was encountered.",
    "RESOURCE_EXHAUSTED: Out of memory while trying to allocate 12.00GiB.",
    # jax-ml/jax#28376: no device at start, not one lost mid-run
    "FAILED_PRECONDITION: No visible GPU devices.",
    "INVALID_ARGUMENT: Executable expected shape f32[4,16] for argument 0 but got shape f32[8,16]",
]


@pytest.mark.parametrize(("text", "kind"), LOST)
def test_lost_device_and_host_texts_are_interruptions(text: str, kind: str) -> None:
    from jax.errors import JaxRuntimeError

    assert classify_text("XlaRuntimeError", text) == kind
    assert classify(JaxRuntimeError(text)) == kind
    try:  # found in the chain too: an error raised while handling it
        try:
            raise JaxRuntimeError(text)
        except JaxRuntimeError as inner:
            raise RuntimeError("the step failed") from inner
    except RuntimeError as outer:
        assert classify(outer) == kind


@pytest.mark.parametrize("text", NOT_LOST)
def test_other_runtime_errors_stay_failures(text: str) -> None:
    from jax.errors import JaxRuntimeError

    assert classify(JaxRuntimeError(text)) is None


def test_only_jax_runtime_errors_are_read() -> None:
    from i1lab.train.runner import RunFailed

    text = LOST[2][0]  # "UNAVAILABLE: Socket closed"
    assert classify_text("JaxRuntimeError", text) == "lost-host"
    assert classify(ValueError(text)) is None  # an ordinary exception is the run's own failure
    assert classify(ConnectionResetError("Connection reset by peer")) is None
    assert classify(RunFailed("loss became nan at step 3")) is None
    assert {p.kind for p in PATTERNS} <= set(KINDS) and all(p.source for p in PATTERNS)


# --- notices ---------------------------------------------------------------------------------------------


def test_metadata_values_that_are_notices() -> None:
    assert metadata_notice("maintenance", "TERMINATE_ON_HOST_MAINTENANCE")
    assert not metadata_notice("maintenance", "NONE")
    assert not metadata_notice("maintenance", "MIGRATE_ON_HOST_MAINTENANCE")  # live migration: keeps running
    assert metadata_notice("preempted", "TRUE\n") and not metadata_notice("preempted", "FALSE")


def test_tpu_vm_detection_reads_local_files_only(tmp_path: Path) -> None:
    dmi = tmp_path / "sys/class/dmi/id"
    dmi.mkdir(parents=True)
    assert not on_tpu_vm({}, tmp_path)  # no DMI product name: not even a cloud machine
    (dmi / "product_name").write_text("Google Compute Engine\n")
    assert not on_tpu_vm({}, tmp_path)  # a GCE machine without TPUs
    (tmp_path / "dev/vfio").mkdir(parents=True)
    (tmp_path / "dev/vfio/vfio").touch()
    assert not on_tpu_vm({}, tmp_path)
    (tmp_path / "dev/vfio/0").touch()  # v5e / v6e chips
    assert on_tpu_vm({}, tmp_path)
    assert not on_tpu_vm({"I1LAB_TPU_VM": "0"}, tmp_path)
    (dmi / "product_name").write_text("Standard PC (Q35 + ICH9, 2009)\n")
    assert not on_tpu_vm({"TPU_ACCELERATOR_TYPE": "v6e-8"}, tmp_path)
    assert on_tpu_vm({"I1LAB_TPU_VM": "1"}, tmp_path)


@pytest.fixture
def metadata_server() -> Iterator[tuple[str, dict[str, str], list[str]]]:
    """A metadata server on loopback: answers only requests with ``Metadata-Flavor: Google``."""
    values = {"instance/maintenance-event": "NONE", "instance/preempted": "FALSE"}
    seen: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.removeprefix("/computeMetadata/v1/")
            seen.append(path)
            if self.headers.get("Metadata-Flavor") != "Google" or path not in values:
                self.send_response(403)
                self.end_headers()
                return
            body = values[path].encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/computeMetadata/v1/", values, seen
    finally:
        server.shutdown()
        server.server_close()


def test_the_metadata_watch_stops_on_a_maintenance_notice(
    metadata_server: tuple[str, dict[str, str], list[str]],
) -> None:
    url, values, seen = metadata_server
    stop = StopRequest()
    assert not MetadataWatch(stop, url).poll() and not stop  # NONE, FALSE: nothing
    assert seen == ["instance/maintenance-event", "instance/preempted"]
    poller = MetadataWatch(stop, url, every=0.05).start()
    try:
        values["instance/maintenance-event"] = "TERMINATE_ON_HOST_MAINTENANCE"
        deadline = time.monotonic() + 10
        while not stop and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        poller.close()
    assert stop.kind == "maintenance" and "TERMINATE_ON_HOST_MAINTENANCE" in stop.detail
    values["instance/maintenance-event"] = "NONE"
    values["instance/preempted"] = "TRUE"
    other = StopRequest()
    assert MetadataWatch(other, url).poll() and other.kind == "preempted"
    # an unreachable server is no notice
    assert not MetadataWatch(StopRequest(), "http://127.0.0.1:9/").poll()


def test_sigterm_while_watching_is_a_notice_and_the_handler_is_restored() -> None:
    before = signal.getsignal(signal.SIGTERM)
    with watch(metadata=False) as stop:
        assert signal.getsignal(signal.SIGTERM) is not before
        os.kill(os.getpid(), signal.SIGTERM)
        deadline = time.monotonic() + 5
        while not stop and time.monotonic() < deadline:
            time.sleep(0.01)
        assert stop.kind == "sigterm" and str(os.getpid()) in stop.detail
        stop.request("maintenance", "later")  # the first notice stands
        assert stop.kind == "sigterm"
    assert signal.getsignal(signal.SIGTERM) is before


# --- SIGTERM to a training process --------------------------------------------------------------------

MODULE = "tests.core.test_preemption_signals"
STEPS = 30
PAUSE = 13  # between the periodic checkpoints 10 and 20


def _pause_child(argv: list[str]) -> None:
    """``i1lab ARGS`` whose training pauses after step STEP until FOLDER/sent exists."""
    step, folder, args = int(argv[0]), Path(argv[1]), argv[2:]
    import i1lab.train.runner as runner

    original = runner.train

    def train(spec: Any, workdir: Path, hooks: Any = None, init_from: Path | None = None) -> Any:
        def on_step(done: int) -> None:
            if done != step:
                return
            (folder / "at").write_text(str(os.getpid()))
            deadline = time.monotonic() + 300
            while not (folder / "sent").exists() and time.monotonic() < deadline:
                time.sleep(0.01)

        hooks.on_step = on_step
        return original(spec, workdir, hooks, init_from)

    runner.train = train  # type: ignore[assignment]
    sys.argv = ["i1lab", *args]
    from i1lab.cli.main import main

    main()


def _study(tmp_path: Path) -> Path:
    study = tmp_path / "sigterm.yaml"
    text = study_text().replace("study: kill_micro", "study: sigterm_micro")
    text = text.replace("train.steps: 60", f"train.steps: {STEPS}")
    study.write_text(text)
    assert f"train.steps: {STEPS}" in text and "train.checkpoint_every: 10" in text
    return study


def _checkpoints(workdir: Path) -> list[int]:
    return sorted(int(p.name) for p in (workdir / "checkpoints").iterdir() if p.name.isdigit())


def test_sigterm_saves_the_step_it_arrived_in_and_the_run_resumes_bitwise(
    home: Path, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    from i1lab.plan.planner import expand
    from i1lab.spec import load_study
    from i1lab.train.inspection import inspect_workdir
    from i1lab.train.runner import Hooks, train

    study = _study(tmp_path)
    env = _env(home, shared_xla_cache(tmp_path_factory))
    straight, stopped = tmp_path / "straight", tmp_path / "stopped"
    child = subprocess.Popen(
        [sys.executable, "-m", MODULE, str(PAUSE), str(tmp_path), *_train_cmd(study, stopped)[3:]],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        # the uninterrupted reference, in this process (the same compiled step: see test_train_kill)
        # while the other one starts and trains up to its pause
        spec = expand(load_study(study), "tiny")[0].spec
        assert train(spec, straight, Hooks(watch_stops=False))["step"] == STEPS
        deadline = time.monotonic() + 240
        while not (tmp_path / "at").exists():
            assert child.poll() is None, child.communicate()[1][-2000:]
            assert time.monotonic() < deadline, "the training never reached the pause"
            time.sleep(0.02)
        os.kill(child.pid, signal.SIGTERM)  # arrives while step 13's state is the newest
        (tmp_path / "sent").touch()
        _, err = child.communicate(timeout=120)
        assert child.returncode == EXIT_INTERRUPTED, err[-2000:]
        line = next(x for x in err.splitlines() if x.startswith("interrupted:"))
        assert line.startswith(f"interrupted: sigterm at step {PAUSE}: SIGTERM received by pid {child.pid}")
        assert line.endswith(f"checkpoint {PAUSE} written"), line
        # the checkpoint is the step the signal arrived in, durable (Orbax renamed it into place), beside
        # the periodic one before it
        assert _checkpoints(stopped) == [10, PAUSE]
        assert inspect_workdir(stopped)["step"] == PAUSE

        again = subprocess.run(
            _train_cmd(study, stopped), capture_output=True, text=True, env=env, timeout=240, check=False
        )
        assert again.returncode == 0, again.stderr[-2000:]
        assert f"resumed from checkpoint {PAUSE}" in again.stderr, again.stderr[-2000:]
    finally:
        if child.poll() is None:
            child.kill()
            child.communicate()

    a, b = inspect_workdir(straight), inspect_workdir(stopped)
    assert a["step"] == b["step"] == STEPS and a["data_position"] == b["data_position"]
    assert a["digests"] == b["digests"] and len(a["digests"]) == 3, (a["digests"], b["digests"])
    assert _losses(stopped) == _losses(straight)  # the metric log reads as one run


# --- under the scheduler: a lost device is retried, a NaN loss is a failure -------------------------

FAULTS_STUDY = """\
study: faults
extends: {baseline}
max_concurrent: 1                 # one worker process: one JAX import, one compilation
axes:
  train.seed: [1]
profiles:
  tiny:
{overrides}
    train.steps: 8
    train.checkpoint_every: 4
    train.keep_every: 8
    train.log_every: 4
    eval.benchmarks: []
"""
LOST_AT = 6  # seed 0: the step raises a lost-device error the first time it runs this step
NAN_AT = 3  # seed 1: the loss of this step is NaN
LOST_TEXT = LOST[6][0]  # NCCL's unhandled system error (jax-ml/jax#22747)


def faulty_run(run_id: int, *args: Any, **kwargs: Any) -> Any:
    """``execute_run`` in a Ray worker, with a train step that fails as the run's seed says."""
    import jax.numpy as jnp
    from jax.errors import JaxRuntimeError

    import i1lab.train.runner as runner
    from i1lab import paths
    from i1lab.execution.worker import execute_run

    if not getattr(runner.train_step, "faulty", False):
        original = runner.train_step

        def train_step(spec: Any, *a: Any, **k: Any) -> Any:
            fn = original(spec, *a, **k)

            def step(state: Any, batch: Any, rng: Any) -> Any:
                done = int(state.step) + 1
                marker = paths.home() / "lost-device-raised"
                if spec.train.seed == 0 and done == LOST_AT and not marker.exists():
                    marker.touch()
                    raise JaxRuntimeError(LOST_TEXT)
                state, metrics = fn(state, batch, rng)
                if spec.train.seed == 1 and done == NAN_AT:
                    metrics = metrics._replace(loss=jnp.float32(jnp.nan), finite=jnp.array(False))
                return state, metrics

            return step

        train_step.faulty = True  # type: ignore[attr-defined]
        runner.train_step = train_step  # type: ignore[assignment]
    return execute_run(run_id, *args, **kwargs)


def test_a_lost_device_is_retried_and_a_nan_loss_fails(
    home: Path, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    from rich.console import Console

    import i1lab.execution.scheduler as scheduler
    import i1lab.execution.worker as worker
    from i1lab.errors import I1labError
    from i1lab.execution.submit import submit_study
    from i1lab.registry import Registry
    from i1lab.registry.status import interruptions_cell, study_status

    overrides = "\n".join(f"    {key}: {json.dumps(value)}" for key, value in SMALL.items())
    study = tmp_path / "faults.yaml"
    study.write_text(FAULTS_STUDY.format(baseline=EXPERIMENTS / "baseline.yaml", overrides=overrides))
    monkeypatch.setenv("JAX_COMPILATION_CACHE_DIR", shared_xla_cache(tmp_path_factory))
    monkeypatch.setenv("JAX_PLATFORMS", "cpu")
    monkeypatch.setattr(worker, "execute_run", faulty_run)  # what the driver sends to Ray
    monkeypatch.setattr(scheduler, "retry_delay", lambda *args: 0.2)  # no seconds of backoff
    out = io.StringIO()
    with pytest.raises(I1labError, match="1 run\\(s\\) did not finish"):
        submit_study(study, "tiny", address=None, progress=False, mlflow=False, console=Console(file=out))
    registry = Registry()
    runs = {r.spec["train"]["seed"]: r for r in registry.runs()}
    lost, nan = runs[0], runs[1]

    assert (lost.status, lost.step, lost.interruptions, lost.attempts) == ("finished", 8, 1, 2), lost
    events = registry.events([lost.id])
    interrupted = [e for e in events if e.kind == "interrupted"]
    assert [e.cause for e in interrupted] == ["lost-device"], events
    assert "NCCL operation" in (interrupted[0].detail or "")
    kinds = [e.kind for e in events]
    assert kinds.index("interrupted") < kinds.index("retried") < kinds.index("finished"), kinds
    started = [e.detail or "" for e in events if e.kind == "started"]
    assert "resumed from checkpoint 4" in started[1], started  # the periodic checkpoint before step 6

    assert (nan.status, nan.interruptions, nan.attempts) == ("failed", 0, 1), nan
    assert f"loss became nan at step {NAN_AT}" in (nan.reason or ""), nan.reason
    assert not [e for e in registry.events([nan.id]) if e.kind in ("interrupted", "retried")]

    status = {r.id: r for r in study_status(registry, "faults")}
    assert interruptions_cell(status[lost.id]) == "1 (lost-device)"
    assert interruptions_cell(status[nan.id]) == "0"


if __name__ == "__main__":
    _pause_child(sys.argv[1:])
