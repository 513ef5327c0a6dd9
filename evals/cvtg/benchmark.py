"""CVTG-2K as a `Benchmark`: prompts per type and area, one image each, judged by OCR or a VLM.

Scored files: the official OCR stage's per-image output (`per_image.jsonl`: PaddleOCR's raw result
and the CLIPScore, VQAScore and aesthetic values per image), i1lab per-image judgements
(`judgements.jsonl`), or the official `results.json` (aggregates only); see `evals.cvtg.io`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from evals.benchmark import OFFICIAL, Benchmark, Dir, Images

if TYPE_CHECKING:
    from evals.scoring import ScoreReport

KEYS = ("word_accuracy", "ned", "clipscore", "vqascore", "aesthetic_score")
NAMES = ("Word Accuracy", "NED", "CLIPScore", "VQAScore", "Aesthetic Score")


class Cvtg(Benchmark):
    name = "cvtg"
    headline = "word_accuracy"
    one_per_prompt = True
    judges = (OFFICIAL, "ocr", "vlm")
    default_judge = "ocr"
    official_only = ("clipscore", "vqascore", "aesthetic_score")
    aliases = ("cvtg-2k", "cvtg2k")
    upstream = "Hugging Face dataset dnkdnk/CVTG-2K (CVTG-2K.zip; i1 names the style folder CVTG-Style)"
    variant_files: ClassVar[Mapping[str, str]] = {
        "original": "CVTG-2K.json",
        "simple_rewrite": "CVTG-2K_simple_rewrite.json.gz",
        "complex_rewrite": "CVTG-2K_complex_rewrite.json.gz",
    }
    order = 4

    def load_prompts(self, directory: Dir = None, *, per_tag: int = 8) -> tuple[list[Any], list[str]]:
        from evals.cvtg.prompts import load_prompts

        originals: list[Any] = load_prompts(directory)
        return originals, [p.prompt for p in originals]

    def read_variant(self, text: str, path: Path) -> tuple[list[Any], list[str]]:
        pairs = json.loads(text)
        return [str(k) for k, _ in pairs], [str(p) for _, p in pairs]

    def write_images(self, root: Path, originals: list[Any], images: Images) -> list[Path]:
        from evals.cvtg.layout import write_images

        return write_images(root, originals, [imgs[0] for imgs in images])

    def _found(self, images: Path, directory: Dir) -> list[tuple[str, int, str, Path]]:
        from evals import cvtg

        return cvtg.walk(images, cvtg.prompt_table(cvtg.load_prompts(directory)))

    def count(self, images: Path, directory: Dir = None) -> tuple[int, int]:
        n = len(self._found(images, directory))
        return n, n

    def judge(self, kind: str, reader: Any, images: Path, out: Path, directory: Dir = None) -> None:
        """Per-image OCR (or VLM-as-OCR) judgements in the exact scorer's input format."""
        from evals.cvtg.io import write_judgements

        found = self._found(images, directory)
        if kind == "ocr":
            from evals.judges import ocr

            judgements = ocr.judge_cvtg(reader, found)
        elif kind == "vlm":
            judgements = reader.judge_cvtg(found)
        else:
            return super().judge(kind, reader, images, out, directory)
        write_judgements(judgements, out / "judgements.jsonl")

    def score(self, path: Path, directory: Dir = None) -> ScoreReport:
        from evals import cvtg
        from evals.scoring import ScoreReport, pick

        source = pick(path, ("per_image.jsonl", "judgements.jsonl", "results.json"), self.name)
        if source.suffix == ".json":
            return self._official(source)
        judgements = cvtg.read_judgements(source)
        summary = cvtg.summarize(judgements, cvtg.prompt_table(cvtg.load_prompts(directory)))
        judge = "+".join(sorted({j.judge for j in judgements})) or "unknown"
        return ScoreReport(
            self.name, self.headline, summary.metrics(), judge, cvtg.format_summary(summary), source
        )

    def prompt_values(self, path: Path, directory: Dir = None) -> list[tuple[str, float, float]] | None:
        """Per prompt, its word accuracy weighted by its GT words (`evals.cvtg.score.prompt_values`);
        None for the official ``results.json``, which keeps no per-image counts."""
        from evals import cvtg
        from evals.cvtg.score import prompt_values
        from evals.scoring import pick

        source = pick(path, ("per_image.jsonl", "judgements.jsonl", "results.json"), self.name)
        if source.suffix == ".json":
            return None
        judgements = cvtg.read_judgements(source)
        return prompt_values(judgements, cvtg.prompt_table(cvtg.load_prompts(directory)))

    def _official(self, source: Path) -> ScoreReport:
        from evals.cvtg.io import read_results_json
        from evals.scoring import ScoreReport

        data = read_results_json(source)
        overall = data["overall_results"]
        metrics = {k: float(overall[k]) for k in KEYS}
        lines: list[str] = []
        for area in data.get("area_results", []):
            metrics[f"word_accuracy/{area['benchmark_type']}/{area['area']}"] = float(area["word_accuracy"])
            lines += ["", f"=== {area['benchmark_type']} Area {area['area']} Results ==="]
            lines += [f"{n}: {float(area[k]):.4f}" for n, k in zip(NAMES, KEYS, strict=True)]
        lines += ["", "=== Overall Results ==="] + [
            f"{n}: {metrics[k]:.4f}" for n, k in zip(NAMES, KEYS, strict=True)
        ]
        return ScoreReport(self.name, self.headline, metrics, OFFICIAL, "\n".join(lines) + "\n", source)


BENCHMARK = Cvtg()
