"""``i1lab score``: official per-sample outputs -> exact headline and categories -> registry and MLflow."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from rich.console import Console

from i1lab.errors import I1labError


def score_command(
    bench: str,
    path: Path,
    *,
    as_json: bool,
    run: str | None,
    step: int | None,
    benchmarks_dir: Path | None,
    console: Console,
) -> None:
    from evals.benchdir import BenchmarkFileMissing
    from i1lab.evaluation.benchmarks_io import score_report

    if (run is None) != (step is None):
        raise I1labError("--run and --step go together: give both to record the scores, or neither")
    try:
        report = score_report(bench, path, benchmarks_dir)
    except (FileNotFoundError, BenchmarkFileMissing, ValueError) as exc:
        raise I1labError(f"score {bench}: {str(exc).splitlines()[0]}") from None
    if run is not None and step is not None:
        _record(report.bench, report.judge, report.metrics, run, step, console)
    if as_json:
        payload = {
            "benchmark": report.bench,
            "judge": report.judge,
            "headline": report.headline_name,
            "value": report.headline,
            "metrics": report.metrics,
            "source": str(report.source),
        }
        sys.stdout.write(json.dumps(payload, indent=2) + "\n")
        return
    sys.stdout.write(report.printed if report.printed.endswith("\n") else report.printed + "\n")
    console.print(
        f"{report.bench} {report.headline_name} = {report.headline:.6g}  [judge: {report.judge}]",
        markup=False,
    )


def _record(bench: str, judge: str, metrics: dict[str, float], run: str, step: int, console: Console) -> None:
    from i1lab.evaluation.checkpoint import record_scores
    from i1lab.evaluation.judging import BenchmarkScore
    from i1lab.registry import Registry

    registry = Registry()
    record = registry.find_run(run)
    values = {name: float(value) for name, value in metrics.items()}
    score = BenchmarkScore(benchmark=bench, judge=judge, step=step, metrics=values, headline="")
    record_scores(registry, record.id, [score], detail=f"step {step} by `i1lab score`")
    console.print(f"recorded {len(metrics)} {bench} metrics for run {record.id} at step {step}", markup=False)
    from i1lab.registry import tracking

    for study in {m.split("/", 1)[0] for m in _memberships(registry, record.id)}:
        try:
            tracking.sync_study(registry, study)
        except Exception as exc:
            console.print(
                f"MLflow mirror not updated ({type(exc).__name__}); run `i1lab sync mlflow` later",
                markup=False,
            )


def _memberships(registry: object, run_id: int) -> list[str]:
    from i1lab.registry import Registry

    assert isinstance(registry, Registry)
    record = registry.run(run_id)
    return registry.existing_runs([record.hash])[record.hash].names
