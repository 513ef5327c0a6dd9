"""Score a benchmark's per-sample output files: detect the format, import, aggregate, print.

`score_output(bench, path)` accepts, per benchmark (a directory is searched for the files named):

* ``geneval``: the official `results.jsonl`, or i1lab detection judgements (`judgements.jsonl`);
* ``dpg``: per-question answers (`answers.jsonl`; the question table `dpg_bench.csv` is taken from
  the answers' folder, else from the benchmarks directory), or the official
  `dpg-bench_*_results.txt` (its printed numbers are read back);
* ``prism``: the official judge folder (``alignment/`` and ``aesthetic/`` record files, also found
  under ``score/``), or raw replies (`replies.jsonl`);
* ``cvtg``: i1lab per-image judgements (`judgements.jsonl`), or the official `results.json`
  (aggregates only);
* ``longtext``: the official `results.jsonl`.

Ground truth, questions and categories always come from the ORIGINAL prompt files. The judge name is
read from the records (``"judge"``), and is ``official`` for the official tools' own files.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from evals import cvtg, dpg, geneval, longtext, prism
from evals.jsonio import read_jsonl

BENCHES: Final = ("geneval", "dpg", "prism", "cvtg", "longtext")
HEADLINES: Final[dict[str, str]] = {
    "geneval": "overall",
    "dpg": "dpg_score",
    "prism": "final_combined_average",
    "cvtg": "word_accuracy",
    "longtext": "text_score",
}
OFFICIAL: Final = "official"


@dataclass(frozen=True)
class ScoreReport:
    """One benchmark's numbers from one judge: `metrics[headline_name]` is the headline."""

    bench: str
    headline_name: str
    metrics: dict[str, float]
    judge: str
    printed: str
    source: Path

    @property
    def headline(self) -> float:
        return self.metrics[self.headline_name]


Dir = str | os.PathLike[str] | None


def _judge_of(rows: list[dict[str, Any]], default: str = OFFICIAL) -> str:
    names = sorted({str(r["judge"]) for r in rows if r.get("judge")})
    return "+".join(names) if names else default


def _pick(path: Path, names: tuple[str, ...], bench: str) -> Path:
    if path.is_file():
        return path
    if not path.is_dir():
        raise FileNotFoundError(f"{bench}: {path} does not exist")
    for name in names:
        for candidate in sorted(path.glob(name)):
            if candidate.is_file():
                return candidate
    raise FileNotFoundError(f"{bench}: none of {', '.join(names)} in {path}")


def _first_row(path: Path) -> dict[str, Any]:
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            row = json.loads(line)
            if not isinstance(row, dict):
                break
            return row
    raise ValueError(f"{path}: no JSON object lines")


def score_geneval(path: Path, directory: Dir = None) -> ScoreReport:
    source = _pick(path, ("results.jsonl", "judgements.jsonl"), "geneval")
    first = _first_row(source)
    if "folder_idx" in first:
        rows = read_jsonl(source)
        records = geneval.records_from_judgements(
            rows,
            geneval.load_metadata(directory),
            root=str(source.parent),
            classnames=geneval.load_object_names(directory),
        )
        judge = _judge_of(rows, "unknown")
    else:
        records = geneval.read_results(source)
        judge = _judge_of(read_jsonl(source))
    summary = geneval.summarize(records)
    metrics = {
        "overall": summary.headline,
        "correct_images": summary.pct_correct_images,
        "correct_prompts": summary.pct_correct_prompts,
    }
    metrics.update({f"tag/{tag}": s.fraction for tag, s in summary.per_tag.items()})
    return ScoreReport("geneval", "overall", metrics, judge, geneval.format_summary(summary), source)


def _parse_dpg_printout(text: str) -> tuple[dict[str, float], str]:
    metrics: dict[str, float] = {}
    section = ""
    start = text.find("L1 category scores:")
    for line in text.splitlines():
        if line.startswith("L1 category scores:"):
            section = "L1"
        elif line.startswith("L2 category scores:"):
            section = "L2"
        elif line.startswith("\t") and section and ": " in line:
            name, value = line[1:].rsplit(": ", 1)
            metrics[f"{section}/{name}"] = float(value)
        elif line.startswith("DPG-Bench score: "):
            metrics["dpg_score"] = float(line.split(": ", 1)[1])
            section = ""
        else:
            section = "" if not line.startswith("\t") else section
    if "dpg_score" not in metrics:
        raise ValueError("no 'DPG-Bench score:' line")
    end = text.find("\n", text.rfind("DPG-Bench score: "))
    return metrics, text[max(start, 0) : end if end >= 0 else None].rstrip("\n") + "\n"


def score_dpg(path: Path, directory: Dir = None) -> ScoreReport:
    source = _pick(path, ("answers.jsonl", "*_results.txt"), "dpg")
    if source.suffix == ".txt":
        metrics, printed = _parse_dpg_printout(source.read_text(encoding="utf-8"))
        return ScoreReport("dpg", "dpg_score", metrics, OFFICIAL, printed, source)
    local_csv = source.parent / "dpg_bench.csv"
    questions = dpg.load_questions(local_csv if local_csv.is_file() else None, directory=directory)
    answers, judges = dpg.read_answers(source)
    summary = dpg.summarize(questions, answers)
    judge = "+".join(sorted(judges)) if judges else "unknown"
    return ScoreReport("dpg", "dpg_score", summary.metrics(), judge, dpg.format_summary(summary), source)


def score_prism(path: Path, directory: Dir = None) -> ScoreReport:
    del directory  # PRISM scoring needs only the judge records (categories are fixed)
    if path.is_dir():
        root = path / "score" if (path / "score").is_dir() and not (path / "alignment").is_dir() else path
        if (root / "alignment").is_dir() or (root / "aesthetic").is_dir():
            summary = prism.summarize(prism.read_judge_dir(root))
            return ScoreReport(
                "prism",
                "final_combined_average",
                summary.metrics(),
                OFFICIAL,
                prism.format_summary(summary) + "\n",
                root,
            )
    source = _pick(path, ("replies.jsonl",), "prism")
    records = prism.read_replies(source)
    judge = "+".join(sorted({r.judge for r in records})) or "unknown"
    summary = prism.summarize(records)
    return ScoreReport(
        "prism",
        "final_combined_average",
        summary.metrics(),
        judge,
        prism.format_summary(summary) + "\n",
        source,
    )


def _cvtg_official(source: Path) -> ScoreReport:
    data = cvtg.read_results_json(source)
    overall = data["overall_results"]
    keys = ("word_accuracy", "ned", "clipscore", "vqascore", "aesthetic_score")
    metrics = {k: float(overall[k]) for k in keys}
    names = ("Word Accuracy", "NED", "CLIPScore", "VQAScore", "Aesthetic Score")
    lines: list[str] = []
    for area in data.get("area_results", []):
        metrics[f"word_accuracy/{area['benchmark_type']}/{area['area']}"] = float(area["word_accuracy"])
        lines += ["", f"=== {area['benchmark_type']} Area {area['area']} Results ==="]
        lines += [f"{n}: {float(area[k]):.4f}" for n, k in zip(names, keys, strict=True)]
    lines += ["", "=== Overall Results ==="] + [
        f"{n}: {metrics[k]:.4f}" for n, k in zip(names, keys, strict=True)
    ]
    return ScoreReport("cvtg", "word_accuracy", metrics, OFFICIAL, "\n".join(lines) + "\n", source)


def score_cvtg(path: Path, directory: Dir = None) -> ScoreReport:
    source = _pick(path, ("judgements.jsonl", "results.json"), "cvtg")
    if source.suffix == ".json":
        return _cvtg_official(source)
    judgements = cvtg.read_judgements(source)
    summary = cvtg.summarize(judgements, cvtg.prompt_table(cvtg.load_prompts(directory)))
    judge = "+".join(sorted({j.judge for j in judgements})) or "unknown"
    return ScoreReport(
        "cvtg", "word_accuracy", summary.metrics(), judge, cvtg.format_summary(summary), source
    )


def score_longtext(path: Path, directory: Dir = None) -> ScoreReport:
    source = _pick(path, ("results.jsonl",), "longtext")
    prompts = longtext.load_prompts(directory)
    gt = {p.prompt_id: p.text for p in prompts}
    records, _ = longtext.read_results(source, gt)
    summary = longtext.summarize(
        records, gt, categories={p.prompt_id: (p.category, p.length) for p in prompts}
    )
    judge = "+".join(sorted({r.judge for r in records})) or OFFICIAL
    return ScoreReport(
        "longtext", "text_score", summary.metrics(), judge, longtext.format_summary(summary), source
    )


SCORERS = {
    "geneval": score_geneval,
    "dpg": score_dpg,
    "prism": score_prism,
    "cvtg": score_cvtg,
    "longtext": score_longtext,
}
ALIASES: Final = {
    "cvtg-2k": "cvtg",
    "cvtg2k": "cvtg",
    "dpg-bench": "dpg",
    "prism-bench": "prism",
    "longtext-bench": "longtext",
}


def canonical(bench: str) -> str:
    name = re.sub(r"[\s_]+", "-", bench.strip().lower())
    name = ALIASES.get(name, name)
    if name not in SCORERS:
        raise ValueError(f"unknown benchmark {bench!r}; expected one of {', '.join(BENCHES)}")
    return name


def score_output(bench: str, path: str | os.PathLike[str], directory: Dir = None) -> ScoreReport:
    """Import `path` for `bench` and aggregate it exactly (see the module docstring)."""
    return SCORERS[canonical(bench)](Path(path), directory)
