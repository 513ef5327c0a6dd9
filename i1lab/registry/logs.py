"""``i1lab logs RUN``: a run's log as it grows — its scheduling events and what its worker wrote.

A run's worker writes under the run's work directory: ``metrics.jsonl`` (one line per logged step)
and, after a crash, ``error.log`` (the traceback). If the worker keeps a plain log of its own at
``<workdir>/logs/<hash[:12]>.log``, that file is streamed instead of the rendered metrics. Scheduling
events (queued, started, interrupted, retried, cancelled, ...) come from the registry's ``run_events``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

from i1lab.registry import Registry, RunRecord
from i1lab.registry.records import TERMINAL

FINAL = (*TERMINAL, "imported")


def log_file(run: RunRecord) -> Path | None:
    """The worker's own plain log of this run, if it keeps one."""
    if not run.workdir:
        return None
    return Path(run.workdir) / "logs" / f"{run.hash[:12]}.log"


def format_metrics(line: str) -> str | None:
    """One ``metrics.jsonl`` line as a log line: ``step 20  loss 0.1234  lr 0.001 ...``. Pure."""
    try:
        record = json.loads(line)
    except ValueError:
        return None
    if not isinstance(record, dict) or "step" not in record:
        return None
    parts = [f"step {record['step']}"]
    for key, value in record.items():
        if key == "step":
            continue
        if isinstance(value, float):
            parts.append(f"{key} {value:.4g}")
        else:
            parts.append(f"{key} {value}")
    return "  ".join(parts)


class _Tail:
    """New complete lines of a file since the last read (a line being written waits for its newline)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0

    def read(self) -> list[str]:
        try:
            with self.path.open("rb") as f:
                f.seek(self.offset)
                data = f.read()
        except OSError:
            return []
        end = data.rfind(b"\n")
        if end < 0:
            return []
        self.offset += end + 1
        return data[: end + 1].decode("utf-8", "replace").splitlines()


class RunLog:
    """Everything new about a run since the previous :meth:`poll`."""

    def __init__(self, registry: Registry, run: RunRecord) -> None:
        self.registry = registry
        self.run = run
        self.last_event = 0
        own = log_file(run)
        wd = Path(run.workdir) if run.workdir else None
        self.own = _Tail(own) if own is not None and own.is_file() else None
        self.metrics = _Tail(wd / "metrics.jsonl") if wd is not None and self.own is None else None
        self.error = wd / "error.log" if wd is not None else None
        self.error_shown = False

    def _events(self) -> list[str]:
        out = []
        for e in self.registry.events([self.run.id], after=self.last_event):
            self.last_event = max(self.last_event, e.id)
            where = f" on {e.node}" if e.node else ""
            kind = f"{e.kind} ({e.cause})" if e.cause else e.kind
            out.append(f"[{e.at:%Y-%m-%d %H:%M:%S}] {kind}{where}" + (f": {e.detail}" if e.detail else ""))
        return out

    def poll(self) -> list[str]:
        lines = self._events()
        if self.own is None and (own := log_file(self.run)) is not None and own.is_file():
            self.own, self.metrics = _Tail(own), None  # the worker started its own log
        if self.own is not None:
            lines += self.own.read()
        elif self.metrics is not None:
            lines += [f for f in map(format_metrics, self.metrics.read()) if f]
        if not self.error_shown and self.error is not None and self.error.is_file():
            self.error_shown = True
            lines += self.error.read_text().rstrip("\n").splitlines()
        return lines


def stream_run(
    registry: Registry,
    run: RunRecord,
    *,
    follow: bool,
    write: Callable[[str], None],
    poll_seconds: float = 0.5,
) -> str:
    """Write the run's log; with ``follow``, keep writing until the run ends. Returns its last status."""
    log = RunLog(registry, run)
    for line in log.poll():
        write(line)
    status = run.status
    while follow and status not in FINAL:
        time.sleep(poll_seconds)
        status = registry.run(run.id).status
        for line in log.poll():  # after reading the status, so the last lines are never missed
            write(line)
    return status
