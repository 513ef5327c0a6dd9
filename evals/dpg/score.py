"""DPG-Bench aggregation (docs/benchmarks.md §2.3–2.5) from per-question answers.

A judgement is ``(item_id, crop k, proposition_id, answer)``. For each image (a file of the scored
folder, in listing order) and each crop k < `pic_num`, reproduced on purpose:

* a question scores 1 iff its answer is exactly ``"yes"``;
* dependency zeroing runs in place in CSV order (so zeros cascade down chains); a parent id 0 means
  none; a parent that is not a question of the item (the skipped first CSV row, say) fails the whole
  image — but only when the loop reaches it, i.e. not after an earlier parent already zeroed the
  question;
* crop score = mean of the adjusted scores (Python `sum`/`len`), image score = mean of the crop scores;
* headline = ``np.mean(image scores) * 100`` (every image weighs the same);
* categories use the RAW answers of the LAST crop only: L2 = tuple text before "(", L1 = L2 text
  before "-", each ``np.mean(pooled) * 100``; L1 lists are pooled in the iteration order of the
  Python set of L2 names, and printed in that order (it varies with the hash seed);
* a failed image ("Failed filename: ...") is dropped from headline and categories; so is a file whose
  name (up to the first ".") is not an item of the CSV.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

import numpy as np

from evals.dpg.questions import Question, QuestionSet, l1_category

PIC_NUM: Final = 4

Answers = Mapping[tuple[int, int], str]
"""(crop k, proposition id) → the judge's answer string, for one image."""


class ImageFailure(Exception):
    """What makes the official script print ``Failed filename: <fn> <error>`` and drop the image."""


@dataclass(frozen=True)
class ImageResult:
    """One scored image: its crop scores (dependency-adjusted) and the last crop's raw scores."""

    filename: str
    item_id: str
    crop_scores: tuple[float, ...]
    score: float
    last_raw: dict[int, float]


def item_key(filename: str) -> str:
    """The item id the official script looks up: the base name up to the first "."."""
    return filename.replace("\\", "/").rsplit("/", 1)[-1].split(".")[0]


def is_yes(answer: str) -> bool:
    return answer == "yes"


def score_image(
    filename: str, questions: Mapping[int, Question], answers: Answers, *, pic_num: int = PIC_NUM
) -> ImageResult:
    """One image, exactly as `compute_dpg_one_sample`; raises ImageFailure where it would raise."""
    scores: dict[int, float] = {}
    raw: dict[int, float] = {}
    crop_scores = []
    for crop in range(pic_num):
        for qid in questions:
            if (crop, qid) not in answers:
                raise ImageFailure(f"no answer for crop {crop}, proposition {qid}")
            scores[qid] = float(is_yes(answers[(crop, qid)]))
        raw = dict(scores)
        for qid, question in questions.items():
            for parent in question.parents:
                if parent == 0:
                    continue
                if parent not in scores:
                    raise ImageFailure(
                        f"KeyError: {parent} (proposition {qid} depends on an unasked question)"
                    )
                if scores[parent] == 0:
                    scores[qid] = 0
                    break
        crop_scores.append(sum(scores.values()) / len(scores))
    score = sum(crop_scores) / len(crop_scores)
    return ImageResult(filename, item_key(filename), tuple(crop_scores), score, raw)


@dataclass(frozen=True)
class DpgSummary:
    """`headline` is "DPG-Bench score" (0–100); `l1`/`l2` are category scores (0–100), `l1` in the
    official (set) order, `l2` sorted; `failed` lists ``(filename, reason)`` of dropped images."""

    headline: float
    images: tuple[ImageResult, ...]
    l1: dict[str, float]
    l2: dict[str, float]
    failed: tuple[tuple[str, str], ...] = field(default=())

    @property
    def per_category(self) -> dict[str, float]:
        return {**{f"L1/{k}": v for k, v in self.l1.items()}, **{f"L2/{k}": v for k, v in self.l2.items()}}

    def metrics(self) -> dict[str, float]:
        return {"dpg_score": self.headline, **self.per_category}


def summarize(
    questions: QuestionSet,
    answers: Mapping[str, Answers],
    filenames: Sequence[str] | None = None,
    *,
    pic_num: int = PIC_NUM,
) -> DpgSummary:
    """Aggregate answers of the images `filenames` (listing order; default: ``<item>.png`` for every
    key of `answers`, in its order). `answers` is keyed by item id (the file name up to ".")."""
    names = list(filenames) if filenames is not None else [f"{item}.png" for item in answers]
    results: list[ImageResult] = []
    failed: list[tuple[str, str]] = []
    category_scores: dict[str, list[float]] = defaultdict(list)
    for name in names:
        key = item_key(name)
        try:
            item = questions.get(key)
            if item is None:
                raise ImageFailure(f"'NoneType' object is not subscriptable (no CSV entry for {key!r})")
            if key not in answers:
                raise ImageFailure(f"no answers for item {key!r}")
            result = score_image(name, item, answers[key], pic_num=pic_num)
        except ImageFailure as exc:
            failed.append((name, str(exc)))
            continue
        results.append(result)
        for qid, question in item.items():
            category_scores[question.l2].append(result.last_raw[qid])
    headline = float(np.mean([r.score for r in results]) * 100) if results else float("nan")
    categories = set(category_scores)
    l1_lists: dict[str, list[float]] = defaultdict(list)
    for category in categories:
        l1_lists[l1_category(category)].extend(category_scores[category])
    l1 = {name: float(np.mean(values) * 100) for name, values in l1_lists.items()}
    l2 = {name: float(np.mean(category_scores[name]) * 100) for name in sorted(categories)}
    return DpgSummary(headline, tuple(results), l1, l2, tuple(failed))


def format_summary(
    summary: DpgSummary,
    *,
    model_id: str | None = None,
    image_root: str | None = None,
    res_path: str | None = None,
) -> str:
    """The official printout: ``Failed filename`` lines, then the report (L1 in set order, L2 sorted,
    ``DPG-Bench score: <repr>``). The Model/Image path/Save results lines appear when given."""
    lines = [f"Failed filename: {name} {reason}" for name, reason in summary.failed]
    if model_id is not None:
        lines.append(f"Model: {model_id}")
    lines.append("L1 category scores:")
    lines += [f"\t{name}: {value}" for name, value in summary.l1.items()]
    lines.append("L2 category scores:")
    lines += [f"\t{name}: {value}" for name, value in summary.l2.items()]
    if image_root is not None:
        lines.append(f"Image path: {image_root}")
    if res_path is not None:
        lines.append(f"Save results to: {res_path}")
    lines.append(f"DPG-Bench score: {summary.headline}")
    return "\n".join(lines) + "\n"


def answers_from_records(records: Iterable[Mapping[str, object]]) -> dict[str, dict[tuple[int, int], str]]:
    """Group ``{item_id, crop, proposition_id, answer}`` records by item (first-appearance order)."""
    grouped: dict[str, dict[tuple[int, int], str]] = {}
    for rec in records:
        item = str(rec["item_id"])
        crop = rec["crop"]
        qid = rec["proposition_id"]
        if not isinstance(crop, int) or not isinstance(qid, int):
            raise ValueError(f"crop and proposition_id must be integers: {dict(rec)!r}")
        grouped.setdefault(item, {})[(crop, qid)] = str(rec["answer"])
    return grouped
