"""LongText-Bench as a `Benchmark`: English prompts, four images each, judged by OCR or a VLM.

Scored files: the official `results.jsonl`, raw or rewritten by the official summary (i1lab's OCR and
VLM stand-ins write the same format); each record is scored against its own ``ocr_gt``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from evals.benchmark import OFFICIAL, Benchmark, Dir, Images

if TYPE_CHECKING:
    from evals.scoring import ScoreReport


class LongText(Benchmark):
    name = "longtext"
    headline = "text_score"
    images_per_prompt = 4
    judges = (OFFICIAL, "ocr", "vlm")
    default_judge = "ocr"
    aliases = ("longtext-bench",)
    upstream = "github.com/X-Omni-Team/X-Omni (textbench/text_prompts.jsonl)"
    variant_files: ClassVar[Mapping[str, str]] = {
        "original": "longtext.jsonl",
        "simple_rewrite": "longtext_simple_rewrite.jsonl.gz",
        "complex_rewrite": "longtext_complex_rewrite.jsonl.gz",
    }
    order = 5

    def load_prompts(self, directory: Dir = None, *, per_tag: int = 8) -> tuple[list[Any], list[str]]:
        from evals.longtext.prompts import load_prompts

        originals: list[Any] = load_prompts(directory)
        return originals, [p.prompt for p in originals]

    def read_variant(self, text: str, path: Path) -> tuple[list[Any], list[str]]:
        rows = [json.loads(line) for line in text.splitlines() if line.strip()]
        return [int(r["prompt_id"]) for r in rows], [str(r["prompt"]) for r in rows]

    def write_images(self, root: Path, originals: list[Any], images: Images) -> list[Path]:
        from evals.longtext.layout import write_images

        return write_images(root, originals, images)

    def count(self, images: Path, directory: Dir = None) -> tuple[int, int]:
        from evals import longtext

        pairs = longtext.walk(images, {p.prompt_id: p for p in longtext.load_prompts(directory)})
        return len({pid for pid, _ in pairs}), len(pairs)

    def judge(self, kind: str, reader: Any, images: Path, out: Path, directory: Dir = None) -> None:
        """Per-image OCR (or VLM-as-OCR) results in the official `results.jsonl` format."""
        from evals import longtext
        from evals.jsonio import write_jsonl

        prompts = {p.prompt_id: p for p in longtext.load_prompts(directory)}
        items = [(path.name, pid, path) for pid, path in longtext.walk(images, prompts)]
        if kind == "ocr":
            from evals.judges import ocr

            records = ocr.judge_longtext(reader, items)
        elif kind == "vlm":
            records = reader.judge_longtext(items)
        else:
            return super().judge(kind, reader, images, out, directory)
        rows = [
            {
                "image": r.image,
                "prompt": prompts[pid].prompt,
                "ocr_gt": list(prompts[pid].text),
                "ocr_results": r.ocr_results,
                "judge": r.judge,
            }
            for (_, pid, _), r in zip(items, records, strict=True)
        ]
        write_jsonl(rows, out / "results.jsonl")

    def after_official(self, out: Path) -> None:
        from evals.judges.official import concat_chunks

        concat_chunks(out)

    def score(self, path: Path, directory: Dir = None) -> ScoreReport:
        from evals import longtext
        from evals.scoring import ScoreReport, pick

        source = pick(path, ("results.jsonl",), self.name)
        records, _ = longtext.read_results(source)
        try:  # only the non-official breakdowns need the prompt file
            prompts = longtext.load_prompts(directory)
        except FileNotFoundError:
            prompts = []
        categories = {p.prompt_id: (p.category, p.length) for p in prompts}
        summary = longtext.summarize(records, categories=categories or None)
        judge = "+".join(sorted({r.judge for r in records})) or OFFICIAL
        return ScoreReport(
            self.name, self.headline, summary.metrics(), judge, longtext.format_summary(summary), source
        )

    def prompt_values(self, path: Path, directory: Dir = None) -> list[tuple[str, float, float]] | None:
        """Per prompt: its matched / GT words over its images, weighted by its GT words, so that the
        weighted mean is the micro Text Score exactly (prompts without GT words weigh nothing)."""
        from evals import longtext
        from evals.scoring import pick

        records, _ = longtext.read_results(pick(path, ("results.jsonl",), self.name))
        sums: dict[str, list[int]] = {}
        for rec in records:
            if rec.ocr_gt is None:
                return None  # scored through the prompt file: no per-record ground truth to pair on
            m, t = longtext.match_counts(rec.ocr_gt, rec.ocr_results)
            key = f"prompt_id={rec.prompt_id}" if rec.prompt_id is not None else f"image={rec.image}"
            acc = sums.setdefault(key, [0, 0])
            acc[0] += m
            acc[1] += t
        return [(key, m / t, float(t)) for key, (m, t) in sorted(sums.items()) if t > 0]


BENCHMARK = LongText()
