"""GenEval as a `Benchmark`: metadata prompts, one folder per prompt, the official detector command.

Scored files: the official `results.jsonl`, or i1lab detection judgements (`judgements.jsonl`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from evals.benchmark import Benchmark, Dir, Images
from evals.geneval_score import GenEvalRecord, GenEvalSummary
from evals.variants import REPEATED, REWRITES

if TYPE_CHECKING:
    from evals.scoring import ScoreReport

#: The repeat counts i1 ships as files (any other ``repeated<N>`` is computed).
SHIPPED_REPEATS = (4, 8, 12, 16, 20, 24)


class GenEval(Benchmark):
    name = "geneval"
    headline = "overall"
    images_per_prompt = 4
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

    def _records(self, path: Path, directory: Dir) -> tuple[Path, list[GenEvalRecord], str]:
        """``(source file, per-image records, judge)`` of the judge's files at ``path``."""
        from evals import geneval
        from evals.jsonio import read_jsonl
        from evals.scoring import first_row, judge_of, pick

        source = pick(path, ("results.jsonl", "judgements.jsonl"), self.name)
        if "folder_idx" in first_row(source):
            rows = read_jsonl(source)
            records = geneval.records_from_judgements(
                rows,
                geneval.load_metadata(directory),
                root=str(source.parent),
                classnames=geneval.load_object_names(directory),
            )
            return source, records, judge_of(rows, "unknown")
        metadatas = geneval.load_metadata(directory)
        return source, geneval.read_results(source, metadatas), judge_of(read_jsonl(source))

    def score(self, path: Path, directory: Dir = None) -> ScoreReport:
        from evals import geneval
        from evals.scoring import ScoreReport

        source, records, judge = self._records(path, directory)
        summary = geneval.summarize(records)
        return ScoreReport(
            self.name, self.headline, summary_metrics(summary), judge, geneval.format_summary(summary), source
        )

    def prompt_values(self, path: Path, directory: Dir = None) -> list[tuple[str, float, float]] | None:
        return prompt_values_of(self._records(path, directory)[1])


def canonical_key(metadata: str | Mapping[str, Any]) -> str:
    """A prompt's identity: its metadata line as canonical JSON (`Benchmark.prompt_key`'s default)."""
    value = json.loads(metadata) if isinstance(metadata, str) else metadata
    return json.dumps(value, sort_keys=True, default=repr, ensure_ascii=False)


def prompt_values_of(records: Iterable[Mapping[str, Any]]) -> list[tuple[str, float, float]]:
    """Per-prompt ``(key, value, weight)`` of GenEval records whose weighted mean is the headline exactly.

    A prompt is an image folder (``<idx>/samples/<k>.png``; the metadata string where a filename has no
    such folder); its key is its canonical metadata (``#n`` appended to the n-th further folder with the
    same metadata, in folder order), its value its fraction of correct images, and its weight
    ``m / (n_tags * n_tag)`` (m: its images, n_tag: images of its tag), so that ``sum(w * v)`` is the
    unweighted mean over tags of each tag's fraction of correct images (§1.4) and ``sum(w) == 1``."""
    groups: dict[tuple[int, str], list[Any]] = {}  # (folder, metadata) -> [tag, correct, images]
    for rec in records:
        parts = Path(str(rec["filename"])).parts
        folder = int(parts[-3]) if len(parts) >= 3 and parts[-3].isdigit() else -1
        group = groups.setdefault((folder, str(rec["metadata"])), [str(rec["tag"]), 0, 0])
        group[1] += bool(rec["correct"])
        group[2] += 1
    per_tag: dict[str, int] = {}
    for tag, _, m in groups.values():
        per_tag[tag] = per_tag.get(tag, 0) + m
    seen: dict[str, int] = {}
    out = []
    for (_, metadata), (tag, correct, m) in sorted(groups.items()):
        key = canonical_key(metadata)
        n = seen.get(key, 0)
        seen[key] = n + 1
        out.append((key if n == 0 else f"{key}#{n}", correct / m, m / (len(per_tag) * per_tag[tag])))
    return out


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
