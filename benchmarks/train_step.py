"""Time one training step of an i1 model (forward + backward + Adam), e.g. the `tiny` CPU preset.

Usage: ``python benchmarks/train_step.py --size tiny --batch 16 --image-size 16 --steps 50``

Pixel space (3 channels, IdentityVAE-like latents), random captions of `--text-len` tokens of width
`--text-dim`, caption dropout 0.1, logit-normal t. Prints compile time and per-step statistics.
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

import jax
import jax.numpy as jnp
import optax

from models.dit import DiT, init_variables
from models.params import count_params
from models.presets import PRESETS, make_config
from models.rectified_flow import velocity_loss


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", default="tiny", choices=sorted(PRESETS))
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--image-size", type=int, default=16)
    parser.add_argument("--channels", type=int, default=3)
    parser.add_argument("--text-len", type=int, default=8)
    parser.add_argument("--text-dim", type=int, default=32)
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    parser.add_argument("--steps", type=int, default=50)
    args = parser.parse_args()

    config = make_config(
        args.size,
        in_channels=args.channels,
        latent_size=args.image_size,
        resolution=args.image_size,
        text_dim=args.text_dim,
        text_len=args.text_len,
        dtype=args.dtype,
    )
    model = DiT(config)
    keys = jax.random.split(jax.random.key(0), 4)
    variables = init_variables(config, keys[0])
    optimizer = optax.adam(1e-4, b2=0.95)
    opt_state = optimizer.init(variables)
    x1 = jax.random.normal(keys[1], (args.batch, args.channels, args.image_size, args.image_size))
    text = jax.random.normal(keys[2], (args.batch, args.text_len, args.text_dim))
    mask = jnp.ones((args.batch, args.text_len), bool)

    @jax.jit
    def step(v: Any, state: Any, rng: jax.Array) -> tuple[Any, Any, jax.Array]:
        def loss_fn(p: Any) -> jax.Array:
            return velocity_loss(model.apply, p, x1, text, mask, rng, drop_prob=0.1)

        loss, grads = jax.value_and_grad(loss_fn)(v)
        updates, state = optimizer.update(grads, state, v)
        return optax.apply_updates(v, updates), state, loss

    start = time.perf_counter()
    variables, opt_state, loss = step(variables, opt_state, keys[3])
    loss.block_until_ready()
    compile_s = time.perf_counter() - start

    times = []
    for i in range(args.steps):
        start = time.perf_counter()
        variables, opt_state, loss = step(variables, opt_state, jax.random.fold_in(keys[3], i))
        loss.block_until_ready()
        times.append(time.perf_counter() - start)

    print(f"device={jax.devices()[0].device_kind} size={args.size} params={count_params(config):,}")
    print(f"batch={args.batch} image={args.image_size}x{args.image_size}x{args.channels} dtype={args.dtype}")
    print(f"compile+first step: {compile_s:.2f} s")
    print(
        f"per step over {args.steps}: median {statistics.median(times) * 1e3:.1f} ms, "
        f"mean {statistics.mean(times) * 1e3:.1f} ms, min {min(times) * 1e3:.1f} ms; "
        f"final loss {float(loss):.4f}"
    )


if __name__ == "__main__":
    main()
