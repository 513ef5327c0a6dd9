"""The weights directory as a user meets it: `i1lab plan` marks runs whose frozen models are missing,
`submit` refuses them in one line and writes nothing, `i1lab weights` lists what is there, and with
small random weights of the right families (written by transformers' and diffusers' own classes) the
paper's baseline plan is runnable. Also `i1lab encode-text` and `i1lab vae` on real files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from i1lab.data.tfrecord import write_tfrecord
from i1lab.spec.run import RunSpec
from tests.models.hf_reference import write_word_tokenizer

REPO = Path(__file__).resolve().parents[2]
BASELINE = str(REPO / "experiments" / "baseline.yaml")


def i1lab(*args: str, home: Path, weights: Path, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "I1LAB_HOME": str(home), "I1LAB_WEIGHTS_DIR": str(weights), "COLUMNS": "250"}
    env.pop("I1LAB_DATABASE_URL", None)
    return subprocess.run(
        [sys.executable, "-m", "i1lab", *args], capture_output=True, text=True, env=env, timeout=timeout
    )


def write_t5gemma(folder: Path, seed: int = 0) -> None:
    """A tiny random T5Gemma encoder-decoder checkpoint, saved by transformers, with a word tokenizer."""
    import torch
    import transformers

    stack = dict(
        vocab_size=100,
        hidden_size=32,
        intermediate_size=48,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=16,
        layer_types=["full_attention"],
    )
    torch.manual_seed(seed)
    model = transformers.T5GemmaForConditionalGeneration(
        transformers.T5GemmaConfig(encoder=stack, decoder=stack, vocab_size=100)
    )
    model.save_pretrained(folder)
    write_word_tokenizer(folder, bos="<bos>")


def write_flux2(folder: Path) -> None:
    """A tiny random FLUX.2 VAE (32 latent channels, 8x down as the real one) saved by diffusers."""
    import torch
    from diffusers import AutoencoderKLFlux2

    torch.manual_seed(0)
    AutoencoderKLFlux2(
        block_out_channels=(8, 8, 8, 8),
        layers_per_block=1,
        norm_num_groups=4,
        latent_channels=32,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
    ).save_pretrained(folder)


@pytest.fixture(scope="module")
def random_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("weights")
    write_t5gemma(root / "text_encoders" / "T5Gemma")
    write_flux2(root / "vaes" / "flux2")
    return root


def test_without_weights_every_baseline_run_is_marked_and_submit_refuses_writing_nothing(
    tmp_path: Path,
) -> None:
    home, weights = tmp_path / "home", tmp_path / "weights"
    done = i1lab("plan", BASELINE, "--json", home=home, weights=weights)
    assert done.returncode == 0, done.stderr
    payload = json.loads(done.stdout)
    assert payload["summary"]["not_runnable"] == payload["summary"]["runs"] >= 1
    assert payload["totals"]["accelerator_hours_to_run"] == 0.0  # not costed as if it could run
    for run in payload["runs"]:
        assert run["runnable"] is False
        assert any(
            f"T5Gemma: weights not found (looked in {weights}/text_encoders/T5Gemma" in m
            for m in run["missing"]
        )
        assert any(
            f"VAE flux2: weights not found (looked in {weights}/vaes/flux2" in m for m in run["missing"]
        )
        # the paper's twelve datasets are named, not located: each is looked for in the data directory
        assert (
            sum(f"no shard matches '{home}/data/" in m and "no path given" in m for m in run["missing"]) == 12
        )
    table = i1lab("plan", BASELINE, home=home, weights=weights)
    assert "cannot run here" in table.stdout and "model.vae: VAE flux2: weights not found" in table.stdout
    refused = i1lab("submit", BASELINE, "--no-progress", home=home, weights=weights)
    assert refused.returncode == 2
    lines = refused.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: run baseline/baseline cannot run here: ")
    assert "T5Gemma: weights not found" in lines[0] and "Traceback" not in refused.stderr
    assert not home.exists()  # nothing written: no registry, no run folder


def test_with_random_weights_of_the_right_families_the_baseline_plan_is_runnable(
    tmp_path: Path, random_weights: Path
) -> None:
    home = tmp_path / "home"
    done = i1lab("plan", BASELINE, "--json", home=home, weights=random_weights)
    assert done.returncode == 0, done.stderr
    (run,) = json.loads(done.stdout)["runs"]
    assert len(run["missing"]) == 12 and all(
        m.startswith("data.sources: data source ") for m in run["missing"]
    )
    # the paper's twelve sources, each a folder of (tiny) TFRecord shards in the data directory
    for source in RunSpec().data.sources:
        (home / "data" / source.name).mkdir(parents=True)
        write_tfrecord(home / "data" / source.name / "train.tfrecord-00000-of-00001", [b"x"])
    done = i1lab("plan", BASELINE, "--json", home=home, weights=random_weights)
    assert done.returncode == 0, done.stderr
    payload = json.loads(done.stdout)
    assert payload["summary"]["not_runnable"] == 0
    assert all(r["runnable"] and not r["missing"] for r in payload["runs"])
    assert payload["totals"]["accelerator_hours_to_run"] == payload["totals"]["accelerator_hours"] > 0
    # a source given a path is looked for there, and named when nothing matches
    study = tmp_path / "moved.yaml"
    gone = tmp_path / "moved"
    study.write_text(
        f"extends: {BASELINE}\nrun:\n"
        f"  data.sources: [{{name: local, kind: webdataset, path: '{gone}/*.tar', count: 4}}]\n"
    )
    moved = json.loads(i1lab("plan", str(study), "--json", home=home, weights=random_weights).stdout)
    assert moved["runs"][0]["missing"] == [
        f"data.sources: data source local: no shard matches '{gone}/*.tar'"
    ]
    # the model is built for the weights' own feature width (32), not the catalogue's 2304
    catalogue = json.loads(i1lab("plan", BASELINE, "--json", home=home, weights=tmp_path / "none").stdout)
    assert payload["runs"][0]["cost"]["params"] < catalogue["runs"][0]["cost"]["params"]


def test_weights_lists_present_missing_and_mismatched(tmp_path: Path, random_weights: Path) -> None:
    weights = tmp_path / "weights"
    (weights / "text_encoders").mkdir(parents=True)
    os.symlink(random_weights / "text_encoders" / "T5Gemma", weights / "text_encoders" / "T5Gemma")
    wrong = weights / "text_encoders" / "qwen3-1.7b"  # a T5Gemma checkpoint filed under a Qwen3 name
    os.symlink(random_weights / "text_encoders" / "T5Gemma", wrong)
    shared = tmp_path / "shared" / "flux2-vae"  # elsewhere, named in weights.yaml
    os.makedirs(shared.parent)
    os.symlink(random_weights / "vaes" / "flux2", shared)
    (weights / "weights.yaml").write_text(f"vaes:\n  flux2: {shared}\n")
    done = i1lab("weights", "--json", home=tmp_path / "home", weights=weights)
    assert done.returncode == 0, done.stderr
    rows = {(r["kind"], r["name"]): r for r in json.loads(done.stdout)["weights"]}
    assert (
        rows["text_encoder", "T5Gemma"]["state"] == "present" and rows["text_encoder", "T5Gemma"]["dim"] == 32
    )
    assert rows["text_encoder", "qwen3-1.7b"]["state"] == "mismatched"
    assert "model_type 't5gemma'" in rows["text_encoder", "qwen3-1.7b"]["detail"]
    assert rows["text_encoder", "clip-large"]["state"] == "missing"
    assert rows["text_encoder", "minilm"]["state"] == "present"  # the packaged copy
    assert rows["text_encoder", "hash"]["state"] == rows["vae", "identity"]["state"] == "builtin"
    assert rows["vae", "flux2"]["state"] == "present" and rows["vae", "flux2"]["path"] == str(
        shared.resolve()
    )
    assert rows["vae", "flux2"]["dim"] == 32
    bad = weights / "weights.yaml"
    bad.write_text("vaes:\n  flux3: /x\n")
    refused = i1lab("weights", home=tmp_path / "home", weights=weights)
    assert refused.returncode == 2
    assert (
        refused.stderr.strip()
        == f"error: {bad}: vaes.flux3: unknown name; known: flux, flux2, identity, qwenimage"
    )


def test_encode_text_and_vae_commands(tmp_path: Path, random_weights: Path) -> None:
    import torch
    from diffusers import AutoencoderKLFlux2

    home = tmp_path / "home"
    captions = tmp_path / "captions.txt"
    captions.write_text("a red cube on the table\ntwo dogs\n")
    out = tmp_path / "features.npz"
    t5g = random_weights / "text_encoders" / "T5Gemma"
    args = ("encode-text", "T5Gemma", "--weights", str(t5g), "--captions", str(captions), "--out", str(out))
    done = i1lab(*args, "--token-len", "8", "--dtype", "float32", home=home, weights=tmp_path / "w")
    assert done.returncode == 0, done.stderr
    with np.load(out) as f:
        features, mask = f["features"], f["mask"]
    assert features.shape == (2, 8, 32) and features.dtype == np.float32 and mask.dtype == bool
    assert mask.sum(1).tolist() == [7, 3]  # <bos> + words, padded with id 0
    assert np.abs(features[mask]).mean() > 0
    missing = i1lab(
        "encode-text",
        "T5Gemma",
        "--captions",
        str(tmp_path / "nope.txt"),
        "--out",
        str(out),
        "--weights",
        str(t5g),
        home=home,
        weights=tmp_path / "w",
    )
    assert (
        missing.returncode == 2 and missing.stderr.strip() == f"error: {tmp_path / 'nope.txt'}: no such file"
    )

    images = np.random.default_rng(0).integers(0, 256, (2, 16, 16, 3), dtype=np.uint8)
    np.savez(tmp_path / "images.npz", images=images)
    vae = random_weights / "vaes" / "flux2"

    def vae_cli(direction: str, source: str, target: str) -> subprocess.CompletedProcess[str]:
        args = ("--weights", str(vae), "--in", str(tmp_path / source), "--out", str(tmp_path / target))
        return i1lab("vae", direction, "flux2", *args, home=home, weights=tmp_path / "w")

    enc = vae_cli("encode", "images.npz", "latents.npz")
    assert enc.returncode == 0, enc.stderr
    with np.load(tmp_path / "latents.npz") as f:
        latents = f["latents"]
    assert latents.shape == (2, 32, 2, 2) and latents.dtype == np.float32
    # the posterior mean, normalised by the checkpoint's BatchNorm statistics (docs/design-space.md §10)
    ref = AutoencoderKLFlux2.from_pretrained(vae).eval()
    with torch.no_grad():
        x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 127.5 - 1.0
        mean = ref.encode(x).latent_dist.mean
        b, c, h, w = mean.shape
        p = (
            mean.reshape(b, c, h // 2, 2, w // 2, 2)
            .permute(0, 1, 3, 5, 2, 4)
            .reshape(b, c * 4, h // 2, w // 2)
        )
        p = (p - ref.bn.running_mean.view(1, -1, 1, 1)) / torch.sqrt(
            ref.bn.running_var.view(1, -1, 1, 1) + 1e-4
        )
        want = p.reshape(b, c, 2, 2, h // 2, w // 2).permute(0, 1, 4, 2, 5, 3).reshape(b, c, h, w).numpy()
    np.testing.assert_allclose(latents, want, atol=1e-4 * np.abs(want).mean() + 1e-6)
    dec = vae_cli("decode", "latents.npz", "decoded.npz")
    assert dec.returncode == 0, dec.stderr
    with np.load(tmp_path / "decoded.npz") as f:
        assert f["images"].shape == (2, 16, 16, 3) and f["images"].dtype == np.uint8
    np.savez(tmp_path / "bad.npz", images=images[..., :2])
    bad = vae_cli("encode", "bad.npz", "x.npz")
    assert bad.returncode == 2
    assert bad.stderr.strip().endswith("images has shape (2, 16, 16, 2) uint8, expected (N, H, W, 3) uint8")
    assert not (tmp_path / "x.npz").exists()


def test_a_token_length_beyond_the_weights_positions_is_a_located_plan_error(tmp_path: Path) -> None:
    study = tmp_path / "long.yaml"
    study.write_text(
        "run:\n  model.text_encoder: [{type: hash}, {type: minilm, token_len: 600}]\n  model.vae: identity\n"
        "  data.sources: [{name: s, kind: shapes, count: 100}]\n  data.resolution: 16\n"
    )
    done = i1lab("plan", str(study), "--json", home=tmp_path / "home", weights=tmp_path / "w")
    assert done.returncode == 0, done.stderr
    (run,) = json.loads(done.stdout)["runs"]
    assert run["runnable"] is False
    assert len(run["missing"]) == 1
    assert run["missing"][0].startswith(
        "model.text_encoder.1.token_len: 600 tokens, but the minilm weights in "
    )
    assert run["missing"][0].endswith(" have 512 positions")
