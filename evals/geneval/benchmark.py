"""GenEval as a `Benchmark`: metadata prompts, one folder per prompt, the official detector command.

Scored files: the official `results.jsonl`, or i1lab detection judgements (`judgements.jsonl`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from evals.benchmark import Benchmark, Dir, Images
from evals.geneval_score import GenEvalSummary
from evals.variants import REPEATED, REWRITES

if TYPE_CHECKING:
    from evals.scoring import ScoreReport

#: The repeat counts i1 ships as files (any other ``repeated<N>`` is computed).
SHIPPED_REPEATS = (4, 8, 12, 16, 20, 24)


class GenEval(Benchmark):
    name = "geneval"
    headline = "overall"
    images_per_prompt = 4
    official_command = (
        "{python} evaluation/evaluate_images.py {images} --outfile {out}/results.jsonl "
        "--model-path {model_path}"
    )
    official_needs = "model_path"
    upstream = "github.com/djghosh13/geneval (prompts/evaluation_metadata.jsonl, evaluation/object_names.txt)"
    variant_files: ClassVar[Mapping[str, str]] = {
        "original": "geneval.jsonl",
        "simple_rewrite": "geneval_simple_rewrite.txt.gz",
        "complex_rewrite": "geneval_complex_rewrite.jsonl.gz",
    }
    order = 1

    def load_prompts(self, directory: Dir = None, *, per_tag: int = 8) -> tuple[list[Any], list[str]]:
        from evals.geneval.prompts import load_metadata

        originals: list[Any] = load_metadata(directory)
        return originals, [str(m["prompt"]) for m in originals]

    def variant_names(self) -> list[str]:
        return list(REWRITES) + [f"repeated{n}" for n in SHIPPED_REPEATS]

    def variant_path(self, variant: str, base: Path) -> Path:
        m = REPEATED.fullmatch(variant)
        if m:
            return base / f"geneval_repeated{int(m.group(1))}.txt.gz"
        return super().variant_path(variant, base)

    def read_variant(self, text: str, path: Path) -> tuple[list[Any], list[str]]:
        if path.name.endswith((".txt", ".txt.gz")):
            lines = text.split("\n")
            if lines and lines[-1] == "":
                lines.pop()
            return list(range(len(lines))), lines
        rows = [json.loads(line) for line in text.splitlines() if line.strip()]
        return list(range(len(rows))), [str(r["prompt"]) for r in rows]

    def write_images(self, root: Path, originals: list[Any], images: Images) -> list[Path]:
        from evals.geneval.layout import write_images

        return write_images(root, originals, images)

    def count(self, images: Path, directory: Dir = None) -> tuple[int, int]:
        from evals.geneval.layout import walk

        found = walk(images)
        return len({f.folder for f in found}), len(found)

    def score(self, path: Path, directory: Dir = None) -> ScoreReport:
        from evals import geneval
        from evals.jsonio import read_jsonl
        from evals.scoring import ScoreReport, first_row, judge_of, pick

        source = pick(path, ("results.jsonl", "judgements.jsonl"), self.name)
        if "folder_idx" in first_row(source):
            rows = read_jsonl(source)
            records = geneval.records_from_judgements(
                rows,
                geneval.load_metadata(directory),
                root=str(source.parent),
                classnames=geneval.load_object_names(directory),
            )
            judge = judge_of(rows, "unknown")
        else:
            records = geneval.read_results(source, geneval.load_metadata(directory))
            judge = judge_of(read_jsonl(source))
        summary = geneval.summarize(records)
        return ScoreReport(
            self.name, self.headline, summary_metrics(summary), judge, geneval.format_summary(summary), source
        )


def summary_metrics(summary: GenEvalSummary) -> dict[str, float]:
    """A GenEval summary's metrics: overall, correct images and prompts, one fraction per tag."""
    metrics = {
        "overall": summary.headline,
        "correct_images": summary.pct_correct_images,
        "correct_prompts": summary.pct_correct_prompts,
    }
    metrics.update({f"tag/{tag}": s.fraction for tag, s in summary.per_tag.items()})
    return metrics


BENCHMARK = GenEval()
