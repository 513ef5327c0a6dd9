"""`i1lab generate`: PNGs for prompts from a tiny trained checkpoint on CPU, batched, with the run's or
the given sampler settings; the images do not depend on the batch size; bad requests are one line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from i1lab.errors import I1labError
from i1lab.evaluation.generate import _check_runnable, generate_images, read_prompts, sampling_spec
from i1lab.plan.planner import expand
from i1lab.spec import load_study
from i1lab.spec.run import RunSpec
from i1lab.train.runner import train

EXPERIMENTS = Path(__file__).resolve().parents[2] / "experiments"
PROMPTS = ["a red circle", "a blue square on the left of a green triangle", "two yellow stars"]


def tiny_run_spec() -> RunSpec:
    """The baseline's tiny profile (hash text encoder, 16 px pixel space), trained for 2 steps."""
    raw = expand(load_study(EXPERIMENTS / "baseline.yaml"), "tiny")[0].spec.model_dump(mode="json")
    raw["model"].update(hidden=32, depth=1)
    raw["train"].update(steps=2, batch_size=4, checkpoint_every=1, keep_every=2, log_every=1)
    raw["sampling"].update(steps=3, cfg_scale=3.0)
    return RunSpec.model_validate(raw)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    workdir = tmp_path_factory.mktemp("tiny-run")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("I1LAB_HOME", str(tmp_path_factory.mktemp("home")))  # the XLA cache goes there
        summary = train(tiny_run_spec(), workdir)
    assert summary["step"] == 2
    return workdir


def pixels(folder: Path) -> dict[str, np.ndarray]:
    return {p.name: np.asarray(Image.open(p)) for p in sorted(folder.glob("*.png"))}


def test_three_prompts_become_three_pngs_independent_of_the_batch_size(trained: Path, tmp_path: Path) -> None:
    one_batch = generate_images(trained, PROMPTS, tmp_path / "a", batch_size=8, progress=False)
    assert one_batch.step == 2
    assert [f.name for f in one_batch.files] == ["00000.png", "00001.png", "00002.png"]
    images = pixels(tmp_path / "a")
    assert all(img.shape == (16, 16, 3) and img.dtype == np.uint8 for img in images.values())
    assert len({img.tobytes() for img in images.values()}) == 3  # different prompts, different images
    index = [json.loads(line) for line in (tmp_path / "a" / "prompts.jsonl").read_text().splitlines()]
    assert [r["prompt"] for r in index] == PROMPTS and index[2]["file"] == "00002.png"
    record = json.loads((tmp_path / "a" / "generation.json").read_text())
    assert record["step"] == 2 and record["sampling"]["steps"] == 3 and record["sampling"]["cfg_scale"] == 3.0

    generate_images(trained, PROMPTS, tmp_path / "b", batch_size=1, progress=False)
    again = pixels(tmp_path / "b")
    assert {k: v.tobytes() for k, v in again.items()} == {k: v.tobytes() for k, v in images.items()}


def test_cli_with_prompts_file_overrides_and_size(trained: Path, tmp_path: Path) -> None:
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("\n".join(PROMPTS) + "\n\n")
    out = tmp_path / "cli"
    env = {**os.environ, "I1LAB_HOME": str(tmp_path / "home"), "COLUMNS": "200"}
    args = ["--prompts", str(prompts), "--out", str(out), "--cfg-scale", "5", "--cfg-rescale", "0.7"]
    args += ["--steps", "2", "--seed", "7", "--size", "24", "--batch-size", "2"]
    res = subprocess.run(
        [sys.executable, "-m", "i1lab", "generate", str(trained), *args],
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=300,
    )
    assert res.returncode == 0, res.stderr
    assert f"wrote 3 images to {out} (step 2)" in res.stderr
    images = pixels(out)
    assert len(images) == 3 and all(img.shape == (24, 24, 3) for img in images.values())
    record = json.loads((out / "generation.json").read_text())
    assert record["resolution"] == 24
    assert {k: record["sampling"][k] for k in ("cfg_scale", "cfg_rescale", "steps", "seed")} == {
        "cfg_scale": 5.0,
        "cfg_rescale": 0.7,
        "steps": 2,
        "seed": 7,
    }

    bad = subprocess.run(
        [sys.executable, "-m", "i1lab", "generate", str(trained), "--prompt", "x", "--cfg-rescale", "3"],
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=300,
    )
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1
    assert (
        bad.stderr.strip()
        == "error: invalid sampling setting: cfg_rescale: Input should be less than or equal to 1"
    )


def test_requests_that_cannot_run_are_one_line_errors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("I1LAB_WEIGHTS_DIR", str(tmp_path / "weights"))
    with pytest.raises(I1labError, match="no prompts"):
        read_prompts(None, None)
    jsonl = tmp_path / "p.jsonl"
    jsonl.write_text('{"prompt": "a cat"}\n{"text": "no"}\n')
    with pytest.raises(I1labError, match=r"p.jsonl:2: expected an object with a string 'prompt'"):
        read_prompts(["first"], jsonl)
    spec = tiny_run_spec()
    with pytest.raises(
        I1labError, match="invalid sampling setting: steps: Input should be greater than or equal to 1"
    ):
        sampling_spec(spec, steps=0)
    with pytest.raises(I1labError, match="--size 17 is not a positive multiple of 2"):
        sampling_spec(spec, size=17)
    raw: dict[str, Any] = spec.model_dump(mode="json")
    raw["model"]["text_encoder"] = {"type": "T5Gemma"}
    with pytest.raises(
        I1labError, match=r"text encoder T5Gemma: weights not found \(looked in .*weights/text_enc"
    ):
        _check_runnable(RunSpec.model_validate(raw))
    raw["model"]["text_encoder"] = {"type": "hash"}
    raw["model"]["vae"] = "flux2"
    with pytest.raises(
        I1labError, match=r"model.vae: VAE flux2: weights not found \(looked in .*weights/vaes/flux2"
    ):
        _check_runnable(RunSpec.model_validate(raw))
    with pytest.raises(I1labError, match="not a run folder"):
        generate_images(tmp_path, ["x"], tmp_path / "out", progress=False)
