"""A run with the paper's real model parts on the CPU: two text encoders (a random-weight T5Gemma saved by
transformers, and MiniLM's packaged weights) and a random-weight FLUX.2 VAE saved by diffusers — trained,
then sampled by `i1lab generate`, with the weights it read recorded beside its checkpoints."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from i1lab.data.images import encode_png
from i1lab.errors import I1labError
from i1lab.evaluation.generate import generate_images
from i1lab.plan.planner import expand
from i1lab.spec import load_study
from i1lab.spec.model import model_config
from i1lab.spec.run import RunSpec
from i1lab.train.build import TextEncoder, caption_dropout, encode_images
from i1lab.train.runner import Hooks, train
from models.rectified_flow import velocity_model, velocity_mse, x_to_velocity
from tests.core.test_weights import write_flux2, write_t5gemma

EXPERIMENTS = Path(__file__).resolve().parents[2] / "experiments"


def spec(**model: Any) -> RunSpec:
    raw = expand(load_study(EXPERIMENTS / "baseline.yaml"), "tiny")[0].spec.model_dump(mode="json")
    raw["model"].update(
        hidden=32,
        depth=1,
        vae="flux2",
        text_encoder=[
            {"type": "T5Gemma", "token_len": 8, "dtype": "float32"},
            {"type": "minilm", "token_len": 6, "drop_prob": 0.5},
        ],
        **model,
    )
    raw["data"]["resolution"] = 32
    raw["train"].update(steps=2, batch_size=4, checkpoint_every=1, keep_every=2, log_every=1)
    raw["sampling"].update(steps=2, cfg_scale=3.0)
    return RunSpec.model_validate(raw)


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> Any:
    root = tmp_path_factory.mktemp("weights")
    write_t5gemma(root / "text_encoders" / "T5Gemma")
    write_flux2(root / "vaes" / "flux2")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("I1LAB_WEIGHTS_DIR", str(root))
        mp.setenv("I1LAB_HOME", str(tmp_path_factory.mktemp("home")))
        yield root


def test_two_encoders_and_the_flux2_vae_train_and_generate(weights: Path, tmp_path: Path) -> None:
    s = spec()
    config = model_config(s)
    assert config.encoder_specs == ((32, 8), (384, 6))  # D from each checkpoint's own config
    assert config.in_channels == 32 and config.latent_size == 4
    assert caption_dropout(s) == (0.1, 0.5)  # T5Gemma: train.caption_dropout; MiniLM: its own
    text, mask = TextEncoder(s)(["a red cube", "two dogs on the table"])
    assert [t.shape for t in text] == [(2, 8, 32), (2, 6, 384)]
    assert [m.sum(1).tolist() for m in mask] == [[4, 6], [5, 6]]  # <bos> + words; [CLS] words [SEP]
    workdir = tmp_path / "run"
    started: list[list[str]] = []
    summary = train(s, workdir, Hooks(on_start=lambda step, notes: started.append(notes)))
    assert summary["step"] == 2 and np.isfinite(summary["loss"])
    recorded = json.loads((workdir / "weights.json").read_text())
    assert set(recorded) == {"T5Gemma", "minilm", "flux2"}
    assert recorded["flux2"]["path"] == str(weights / "vaes" / "flux2")
    assert all(len(r["fingerprint"]) == 16 for r in recorded.values())
    prints = ", ".join(f"{n} {recorded[n]['fingerprint']}" for n in ("T5Gemma", "minilm", "flux2"))
    assert started == [[f"weights {prints}"]]  # the start event the worker records in the registry
    out = generate_images(workdir, ["a red cube", "two dogs"], tmp_path / "png", progress=False)
    images = [np.asarray(Image.open(f)) for f in out.files]
    assert [i.shape for i in images] == [(32, 32, 3)] * 2 and images[0].tobytes() != images[1].tobytes()
    # one forward pass from the checkpoint with both encoders' features (text, text_1)
    from i1lab.evaluation.forward import forward

    x = np.random.default_rng(1).normal(size=(2, 32, 4, 4)).astype(np.float32)
    arrays = {
        "x": x,
        "t": np.asarray([0.2, 0.7], np.float32),
        "text": text[0],
        "mask": mask[0],
        "text_1": text[1],
    }
    np.savez(tmp_path / "in.npz", **arrays)
    step, shape = forward(workdir, tmp_path / "in.npz", tmp_path / "v.npz")
    assert step == 2 and shape == (2, 32, 4, 4)
    with np.load(tmp_path / "v.npz") as f:
        assert np.all(np.isfinite(f["v"]))
    np.savez(tmp_path / "one.npz", x=x, t=arrays["t"], text=text[0])
    with pytest.raises(
        I1labError, match=r"missing array\(s\) text_1 \(need x, t, text, text_1; masks optional\)"
    ):
        forward(workdir, tmp_path / "one.npz", tmp_path / "v2.npz")
    # other weights under the same name: sampling from this run is refused, naming both
    other = tmp_path / "other"
    write_t5gemma(other / "text_encoders" / "T5Gemma", seed=1)
    (other / "vaes").mkdir()
    (other / "vaes" / "flux2").symlink_to(weights / "vaes" / "flux2")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("I1LAB_WEIGHTS_DIR", str(other))
        with pytest.raises(
            I1labError, match=r"^T5Gemma: the run was trained with weights \w{16} \(.*\), but .*other"
        ):
            generate_images(workdir, ["a red cube"], tmp_path / "png2", progress=False)


def test_training_samples_the_vae_posterior(weights: Path) -> None:
    s = spec()
    images = np.random.default_rng(0).integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)
    mean = encode_images(s, images)
    draw_a = encode_images(s, images, jax.random.PRNGKey(1))
    draw_b = encode_images(s, images, jax.random.PRNGKey(2))
    assert mean.shape == (2, 32, 4, 4)
    assert not np.allclose(draw_a, mean) and not np.allclose(draw_a, draw_b)
    np.testing.assert_array_equal(draw_a, encode_images(s, images, jax.random.PRNGKey(1)))


def test_x_prediction_maps_the_output_to_a_velocity() -> None:
    rng = np.random.default_rng(0)
    x1, eps = (jnp.asarray(rng.normal(size=(3, 2, 4, 4)), jnp.float32) for _ in range(2))
    t = jnp.asarray([0.1, 0.5, 0.99], jnp.float32)
    x_t = (1 - t)[:, None, None, None] * eps + t[:, None, None, None] * x1

    def perfect(params: Any, x: Any, tt: Any, *args: Any) -> Any:
        return x1  # an x-prediction network that is exactly right

    assert float(velocity_mse(perfect, {}, x1, None, None, t, eps, None, "x")) < 1e-10
    v = velocity_model(perfect, "x")({}, x_t, t, None, None)
    # below t = 0.95 the mapped velocity is x1 - eps; above, (x - x_t) / 0.05 (docs/design-space.md §7)
    np.testing.assert_allclose(v[:2], (x1 - eps)[:2], atol=1e-5)
    np.testing.assert_allclose(v[2], (x1[2] - x_t[2]) / 0.05, rtol=1e-5)
    assert velocity_model(perfect, "x") is velocity_model(perfect, "x")  # one compiled sampler
    np.testing.assert_allclose(x_to_velocity(x1, x_t, t), v)
    assert float(velocity_mse(perfect, {}, x1, None, None, t, eps, None, "velocity")) > 0.1


def _npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def test_training_reads_stored_vae_moments_and_encodes_the_rest(weights: Path, tmp_path: Path) -> None:
    """A WebDataset source that stores `latents.flux2.32.npy` (as `i1lab vae moments` computes them) is
    trained from them, not from its images; a source without them is encoded on the fly."""
    from i1lab.train.build import load_codec
    from i1lab.train.runner import VAE_SALT, batch_stream, step_batch

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (4, 32, 32, 3), dtype=np.uint8)
    decoys = rng.integers(0, 256, (4, 32, 32, 3), dtype=np.uint8)  # what the stored moments describe
    s = spec()
    codec = load_codec("flux2")
    mean, logvar = codec.moments(decoys)
    for name, stored in (("stored", True), ("plain", False)):
        with tarfile.open(tmp_path / f"{name}.tar", "w") as tar:
            for i, image in enumerate(images):
                members = {f"{i:04d}.png": encode_png(image), f"{i:04d}.txt": b"a red cube"}
                if stored:
                    moments = np.concatenate([np.asarray(mean[i]), np.asarray(logvar[i])]).astype(np.float16)
                    members[f"{i:04d}.latents.flux2.32.npy"] = _npy(moments)
                for member, data in members.items():
                    info = tarfile.TarInfo(member)
                    info.size = len(data)
                    tar.addfile(info, io.BytesIO(data))
    raw = s.model_dump(mode="json")
    raw["train"]["batch_size"] = 4
    key = jax.random.fold_in(jax.random.fold_in(jax.random.PRNGKey(0), VAE_SALT), 0)
    for name in ("stored", "plain"):
        source = {"name": name, "kind": "webdataset", "path": str(tmp_path / f"{name}.tar"), "count": 4}
        raw["data"]["sources"] = [source]
        run = RunSpec.model_validate(raw)
        batch, ids = step_batch(run, batch_stream(run), TextEncoder(run), 0)
        order = np.asarray(ids["index"])  # the batch's rows are shuffled examples; ε is drawn per row
        if name == "stored":
            want = codec.from_moments(mean[order].astype(jnp.float16), logvar[order].astype(jnp.float16), key)
        else:
            want = codec.encode(images[order], key)
        np.testing.assert_allclose(np.asarray(batch["latents"]), np.asarray(want), rtol=1e-5, atol=1e-5)
    # both sources in one run: a batch mixes stored and encoded rows
    raw["data"]["sources"] = [
        {"name": n, "kind": "webdataset", "path": str(tmp_path / f"{n}.tar"), "count": 4}
        for n in ("stored", "plain")
    ]
    raw["data"]["mixing"] = {"strategy": "equal"}
    run = RunSpec.model_validate(raw)
    batch, ids = step_batch(run, batch_stream(run), TextEncoder(run), 0)
    from_store = np.asarray(ids["source"]) == "stored"
    assert from_store.any() and not from_store.all()
    image_mean, image_logvar = codec.moments(images)
    order = np.asarray(ids["index"])
    pick = from_store[:, None, None, None]
    rows_mean = np.where(pick, np.asarray(mean, np.float16)[order], np.asarray(image_mean)[order])
    rows_logvar = np.where(pick, np.asarray(logvar, np.float16)[order], np.asarray(image_logvar)[order])
    want = codec.from_moments(rows_mean, rows_logvar, key)
    np.testing.assert_allclose(np.asarray(batch["latents"]), np.asarray(want), rtol=1e-4, atol=1e-4)
    raw["data"]["sources"] = [raw["data"]["sources"][0]]
    raw["data"]["resolution"] = 16  # the stored moments are for 32 px: at 16 px the images are encoded
    run = RunSpec.model_validate(raw)
    batch, ids = step_batch(run, batch_stream(run), TextEncoder(run), 0)
    assert batch["latents"].shape == (4, 32, 2, 2)
