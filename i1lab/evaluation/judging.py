"""Judging a folder of generated images in a benchmark's official layout, then scoring it exactly.

`judge_images(bench, images, judge, step=...)` is independent of generation: it reads only the image
folder and the ORIGINAL prompt files, so a checkpoint's images can be judged later, elsewhere (a separate
Ray task, ``i1lab evals judge``), or again with another judge. Judges (``EvalSpec.judges``):

* ``none``: nothing is judged or recorded (the images stay for a later judge);
* ``ocr`` / ``ocr:<engine>``: the CPU OCR stand-ins of `evals.judges.ocr` (CVTG-2K, LongText), labelled
  ``ocr-tesseract`` / ``ocr-rapidocr`` — never ``official``;
* ``official``: the benchmark's own command (`evals.judges.official.OfficialJudge`), its output files
  imported and scored exactly; labelled ``official``;
* ``vlm:<weights folder>``: `evals.judges.vlm.VlmJudge` on local weights (PRISM, CVTG-2K, LongText),
  labelled ``vlm-<folder name>``;
* a benchmark's own judge (``exact-pixel`` for shapes), labelled with its name.

Which judges a benchmark accepts, how it counts, judges and scores its images is the benchmark's
(`evals.benchmark.Benchmark`); this module only makes the judges and keeps the files.

Judge outputs go to ``<images>/i1lab/<judge name>/`` (per-sample files in the format `evals.scoring`
imports, and ``summary.txt``, the official printout); no official walk looks into that folder.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from evals.benchmark import NONE, OFFICIAL, lookup
from i1lab.errors import I1labError
from i1lab.spec.run import EvalSpec

log = logging.getLogger(__name__)

#: The folder inside an image root where i1lab keeps its own files (judgements, grid, notes).
EXTRAS = "i1lab"


class BenchmarkScore(BaseModel):
    """One benchmark's numbers for one checkpoint, as given by one judge."""

    benchmark: str
    judge: str
    step: int
    metrics: dict[str, float]
    headline: str
    #: Per-prompt ``(prompt key, value, weight)`` whose weighted mean is the headline (`Benchmark.
    #: prompt_values`); None where the benchmark gives none. Paired confidence intervals resample them.
    prompts: list[tuple[str, float, float]] | None = None
    #: How the score was made: judge, its environment's and weights' fingerprints, prompt set version,
    #: sampling settings and seeds (recorded with the evaluation step).
    provenance: dict[str, str] = {}


def _prompt_values(benchmark: Any, out: Path, directory: Path | None, headline: float | None) -> Any:
    """The benchmark's per-prompt values of the judge folder ``out``, kept only where their weighted mean
    is the recorded headline (else a warning and None)."""
    values = benchmark.prompt_values(out, directory)
    if not values or headline is None:
        return None
    total = sum(w for _, _, w in values)
    mean = sum(v * w for _, v, w in values) / total if total > 0 else float("nan")
    if not abs(mean - headline) <= 1e-9 * max(1.0, abs(headline)):
        log.warning(
            "%s: per-prompt values give %r, not the headline %r; not recorded", benchmark.name, mean, headline
        )
        return None
    return values


def judge_dir(images: Path, name: str) -> Path:
    """Where judge ``name`` writes its outputs for the images under ``images``."""
    return images / EXTRAS / re.sub(r"[^A-Za-z0-9._+-]", "_", name)


def _fresh(path: Path) -> Path:
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
    return path


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def counts(bench: str, images: Path, directory: Path | None = None) -> tuple[int, int]:
    """``(prompts, images)`` found under ``images`` by the benchmark's official walk."""
    try:
        benchmark = lookup(bench)
    except ValueError as exc:
        raise I1labError(str(exc)) from None
    return benchmark.count(images, directory)


def _reader(bench: str, kind: str, arg: str) -> tuple[str, Any]:
    """``(judge name, reader)`` of a non-official judge: an OCR engine, a VLM judge, or None for the
    benchmark's own judge (named ``kind``)."""
    if kind == "ocr":
        from evals.judges import ocr

        try:
            engine = ocr.make_engine(arg)
        except (RuntimeError, ValueError) as exc:
            raise I1labError(f"{bench}: OCR judge unavailable: {_first_line(exc)}") from None
        return engine.name, engine
    if kind == "vlm":
        judge = _vlm_judge(bench, arg)
        return str(judge.name), judge
    return kind, None


def _vlm_judge(bench: str, weights: str) -> Any:
    from evals.judges import vlm

    try:
        return vlm.VlmJudge(weights)
    except (FileNotFoundError, ImportError, OSError, ValueError) as exc:
        raise I1labError(f"{bench}: VLM judge unavailable: {_first_line(exc)}") from None


def _official(
    bench: str,
    images: Path,
    out: Path,
    command: str | None,
    directory: Path | None,
    extra: Mapping[str, object],
) -> tuple[Any, dict[str, str]]:
    """The official judge's report and its provenance. In the benchmark's environment (`i1lab evals
    setup`) its judge stage runs with the environment's interpreter in the official folder; without
    one, only a command the user gave runs (with i1lab's interpreter: their own script)."""
    from dataclasses import replace

    from evals.judges.official import OfficialJudge, OfficialJudgeError
    from evals.scoring import score_output
    from i1lab.evaluation import environments

    inst = environments.installed(bench)
    if inst is None:
        if not command:
            raise I1labError(
                f"{bench}: the official judge runs in its own environment; build it with "
                f"`i1lab evals setup {bench}` (or give eval.commands.{bench})"
            )
        judge = OfficialJudge(bench, command)
        try:
            return judge.run(images, out, benchmarks_dir=directory, **extra), {}
        except OfficialJudgeError as exc:
            raise I1labError(
                f"{_first_line(exc)} (its output: {out}/official_stdout.txt, official_stderr.txt)"
            ) from None
        except ValueError as exc:  # a placeholder without a value
            raise I1labError(f"{bench}: official judge: {_first_line(exc)}") from None
    judge_stage = next(iter(environments.spec_of(bench)[0].stages))
    values = {"images": str(images), **{k: str(v) for k, v in extra.items()}}
    environments.run_stage(inst, judge_stage, out, values=values, command=command)
    lookup(bench).after_official(out)
    report = replace(score_output(bench, out, directory), judge=f"{OFFICIAL}@{inst.fingerprint[:8]}")
    return report, environments.provenance(inst, [judge_stage])


def _judge_provenance(kind: str, arg: str, reader: Any) -> dict[str, str]:
    """What identifies a non-official judge beyond its label: a VLM's weights fingerprint and device, an
    OCR engine's package version."""
    if kind == "vlm":
        from i1lab.hashing import fingerprint_folder

        return {"weights": fingerprint_folder(Path(arg)), "device": str(getattr(reader, "device", ""))}
    if kind == "ocr":
        return {"engine": str(reader.version)}
    return {}


def _official_summary(bench: str, out: Path, report: Any) -> dict[str, str]:
    """Run the official summary of ``bench``'s environment on the judge's per-sample files in ``out``;
    its printed headline must be i1lab's exact score at the printed precision. The provenance."""
    from i1lab.evaluation import environments

    inst = environments.installed(bench)
    if inst is None or "summary" not in inst.stages:
        raise I1labError(
            f"{bench}: eval.official_summary needs the summary stage of its environment: "
            f"run `i1lab evals setup {bench} --stage summary`"
        )
    ran = environments.run_stage(inst, "summary", out / "official-summary", judged=out)
    value = float(report.metrics[report.headline_name])
    if ran.printed is not None and not environments.agrees(ran.printed, value):
        raise I1labError(
            f"{bench}: the official summary printed {ran.printed}, i1lab's exact {report.headline_name} is "
            f"{value!r} (see {out}/official-summary/summary_stdout.txt)"
        )
    return {**environments.provenance(inst, ["summary"]), "official_summary": ran.printed or ""}


def judge_images(
    bench: str,
    images: Path,
    judge: str,
    *,
    step: int,
    command: str | None = None,
    directory: Path | None = None,
    extra: Mapping[str, object] | None = None,
    official_summary: bool = False,
) -> BenchmarkScore | None:
    """Judge the images under ``images`` (the benchmark's official layout) with ``judge`` and score them
    with the exact scorers of `evals.scoring`; None for the ``none`` judge. ``command`` is the official
    command template (default: `evals.judges.official.DEFAULT_COMMANDS`); ``extra`` fills its
    placeholders beyond ``{python} {images} {out}``. Errors are one-line `I1labError`."""
    from evals.benchdir import benchmarks_dir

    try:
        kind, arg = EvalSpec.parse_judge(bench, judge)
        benchmark = lookup(bench)
    except ValueError as exc:
        raise I1labError(str(exc)) from None
    images = Path(images)
    if not images.is_dir():
        raise I1labError(f"{bench}: image folder {images} does not exist")
    if kind == NONE:
        log.warning("%s: judge 'none': images in %s are not judged; no score recorded", bench, images)
        return None
    try:
        n_prompts, n_images = benchmark.count(images, directory)
        if n_images == 0:
            raise I1labError(f"{bench}: no images in the official layout under {images}")
        if kind == OFFICIAL:
            values = {"benchmarks": str(benchmarks_dir(directory))}
            values.update({k: str(v) for k, v in (extra or {}).items()})
            values.setdefault("step", str(step))
            out = judge_dir(images, OFFICIAL)
            if out.exists():
                shutil.rmtree(out)  # the official tools need a fresh output folder
            report, provenance = _official(bench, images, out, command, directory, values)
        else:
            name, reader = _reader(bench, kind, arg)
            out = _fresh(judge_dir(images, name))
            benchmark.judge(kind, reader, images, out, directory)
            report = benchmark.score(out, directory)
            provenance = _judge_provenance(kind, arg, reader)
        if official_summary or "summary" in provenance.get("stages", "").split(","):
            provenance.update(_official_summary(bench, out, report))
        (out / "summary.txt").write_text(report.printed, encoding="utf-8")
        headline = report.metrics.get(report.headline_name)
        prompts = _prompt_values(benchmark, out, directory, None if headline is None else float(headline))
    except (OSError, KeyError, ValueError, ZeroDivisionError, subprocess.SubprocessError) as exc:
        raise I1labError(f"{bench}: cannot judge {images}: {_first_line(exc)}") from None
    metrics = benchmark.kept_metrics({k: float(v) for k, v in report.metrics.items()}, report.judge, images)
    if benchmark.counted:
        metrics["n_prompts"] = float(n_prompts)
        metrics["n_images"] = float(n_images)
    (out / "score.json").write_text(
        json.dumps({"benchmark": bench, "judge": report.judge, "step": step, "metrics": metrics}, indent=2),
        encoding="utf-8",
    )
    return BenchmarkScore(
        benchmark=bench,
        judge=report.judge,
        step=step,
        metrics=metrics,
        headline=report.headline_name,
        prompts=prompts,
        provenance=provenance,
    )
