"""Time one training step of the paper's baseline with its real-sized frozen models, and print the figures.

What a step of `experiments/baseline.yaml` costs with the T5Gemma 2B encoder and the FLUX.2 VAE in the
loop: random weights of the real shapes (T5Gemma-2B-2B's encoder: 26 Gemma-2 layers, width 2304, 256k
vocabulary; the FLUX.2 VAE: 128/256/512/512 channels, 32 latent channels), drawn on the device, no files.
Three stages, each jitted and timed apart (median of `--steps` after `--warmup`), then together:

- `text_ms`: the frozen encoder on `--batch` captions of 256 tokens (bf16, as training runs it);
- `vae_ms`: the VAE's encoder on `--batch` images at `--resolution`, posterior sampled and normalised;
- `train_ms`: i1lab's own train step (`i1lab.train.runner.train_step`: loss, gradients, Adam, EMA) of the
  baseline DiT-XL on those latents and features, at `--precision`;
- `step_ms`: the three in sequence; `peak_gib`: the device's peak memory (where JAX reports it).

Usage (GPU): ``python benchmarks/frozen_step.py --batch 32``.
Usage (CPU, a shape check in miniature): ``python benchmarks/frozen_step.py --small``.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from i1lab.plan.planner import expand
from i1lab.spec import load_study
from i1lab.spec.model import model_config
from i1lab.spec.run import RunSpec
from i1lab.train.runner import initial_state, step_key, train_step
from models.dit import DiT
from models.flux2_vae import FLUX2_VAE, Flux2VAE, VAEConfig
from models.text_encoders.t5gemma import GemmaEncoderModel, GemmaEncoderSettings

#: T5Gemma 2B-2B's encoder (the Gemma 2 2B stack).
T5GEMMA_2B = GemmaEncoderSettings(
    vocab_size=256_000,
    hidden=2304,
    intermediate=9216,
    heads=8,
    kv_heads=4,
    head_dim=256,
    query_pre_attn_scalar=256.0,
    windows=tuple((4096, 4096) if i % 2 == 0 else None for i in range(26)),
    rope=((10_000.0, 1.0),) * 26,
    softcap=50.0,
)
#: A miniature of the same stack, as wide as the hash encoder the `--small` spec names (D 32).
SMALL_ENCODER = GemmaEncoderSettings(
    vocab_size=1000,
    hidden=32,
    intermediate=64,
    heads=2,
    kv_heads=1,
    head_dim=32,
    query_pre_attn_scalar=32.0,
    windows=((8, 8), None),
    rope=((10_000.0, 1.0),) * 2,
    softcap=50.0,
)
SMALL_VAE = VAEConfig(block_out_channels=(8, 8, 8, 8), layers_per_block=1, norm_num_groups=4)


def random_tree(tree: Any, key: jax.Array, scale: float = 0.02) -> Any:
    """Normal(0, scale) arrays of every leaf's shape and dtype, drawn on the device."""
    leaves, treedef = jax.tree_util.tree_flatten(tree)
    keys = jax.random.split(key, len(leaves))
    drawn = [
        scale * jax.random.normal(k, leaf.shape, jnp.float32) for k, leaf in zip(keys, leaves, strict=True)
    ]
    return jax.tree_util.tree_unflatten(treedef, drawn)


def timed(fn: Callable[[], Any], warmup: int, steps: int) -> float:
    """Median wall seconds of ``fn`` (its result blocked on) after ``warmup`` calls."""
    for _ in range(warmup):
        jax.block_until_ready(fn())
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def baseline_spec(args: argparse.Namespace) -> RunSpec:
    raw = expand(load_study("experiments/baseline.yaml"))[0].spec.model_dump(mode="json")
    raw["train"]["batch_size"] = args.batch
    raw["data"]["resolution"] = args.resolution
    raw["model"]["precision"] = args.precision
    if args.small:  # the tiny DiT, built for 32-wide features of --tokens tokens
        raw["model"].update(size="tiny")
        raw["model"]["text_encoder"] = {"type": "hash", "token_len": args.tokens}
    return RunSpec.model_validate(raw)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--resolution", type=int, default=256)
    parser.add_argument("--tokens", type=int, default=256)
    parser.add_argument("--precision", choices=("float32", "bfloat16"), default="bfloat16")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--small", action="store_true", help="miniature shapes (a CPU check of the script)")
    args = parser.parse_args()
    if args.small:
        args.batch, args.resolution, args.tokens = (
            min(args.batch, 2),
            min(args.resolution, 32),
            min(args.tokens, 16),
        )
    spec = baseline_spec(args)
    key = jax.random.PRNGKey(0)
    k_text, k_vae, k_data = jax.random.split(key, 3)

    settings = SMALL_ENCODER if args.small else T5GEMMA_2B
    config = model_config(spec)
    assert config.text_dim == settings.hidden  # the DiT reads the encoder's features (2304 wide)
    encoder = GemmaEncoderModel(settings, jnp.bfloat16)
    ids = jax.random.randint(k_data, (args.batch, args.tokens), 1, settings.vocab_size)
    mask = jnp.ones((args.batch, args.tokens), bool)
    text_params = random_tree(jax.eval_shape(encoder.init, k_text, ids, mask)["params"], k_text)
    encode_text = jax.jit(lambda p, i, m: encoder.apply({"params": p}, i, m).astype(jnp.float32))

    vae = Flux2VAE.init_random(seed=0, config=SMALL_VAE if args.small else FLUX2_VAE)
    images = jax.random.randint(k_data, (args.batch, args.resolution, args.resolution, 3), 0, 256).astype(
        jnp.uint8
    )

    state, tx, frozen = initial_state(spec)
    step = train_step(spec, DiT(config), tx, frozen)
    batch = {"latents": vae.encode(images, k_vae), "text": encode_text(text_params, ids, mask), "mask": mask}
    holder = {"state": state}

    def one_train_step() -> Any:
        holder["state"], metrics = step(holder["state"], batch, step_key(spec, 0))
        return metrics.loss

    text_s = timed(lambda: encode_text(text_params, ids, mask), args.warmup, args.steps)
    vae_s = timed(lambda: vae.encode(images, k_vae), args.warmup, args.steps)
    train_s = timed(one_train_step, args.warmup, args.steps)

    def whole() -> Any:
        fresh = {
            "latents": vae.encode(images, k_vae),
            "text": encode_text(text_params, ids, mask),
            "mask": mask,
        }
        holder["state"], metrics = step(holder["state"], fresh, step_key(spec, 0))
        return metrics.loss

    step_s = timed(whole, args.warmup, args.steps)
    stats = jax.devices()[0].memory_stats() or {}
    peak = stats.get("peak_bytes_in_use")
    n_text = sum(x.size for x in jax.tree_util.tree_leaves(text_params))
    n_dit = sum(x.size for x in jax.tree_util.tree_leaves(state.params))
    print(
        f"device={jax.devices()[0].device_kind} batch={args.batch} res={args.resolution} "
        f"tokens={args.tokens} "
        f"precision={args.precision} text_params={n_text / 1e6:.1f}M dit_params={n_dit / 1e6:.1f}M "
        f"text_ms={text_s * 1e3:.1f} vae_ms={vae_s * 1e3:.1f} train_ms={train_s * 1e3:.1f} "
        f"step_ms={step_s * 1e3:.1f} img_s={args.batch / step_s:.1f} "
        + (f"peak_gib={peak / 2**30:.2f}" if peak is not None else "peak_gib=n/a")
    )


if __name__ == "__main__":
    main()
