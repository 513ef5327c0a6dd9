"""A run whose spec lists LongText with the OCR judge: trained, generated, judged, recorded, compared."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from i1lab.plan.planner import expand
from i1lab.spec import load_study

EXPERIMENTS = Path(__file__).resolve().parents[2] / "experiments"

STUDY = """\
study: longtext_micro
extends: {baseline}
profiles:
  tiny:
    train.steps: 4
    train.checkpoint_every: 2
    train.keep_every: 4
    train.log_every: 2
    sampling.steps: 2
    eval.benchmarks: [longtext]
    eval.prompt_limit: 1
    eval.judges: {{longtext: ocr}}
"""


def i1lab(*args: str, home: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "I1LAB_HOME": str(home), "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "-m", "i1lab", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )


def test_longtext_ocr_score_reaches_the_registry_and_compare(home: Path, tmp_path: Path) -> None:
    from i1lab.execution.worker import execute_run
    from i1lab.registry import PlannedMember, Registry

    path = tmp_path / "longtext_micro.yaml"
    path.write_text(STUDY.format(baseline=EXPERIMENTS / "baseline.yaml"))
    (run,) = expand(load_study(path), "tiny")
    workdir = tmp_path / "run"
    ids = Registry().record_plan(
        "longtext_micro",
        [
            PlannedMember(
                name=run.name,
                label=run.label,
                hash=run.hash,
                is_baseline=True,
                baseline=run.name,
                varied={},
                spec=run.spec.model_dump(mode="json"),
                total_steps=run.spec.train.steps,
                workdir=str(workdir),
            )
        ],
    )
    outcome = execute_run(ids[run.name])
    assert outcome.status == "finished", outcome.reason

    scores = Registry().scores([ids[run.name]])
    longtext = {(s.metric, s.step): s for s in scores if s.benchmark == "longtext"}
    assert {s.judge for s in scores} == {"ocr-tesseract"}
    assert 0.0 <= longtext[("text_score", 4)].value <= 1.0
    assert longtext[("n_prompts", 4)].value == 1 and longtext[("n_images", 4)].value == 4
    images = workdir / "eval" / run.hash[:12] / "longtext" / "step_0000004"
    assert sorted(p.name for p in images.glob("*.png")) == ["0_0.png", "0_1.png", "0_2.png", "0_3.png"]

    table = json.loads(i1lab("compare", "longtext_micro", "--format", "json", home=home).stdout)
    assert [(c["benchmark"], c["metric"], c["judge"]) for c in table["columns"]] == [
        ("longtext", "text_score", "ocr-tesseract")
    ]
    (row,) = table["rows"]
    assert row["cells"][0]["value"] == longtext[("text_score", 4)].value and row["cells"][0]["step"] == 4
    markdown = i1lab("compare", "longtext_micro", "--format", "markdown", home=home)
    assert markdown.returncode == 0 and "longtext/text_score [ocr-tesseract]" in markdown.stdout

    # the same checkpoint's images judged again later, from the command line, replace (not add) its scores
    res = i1lab(
        "evals", "judge", "longtext", str(images), "--run", f"longtext_micro/{run.name}", "--step", "4",
        home=home,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert "text_score" in res.stdout and "[judge: ocr-tesseract]" in res.stdout
    again = [s for s in Registry().scores([ids[run.name]]) if s.metric == "text_score"]
    assert [(s.step, s.value) for s in again] == [(4, longtext[("text_score", 4)].value)]
