"""Evaluation steps: their identity, and a reused run asked for another benchmark gets exactly that one."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from i1lab.plan.steps import EvalHistory, evaluations, judge_matches, missing_evaluations
from i1lab.spec.run import RunSpec

EXPERIMENTS = Path(__file__).resolve().parents[2] / "experiments"

STUDY = """\
study: {name}
extends: {baseline}
profiles:
  tiny:
    train.steps: 4
    train.checkpoint_every: 2
    train.keep_every: 4
    train.log_every: 2
    sampling.steps: 2
    eval.benchmarks: {benchmarks}
    eval.prompts_per_tag: 1
    eval.images_per_prompt: 1
    eval.prompt_limit: 1
    eval.judges: {{longtext: ocr}}
"""


def spec(**eval_: object) -> RunSpec:
    base = {"train": {"steps": 20, "keep_every": 10, "checkpoint_every": 10}}
    return RunSpec.model_validate({**base, "eval": eval_})


def test_an_evaluation_steps_identity_is_its_run_checkpoint_benchmark_judge_and_settings() -> None:
    steps = evaluations(spec(benchmarks=["shapes", "longtext"]), "a" * 64)
    assert [(s.step, s.benchmark, s.judge) for s in steps] == [
        (10, "shapes", "exact-pixel"),
        (10, "longtext", "ocr"),
        (20, "shapes", "exact-pixel"),
        (20, "longtext", "ocr"),
    ]
    assert len({s.key for s in steps}) == 4
    # the same evaluation asked by another study (another order, other benchmarks beside it): same key
    (again,) = evaluations(spec(benchmarks=["longtext"]), "a" * 64, [10])
    assert again.key == steps[1].key
    # another judge, other settings or another run: another evaluation
    other = [
        evaluations(spec(benchmarks=["longtext"], judges={"longtext": "ocr:rapidocr"}), "a" * 64, [10]),
        evaluations(spec(benchmarks=["longtext"], prompt_limit=2), "a" * 64, [10]),
        evaluations(spec(benchmarks=["longtext"]), "b" * 64, [10]),
    ]
    assert all(o[0].key != again.key for o in other)


def test_what_a_run_lacks_is_what_it_was_not_evaluated_on_at_kept_checkpoints() -> None:
    asked = spec(benchmarks=["shapes", "longtext"])
    shapes_20 = evaluations(spec(benchmarks=["shapes"]), "a" * 64, [20])[0]
    history = {
        1: EvalHistory(keys={shapes_20.key}, scored={(10, "shapes", "exact-pixel")}),
    }
    (lacking,) = missing_evaluations({1: ("s/baseline", asked, "a" * 64)}, history)
    assert [(s.step, s.benchmark) for s in lacking.steps] == [(10, "longtext"), (20, "longtext")]
    (kept,) = missing_evaluations({1: ("s/baseline", asked, "a" * 64)}, history, {1: {20}})
    assert [(s.step, s.benchmark) for s in kept.steps] == [(20, "longtext")]
    # scores recorded before evaluation keys were, by a judge of the kind asked, count as done
    assert judge_matches("ocr", "ocr-tesseract") and not judge_matches("ocr:rapidocr", "ocr-tesseract")
    done = EvalHistory(scored={(10, "longtext", "ocr-tesseract"), (20, "longtext", "ocr-tesseract")})
    assert missing_evaluations({1: ("s/b", spec(benchmarks=["longtext"]), "a" * 64)}, {1: done}) == []


def i1lab(*args: str, home: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "I1LAB_HOME": str(home), "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "-m", "i1lab", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        check=False,
    )


def test_a_reused_run_asked_for_another_benchmark_is_evaluated_on_it_only_once(
    home: Path, tmp_path: Path
) -> None:
    from i1lab.registry import Registry

    first, second = tmp_path / "a.yaml", tmp_path / "b.yaml"
    baseline = EXPERIMENTS / "baseline.yaml"
    first.write_text(STUDY.format(name="eval_a", baseline=baseline, benchmarks="[shapes]"))
    second.write_text(STUDY.format(name="eval_b", baseline=baseline, benchmarks="[shapes, longtext]"))

    a = i1lab("submit", str(first), "--profile", "tiny", "--no-progress", home=home)
    assert a.returncode == 0, a.stdout + a.stderr
    reg = Registry()
    (run,) = reg.runs()
    before = {(s.step, s.benchmark, s.metric): s for s in reg.scores([run.id])}
    assert {b for _, b, _ in before} == {"shapes"}
    evaluated = len(reg.events([run.id], kinds=["evaluated"]))

    b = i1lab("submit", str(second), "--profile", "tiny", "--no-progress", home=home)
    assert b.returncode == 0, b.stdout + b.stderr
    assert "1 runs — 0 new, 1 reused" in b.stdout
    assert "1 evaluation(s) of 1 run(s) trained before" in b.stdout, b.stdout
    assert len(reg.runs()) == 1
    after = {(s.step, s.benchmark, s.metric): s for s in reg.scores([run.id])}
    new = {k: s for k, s in after.items() if k not in before}
    assert {(step, bench) for step, bench, _ in new} == {(4, "longtext")}
    assert {s.judge for s in new.values()} == {"ocr-tesseract"}
    # shapes was not evaluated again: its scores are those study A recorded
    assert all(after[k].created_at == s.created_at for k, s in before.items())
    assert len(reg.events([run.id], kinds=["evaluated"])) == evaluated + 1

    for study in ("eval_a", "eval_b"):
        table = json.loads(i1lab("compare", study, "--format", "json", home=home).stdout)
        benches = [c["benchmark"] for c in table["columns"]]
        assert "longtext" in benches and "shapes" in benches, (study, benches)
        col = benches.index("longtext")
        assert table["rows"][0]["cells"][col]["value"] == after[(4, "longtext", "text_score")].value

    again = i1lab("submit", str(second), "--profile", "tiny", "--no-progress", home=home)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "evaluation(s)" not in again.stdout
    assert len(reg.events([run.id], kinds=["evaluated"])) == evaluated + 1
