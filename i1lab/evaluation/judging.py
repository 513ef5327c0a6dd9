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
  labelled ``vlm-<folder name>``.

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

from i1lab.errors import I1labError
from i1lab.spec.run import EvalSpec

log = logging.getLogger(__name__)

#: The folder inside an image root where i1lab keeps its own files (judgements, grid, notes).
EXTRAS = "i1lab"
NOT_JUDGED_BY_PROXIES = ("clipscore", "vqascore", "aesthetic_score")
"""CVTG-2K metrics that only the official judge computes; an OCR or VLM proxy leaves them out."""


class BenchmarkScore(BaseModel):
    """One benchmark's numbers for one checkpoint, as given by one judge."""

    benchmark: str
    judge: str
    step: int
    metrics: dict[str, float]
    headline: str


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


def _prism_cells(images: Path) -> set[str]:
    """PRISM categories with at least one image (the others' official per-category 0 means "no data")."""
    from evals import prism

    return {category for category, _, _ in prism.walk(images)}


def counts(bench: str, images: Path, directory: Path | None = None) -> tuple[int, int]:
    """``(prompts, images)`` found under ``images`` by the benchmark's official walk."""
    from evals import cvtg, geneval, longtext, prism

    if bench == "geneval":
        found = geneval.walk(images)
        return len({f.folder for f in found}), len(found)
    if bench == "dpg":
        folders = [p for p in images.iterdir() if p.is_dir() and p.name.isdigit()]
        return len(folders), sum(len(list((p / "samples").glob("*.png"))) for p in folders)
    if bench == "prism":
        n = len(list(prism.walk(images)))
        return n, n
    if bench == "cvtg":
        n = len(cvtg.walk(images, cvtg.prompt_table(cvtg.load_prompts(directory))))
        return n, n
    if bench == "longtext":
        by_id = {p.prompt_id: p for p in longtext.load_prompts(directory)}
        pairs = longtext.walk(images, by_id)
        return len({pid for pid, _ in pairs}), len(pairs)
    raise I1labError(f"unknown benchmark {bench!r}; expected one of {', '.join(EvalSpec.JUDGED)}")


def _text_reader(bench: str, kind: str, arg: str) -> tuple[str, Any, Any]:
    """``(judge name, judge_longtext, judge_cvtg)`` of an OCR engine or a VLM judge."""
    if kind == "ocr":
        from evals.judges import ocr

        try:
            engine = ocr.make_engine(arg)
        except (RuntimeError, ValueError) as exc:
            raise I1labError(f"{bench}: OCR judge unavailable: {_first_line(exc)}") from None
        return (
            engine.name,
            lambda items: ocr.judge_longtext(engine, items),
            lambda items: ocr.judge_cvtg(engine, items),
        )
    judge = _vlm_judge(bench, arg)
    return judge.name, judge.judge_longtext, judge.judge_cvtg


def _vlm_judge(bench: str, weights: str) -> Any:
    from evals.judges import vlm

    try:
        return vlm.VlmJudge(weights)
    except (FileNotFoundError, ImportError, OSError, ValueError) as exc:
        raise I1labError(f"{bench}: VLM judge unavailable: {_first_line(exc)}") from None


def _text_judgements(
    bench: str, images: Path, out: Path, directory: Path | None, judge_longtext: Any, judge_cvtg: Any
) -> None:
    """Per-image text judgements (OCR or VLM) in the exact scorer's input format, written to ``out``."""
    from evals import cvtg, longtext
    from evals.jsonio import write_jsonl

    if bench == "longtext":
        prompts = {p.prompt_id: p for p in longtext.load_prompts(directory)}
        records = judge_longtext([(path.name, pid, path) for pid, path in longtext.walk(images, prompts)])
        rows = [
            {
                "image": r.image,
                "prompt": prompts[r.prompt_id].prompt,
                "ocr_gt": list(prompts[r.prompt_id].text),
                "ocr_results": r.ocr_results,
                "judge": r.judge,
            }
            for r in records
        ]
        write_jsonl(rows, out / "results.jsonl")
    else:
        found = cvtg.walk(images, cvtg.prompt_table(cvtg.load_prompts(directory)))
        cvtg.write_judgements(judge_cvtg(found), out / "judgements.jsonl")


def _prism_vlm(judge: Any, images: Path, out: Path, directory: Path | None) -> None:
    """Raw VLM replies (alignment and aesthetic per image), parsed later by PRISM's official parse."""
    from evals import prism
    from evals.judges.vlm import prism_instruction

    prompts = prism.load_prompts(directory)
    rows = []
    for category, j, path in prism.walk(images):
        for eval_type in prism.EVAL_TYPES:
            reply = judge.chat(path, prism_instruction(eval_type, category, prompts[category][j]))
            rows.append((eval_type, category, j, str(reply), str(judge.name)))
    prism.write_replies(rows, out / "replies.jsonl")


def _official(
    bench: str,
    images: Path,
    out: Path,
    command: str | None,
    directory: Path | None,
    extra: Mapping[str, object],
) -> Any:
    from evals.judges.official import OfficialJudge, OfficialJudgeError

    judge = OfficialJudge(bench, command or "")
    try:
        return judge.run(images, out, benchmarks_dir=directory, **extra)
    except OfficialJudgeError as exc:
        raise I1labError(
            f"{_first_line(exc)} (its output: {out}/official_stdout.txt, official_stderr.txt)"
        ) from None
    except ValueError as exc:  # a placeholder without a value
        raise I1labError(f"{bench}: official judge: {_first_line(exc)}") from None


def judge_images(
    bench: str,
    images: Path,
    judge: str,
    *,
    step: int,
    command: str | None = None,
    directory: Path | None = None,
    extra: Mapping[str, object] | None = None,
) -> BenchmarkScore | None:
    """Judge the images under ``images`` (the benchmark's official layout) with ``judge`` and score them
    with the exact scorers of `evals.scoring`; None for the ``none`` judge. ``command`` is the official
    command template (default: `evals.judges.official.DEFAULT_COMMANDS`); ``extra`` fills its
    placeholders beyond ``{python} {images} {out}``. Errors are one-line `I1labError`."""
    from evals.benchdir import benchmarks_dir
    from evals.scoring import score_output

    try:
        kind, arg = EvalSpec.parse_judge(bench, judge)
    except ValueError as exc:
        raise I1labError(str(exc)) from None
    images = Path(images)
    if not images.is_dir():
        raise I1labError(f"{bench}: image folder {images} does not exist")
    if kind == "none":
        log.warning("%s: judge 'none': images in %s are not judged; no score recorded", bench, images)
        return None
    try:
        n_prompts, n_images = counts(bench, images, directory)
        if n_images == 0:
            raise I1labError(f"{bench}: no images in the official layout under {images}")
        values = {"benchmarks": str(benchmarks_dir(directory))}
        values.update({k: str(v) for k, v in (extra or {}).items()})
        values.setdefault("step", str(step))
        if kind == "official":
            out = judge_dir(images, "official")
            if out.exists():
                shutil.rmtree(out)  # the official tools need a fresh output folder
            report = _official(bench, images, out, command, directory, values)
        elif kind == "vlm" and bench == "prism":
            vlm = _vlm_judge(bench, arg)
            out = _fresh(judge_dir(images, vlm.name))
            _prism_vlm(vlm, images, out, directory)
            report = score_output(bench, out, directory)
        else:
            name, judge_longtext, judge_cvtg = _text_reader(bench, kind, arg)
            out = _fresh(judge_dir(images, name))
            _text_judgements(bench, images, out, directory, judge_longtext, judge_cvtg)
            report = score_output(bench, out, directory)
        (out / "summary.txt").write_text(report.printed, encoding="utf-8")
    except (OSError, KeyError, ValueError, ZeroDivisionError, subprocess.SubprocessError) as exc:
        raise I1labError(f"{bench}: cannot judge {images}: {_first_line(exc)}") from None
    metrics = {k: float(v) for k, v in report.metrics.items()}
    if bench == "cvtg" and report.judge != "official":
        metrics = {k: v for k, v in metrics.items() if k not in NOT_JUDGED_BY_PROXIES}
    if bench == "prism":
        judged = _prism_cells(images)
        metrics = {k: v for k, v in metrics.items() if "/" not in k or k.split("/", 1)[1] in judged}
    metrics["n_prompts"] = float(n_prompts)
    metrics["n_images"] = float(n_images)
    (out / "score.json").write_text(
        json.dumps({"benchmark": bench, "judge": report.judge, "step": step, "metrics": metrics}, indent=2),
        encoding="utf-8",
    )
    return BenchmarkScore(
        benchmark=bench, judge=report.judge, step=step, metrics=metrics, headline=report.headline_name
    )
