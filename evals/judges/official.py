"""The ``official`` judge: run a benchmark's own evaluation command (in its own environment) in a
subprocess, then import the per-sample files it wrote and aggregate them exactly (`evals.scoring`).

A command is a template; placeholders are filled with shell-quoted values and the result is split
with `shlex` (no shell): ``{python}`` (the official environment's interpreter), ``{images}`` (the
image folder in the official layout), ``{out}`` (a FRESH output folder — PRISM never recomputes an
existing record file), plus any extra keyword given to `run` (``{model_path}``, ``{resolution}``…).
`default_commands()` are the judge stages of the pinned environments (``judge_environment.toml``:
i1's `benchmark_eval/README.md`), run with the benchmark's folder as working directory; i1lab runs them
in those environments (`i1lab.evaluation.environments`), and this class runs a user's own command.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Final

from evals.benchmark import benchmarks, canonical, lookup
from evals.scoring import ScoreReport, score_output

NAME: Final = "official"


def default_command(bench: str) -> str | None:
    """The judge stage's command of ``bench``'s pinned official environment (`evals.judges.environment`)."""
    from evals.judges.environment import for_benchmark

    env = for_benchmark(lookup(bench))
    return next(iter(env.stages.values())).command if env is not None else None


def default_commands() -> dict[str, str]:
    """Each benchmark's default official command template: its environment's judge stage."""
    return {name: c for name in benchmarks() if (c := default_command(name))}


class OfficialJudgeError(RuntimeError):
    """The official command failed; the message carries its exit status and the end of its output."""


def concat_chunks(out: Path) -> Path | None:
    """LongText's ``cat results_chunk*.jsonl > results.jsonl`` (sorted by name), when needed."""
    target = out / "results.jsonl"
    chunks = sorted(out.glob("results_chunk*.jsonl"))
    if target.exists() or not chunks:
        return target if target.exists() else None
    with target.open("w", encoding="utf-8") as f:
        for chunk in chunks:
            f.write(chunk.read_text(encoding="utf-8"))
    return target


@dataclass(frozen=True)
class OfficialJudge:
    """One benchmark's official tool. `cwd` is where the command runs (the benchmark's folder)."""

    bench: str
    command: str = ""
    python: str = sys.executable
    cwd: Path | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    timeout: float | None = None
    name: str = NAME

    def __post_init__(self) -> None:
        object.__setattr__(self, "bench", canonical(self.bench))
        if not self.command:
            command = default_command(self.bench)
            if command is None:
                raise ValueError(f"{self.bench} has no official command; give one")
            object.__setattr__(self, "command", command)

    def argv(self, images: Path, out: Path, **extra: object) -> list[str]:
        values = {"python": self.python, "images": str(images), "out": str(out)}
        values.update({k: str(v) for k, v in extra.items()})
        try:
            line = self.command.format(**{k: shlex.quote(v) for k, v in values.items()})
        except KeyError as exc:
            raise ValueError(f"command template needs a value for {exc}: {self.command!r}") from None
        return shlex.split(line)

    def run(
        self, images: Path, out: Path, *, benchmarks_dir: Path | None = None, **extra: object
    ) -> ScoreReport:
        """Run the command, then import its outputs from `out`; the report's judge is `name`."""
        if out.exists() and any(out.iterdir()):
            raise OfficialJudgeError(f"output folder {out} is not empty; official judges need a fresh one")
        out.mkdir(parents=True, exist_ok=True)
        argv = self.argv(images, out, **extra)
        try:
            proc = subprocess.run(
                argv,
                cwd=self.cwd,
                env={**os.environ, **self.env},
                capture_output=True,
                text=True,
                timeout=self.timeout,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise OfficialJudgeError(f"{self.bench} official command {argv!r} could not run: {exc}") from exc
        (out / "official_stdout.txt").write_text(proc.stdout, encoding="utf-8")
        (out / "official_stderr.txt").write_text(proc.stderr, encoding="utf-8")
        if proc.returncode != 0:
            tail = (proc.stdout + proc.stderr)[-2000:]
            raise OfficialJudgeError(
                f"{self.bench} official command exited {proc.returncode}: {argv!r}\n{tail}"
            )
        lookup(self.bench).after_official(out)
        report = score_output(self.bench, out, benchmarks_dir)
        return replace(report, judge=self.name)
