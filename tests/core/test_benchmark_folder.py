"""A benchmark added as one folder (prompts, layout, scorer, ``BENCHMARK``) under
``$I1LAB_BENCHMARK_FOLDERS``: validated by the spec, planned, trained and evaluated by `i1lab submit` (Ray
workers included), recorded, and shown by `i1lab compare`, with no file of the repository touched."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

EXPERIMENTS = Path(__file__).resolve().parents[2] / "experiments"

INIT = '''\
"""Glow: how bright the images are (a toy benchmark in its own folder)."""

from pathlib import Path

from evals.benchmark import Benchmark
from evals.scoring import ScoreReport

from .layout import walk, write
from .score import judge, summarize

HERE = Path(__file__).parent


class Glow(Benchmark):
    name = "glow"
    headline = "brightness"
    images_per_prompt = 2
    judges = ("lux",)
    default_judge = "lux"

    def load_prompts(self, directory=None, *, per_tag=8):
        texts = (HERE / "prompts.txt").read_text().splitlines()
        return list(enumerate(texts)), texts

    def write_images(self, root, originals, images):
        return write(root, images)

    def count(self, images, directory=None):
        found = walk(images)
        return len({p.parent for p in found}), len(found)

    def judge(self, kind, reader, images, out, directory=None):
        judge(walk(images), out / "lux.jsonl")

    def score(self, path, directory=None):
        source = path / "lux.jsonl" if path.is_dir() else path
        metrics = summarize(source)
        return ScoreReport(self.name, self.headline, metrics, "lux", f"{metrics}\\n", source)


BENCHMARK = Glow()
'''

LAYOUT = """\
from pathlib import Path

from evals.imageio import save_png


def write(root, images):
    pairs = [(i, k, img) for i, imgs in enumerate(images) for k, img in enumerate(imgs)]
    return [save_png(img, root / f"p{i}" / f"{k}.png") for i, k, img in pairs]


def walk(root):
    return sorted(p for p in Path(root).glob("p*/*.png"))
"""

SCORE = """\
import json

from evals.imageio import load_rgb


def judge(paths, out):
    rows = [{"image": str(p), "lux": float(load_rgb(p).mean()) / 255.0} for p in paths]
    out.write_text("".join(json.dumps(r) + "\\n" for r in rows))


def summarize(source):
    rows = [json.loads(line) for line in source.read_text().splitlines()]
    return {"brightness": sum(r["lux"] for r in rows) / len(rows), "darkest": min(r["lux"] for r in rows)}
"""

STUDY = """\
study: glow_micro
extends: {baseline}
profiles:
  tiny:
    train.steps: 4
    train.checkpoint_every: 2
    train.keep_every: 4
    train.log_every: 2
    sampling.steps: 2
    eval.benchmarks: [glow]
"""


def i1lab(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "i1lab", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )


def test_a_benchmark_from_one_folder_is_planned_evaluated_recorded_and_compared(
    home: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "benchmarks" / "glow"
    folder.mkdir(parents=True)
    (folder / "prompts.txt").write_text("a red square\na blue circle\n")
    (folder / "__init__.py").write_text(INIT)
    (folder / "layout.py").write_text(LAYOUT)
    (folder / "score.py").write_text(SCORE)
    study = tmp_path / "glow_micro.yaml"
    study.write_text(STUDY.format(baseline=EXPERIMENTS / "baseline.yaml"))
    env = {**os.environ, "I1LAB_HOME": str(home), "COLUMNS": "200"}
    env["I1LAB_BENCHMARK_FOLDERS"] = str(tmp_path / "benchmarks")

    unknown = i1lab("plan", str(study), "--profile", "tiny", env={**env, "I1LAB_BENCHMARK_FOLDERS": ""})
    assert unknown.returncode != 0 and "unknown benchmark 'glow'" in unknown.stdout + unknown.stderr
    plan = i1lab("plan", str(study), "--profile", "tiny", env=env)
    assert plan.returncode == 0, plan.stdout + plan.stderr

    submit = i1lab("submit", str(study), "--profile", "tiny", "--no-progress", env=env)
    assert submit.returncode == 0, submit.stdout + submit.stderr

    from i1lab.registry import Registry

    (member,) = Registry().members("glow_micro")
    assert member.run.status == "finished", member.run.reason
    glow = {(s.metric, s.step): s for s in member.scores if s.benchmark == "glow"}
    assert {s.judge for s in glow.values()} == {"lux"}
    assert 0.0 <= glow[("darkest", 4)].value <= glow[("brightness", 4)].value <= 1.0
    assert glow[("n_prompts", 4)].value == 2 and glow[("n_images", 4)].value == 4
    images = Path(member.run.workdir or "") / "eval" / member.run.hash[:12] / "glow" / "step_0000004"
    assert sorted(p.relative_to(images).as_posix() for p in images.glob("p*/*.png")) == [
        "p0/0.png",
        "p0/1.png",
        "p1/0.png",
        "p1/1.png",
    ]

    compare = i1lab("compare", "glow_micro", "--format", "json", env=env)
    assert compare.returncode == 0, compare.stderr
    table = json.loads(compare.stdout)
    assert [(c["benchmark"], c["metric"], c["judge"]) for c in table["columns"]] == [
        ("glow", "brightness", "lux")
    ]
    assert table["rows"][0]["cells"][0]["value"] == glow[("brightness", 4)].value
