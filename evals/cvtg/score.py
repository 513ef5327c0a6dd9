"""CVTG-2K aggregation (docs/benchmarks.md §4.3–4.5) from per-image judgements.

A judgement is ``{type, area, index, ocr_lines | none | error, clipscore, vqascore, aesthetic}``
(`index` = the image stem). Reproduced on purpose:

* predicted words: every OCR line lowercased and split on whitespace; no line at all → ``[""]``;
* correct = number of GT words that are MEMBERS of the predicted words (a duplicated GT word counts
  twice when present once; no punctuation stripping);
* NED per GT word against ``difflib.get_close_matches(word, pred, n=1, cutoff=0)[0]`` (ties → the
  lexicographically greatest candidate; not the minimum-Levenshtein word):
  ``1 − Lev / (max(len) + 1e-5)``, so empty OCR still gives a tiny non-zero value;
* OCR error → every word NED 0.0 and correct 0; OCR unavailable (``None``) → no words counted at all;
* per area: word accuracy ``Σcorrect / max(Σwords, 1)``, NED = ``np.mean`` of the word NEDs, CLIP,
  VQA and aesthetic = ``np.mean`` over images (missing judge → 0.0; VQA values are float32 and so is
  their mean); two files with the same stem both count and share the later file's CLIPScore;
* overall: word accuracy pooled (micro) over the (type, area) cells, NED = mean over all words, CLIP,
  VQA and aesthetic = per-area means weighted by image count, in float64 (numpy 1.26, the official pin,
  promotes the float32 VQA means when multiplying them by the counts).
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import numpy as np

from evals.cvtg.prompts import AREAS, TYPES, gt_words

NED_EPS: Final = 1e-5


def levenshtein(a: str, b: str) -> int:
    """Edit distance (insertions, deletions, substitutions; unit costs)."""
    if len(a) < len(b):
        a, b = b, a
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i]
        for j, cb in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        previous = current
    return previous[-1]


def ned(gt: str, match: str) -> float:
    """``1 − Lev(gt, match) / (max(|gt|, |match|) + 1e-5)``."""
    return 1 - levenshtein(gt, match) / (max(len(gt), len(match)) + NED_EPS)


def predicted_words(lines: Sequence[str]) -> list[str]:
    """OCR lines → lowercased words; ``[""]`` when there are none."""
    words: list[str] = []
    for line in lines:
        words.extend(line.lower().split())
    return words or [""]


def best_match(word: str, pred: Sequence[str]) -> str | None:
    matches = difflib.get_close_matches(word, list(pred), n=1, cutoff=0)
    return matches[0] if matches else None


def ocr_stats(
    gt: Sequence[str], ocr_lines: Sequence[str] | None, *, error: bool = False
) -> tuple[int, int, list[float]]:
    """``(total words, correct words, per-word NED)`` for one image (`compute_ocr_metrics`)."""
    if error:
        return len(gt), 0, [0.0] * len(gt)
    if ocr_lines is None:
        return 0, 0, []
    pred = predicted_words(ocr_lines)
    correct = 0
    neds = []
    for word in gt:
        if word in pred:
            correct += 1
        match = best_match(word, pred)
        neds.append(ned(word, match) if match is not None else 0.0)
    return len(gt), correct, neds


@dataclass(frozen=True)
class CvtgJudgement:
    """One image's judgement. `ocr_lines` None = no OCR judge; `ocr_error` = the OCR call failed.
    A None CLIP/VQA/aesthetic score means that judge was missing or failed (the official 0.0)."""

    type: str
    area: int
    index: str
    ocr_lines: tuple[str, ...] | None
    ocr_error: bool = False
    clipscore: float | None = None
    vqascore: float | None = None
    aesthetic: float | None = None
    judge: str = "unknown"
    filename: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "area": self.area,
            "index": self.index,
            "ocr_lines": None if self.ocr_lines is None else list(self.ocr_lines),
            "ocr_error": self.ocr_error,
            "clipscore": self.clipscore,
            "vqascore": self.vqascore,
            "aesthetic": self.aesthetic,
            "judge": self.judge,
            "filename": self.filename,
        }

    @classmethod
    def from_json(cls, row: Mapping[str, Any]) -> CvtgJudgement:
        lines = row.get("ocr_lines")
        return cls(
            type=str(row["type"]),
            area=int(row["area"]),
            index=str(row["index"]),
            ocr_lines=None if lines is None else tuple(str(x) for x in lines),
            ocr_error=bool(row.get("ocr_error", False)),
            clipscore=row.get("clipscore"),
            vqascore=row.get("vqascore"),
            aesthetic=row.get("aesthetic"),
            judge=str(row.get("judge", "unknown")),
            filename=row.get("filename"),
        )


@dataclass(frozen=True)
class AreaResult:
    """One (type, area) cell, as the official `area_results` entry."""

    type: str
    area: int
    word_accuracy: float
    ned: float
    clipscore: float
    vqascore: float
    aesthetic_score: float
    total_images: int
    total_words: int
    correct_words: int
    ned_word_data: tuple[float, ...]


@dataclass(frozen=True)
class CvtgSummary:
    """`headline` = overall "Word Accuracy" (micro over all cells)."""

    areas: tuple[AreaResult, ...]
    word_accuracy: float
    ned: float
    clipscore: float
    vqascore: float
    aesthetic_score: float
    total_images: int
    total_words: int
    correct_words: int
    skipped: tuple[str, ...] = field(default=())

    @property
    def headline(self) -> float:
        return self.word_accuracy

    @property
    def per_category(self) -> dict[str, float]:
        return {f"{a.type}/{a.area}": a.word_accuracy for a in self.areas}

    def metrics(self) -> dict[str, float]:
        out = {
            "word_accuracy": self.word_accuracy,
            "ned": self.ned,
            "clipscore": self.clipscore,
            "vqascore": self.vqascore,
            "aesthetic_score": self.aesthetic_score,
        }
        out.update({f"word_accuracy/{k}": v for k, v in self.per_category.items()})
        return out


def _mean(values: list[Any]) -> Any:
    return np.mean(values) if values else 0


def score_area(
    type_: str, area: int, judgements: Sequence[CvtgJudgement], prompts: Mapping[str, str]
) -> AreaResult:
    """`evaluate_single_area` on the judgements of one cell, in listing order (stems without a
    prompt are skipped)."""
    valid = [j for j in judgements if j.index in prompts]
    clip_by_stem = {j.index: (0.0 if j.clipscore is None else float(j.clipscore)) for j in valid}
    total = correct = 0
    neds: list[float] = []
    clips: list[float] = []
    vqas: list[Any] = []
    aesthetics: list[float] = []
    for j in valid:
        t, c, word_neds = ocr_stats(gt_words(prompts[j.index]), j.ocr_lines, error=j.ocr_error)
        total += t
        correct += c
        neds.extend(word_neds)
        clips.append(clip_by_stem[j.index])
        vqas.append(0.0 if j.vqascore is None else np.float32(j.vqascore))
        aesthetics.append(0.0 if j.aesthetic is None else float(j.aesthetic))
    return AreaResult(
        type=type_,
        area=area,
        word_accuracy=correct / max(total, 1),
        ned=_mean(neds),
        clipscore=_mean(clips),
        vqascore=_mean(vqas),
        aesthetic_score=_mean(aesthetics),
        total_images=len(valid),
        total_words=total,
        correct_words=correct,
        ned_word_data=tuple(neds),
    )


def prompt_values(
    judgements: Iterable[CvtgJudgement], prompts: Mapping[tuple[str, int], Mapping[str, str]]
) -> list[tuple[str, float, float]]:
    """Per prompt (``type/area/index``): its correct / GT words over its images, weighted by its GT
    words, so that the weighted mean is the overall word accuracy exactly (images without a prompt are
    skipped as `summarize` skips them; prompts without GT words weigh nothing)."""
    sums: dict[str, list[int]] = {}
    for j in judgements:
        table = prompts.get((j.type, j.area))
        if table is None or j.index not in table:
            continue
        total, correct, _ = ocr_stats(gt_words(table[j.index]), j.ocr_lines, error=j.ocr_error)
        acc = sums.setdefault(f"{j.type}/{j.area}/{j.index}", [0, 0])
        acc[0] += correct
        acc[1] += total
    return [(key, c / t, float(t)) for key, (c, t) in sorted(sums.items()) if t > 0]


def summarize(
    judgements: Iterable[CvtgJudgement],
    prompts: Mapping[tuple[str, int], Mapping[str, str]],
    *,
    cells: Sequence[tuple[str, int]] | None = None,
) -> CvtgSummary:
    """Aggregate judgements (input order = listing order). `prompts` maps (type, area) to
    {str(index): ORIGINAL prompt}. `cells` are the (type, area) folders that exist (default: those
    with at least one judgement), always visited in the official order."""
    by_cell: dict[tuple[str, int], list[CvtgJudgement]] = {}
    for j in judgements:
        by_cell.setdefault((j.type, j.area), []).append(j)
    present = set(cells) if cells is not None else set(by_cell)
    results = []
    skipped = []
    for type_ in TYPES:
        for area in AREAS:
            if (type_, area) not in present or (type_, area) not in prompts:
                continue
            js = by_cell.get((type_, area), [])
            table = prompts[(type_, area)]
            skipped += [f"{type_}/{area}/{j.index}" for j in js if j.index not in table]
            results.append(score_area(type_, area, js, table))
    if not results:
        raise ValueError("no CVTG-2K cell to score")
    total_words = sum(r.total_words for r in results)
    correct_words = sum(r.correct_words for r in results)
    all_neds = [x for r in results for x in r.ned_word_data]
    total_images = sum(r.total_images for r in results)

    def weighted(values: list[Any]) -> Any:
        if total_images <= 0:
            return 0
        # The official pin, numpy 1.26, promotes float32 (the VQA means) times int to float64; numpy 2
        # (NEP 50) would stay in float32, so the promotion is written out.
        return sum(float(v) * r.total_images for v, r in zip(values, results, strict=True)) / max(
            total_images, 1
        )

    return CvtgSummary(
        areas=tuple(results),
        word_accuracy=correct_words / max(total_words, 1),
        ned=_mean(all_neds),
        clipscore=weighted([r.clipscore for r in results]),
        vqascore=weighted([r.vqascore for r in results]),
        aesthetic_score=weighted([r.aesthetic_score for r in results]),
        total_images=total_images,
        total_words=total_words,
        correct_words=correct_words,
        skipped=tuple(skipped),
    )


def _block(title: str, values: Sequence[Any]) -> list[str]:
    names = ("Word Accuracy", "NED", "CLIPScore", "VQAScore", "Aesthetic Score")
    return [
        "",
        f"=== {title} ===",
        *(f"{name}: {value:.4f}" for name, value in zip(names, values, strict=True)),
    ]


def format_summary(summary: CvtgSummary) -> str:
    """The official stdout: one block per cell, then the overall block (`%.4f` values)."""
    lines: list[str] = []
    for a in summary.areas:
        lines += _block(
            f"{a.type} Area {a.area} Results",
            (a.word_accuracy, a.ned, a.clipscore, a.vqascore, a.aesthetic_score),
        )
    lines += _block(
        "Overall Results",
        (summary.word_accuracy, summary.ned, summary.clipscore, summary.vqascore, summary.aesthetic_score),
    )
    return "\n".join(lines) + "\n"


def results_json(summary: CvtgSummary) -> dict[str, Any]:
    """The official output JSON (`overall_results` and `area_results`), native Python types."""

    def native(x: Any) -> Any:
        return x.item() if isinstance(x, np.generic) else x

    return {
        "overall_results": {
            "word_accuracy": native(summary.word_accuracy),
            "ned": native(summary.ned),
            "clipscore": native(summary.clipscore),
            "vqascore": native(summary.vqascore),
            "aesthetic_score": native(summary.aesthetic_score),
            "total_images": summary.total_images,
            "total_words": summary.total_words,
            "correct_words": summary.correct_words,
        },
        "area_results": [
            {
                "area": a.area,
                "benchmark_type": a.type,
                "word_accuracy": native(a.word_accuracy),
                "ned": native(a.ned),
                "clipscore": native(a.clipscore),
                "vqascore": native(a.vqascore),
                "aesthetic_score": native(a.aesthetic_score),
                "total_images": a.total_images,
                "total_words": a.total_words,
                "correct_words": a.correct_words,
                "ned_word_data": list(a.ned_word_data),
            }
            for a in summary.areas
        ],
    }
