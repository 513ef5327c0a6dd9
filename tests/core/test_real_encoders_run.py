"""A run with the paper's real model parts on the CPU: two text encoders (a random-weight T5Gemma saved by
transformers, and MiniLM's packaged weights) and a random-weight FLUX.2 VAE saved by diffusers — trained,
then sampled by `i1lab generate`, with the weights it read recorded beside its checkpoints."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from i1lab.generate import generate_images
from i1lab.plan import expand
from i1lab.spec import load_study
from i1lab.spec.run import RunSpec
from i1lab.train.build import TextEncoder, caption_dropout, encode_images, model_config
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
    # below t = 0.95 the mapped velocity is x1 - eps; above, (x - x_t) / 0.05 (DESIGN_SPACE §7)
    np.testing.assert_allclose(v[:2], (x1 - eps)[:2], atol=1e-5)
    np.testing.assert_allclose(v[2], (x1[2] - x_t[2]) / 0.05, rtol=1e-5)
    assert velocity_model(perfect, "x") is velocity_model(perfect, "x")  # one compiled sampler
    np.testing.assert_allclose(x_to_velocity(x1, x_t, t), v)
    assert float(velocity_mse(perfect, {}, x1, None, None, t, eps, None, "velocity")) > 0.1
