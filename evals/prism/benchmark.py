"""PRISM-Bench as a `Benchmark`: 100 prompts per category, one image each, judged by a VLM.

Scored files: the official judge folder (``alignment/`` and ``aesthetic/`` record files, also found
under ``score/``), or raw VLM replies (`replies.jsonl`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from evals.benchmark import OFFICIAL, Benchmark, Dir, Images

if TYPE_CHECKING:
    from evals.scoring import ScoreReport


class Prism(Benchmark):
    name = "prism"
    headline = "final_combined_average"
    one_per_prompt = True
    judges = (OFFICIAL, "vlm")
    aliases = ("prism-bench",)
    upstream = "github.com/rongyaofang/prism-bench (captions/en/<category>.jsonl)"
    variant_files: ClassVar[Mapping[str, str]] = {
        "original": "prism.json",
        "simple_rewrite": "prism_simple_rewrite.json.gz",
        "complex_rewrite": "prism_complex_rewrite.json.gz",
    }
    order = 3

    def load_prompts(self, directory: Dir = None, *, per_tag: int = 8) -> tuple[list[Any], list[str]]:
        from evals.prism.prompts import flat_prompts, load_prompts

        originals: list[Any] = flat_prompts(load_prompts(directory))
        return originals, [p for _, _, p in originals]

    def read_variant(self, text: str, path: Path) -> tuple[list[Any], list[str]]:
        flat = json.loads(text)
        return list(range(len(flat))), [str(p) for p in flat]

    def write_images(self, root: Path, originals: list[Any], images: Images) -> list[Path]:
        from evals.imageio import save_png
        from evals.prism.layout import image_path

        pairs = zip(originals, images, strict=True)
        return [save_png(imgs[0], image_path(root, c, j)) for (c, j, _), imgs in pairs]

    def count(self, images: Path, directory: Dir = None) -> tuple[int, int]:
        from evals.prism.layout import walk

        n = len(list(walk(images)))
        return n, n

    def judge(self, kind: str, reader: Any, images: Path, out: Path, directory: Dir = None) -> None:
        """Raw VLM replies (alignment and aesthetic per image), parsed later by PRISM's official parse."""
        if kind != "vlm":
            return super().judge(kind, reader, images, out, directory)
        from evals import prism
        from evals.judges.vlm import prism_instruction

        prompts = prism.load_prompts(directory)
        asked = [
            (eval_type, category, j, path)
            for category, j, path in prism.walk(images)
            for eval_type in prism.EVAL_TYPES
        ]
        replies = reader.chat_many(
            [(path, prism_instruction(t, category, prompts[category][j])) for t, category, j, path in asked]
        )
        rows = [
            (t, category, j, str(reply), str(reader.name))
            for (t, category, j, _), reply in zip(asked, replies, strict=True)
        ]
        prism.write_replies(rows, out / "replies.jsonl")

    def score(self, path: Path, directory: Dir = None) -> ScoreReport:
        from evals import prism
        from evals.scoring import ScoreReport, pick

        if path.is_dir():
            root = path / "score" if (path / "score").is_dir() and not (path / "alignment").is_dir() else path
            if (root / "alignment").is_dir() or (root / "aesthetic").is_dir():
                summary = prism.summarize(prism.read_judge_dir(root))
                printed = prism.format_summary(summary) + "\n"
                return ScoreReport(self.name, self.headline, summary.metrics(), OFFICIAL, printed, root)
        source = pick(path, ("replies.jsonl",), self.name)
        records = prism.read_replies(source)
        judge = "+".join(sorted({r.judge for r in records})) or "unknown"
        summary = prism.summarize(records)
        printed = prism.format_summary(summary) + "\n"
        return ScoreReport(self.name, self.headline, summary.metrics(), judge, printed, source)

    def kept_metrics(self, metrics: dict[str, float], judge: str, images: Path) -> dict[str, float]:
        """Per-category metrics only for categories with images (the official 0 means "no data")."""
        from evals.prism.layout import walk

        judged = {category for category, _, _ in walk(images)}
        return {k: v for k, v in metrics.items() if "/" not in k or k.split("/", 1)[1] in judged}


BENCHMARK = Prism()
