"""Official judging environments (`i1lab evals setup`): built from the pins in the repository into a
virtual environment of their own, fingerprinted, and run with their interpreter in the official folder.

The official code itself is never in the repository (nor on a CI machine), so the environments built
here are those of a benchmark added as a folder (``$I1LAB_BENCHMARK_FOLDERS``) whose pinned "official"
files the test writes; the five benchmarks' own pins are checked for what can be checked without their
code: that they parse, pin every package, name only known placeholders, and are refused where their
judge weights are absent."""

from __future__ import annotations

import hashlib
import json
import os
import string
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from evals.benchmark import benchmarks
from evals.judges.environment import for_benchmark
from i1lab.errors import I1labError

#: The judge stage writes one brightness per image and where it ran (interpreter, working directory).
JUDGE = """\
import json, os, sys
from pathlib import Path
images, out = Path(sys.argv[1]), Path(sys.argv[2])
rows = []
for p in sorted(images.glob("p*/*.png")):
    rows.append({"image": str(p.relative_to(images)), "bytes": p.stat().st_size % 7})
(out / "judged.jsonl").write_text("".join(json.dumps(r) + "\\n" for r in rows))
where = {"python": sys.executable, "prefix": sys.prefix, "cwd": os.getcwd()}
(out / "where.json").write_text(json.dumps(where))
"""
#: The summary stage prints the mean as the official scripts print their headline.
SUMMARY = """\
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
print(f"Glow Score: {sum(r['bytes'] for r in rows) / len(rows) / 6:.4f}")
"""

INIT = """\
import json
from pathlib import Path

from evals.benchmark import Benchmark
from evals.imageio import save_png
from evals.scoring import ScoreReport

HERE = Path(__file__).parent


class Glow(Benchmark):
    name = "glow"
    headline = "glow"
    images_per_prompt = 2
    judges = ("official",)

    def load_prompts(self, directory=None, *, per_tag=8):
        texts = ["a red square", "a blue circle", "a green star"]
        return list(enumerate(texts)), texts

    def write_images(self, root, originals, images):
        pairs = [(i, k, img) for i, imgs in enumerate(images) for k, img in enumerate(imgs)]
        return [save_png(img, root / f"p{i}" / f"{k}.png") for i, k, img in pairs]

    def count(self, images, directory=None):
        found = sorted(Path(images).glob("p*/*.png"))
        return len({p.parent for p in found}), len(found)

    def score(self, path, directory=None):
        source = path / "judged.jsonl" if path.is_dir() else path
        rows = [json.loads(line) for line in source.read_text().splitlines()]
        value = sum(r["bytes"] for r in rows) / len(rows) / 6
        return ScoreReport(self.name, self.headline, {"glow": value}, "official", f"{value}\\n", source)


BENCHMARK = Glow()
"""


def glow_folder(root: Path, *, gpus: int = 0, sleep: float = 0.0) -> tuple[Path, Path]:
    """``(benchmark folders, official source checkout)`` of the glow benchmark; the TOML pins the
    checkout's files by sha256."""
    folders = root / "benchmarks"
    pkg = folders / "glow"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text(INIT)
    source = root / "checkout"
    (source / "glow").mkdir(parents=True)
    judge = JUDGE if not sleep else f"import time; time.sleep({sleep})\n" + JUDGE
    (source / "glow" / "judge.py").write_text(judge)
    (source / "glow" / "summary.py").write_text(SUMMARY)
    sha = {
        n: hashlib.sha256((source / "glow" / n).read_bytes()).hexdigest() for n in ("judge.py", "summary.py")
    }
    (pkg / "judge_environment.toml").write_text(
        textwrap.dedent(
            f"""\
            benchmark = "glow"
            python = "3.11"
            [source]
            repository = "https://github.com/example/glow"
            commit = "{"ab" * 20}"
            folder = "glow"
            [source.files]
            "judge.py" = "{sha["judge.py"]}"
            "summary.py" = "{sha["summary.py"]}"
            [stages.judge]
            command = "{{python}} judge.py {{images}} {{out}}"
            requirements = []
            gpus = {gpus}
            [stages.summary]
            command = "{{python}} summary.py {{out}}/judged.jsonl"
            requirements = []
            inputs = ["judged.jsonl"]
            printed = 'Glow Score: (?P<value>[0-9.]+)'
            """
        )
    )
    return folders, source


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "i1lab", *args],
        capture_output=True,
        text=True,
        env=os.environ.copy(),
        check=False,
    )


def test_the_five_benchmarks_pin_their_official_environments() -> None:
    from i1lab.spec.run import EvalSpec

    pinned = {name: for_benchmark(b) for name, b in benchmarks().items()}
    assert {n for n, e in pinned.items() if e is not None} == {"geneval", "dpg", "prism", "cvtg", "longtext"}
    allowed = set(EvalSpec.PLACEHOLDERS)
    for name, env in pinned.items():
        if env is None:
            continue
        assert env.benchmark == name and env.source.commit == "b58a62f4a301370f35c5873bcb453bf7eea9f0e4"
        for stage in env.stages.values():
            fields = {f for _, f, _, _ in string.Formatter().parse(stage.command) if f}
            assert fields <= allowed, (name, fields - allowed)
            assert all("==" in r for r in stage.requirements)
        judge = next(iter(env.stages.values()))
        assert judge.gpus >= 1 and judge.weights, name  # every official judge is a model on a GPU
    assert list(pinned["longtext"].stages) == ["judge", "summary"]  # type: ignore[union-attr]


def test_setup_refuses_a_stage_whose_weights_are_absent_and_writes_the_specification(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from i1lab.paths import judges_dir

    monkeypatch.setenv("I1LAB_WEIGHTS_DIR", str(tmp_path / "weights"))
    result = cli("evals", "setup", "prism")
    assert result.returncode == 2
    line = result.stderr.strip()
    assert "\n" not in line and "Traceback" not in line, result.stderr
    expected = tmp_path / "weights" / "judges" / "Qwen2.5-VL-72B-Instruct"
    assert (
        f"prism: judge stage refused: weights of Qwen/Qwen2.5-VL-72B-Instruct absent (expected {expected})"
        in line
    )
    spec_dir = judges_dir() / "prism" / "spec"
    assert (spec_dir / "judge_environment.toml").is_file()
    assert "transformers==4.57.3" in (spec_dir / "requirements-judge.txt").read_text().split()
    assert not (judges_dir() / "prism" / "venv").exists()  # nothing installed
    # longtext's summary alone would build, but a named stage without weights is refused whole
    result = cli("evals", "setup", "longtext", "--stage", "judge", "--stage", "summary")
    assert result.returncode == 2
    assert "judge stage refused: weights of Qwen/Qwen2.5-VL-7B-Instruct" in result.stderr
    assert not (judges_dir() / "longtext" / "venv").exists()


def test_setup_checks_the_official_files_against_their_pins(tmp_path: Path) -> None:
    from i1lab.evaluation.environments import setup

    bogus = tmp_path / "checkout" / "benchmark_eval" / "longtext"
    bogus.mkdir(parents=True)
    for name in ("evaluate_text_reward.py", "summary_scores.py", "text_prompts.jsonl"):
        (bogus / name).write_text("# not the official file\n")
    with pytest.raises(
        I1labError, match=r"^longtext: evaluate_text_reward.py from .* has sha256 .*, the pinned"
    ):
        setup("longtext", source=tmp_path / "checkout", stages=["summary"])
    (bogus / "summary_scores.py").unlink()
    with pytest.raises(I1labError, match=r"^longtext: summary_scores.py not found in"):
        setup("longtext", source=tmp_path / "checkout", stages=["summary"])


def test_an_environment_runs_the_official_stages_with_its_interpreter_in_the_official_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from i1lab.evaluation.environments import installed, setup
    from i1lab.evaluation.judging import judge_images
    from i1lab.paths import judges_dir

    folders, source = glow_folder(tmp_path)
    monkeypatch.setenv("I1LAB_BENCHMARK_FOLDERS", str(folders))
    report = setup("glow", source=source)
    inst = installed("glow")
    assert (
        inst is not None and report.fingerprint == inst.fingerprint and report.stages == ["judge", "summary"]
    )
    venv = judges_dir() / "glow" / "venv"
    assert inst.python == str(venv / "bin" / "python") and inst.python != sys.executable
    assert (judges_dir() / "glow" / "source" / "judge.py").read_bytes() == (
        source / "glow" / "judge.py"
    ).read_bytes()

    images = tmp_path / "images"
    bench = benchmarks()["glow"]
    rng = np.random.default_rng(0)
    bench.write_images(images, [], [[rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)] * 2 for _ in range(3)])
    score = judge_images("glow", images, "official", step=7)
    assert score is not None
    assert score.judge == f"official@{inst.fingerprint[:8]}"  # a changed environment scores beside
    assert score.provenance["environment"] == inst.fingerprint
    assert score.provenance["official_summary"] == f"{score.metrics['glow']:.4f}"  # printed, and agreed
    where = json.loads((images / "i1lab" / "official" / "where.json").read_text())
    assert Path(where["prefix"]) == venv and Path(where["cwd"]) == judges_dir() / "glow" / "source"

    # a summary that disagrees with i1lab's exact score stops the evaluation, naming both numbers
    summary = judges_dir() / "glow" / "source" / "summary.py"
    summary.write_text(summary.read_text().replace("/ 6:", "/ 5:"))
    with pytest.raises(
        I1labError, match=r"^glow: the official summary printed [0-9.]+, i1lab's exact glow is"
    ):
        judge_images("glow", images, "official", step=7)
