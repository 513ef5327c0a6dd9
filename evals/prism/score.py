"""PRISM-Bench judge-reply parsing and aggregation (docs/benchmarks.md §3.3–3.5).

Parsing a reply (the judge's raw text), reproduced on purpose: strip; drop a leading "```json" and a
trailing "```"; strip; delete every comma followed only by whitespace before "}" or "]" (inside
strings too); ``json.loads``, else lenient ``demjson3.decode``, else ``{}``. An empty reply or a falsy
parse result is NOT saved (the record is missing).

Reading a saved record: it contributes iff ``"score" in data and isinstance(data["score"], (int,
float))`` — so booleans count (True = 1), strings such as "9" are dropped, lists are dropped. A record
for which that expression raises TypeError (a bare number or boolean, a string containing "score")
makes the official summary crash; here it is counted as unparsable and flagged in `fatal`.

Aggregation: lists per (eval type, category) in index order; means are ``sum / len`` (0.0 for an empty
list, which adds nothing to the pooled numbers); combined per category pools alignment and aesthetic;
overall alignment/aesthetic and the headline pool over the categories in the official order. Records
with index ≥ `num_images` are ignored. Scores are not range-checked. The headline is on the raw 0–10
scale; `headline_100` is ``10 × headline``, labelled with its mapping (§3.5).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from evals.prism.prompts import EVAL_ORDER

EVAL_TYPES: Final = ("alignment", "aesthetic")
TRAILING_COMMA = re.compile(r",\s*(?=[}\]])")
MAPPING_100: Final = "x10"
"""Label of the 0–100 mapping used by `headline_100` (10 × the 0–10 pooled mean; §3.5 is open)."""

NOT_SAVED: Final = object()
"""`parse_reply`'s result when the official evaluator would not save a record."""


def _lenient(text: str) -> Any:
    try:
        import demjson3
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "PRISM's lenient fallback parser needs demjson3 (pip install demjson3==3.0.6)"
        ) from exc
    try:
        return demjson3.decode(text)
    except demjson3.JSONDecodeError:
        return {}


def clean_reply(text: str) -> str:
    """The official text clean-up before parsing."""
    text = text.strip()
    if text.startswith("```json"):
        text = text[7:]
    if text.endswith("```"):
        text = text[:-3]
    return TRAILING_COMMA.sub("", text.strip())


def parse_reply(text: str) -> Any:
    """The value the official evaluator saves for a raw reply, or `NOT_SAVED`. The value is what a
    later ``json.load`` of the saved file returns (it round-trips through JSON)."""
    if not text:
        return NOT_SAVED
    cleaned = clean_reply(text)
    try:
        value = json.loads(cleaned)
    except json.JSONDecodeError:
        value = _lenient(cleaned)
    if not value:
        return NOT_SAVED
    return json.loads(json.dumps(value, ensure_ascii=False))


Status = Literal["ok", "dropped", "fatal"]


def read_score(data: Any) -> tuple[Status, int | float | None]:
    """``("ok", score)``, ``("dropped", None)`` (the official warning) or ``("fatal", None)`` (the
    official summary would raise TypeError)."""
    try:
        ok = "score" in data and isinstance(data["score"], (int, float))
    except TypeError:
        return "fatal", None
    if ok:
        return "ok", data["score"]
    return "dropped", None


@dataclass(frozen=True)
class PrismRecord:
    """One saved judgement: `value` is the decoded record file (or `NOT_SAVED` when there is none,
    `UNREADABLE` when the file is not JSON)."""

    eval_type: str
    category: str
    index: int
    value: Any
    judge: str = "official"


UNREADABLE: Final = object()
"""A record file that exists but is not valid JSON (the official summary warns and drops it)."""


def record_from_reply(
    eval_type: str, category: str, index: int, reply: str, judge: str = "official"
) -> PrismRecord:
    """Raw judge text → the record the official evaluator would save (§6 schema → §3.3)."""
    return PrismRecord(eval_type, category, index, parse_reply(reply), judge)


def _mean(values: Sequence[int | float]) -> float:
    return sum(values) / len(values) if values else 0.0


@dataclass(frozen=True)
class PrismSummary:
    """Raw 0–10 numbers of the official report. `headline` = "(5) FINAL COMBINED AVERAGE SCORE"."""

    alignment_by_category: dict[str, float]
    aesthetic_by_category: dict[str, float]
    combined_by_category: dict[str, float]
    overall_alignment: float
    overall_aesthetic: float
    headline: float
    counts: dict[str, int]
    dropped: tuple[tuple[str, str, int], ...] = field(default=())
    fatal: tuple[tuple[str, str, int], ...] = field(default=())

    @property
    def headline_100(self) -> float:
        """10 × the 0–10 headline (mapping `MAPPING_100`; not from any official code)."""
        return 10 * self.headline

    @property
    def per_category(self) -> dict[str, float]:
        return dict(self.combined_by_category)

    def metrics(self) -> dict[str, float]:
        out = {
            "final_combined_average": self.headline,
            f"final_combined_average_0_100_{MAPPING_100}": self.headline_100,
            "overall_alignment": self.overall_alignment,
            "overall_aesthetic": self.overall_aesthetic,
        }
        for cat in self.combined_by_category:
            out[f"alignment/{cat}"] = self.alignment_by_category[cat]
            out[f"aesthetic/{cat}"] = self.aesthetic_by_category[cat]
            out[f"combined/{cat}"] = self.combined_by_category[cat]
        return out


def summarize(
    records: Iterable[PrismRecord], *, num_images: int = 100, categories: Sequence[str] = EVAL_ORDER
) -> PrismSummary:
    """The official `summarize_results` on records (missing records are simply absent)."""
    table: dict[tuple[str, str, int], Any] = {}
    for rec in records:
        if rec.eval_type not in EVAL_TYPES:
            raise ValueError(f"unknown PRISM eval type {rec.eval_type!r}")
        table[(rec.eval_type, rec.category, rec.index)] = rec.value
    scores: dict[str, dict[str, list[int | float]]] = {t: {c: [] for c in categories} for t in EVAL_TYPES}
    dropped, fatal = [], []
    for eval_type in EVAL_TYPES:
        for category in categories:
            for i in range(num_images):
                value = table.get((eval_type, category, i), NOT_SAVED)
                if value is NOT_SAVED:
                    continue
                if value is UNREADABLE:
                    dropped.append((eval_type, category, i))
                    continue
                status, score = read_score(value)
                if status == "ok" and score is not None:
                    scores[eval_type][category].append(score)
                elif status == "fatal":
                    fatal.append((eval_type, category, i))
                else:
                    dropped.append((eval_type, category, i))
    alignment, aesthetic, combined = {}, {}, {}
    all_alignment: list[int | float] = []
    all_aesthetic: list[int | float] = []
    for category in categories:
        al, ae = scores["alignment"][category], scores["aesthetic"][category]
        alignment[category] = _mean(al)
        aesthetic[category] = _mean(ae)
        all_alignment.extend(al)
        all_aesthetic.extend(ae)
        combined[category] = _mean(al + ae)
    return PrismSummary(
        alignment_by_category=alignment,
        aesthetic_by_category=aesthetic,
        combined_by_category=combined,
        overall_alignment=_mean(all_alignment),
        overall_aesthetic=_mean(all_aesthetic),
        headline=_mean(all_alignment + all_aesthetic),
        counts={"alignment": len(all_alignment), "aesthetic": len(all_aesthetic)},
        dropped=tuple(dropped),
        fatal=tuple(fatal),
    )


def format_summary(summary: PrismSummary) -> str:
    """The official report text (`evaluation_summary.txt`; stdout prints it after two newlines)."""
    rule = "=" * 60
    lines = [
        rule,
        "          EVALUATION SUMMARY REPORT",
        rule,
        "\n--- (1 & 4) Average Scores by Sub-Part ---\n",
    ]
    for category in summary.combined_by_category:
        lines.append(f"Category: {category.capitalize()}")
        lines.append(f"  - Alignment Average: {summary.alignment_by_category[category]:.2f}")
        lines.append(f"  - Aesthetic Average: {summary.aesthetic_by_category[category]:.2f}")
        lines.append(f"  - Combined Average:  {summary.combined_by_category[category]:.2f}\n")
    lines += [
        "\n" + "-" * 60 + "\n",
        "--- Overall Average Scores ---\n",
        f"(2) Overall Alignment Average: {summary.overall_alignment:.2f}",
        f"(3) Overall Aesthetic Average: {summary.overall_aesthetic:.2f}",
        "\n" + rule + "\n",
        f"(5) FINAL COMBINED AVERAGE SCORE: {summary.headline:.2f}",
        rule,
    ]
    return "\n".join(lines)
