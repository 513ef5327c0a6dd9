"""The "official" judge: run a command template, import what it wrote, label the score official."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from evals import geneval, longtext
from evals.benchdir import benchmarks_dir
from evals.judges.official import OfficialJudge, OfficialJudgeError, default_commands

FAKE_GENEVAL = r"""
import json, os, re, sys
images, out = sys.argv[1], sys.argv[sys.argv.index("--outfile") + 1]
metas = [json.loads(l) for l in open(os.environ["META"])]
rows = []
for sub in sorted(os.listdir(images)):
    if not sub.isdigit():
        continue
    meta = metas[int(sub)]
    for name in sorted(os.listdir(os.path.join(images, sub, "samples"))):
        if re.match(r"\d+\.png", name):
            ok = name.startswith("00000")
            rows.append({"filename": os.path.join(images, sub, "samples", name), "tag": meta["tag"],
                         "prompt": meta["prompt"], "correct": ok,
                         "reason": "" if ok else "expected x>=1, found 0",
                         "metadata": json.dumps(meta), "details": json.dumps({})})
with open(out, "w") as f:
    for r in rows:
        f.write(json.dumps(r).replace("/", "\\/") + "\n")   # pandas-style escapes
"""

FAKE_LONGTEXT = r"""
import json, os, sys
args = dict(zip(sys.argv[1::2], sys.argv[2::2]))
prompts = {p["prompt_id"]: p for p in map(json.loads, open(os.environ["PROMPTS"]))}
files = sorted(f for f in os.listdir(args["--sample_dir"]) if f.endswith(".png"))
half = len(files) // 2
for rank, chunk in enumerate((files[:half], files[half:])):
    with open(os.path.join(args["--output_dir"], f"results_chunk{rank}.jsonl"), "w") as f:
        for name in chunk:
            p = prompts[int(name.split("_")[0])]
            ocr = " ".join(p["text"]) if name.endswith("_0.png") else "No text recognized."
            row = {"image": name, "prompt": p["prompt"], "ocr_gt": p["text"], "ocr_results": ocr}
            f.write(json.dumps(row) + "\n")
"""


def test_geneval_official_command_then_import(tmp_path: Path) -> None:
    script = tmp_path / "evaluate_images.py"
    script.write_text(FAKE_GENEVAL)
    metas = geneval.load_metadata()
    images = tmp_path / "images"
    pixel = np.zeros((1, 1, 3), np.uint8)
    geneval.write_images(images, metas[:2] + metas[80:81], [[pixel] * 2] * 3)
    # write_images indexes folders 0..2; renumber the third so it maps to line 80 like a real run
    (images / "00002").rename(images / "00080")
    judge = OfficialJudge(
        "geneval",
        "{python} {script} {images} --outfile {out}/results.jsonl",
        env={"META": str(geneval.metadata_path())},
    )
    report = judge.run(images, tmp_path / "out", script=script)
    assert report.judge == "official"
    assert report.headline_name == "overall"
    assert report.metrics["tag/single_object"] == 0.5 and report.metrics["tag/two_object"] == 0.5
    assert "\\/" in (tmp_path / "out" / "results.jsonl").read_text()
    with pytest.raises(OfficialJudgeError, match="not empty"):
        judge.run(images, tmp_path / "out", script=script)


def test_longtext_chunks_are_concatenated(tmp_path: Path) -> None:
    script = tmp_path / "evaluate_text_reward.py"
    script.write_text(FAKE_LONGTEXT)
    prompts = longtext.load_prompts()[:3]
    images = tmp_path / "imgs"
    longtext.write_images(images, prompts, [[np.full((1, 1, 3), 255, np.uint8)] * 2] * 3)
    judge = OfficialJudge(
        "LongText",
        "{python} {script} --sample_dir {images} --output_dir {out} --mode en",
        env={"PROMPTS": str(benchmarks_dir() / "longtext" / "text_prompts.jsonl")},
    )
    report = judge.run(images, tmp_path / "out", script=script)
    lines = (tmp_path / "out" / "results.jsonl").read_text().splitlines()
    assert len(lines) == 6 and json.loads(lines[0])["image"] == "0_0.png"
    assert report.judge == "official" and report.headline == 0.5  # every _0 image read perfectly, _1 none


def test_failing_command_and_missing_placeholder(tmp_path: Path) -> None:
    judge = OfficialJudge("cvtg", "{python} -c 'import sys; sys.exit(3)' {images} {out}")
    with pytest.raises(OfficialJudgeError, match="exited 3"):
        judge.run(tmp_path, tmp_path / "out")
    with pytest.raises(ValueError, match="weights"):
        OfficialJudge("prism").argv(tmp_path, tmp_path / "o")
    argv = OfficialJudge("prism", python="/env/bin/python").argv(Path("/im ages"), Path("/o"), weights="/m")
    assert argv[:2] == ["/env/bin/python", "evaluation/eval_qwen25.py"] and "/im ages" in argv
    assert set(default_commands()) == {"geneval", "dpg", "prism", "cvtg", "longtext"}
    assert OfficialJudge("dpg").python == sys.executable
