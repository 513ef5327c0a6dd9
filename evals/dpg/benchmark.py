"""DPG-Bench as a `Benchmark`: keyed prompts, per-prompt samples plus the 2×2 grids its scorer reads.

Scored files: per-question answers (`answers.jsonl`; the question table `dpg_bench.csv` is taken from
the answers' folder, else from the benchmarks directory), or the official `dpg-bench_*_results.txt` (its
printed numbers are read back).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from evals.benchmark import OFFICIAL, Benchmark, Dir, Images

if TYPE_CHECKING:
    from evals.scoring import ScoreReport

log = logging.getLogger(__name__)


def parse_printout(text: str) -> tuple[dict[str, float], str]:
    """The metrics and the score section of the official printout."""
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


class Dpg(Benchmark):
    name = "dpg"
    headline = "dpg_score"
    images_per_prompt = 4
    aliases = ("dpg-bench",)
    upstream = (
        "github.com/TencentQQGYLab/ELLA (dpg_bench/dpg_bench.csv; dpg_bench.json is i1's packaging of "
        "dpg_bench/prompts/*.txt, in zlab-princeton/i1 benchmark_eval/dpg_bench/)"
    )
    variant_files: ClassVar[Mapping[str, str]] = {
        "original": "dpg.json",
        "simple_rewrite": "dpg_simple_rewrite.json.gz",
        "complex_rewrite": "dpg_complex_rewrite.json.gz",
    }
    order = 2

    def load_prompts(self, directory: Dir = None, *, per_tag: int = 8) -> tuple[list[Any], list[str]]:
        from evals.dpg.prompts import load_prompts

        originals: list[Any] = load_prompts(directory)
        return originals, [p for _, p in originals]

    def read_variant(self, text: str, path: Path) -> tuple[list[Any], list[str]]:
        pairs = json.loads(text)
        return [str(k) for k, _ in pairs], [str(p) for _, p in pairs]

    def write_images(self, root: Path, originals: list[Any], images: Images) -> list[Path]:
        from evals.dpg.layout import IMAGES_PER_PROMPT, sample_path, write_images

        k = len(images[0]) if images else IMAGES_PER_PROMPT
        if k != IMAGES_PER_PROMPT:
            log.warning("dpg: %d images per prompt, not 4: no 2x2 grids, the DPG scorer cannot read them", k)
        write_images(root, originals, images, grids=False)
        paths = [sample_path(root, i, j) for i in range(len(originals)) for j in range(k)]
        if k == IMAGES_PER_PROMPT:
            paths += write_images(root, originals, images, grids=True)
        return paths

    def count(self, images: Path, directory: Dir = None) -> tuple[int, int]:
        folders = [p for p in images.iterdir() if p.is_dir() and p.name.isdigit()]
        return len(folders), sum(len(list((p / "samples").glob("*.png"))) for p in folders)

    def score(self, path: Path, directory: Dir = None) -> ScoreReport:
        from evals import dpg
        from evals.scoring import ScoreReport, pick

        source = pick(path, ("answers.jsonl", "*_results.txt"), self.name)
        if source.suffix == ".txt":
            table = source.parent / "dpg_bench.csv"
            items = {str(k) for k in dpg.load_questions(table)} if table.is_file() else None
            metrics, printed = dpg.read_results_txt(source, items)
            return ScoreReport(self.name, self.headline, metrics, OFFICIAL, printed, source)
        local_csv = source.parent / "dpg_bench.csv"
        questions = dpg.load_questions(local_csv if local_csv.is_file() else None, directory=directory)
        answers, judges = dpg.read_answers(source)
        summary = dpg.summarize(questions, answers)
        judge = "+".join(sorted(judges)) if judges else "unknown"
        return ScoreReport(
            self.name, self.headline, summary.metrics(), judge, dpg.format_summary(summary), source
        )


BENCHMARK = Dpg()
