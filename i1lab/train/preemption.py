"""Hard stops of a training process: a notice to stop (SIGTERM; on a TPU VM the metadata server's
maintenance or preemption notice) and runtime errors that mean the machine, not the run, went wrong.

A notice makes the training loop (:mod:`i1lab.train.runner`) finish the step it is in, write a checkpoint
at that step and raise :class:`Interrupted`; the worker then releases the run's lease as *interrupted*
(not failed), so the scheduler retries the run and it resumes from that step. A runtime error whose text
says a device or host was lost (:func:`classify`) is an interruption too; every other exception, and a
non-finite loss, stays a failure of the run.

Nothing here imports JAX: the scheduler and the CLI read the kinds and the classifier cheaply.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from pathlib import Path
from types import FrameType
from typing import Any, Literal, NamedTuple

#: What interrupted an attempt, as the registry's ``interrupted`` event records it (``run_events.cause``).
InterruptionKind = Literal[
    "sigterm",  # the process was sent SIGTERM (spot GPU reclaim, node drain, ``kill``)
    "maintenance",  # GCE metadata: instance/maintenance-event announced a TERMINATE
    "preempted",  # GCE metadata: instance/preempted became TRUE
    "lost-device",  # a runtime error that says an accelerator died or went into a bad state
    "lost-host",  # a runtime error that says a peer host or the coordination service went away
    "dead-worker",  # the worker process or node died, or stopped renewing its lease (seen by others)
    "evaluation",  # an evaluation task's worker kept dying
    "submitter",  # the submitter that launched the attempt stopped
]
KINDS: tuple[str, ...] = InterruptionKind.__args__  # type: ignore[attr-defined]

#: ``i1lab train`` exits with this code when a notice stopped it (EX_TEMPFAIL: try again later).
EXIT_INTERRUPTED = 75


class Interrupted(Exception):
    """Training stopped on a notice: the state of ``step`` is checkpointed (``saved``) and the run resumes
    from it when it is started again."""

    def __init__(self, kind: str, step: int, detail: str, saved: bool) -> None:
        self.kind, self.step, self.detail, self.saved = kind, step, detail, saved
        where = f"checkpoint {step} written" if saved else f"no new checkpoint (step {step})"
        super().__init__(f"{kind} at step {step}: {detail}; {where}")


# --- the classifier ------------------------------------------------------------------------------------


class Pattern(NamedTuple):
    kind: InterruptionKind
    regex: re.Pattern[str]
    source: str  # where this text was seen raised


_UNSOURCED = "named in issue #23; no public report of this exact text was found"


def _p(kind: InterruptionKind, regex: str, source: str) -> Pattern:
    return Pattern(kind, re.compile(regex), source)


#: Runtime errors that mean a lost device or host, by their text. Status codes are matched at the start
#: of the message, as XLA writes them (``absl::Status`` code, colon, text). Sources: the public reports
#: where each text was raised by jaxlib (``XlaRuntimeError``, ``jax.errors.JaxRuntimeError`` since
#: jax 0.4.36); the tests in ``tests/core/test_preemption_signals.py`` use texts from them.
PATTERNS: tuple[Pattern, ...] = (
    # hosts and the coordination service
    _p(
        "lost-host",
        r"^DEADLINE_EXCEEDED:",
        "jax.distributed barrier / heartbeat timeouts: ayaka14732/llama-2-jax#20 ('DEADLINE_EXCEEDED: "
        "Barrier timed out'), alpa-projects/alpa#826, GoogleCloudPlatform/ml-auto-solutions#1166",
    ),
    _p(
        "lost-host",
        r"^UNAVAILABLE:",
        "coordination-service RPC dropped (grpc status 14): marin-community/marin#7430",
    ),
    _p("lost-host", r"Socket closed", "grpc 'Socket closed' on a dropped peer: marin-community/marin#7430"),
    _p(
        "lost-host",
        r"Connection reset by peer",
        "'recvmsg: Connection reset by peer' on collectives / coordination: marin-community/marin#7430",
    ),
    _p(
        "lost-host",
        r"[Hh]eartbeat (?:timeout|timed out)",
        "coordination-service heartbeat timeouts: GoogleCloudPlatform/ml-auto-solutions#1166",
    ),
    # accelerators
    _p(
        "lost-device",
        r"TPU.*halted|Core halted unexpectedly|[Aa]ccelerator device halted",
        "'INTERNAL: Core halted unexpectedly': jax-ml/jax#9642; 'Accelerator device halted prematurely': "
        "vllm-project/tpu-inference#412",
    ),
    _p("lost-device", r"TPU is in a bad state", _UNSOURCED),
    _p("lost-device", r"slice health check failed", _UNSOURCED),
    _p(
        "lost-device",
        r"CUDA_ERROR_LAUNCH_FAILED|unspecified launch failure",
        "a sticky CUDA error that needs a new process: JuliaGPU/CUDA.jl#606, opendatalab/MinerU#426",
    ),
    _p(
        "lost-device",
        r"NCCL operation .+? failed: unhandled (?:system|cuda) error",
        "'NCCL operation ncclCommInitRank(...) failed: unhandled system error': jax-ml/jax#22747; "
        "'unhandled cuda error': jax-ml/jax#17399",
    ),
    _p(
        "lost-device",
        r"[Dd]evice (?:\S+ )?(?:was |is )?lost|fallen off the bus|CUDA_ERROR_ECC_UNCORRECTABLE",
        "a GPU that fell off the bus: proteneer/timemachine#1203",
    ),
)

#: The exception types whose text the patterns are read in: JAX's runtime errors only (an ordinary
#: exception that happens to say "UNAVAILABLE" is the run's own failure).
RUNTIME_ERRORS = frozenset({"XlaRuntimeError", "JaxRuntimeError"})


def classify_text(type_name: str, message: str) -> InterruptionKind | None:
    """The interruption a runtime error of type ``type_name`` with ``message`` means, or None (a failure
    of the run). Pure."""
    if type_name not in RUNTIME_ERRORS:
        return None
    text = message.strip()
    for pattern in PATTERNS:
        if pattern.regex.search(text):
            return pattern.kind
    return None


def classify(exc: BaseException) -> InterruptionKind | None:
    """:func:`classify_text` of ``exc`` or of an exception it was raised from (its cause or context)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        kind = classify_text(type(current).__name__, str(current))
        if kind is not None:
            return kind
        current = current.__cause__ or current.__context__
    return None


# --- notices -------------------------------------------------------------------------------------------


class StopRequest:
    """A notice to stop, set once (the first notice wins) from a signal handler or a watcher thread and
    read by the training loop between steps."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.kind: str | None = None
        self.detail = ""

    def request(self, kind: str, detail: str) -> None:
        with self._lock:
            if self.kind is None:
                self.kind, self.detail = kind, detail

    def __bool__(self) -> bool:
        return self.kind is not None


METADATA_URL = "http://metadata.google.internal/computeMetadata/v1/"
METADATA_PATHS: tuple[tuple[str, InterruptionKind], ...] = (
    ("instance/maintenance-event", "maintenance"),
    ("instance/preempted", "preempted"),
)
TPU_VM_ENV = "I1LAB_TPU_VM"  # "1" or "0" overrides the detection


def metadata_notice(kind: str, value: str) -> bool:
    """Whether a metadata value is a notice to stop. ``maintenance-event`` is ``NONE`` normally and
    ``TERMINATE_ON_HOST_MAINTENANCE`` before a stop (``MIGRATE_ON_HOST_MAINTENANCE`` is a live
    migration: the process keeps running); ``preempted`` is ``FALSE`` or ``TRUE``. Pure."""
    v = value.strip().upper()
    if kind == "maintenance":
        return v.startswith("TERMINATE")
    return v == "TRUE"


def on_tpu_vm(environ: Mapping[str, str] | None = None, root: Path = Path("/")) -> bool:
    """Whether this process runs on a Cloud TPU VM, from local facts only (no network): a Google Compute
    Engine machine (DMI product name) with TPU devices (``/dev/accel*`` up to v4, ``/dev/vfio/<n>`` from
    v5e) or the TPU runtime's environment. ``$I1LAB_TPU_VM`` (1/0) overrides."""
    env = os.environ if environ is None else environ
    forced = env.get(TPU_VM_ENV, "").strip()
    if forced in ("0", "1"):
        return forced == "1"
    try:
        product = (root / "sys/class/dmi/id/product_name").read_text()
    except OSError:
        return False
    if "Google" not in product:
        return False
    if any(env.get(k) for k in ("TPU_ACCELERATOR_TYPE", "TPU_WORKER_ID", "TPU_NAME")):
        return True
    dev = root / "dev"
    with contextlib.suppress(OSError):
        if any(dev.glob("accel[0-9]*")):
            return True
        vfio = dev / "vfio"
        if vfio.is_dir() and any(p.name.isdigit() for p in vfio.iterdir()):
            return True
    return False


class MetadataWatch:
    """A daemon thread that polls the metadata server every ``every`` seconds and sets ``stop`` on the
    first notice. An unreachable server is tried again at the next poll."""

    def __init__(self, stop: StopRequest, base: str = METADATA_URL, every: float = 5.0) -> None:
        self.stop, self.base, self.every = stop, base.rstrip("/") + "/", every
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, name="i1lab-metadata", daemon=True)

    def start(self) -> MetadataWatch:
        self._thread.start()
        return self

    def close(self) -> None:
        self._done.set()
        self._thread.join(timeout=5)

    def poll(self) -> bool:
        """One round over the notices; whether one was found."""
        for path, kind in METADATA_PATHS:
            req = urllib.request.Request(self.base + path, headers={"Metadata-Flavor": "Google"})
            try:
                with urllib.request.urlopen(req, timeout=2.0) as resp:
                    value = resp.read(256).decode("ascii", "replace")
            except (OSError, urllib.error.URLError, ValueError):
                continue
            if metadata_notice(kind, value):
                self.stop.request(kind, f"metadata {path} = {value.strip()}")
                return True
        return False

    def _run(self) -> None:
        while not self._done.is_set():
            if self.poll():
                return
            self._done.wait(self.every)


@contextlib.contextmanager
def watch(metadata: bool | None = None) -> Iterator[StopRequest]:
    """While inside: SIGTERM (when called from the main thread) and, on a TPU VM (``metadata`` None: as
    :func:`on_tpu_vm` says), the metadata server's notices set the returned :class:`StopRequest`.

    A second SIGTERM while the first is being handled goes to the handler that was there before (the
    default ends the process at once). The previous handler is back when the block ends."""
    stop = StopRequest()
    previous: Any = None
    installed = threading.current_thread() is threading.main_thread()

    def on_sigterm(signum: int, frame: FrameType | None) -> None:
        if stop.kind == "sigterm":  # asked twice: stop now, as the process would have
            signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)
            signal.raise_signal(signal.SIGTERM)
            return
        stop.request("sigterm", f"SIGTERM received by pid {os.getpid()}")

    if installed:
        previous = signal.signal(signal.SIGTERM, on_sigterm)
    poller = MetadataWatch(stop).start() if (on_tpu_vm() if metadata is None else metadata) else None
    try:
        yield stop
    finally:
        if poller is not None:
            poller.close()
        if installed:
            signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)
