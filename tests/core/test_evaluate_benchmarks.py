"""Generation for the five benchmarks in their official layouts, then the configured judge and exact score.

The model is freshly initialised once per module (generation does not need a good model); sampling
uses 2 Euler steps and `eval.prompt_limit` keeps every benchmark to a couple of prompts.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from evals import geneval, longtext
from evals.benchdir import benchmarks_dir
from evals.judges.render import render_lines, wrap_words
from i1lab.evaluation.evaluate import evaluate, sample
from i1lab.evaluation.judging import judge_images
from i1lab.plan.planner import expand
from i1lab.spec import load_study
from i1lab.spec.run import RunSpec

EXPERIMENTS = Path(__file__).resolve().parents[2] / "experiments"
STEP = 7


def tiny_spec(**eval_fields: Any) -> RunSpec:
    (base,) = expand(load_study(EXPERIMENTS / "baseline.yaml"), "tiny")
    data = base.spec.model_dump()
    data["sampling"]["steps"] = 2
    data["eval"].update(eval_fields)
    return RunSpec.model_validate(data)


@pytest.fixture(scope="module")
def params() -> Any:
    from i1lab.train.runner import initial_state

    state, _, _ = initial_state(tiny_spec())
    return state.ema


def names(root: Path) -> list[str]:
    """Every file under ``root`` except i1lab's own folder, relative, sorted."""
    files = [p.relative_to(root) for p in root.rglob("*") if p.is_file()]
    return sorted(str(f) for f in files if f.parts[0] != "i1lab")


def test_longtext_and_cvtg_official_layout_and_ocr_scores(tmp_path: Path, params: Any) -> None:
    spec = tiny_spec(benchmarks=["longtext", "cvtg"], prompt_limit=2)
    scores = evaluate(spec, params, STEP, tmp_path)

    lt_root = tmp_path / "longtext" / f"step_{STEP:07d}"
    assert names(lt_root) == [f"{pid}_{k}.png" for pid in (0, 1) for k in range(4)]
    cvtg_root = tmp_path / "cvtg" / f"step_{STEP:07d}"
    assert names(cvtg_root) == ["CVTG/2/0.png", "CVTG/2/1.png"]
    with Image.open(lt_root / "0_0.png") as img:
        assert img.size == (16, 16) and img.mode == "RGB"

    assert [(s.benchmark, s.judge, s.headline, s.step) for s in scores] == [
        ("longtext", "ocr-tesseract", "text_score", STEP),
        ("cvtg", "ocr-tesseract", "word_accuracy", STEP),
    ]
    lt, cv = scores
    assert 0.0 <= lt.metrics["text_score"] <= 1.0 and 0.0 <= cv.metrics["word_accuracy"] <= 1.0
    assert (lt.metrics["n_prompts"], lt.metrics["n_images"]) == (2, 8)
    assert (cv.metrics["n_prompts"], cv.metrics["n_images"]) == (2, 2)
    assert "clipscore" not in cv.metrics and "word_accuracy/CVTG/2" in cv.metrics  # OCR judges no CLIP

    # the per-sample judgements are kept in the format the exact scorers import, labelled with the judge
    rows = [json.loads(x) for x in (lt_root / "i1lab/ocr-tesseract/results.jsonl").read_text().splitlines()]
    assert [r["image"] for r in rows] == [f"{pid}_{k}.png" for pid in (0, 1) for k in range(4)]
    assert {r["judge"] for r in rows} == {"ocr-tesseract"}
    assert (cvtg_root / "i1lab/ocr-tesseract/summary.txt").read_text().startswith("\n=== CVTG Area 2 Results")
    record = json.loads((lt_root / "i1lab/generation.json").read_text())
    assert record["prompt_limit"] == 2 and record["images_per_prompt"] == 4 and record["judge"] == "ocr"


def test_geneval_dpg_prism_none_judge_writes_images_records_nothing(
    tmp_path: Path, params: Any, caplog: pytest.LogCaptureFixture
) -> None:
    spec = tiny_spec(benchmarks=["geneval", "dpg", "prism"], prompt_limit=2)
    with caplog.at_level(logging.WARNING, logger="i1lab.evaluation.judging"):
        assert evaluate(spec, params, STEP, tmp_path) == []
    for bench in ("geneval", "dpg", "prism"):
        assert f"{bench}: judge 'none'" in caplog.text

    root = tmp_path / "geneval" / f"step_{STEP:07d}"
    assert names(root) == [
        f"{i:05d}/{f}"
        for i in range(2)
        for f in ["metadata.jsonl"] + [f"samples/{k:05d}.png" for k in range(4)]
    ]
    metas = geneval.load_metadata()
    assert json.loads((root / "00001" / "metadata.jsonl").read_text()) == metas[1]
    assert len(geneval.walk(root)) == 8  # the official discovery rules find every sample

    dpg_root = tmp_path / "dpg" / f"step_{STEP:07d}"
    assert names(dpg_root) == sorted(
        [f"{i:05d}/samples/{k:05d}.png" for i in range(2) for k in range(4)]
        + ["processed/partiprompts97.png", "processed/partiprompts301.png"]
    )
    grid = np.asarray(Image.open(dpg_root / "processed/partiprompts301.png"))
    tile = np.asarray(Image.open(dpg_root / "00001/samples/00003.png"))
    assert grid.shape == (32, 32, 3) and (grid[16:, 16:] == tile).all()  # k=3 is the bottom-right tile

    prism_root = tmp_path / "prism" / f"step_{STEP:07d}"
    assert names(prism_root) == ["affection/0.png", "affection/1.png"]


def test_official_judge_runs_the_command_and_scores_its_output(tmp_path: Path, params: Any) -> None:
    script = tmp_path / "evaluate_text_reward.py"
    script.write_text(
        "import json, os, sys\n"
        "args = dict(zip(sys.argv[1::2], sys.argv[2::2]))\n"
        "assert args['--step'] == '7' and args['--resolution'] == '16', args\n"
        "prompts = {p['prompt_id']: p for p in map(json.loads, open(args['--prompts']))}\n"
        "with open(os.path.join(args['--output_dir'], 'results_chunk0.jsonl'), 'w') as f:\n"
        "    for name in sorted(n for n in os.listdir(args['--sample_dir']) if n.endswith('.png')):\n"
        "        p = prompts[int(name.split('_')[0])]\n"
        "        ocr = ' '.join(p['text']) if name.endswith('_0.png') else ''\n"
        "        f.write(json.dumps({'image': name, 'prompt': p['prompt'], 'ocr_gt': p['text'],"
        " 'ocr_results': ocr}) + '\\n')\n"
    )
    command = (
        f"{{python}} {script} --sample_dir {{images}} --output_dir {{out}} --step {{step}} "
        "--resolution {resolution} --prompts {benchmarks}/longtext/text_prompts.jsonl"
    )
    spec = tiny_spec(
        benchmarks=["longtext"],
        prompt_limit=2,
        judges={"longtext": "official"},
        commands={"longtext": command},
    )
    (score,) = evaluate(spec, params, STEP, tmp_path)
    assert score.judge == "official" and score.headline == "text_score"
    assert score.metrics["text_score"] == 0.25  # every prompt's _0 image of 4 read perfectly
    out = tmp_path / "longtext" / f"step_{STEP:07d}" / "i1lab" / "official"
    assert (out / "results.jsonl").is_file() and (out / "summary.txt").read_text() == "Text Score: 0.2500\n"

    # judged again later (a fresh output folder each time), e.g. by a separate task
    again = judge_images(
        "longtext", out.parent.parent, "official", step=STEP, command=command, extra={"resolution": 16}
    )
    assert again is not None and again.metrics == score.metrics


def test_judging_an_existing_folder_later_reads_rendered_text(tmp_path: Path, home: Path) -> None:
    """A folder written by anyone (here: rendered ground truth) is judged without any model or spec."""
    prompts = longtext.load_prompts()[:2]
    for p in prompts:
        lines = wrap_words(" ".join(p.text).split(), font_size=28)
        Image.fromarray(render_lines(lines, font_size=28)).save(tmp_path / f"{p.prompt_id}_0.png")
    score = judge_images("longtext", tmp_path, "ocr:tesseract", step=3)
    assert score is not None and score.judge == "ocr-tesseract" and score.metrics["text_score"] >= 0.9
    assert score.metrics["n_prompts"] == 2
    assert score.provenance["engine"].startswith("tesseract ")  # e.g. "tesseract 5.3.0"

    env = {**os.environ, "I1LAB_HOME": str(home), "I1LAB_BENCHMARKS_DIR": str(benchmarks_dir())}
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "i1lab",
            "evals",
            "judge",
            "longtext",
            str(tmp_path),
            "--judge",
            "ocr",
            "--json",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert res.returncode == 0, res.stderr
    payload = json.loads(res.stdout)
    assert payload["judge"] == "ocr-tesseract" and payload["metrics"] == score.metrics
    assert payload["step"] == 0


def test_vlm_judge_on_prism_goes_through_the_official_parse(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import evals.judges.vlm as vlm

    class FakeVlm:
        def __init__(self, path: str) -> None:
            self.name = f"vlm-{Path(path).name}"

        def chat_many(self, turns: list[tuple[Any, str]]) -> list[str]:
            scores = [8 if "technical quality" in text else 6 for _, text in turns]
            return [f'```json\n{{"justification": "ok", "score": {score}}}\n```' for score in scores]

    monkeypatch.setattr(vlm, "VlmJudge", FakeVlm)
    from evals import prism

    pixel = np.zeros((4, 4, 3), np.uint8)
    prism.write_images(tmp_path, {"entity": [pixel, pixel, pixel]})
    score = judge_images("prism", tmp_path, "vlm:/models/qwen-vl", step=5)
    assert score is not None and score.judge == "vlm-qwen-vl"
    assert score.metrics["overall_alignment"] == 6 and score.metrics["overall_aesthetic"] == 8
    assert score.metrics["final_combined_average"] == 7 and score.metrics["n_images"] == 3
    assert "combined/entity" in score.metrics and "combined/style" not in score.metrics
    assert score.provenance["weights"] and score.provenance["device"] == ""  # the judge's identity


def test_noise_depends_only_on_prompt_and_sample(params: Any) -> None:
    spec = tiny_spec()
    batch = sample(spec, params, ["a", "b", "c"], [(0, 0), (1, 0), (1, 1)], seed=3)
    alone = sample(spec, params, ["b"], [(1, 0)], seed=3)
    assert batch.shape == (3, 16, 16, 3) and batch.dtype == np.uint8
    assert np.abs(batch[1].astype(int) - alone[0].astype(int)).max() <= 1  # same image, any batch
    assert not np.array_equal(batch[1], batch[2])  # another sample of the same prompt
    assert not np.array_equal(sample(spec, params, ["b"], [(1, 0)], seed=4)[0], alone[0])
