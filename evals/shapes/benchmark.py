"""The "shapes" benchmark: judge images with the pixel judge, aggregate like GenEval (§1.3–1.4).

Its prompts are generated (``per_tag`` per tag, seed 0; prompt variants do not apply), its layout is
GenEval's plus ``grid.png``, and its own judge ``exact-pixel`` writes ``results.jsonl`` and
``summary.txt`` beside the prompt folders (and the results into its judge folder, which `Shapes.score`
reads).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import numpy.typing as npt

from evals.benchmark import Benchmark, Dir, Images
from evals.geneval_score import GenEvalRecord, GenEvalSummary, format_summary, summarize
from evals.shapes.judge import judge
from evals.shapes.metadata import PromptMeta, meta_from_json, meta_to_json

if TYPE_CHECKING:
    from evals.scoring import ScoreReport

NAME: Final = "shapes"
#: The synthetic benchmark's judge: exact pixel analysis (nearest palette colour, components, fill ratio).
JUDGE: Final = "exact-pixel"


def record_for(meta: PromptMeta, image: npt.ArrayLike, filename: str) -> GenEvalRecord:
    """One GenEval-style `results.jsonl` row for one image."""
    verdict = judge(image, meta)
    return {
        "filename": filename,
        "tag": meta["tag"],
        "prompt": meta["prompt"],
        "correct": verdict.correct,
        "reason": verdict.reason,
        "metadata": meta_to_json(meta),
        "details": json.dumps(verdict.details),
    }


def default_filenames(metas: Sequence[PromptMeta]) -> list[str]:
    """``<prompt index:05d>/samples/<k:05d>.png`` (§1.2), prompts indexed by first appearance."""
    folders: dict[str, int] = {}
    seen: dict[str, int] = {}
    names = []
    for meta in metas:
        key = meta_to_json(meta)
        folder = folders.setdefault(key, len(folders))
        k = seen.get(key, 0)
        seen[key] = k + 1
        names.append(f"{folder:05d}/samples/{k:05d}.png")
    return names


def score_images(
    images: Sequence[tuple[PromptMeta, npt.ArrayLike]], *, filenames: Sequence[str] | None = None
) -> tuple[list[GenEvalRecord], GenEvalSummary]:
    """Judge every ``(metadata, image)`` pair and summarise; records keep the input order."""
    metas = [meta for meta, _ in images]
    names = list(filenames) if filenames is not None else default_filenames(metas)
    if len(names) != len(images):
        raise ValueError("filenames must match images one to one")
    records = [record_for(meta, image, name) for (meta, image), name in zip(images, names, strict=True)]
    return records, summarize(records)


class Shapes(Benchmark):
    name = NAME
    headline = "overall"
    images_per_prompt = 4
    judges = (JUDGE,)
    default_judge = JUDGE
    generated = True
    order = 6
    counted = False  # its scores are fractions only, as they have always been recorded

    def load_prompts(self, directory: Dir = None, *, per_tag: int = 8) -> tuple[list[Any], list[str]]:
        from evals.shapes.prompts import prompts

        metas: list[Any] = prompts(n_per_tag=per_tag, seed=0)
        return metas, [m["prompt"] for m in metas]

    def prompts(
        self, variant: str = "original", directory: Dir = None, *, per_tag: int = 8
    ) -> tuple[list[Any], list[str]]:
        return self.load_prompts(directory, per_tag=per_tag)  # generated prompts: no variants

    def variant_names(self) -> list[str]:
        return ["original"]

    def write_images(self, root: Path, originals: list[Any], images: Images) -> list[Path]:
        from evals.geneval.layout import write_images
        from evals.imageio import grid, save_png

        paths = write_images(root, originals, images)
        if images:
            save_png(grid([imgs[0] for imgs in images][:48], 8), root / "grid.png")
        return paths

    def count(self, images: Path, directory: Dir = None) -> tuple[int, int]:
        from evals.geneval.layout import walk

        found = walk(images)
        return len({f.folder for f in found}), len(found)

    def judge(self, kind: str, reader: Any, images: Path, out: Path, directory: Dir = None) -> None:
        """The pixel judge on every image of the layout; ``results.jsonl`` and ``summary.txt`` beside it."""
        if kind != JUDGE:
            return super().judge(kind, reader, images, out, directory)
        from evals.geneval.layout import SAMPLE_PATTERN
        from evals.imageio import load_rgb

        pairs: list[tuple[PromptMeta, npt.ArrayLike]] = []
        names = []
        for folder in sorted(p for p in images.iterdir() if p.is_dir() and p.name.isdigit()):
            meta = meta_from_json((folder / "metadata.jsonl").read_text(encoding="utf-8"))
            for sample in sorted((folder / "samples").iterdir()):
                if sample.is_file() and SAMPLE_PATTERN.match(sample.name):
                    pairs.append((meta, load_rgb(sample)))
                    names.append(f"{folder.name}/samples/{sample.name}")
        records, summary = score_images(pairs, filenames=names)
        text = "".join(json.dumps(rec) + "\n" for rec in records)
        (images / "results.jsonl").write_text(text)
        (out / "results.jsonl").write_text(text)
        (images / "summary.txt").write_text(format_summary(summary) + "\n")

    def score(self, path: Path, directory: Dir = None) -> ScoreReport:
        from evals.geneval.benchmark import summary_metrics
        from evals.jsonio import read_jsonl
        from evals.scoring import ScoreReport, pick

        source = pick(path, ("results.jsonl",), self.name)
        summary = summarize(read_jsonl(source))
        return ScoreReport(
            self.name, self.headline, summary_metrics(summary), JUDGE, format_summary(summary), source
        )

    def prompt_values(self, path: Path, directory: Dir = None) -> list[tuple[str, float, float]] | None:
        from evals.geneval.benchmark import prompt_values_of
        from evals.jsonio import read_jsonl
        from evals.scoring import pick

        return prompt_values_of(read_jsonl(pick(path, ("results.jsonl",), self.name)))


BENCHMARK = Shapes()
