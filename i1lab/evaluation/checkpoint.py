"""Evaluating a checkpoint of a run: restore its EMA parameters, sample, judge, record.

The one path every evaluation takes: the training worker at its checkpoints (in its process or as Ray
tasks beside it, :mod:`i1lab.execution.evaluation`), the evaluation steps the scheduler runs for runs
already trained (a study that asks a reused run for another benchmark or judge, see
:mod:`i1lab.plan.steps`), a search's inference trials, ``i1lab evals judge --run`` and ``i1lab score
--run``. Scores reach the registry through :func:`record_scores` only.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from i1lab.plan.steps import EvalStep
from i1lab.registry import PromptScoreRecord, Registry, ScoreRecord
from i1lab.spec.run import EvalSpec, RunSpec

if TYPE_CHECKING:
    from i1lab.evaluation.judging import BenchmarkScore
    from i1lab.registry import EvaluationRef
    from i1lab.registry.lease_holder import Lease


def restore_ema(spec: RunSpec, workdir: Path, step: int) -> Any | None:
    """The EMA parameters of checkpoint ``step``, read without modifying the folder (the training
    process may be writing beside it); None if that checkpoint is not kept or cannot be trusted."""
    from i1lab.train.checkpoint import CheckpointCorrupt, Checkpoints
    from i1lab.train.runner import initial_state

    folder = workdir / "checkpoints"
    if not (folder / str(step)).is_dir():
        return None
    t = spec.train
    ckpts = Checkpoints(
        folder, every=t.checkpoint_every, keep_every=t.keep_every, total_steps=t.steps, read_only=True
    )
    try:
        abstract, _, _ = initial_state(spec, abstract=True)
        return ckpts.restore(step, abstract)[0].ema
    except CheckpointCorrupt:
        return None
    finally:
        ckpts.manager.close()


def asked_with(spec: RunSpec, eval_spec: dict[str, Any] | None, steps: Sequence[EvalStep]) -> RunSpec:
    """``spec`` as a study asks it: its evaluation block replaced by ``eval_spec`` (None: kept), on the
    benchmarks of ``steps`` only (none given: all). Pure."""
    e = spec.eval if eval_spec is None else EvalSpec.model_validate(eval_spec)
    if steps:
        benches = [b for b in e.benchmarks if b in {s.benchmark for s in steps}]
        e = e.model_copy(update={"benchmarks": benches})
    return spec.model_copy(update={"eval": e})


def evaluate_checkpoint(
    spec: RunSpec, params: Any, step: int, workdir: Path, run_hash: str
) -> list[BenchmarkScore]:
    """Sample and judge the EMA ``params`` of checkpoint ``step`` on every benchmark of ``spec.eval``,
    writing the images under ``<workdir>/eval/<hash[:12]>/``."""
    from i1lab.evaluation.evaluate import evaluate

    return evaluate(spec, params, step, workdir / "eval" / run_hash[:12])


def score_records(run_id: int, results: Sequence[BenchmarkScore]) -> list[ScoreRecord]:
    return [
        ScoreRecord(
            run_id=run_id, step=r.step, benchmark=r.benchmark, metric=metric, judge=r.judge, value=value
        )
        for r in results
        for metric, value in r.metrics.items()
    ]


def prompt_records(run_id: int, results: Sequence[BenchmarkScore]) -> list[PromptScoreRecord]:
    """The per-prompt values of ``results`` (those that carry them), prompt keys hashed to ids."""
    from i1lab.registry.prompts import prompt_id

    return [
        PromptScoreRecord(
            run_id=run_id,
            step=r.step,
            benchmark=r.benchmark,
            judge=r.judge,
            metric=r.headline,
            values=[(prompt_id(key), value, weight) for key, value, weight in r.prompts],
        )
        for r in results
        if r.prompts and r.headline in r.metrics
    ]


def with_provenance(refs: list[EvaluationRef], results: Sequence[BenchmarkScore]) -> list[EvaluationRef]:
    """Each evaluation step with the provenance of the score of its checkpoint and benchmark. Pure."""
    from i1lab.hashing import canonical_json

    made = {(r.step, r.benchmark): canonical_json({"judge": r.judge, **r.provenance}) for r in results}
    return [ref.model_copy(update={"provenance": made.get((ref.step, ref.benchmark))}) for ref in refs]


def scores_line(step: int, results: Sequence[BenchmarkScore], where: str) -> str:
    values = ", ".join(
        f"{r.benchmark}/{metric}={value:.4g}" for r in results for metric, value in r.metrics.items()
    )
    return f"evaluated step {step} {where}: {values or 'no scores'}"


def record_scores(
    registry: Registry,
    run_id: int,
    results: Sequence[BenchmarkScore],
    *,
    steps: Sequence[EvalStep] = (),
    lease: Lease | None = None,
    token: int | None = None,
    owner: str | None = None,
    seconds: float = 0.0,
    node: str | None = None,
    detail: str | None = None,
) -> bool:
    """Record the scores of one evaluation (with their per-prompt values, where the benchmark gives
    them), mark the evaluation steps it ran (``steps``) done in the registry and add an ``evaluated``
    event, in one transaction: through the training attempt's
    ``lease``, fenced by its ``token``; for a run already trained, fenced by the claim ``owner`` holds on
    ``steps``, or as they are. False: the lease or the claim moved on, nothing was recorded."""
    records = score_records(run_id, results)
    prompts = prompt_records(run_id, results)
    refs = with_provenance([s.ref(run_id) for s in steps], results)
    if lease is not None:
        return lease.scores(records, steps=refs, eval_seconds=seconds, detail=detail, prompts=prompts)
    if token is not None:
        return registry.fenced_scores(
            run_id,
            token,
            records,
            steps=refs,
            eval_seconds=seconds,
            node=node,
            detail=detail,
            prompts=prompts,
        )
    return registry.record_evaluation(
        run_id, records, refs, owner=owner, node=node, detail=detail, prompts=prompts
    )
