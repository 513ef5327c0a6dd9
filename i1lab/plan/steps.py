"""Steps: what the scheduler runs, each with an identity of its own.

A plan is a graph of steps. A *training* step is a planned run that is new or to resume (its identity is
the run's content hash; :class:`~i1lab.execution.launching.Task`). An *evaluation* step is one checkpoint
of one run sampled and judged on one benchmark: its identity (:attr:`EvalStep.key`) hashes the run, the
checkpoint step, the benchmark, the judge and the evaluation settings that change the score, so that a
study asking a run already trained (reused) for another benchmark or judge gets exactly the evaluations
it lacks. Evaluations the training worker runs at its checkpoints carry the same keys.

Which evaluations a run has had is read from the registry (:func:`evaluation_history`): its evaluation
steps recorded done (``evaluation_steps``, :mod:`i1lab.registry.evaluations`, where an evaluation is
also claimed before it runs, so that each runs once however many submitters ask for it) and, for runs
evaluated before keys were recorded, the scores themselves.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict

from evals.benchmark import lookup
from i1lab.hashing import canonical_json
from i1lab.spec.run import RunSpec

if TYPE_CHECKING:
    from i1lab.registry import EvaluationRef, Registry


class EvalStep(BaseModel):
    """One evaluation: checkpoint ``step`` of run ``run_hash`` on ``benchmark``, judged by ``judge``."""

    model_config = ConfigDict(frozen=True)
    run_hash: str
    step: int
    benchmark: str
    judge: str  # as configured (``ocr``, ``official``, ``vlm:...``, ``none``); shapes: its pixel judge
    images_per_prompt: int | None = None
    prompts_per_tag: int | None = None  # shapes only
    prompt_limit: int | None = None
    command: str | None = None  # the official judge's command template
    #: the judge's own identity: its environment's fingerprint (official) or its weights' (vlm)
    judge_version: str | None = None
    official_summary: bool = False  # the official summary code checks the score (its environment)

    @property
    def key(self) -> str:
        """The step's identity: a hash of everything above (16 hex digits); the fields added later are
        left out at their defaults, so that older steps keep their keys."""
        data = self.model_dump(mode="json")
        for name in ("judge_version", "official_summary"):
            if data[name] == type(self).model_fields[name].default:
                del data[name]
        payload = "eval:1:" + canonical_json(data)
        return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:16]

    def ref(self, run_id: int) -> EvaluationRef:
        """This step as the registry records it (of the run with id ``run_id``)."""
        from i1lab.registry.records import EvaluationRef

        return EvaluationRef(
            key=self.key, run_id=run_id, step=self.step, benchmark=self.benchmark, judge=self.judge
        )


def eval_steps(spec: RunSpec) -> set[int]:
    """The checkpoint steps a run is evaluated at: every ``eval.every`` (default ``train.keep_every``)
    steps and the last. Pure."""
    every = spec.eval.every or spec.train.keep_every
    steps = set(range(every, spec.train.steps + 1, every))
    steps.add(spec.train.steps)
    return steps


def evaluations(spec: RunSpec, run_hash: str, steps: Iterable[int] | None = None) -> list[EvalStep]:
    """The evaluation steps ``spec`` asks of run ``run_hash`` (at ``steps``, default :func:`eval_steps`),
    in step then benchmark order. Pure."""
    e = spec.eval
    out = []
    for step in sorted(eval_steps(spec) if steps is None else set(steps)):
        for bench in e.benchmarks:
            generated = lookup(bench).generated
            judge = e.judge_for(bench)
            out.append(
                EvalStep(
                    run_hash=run_hash,
                    step=step,
                    benchmark=bench,
                    judge=judge,
                    images_per_prompt=e.images_per_prompt,
                    prompts_per_tag=e.prompts_per_tag if generated else None,
                    prompt_limit=e.prompt_limit,
                    command=e.commands.get(bench) if judge == "official" else None,
                    judge_version=judge_version(bench, judge),
                    official_summary=bench in e.official_summary,
                )
            )
    return out


def judge_version(bench: str, judge: str) -> str | None:
    """The identity of the judge a step names, as this machine has it: the fingerprint of ``bench``'s
    official environment (`i1lab evals setup`) for ``official``, of the weights folder for
    ``vlm:<folder>``; None for the others and where there is none. A changed judge makes new steps."""
    import json

    from i1lab.hashing import fingerprint_folder
    from i1lab.paths import judges_dir

    kind, _, arg = judge.partition(":")
    if kind == "official":
        try:
            manifest = json.loads((judges_dir() / bench / "environment.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        found = manifest.get("fingerprint") if isinstance(manifest, dict) else None
        return str(found) if found else None
    if kind == "vlm" and Path(arg).is_dir():
        return fingerprint_folder(Path(arg))
    return None


class EvalHistory(BaseModel):
    """What the registry knows of one run's evaluations."""

    keys: set[str] = set()  # evaluation steps recorded with their key
    scored: set[tuple[int, str, str]] = set()  # (step, benchmark, judge label) with scores

    def done(self, s: EvalStep) -> bool:
        """Whether evaluation step ``s`` has run: its key was recorded, or (an evaluation recorded before
        keys were) the run has scores at that step on that benchmark by a judge of that kind."""
        if s.key in self.keys:
            return True
        return any(
            step == s.step and bench == s.benchmark and judge_matches(s.judge, label)
            for step, bench, label in self.scored
        )


def judge_matches(judge: str, label: str) -> bool:
    """Whether a recorded judge label (``ocr-tesseract``, ``official``, ``exact-pixel``) is of the kind a
    spec configures (``ocr``, ``ocr:rapidocr``, ``official``, ``vlm:/weights``). Pure."""
    kind, _, arg = judge.partition(":")
    if kind == "ocr":
        return label == f"ocr-{arg}" if arg and arg != "auto" else label.startswith("ocr")
    if kind == "vlm":
        return label.startswith("vlm")
    return label == judge


def evaluation_history(registry: Registry, run_ids: Iterable[int]) -> dict[int, EvalHistory]:
    """Run id -> its evaluations as the registry has them (two reads for all runs)."""
    ids = sorted(set(run_ids))
    out = {r: EvalHistory() for r in ids}
    if not ids:
        return out
    for run_id, keys in registry.done_evaluations(ids).items():
        out[run_id].keys.update(keys)
    for score in registry.scores(ids):
        out[score.run_id].scored.add((score.step, score.benchmark, score.judge))
    return out


class RunEvals(BaseModel):
    """The evaluation steps one run still lacks, grouped by checkpoint."""

    run_id: int
    name: str  # study/name, for messages
    steps: list[EvalStep]

    def by_step(self) -> dict[int, list[EvalStep]]:
        out: dict[int, list[EvalStep]] = {}
        for s in self.steps:
            out.setdefault(s.step, []).append(s)
        return out


def missing_evaluations(
    runs: Mapping[int, tuple[str, RunSpec, str]],
    history: Mapping[int, EvalHistory],
    kept: Mapping[int, set[int]] | None = None,
) -> list[RunEvals]:
    """For each run (id -> (study/name, the spec a study asks it with, run hash)), the evaluation steps it
    lacks, at the checkpoints still kept (``kept``: run id -> steps; None: every step). Pure."""
    out = []
    for run_id, (name, spec, digest) in runs.items():
        done = history.get(run_id, EvalHistory())
        todo = [s for s in evaluations(spec, digest) if not done.done(s)]
        if kept is not None:
            todo = [s for s in todo if s.step in kept.get(run_id, set())]
        if todo:
            out.append(RunEvals(run_id=run_id, name=name, steps=todo))
    return out
