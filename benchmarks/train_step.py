"""Time the training step of an i1 model and print one line of figures (docs/design-space.md §9, §13).

Usage (CPU):  ``python benchmarks/train_step.py --size small --batch 16 --resolution 32``
Usage (GPU):  ``python benchmarks/train_step.py --size DiT-XL --vae flux2 --resolution 256 --batch 32
              --dtype bfloat16 --text-dim 2304 --text-len 256``
The final i1 recipe: ``--size i1`` (dual_stream, DiT-XL_2016, transformer adapter ×2, AdaLN off).

The step is the real one: rectified-flow loss (logit-normal t, caption dropout 0.1), gradients and
an Adam update (b2 0.95), jitted, with parameters, optimizer state and batch placed on a
`data × fsdp × model` mesh over every visible device (`models.sharding`; `--fsdp`, `--model`).
Latents and text features are random inputs of the right shapes: `--vae identity` is pixel space
(3 channels, latent = resolution), `--vae flux2` the FLUX.2 latent (32 channels, resolution/8);
the frozen text encoder and the VAE are not part of the step.

Printed figures (one line, `key=value`):
- `step_ms`: median wall time of `--steps` timed steps after `--warmup` untimed ones (the first of
  which compiles); `img_s`: batch / step time.
- `model_tflop_step`: model FLOPs per step from `models.flops` — every matmul at 2 FLOPs per
  multiply-add (dense layers per token, `4·Nq·Nk·H` per attention), forward + backward = 3 ×
  forward; norms, softmax, elementwise ops and the optimizer are not counted.
- `mfu`: achieved model FLOP/s ÷ (peak FLOP/s per device × devices). Peaks (dense bf16, used for
  every dtype): H100 and H200 989 TFLOP/s, TPU v6e 918 TFLOP/s. On CPU the peak is *measured*: the
  best float32 throughput of a jitted 1024³ matmul on this machine (`peak_source=measured`);
  `--peak-tflops` overrides any of them.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from models.dit import DiT, dummy_inputs
from models.flops import train_flops_per_step
from models.params import count_params
from models.presets import PRESETS, i1_config, make_config
from models.rectified_flow import velocity_loss
from models.sharding import batch_shardings, make_mesh, shard_batch, sharded_init, tree_shardings

#: Dense bf16 peak FLOP/s per chip, matched against `device_kind` (lower case, first match wins).
PEAK_FLOPS: tuple[tuple[str, float], ...] = (
    ("h200", 989e12),
    ("h100", 989e12),
    ("tpu v6", 918e12),  # v6e reports "TPU v6 lite"
    ("v6e", 918e12),
)
VAES = {"identity": (3, 1), "flux2": (32, 8)}


def measured_cpu_peak(size: int = 1024, repeats: int = 10) -> float:
    """Best float32 FLOP/s of a jitted `size`³ matmul on the default device."""
    a = jnp.ones((size, size), jnp.float32)
    matmul = jax.jit(lambda x, y: x @ y)
    matmul(a, a).block_until_ready()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        matmul(a, a).block_until_ready()
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best


def peak_flops(device_kind: str, override_tflops: float | None) -> tuple[float, str]:
    """(peak FLOP/s per device, where it came from)."""
    if override_tflops is not None:
        return override_tflops * 1e12, "given"
    kind = device_kind.lower()
    for key, value in PEAK_FLOPS:
        if key in kind:
            return value, "table"
    return measured_cpu_peak(), "measured"


def build_config(args: argparse.Namespace) -> Any:
    channels, down = VAES[args.vae]
    sizes: dict[str, Any] = {
        "in_channels": channels,
        "resolution": args.resolution,
        "latent_size": args.resolution // down,
        "text_dim": args.text_dim,
        "text_len": args.text_len,
        "dtype": args.dtype,
    }
    if args.size == "i1":
        resolution = sizes.pop("resolution")
        return i1_config(resolution, **sizes)
    return make_config(args.size, backbone=args.backbone, **sizes)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size", default="small", choices=[*sorted(PRESETS), "i1"])
    backbones = ["cross_attn", "single_stream", "dual_stream"]
    parser.add_argument("--backbone", default="cross_attn", choices=backbones, help="ignored by --size i1")
    parser.add_argument("--batch", type=int, default=16, help="global batch size")
    parser.add_argument("--resolution", type=int, default=32, help="image resolution in pixels")
    parser.add_argument("--vae", default="identity", choices=sorted(VAES))
    parser.add_argument("--text-len", type=int, default=8)
    parser.add_argument("--text-dim", type=int, default=32)
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--fsdp", type=int, default=1)
    parser.add_argument("--model", type=int, default=1)
    parser.add_argument("--peak-tflops", type=float, default=None, help="peak TFLOP/s per device")
    args = parser.parse_args()

    config = build_config(args)
    mesh = make_mesh(fsdp=args.fsdp, model=args.model)
    devices = mesh.devices.size
    split = mesh.shape["data"] * mesh.shape["fsdp"]
    if args.batch % split:
        parser.error(f"--batch {args.batch} must be divisible by data×fsdp = {split}")
    model = DiT(config)
    keys = jax.random.split(jax.random.key(0), 4)

    began = time.perf_counter()
    params = sharded_init(lambda k: model.init(k, *dummy_inputs(config))["params"], mesh, keys[0])
    optimizer = optax.adam(1e-4, b2=0.95)
    opt_state = sharded_init(optimizer.init, mesh, params)
    jax.block_until_ready(opt_state)
    print(f"# initialised in {time.perf_counter() - began:.1f} s", file=sys.stderr, flush=True)
    rng = np.random.default_rng(0)
    latent = (args.batch, config.in_channels, config.latent_size, config.latent_size)
    batch = {
        "x": rng.standard_normal(latent).astype(np.float32),
        "text": rng.standard_normal((args.batch, config.text_len, config.text_dim)).astype(np.float32),
        "mask": np.arange(config.text_len)[None] < rng.integers(1, config.text_len + 1, (args.batch, 1)),
    }
    batch = shard_batch(batch, mesh)

    def step(p: Any, state: Any, b: Any, key: jax.Array) -> tuple[Any, Any, jax.Array]:
        def loss_fn(q: Any) -> jax.Array:
            return velocity_loss(model.apply, {"params": q}, b["x"], b["text"], b["mask"], key, drop_prob=0.1)

        loss, grads = jax.value_and_grad(loss_fn)(p)
        updates, state = optimizer.update(grads, state, p)
        return optax.apply_updates(p, updates), state, loss

    p_shard, o_shard = tree_shardings(params, mesh), tree_shardings(opt_state, mesh)
    train_step = jax.jit(
        step,
        in_shardings=(p_shard, o_shard, batch_shardings(batch, mesh), None),
        out_shardings=(p_shard, o_shard, None),
        donate_argnums=(0, 1),
    )

    compile_s = 0.0
    start = time.perf_counter()
    for i in range(max(args.warmup, 1)):
        params, opt_state, loss = train_step(params, opt_state, batch, jax.random.fold_in(keys[1], i))
        loss.block_until_ready()
        if i == 0:
            compile_s = time.perf_counter() - start
            print(f"# first step (compile) {compile_s:.1f} s", file=sys.stderr, flush=True)
    times = []
    for i in range(args.steps):
        start = time.perf_counter()
        params, opt_state, loss = train_step(params, opt_state, batch, jax.random.fold_in(keys[2], i))
        loss.block_until_ready()
        times.append(time.perf_counter() - start)

    step_s = statistics.median(times)
    flops = train_flops_per_step(config, args.batch)
    kind = jax.devices()[0].device_kind
    peak, source = peak_flops(kind, args.peak_tflops)
    mfu = flops / step_s / (peak * devices)
    print(
        f"preset={args.size} backbone={config.backbone} params={count_params(config) / 1e6:.2f}M "
        f"batch={args.batch} resolution={args.resolution} latent={config.in_channels}x{config.latent_size}"
        f"x{config.latent_size} dtype={args.dtype} devices={devices}x'{kind}' "
        f"mesh={mesh.shape['data']}x{mesh.shape['fsdp']}x{mesh.shape['model']} "
        f"step_ms={step_s * 1e3:.1f} img_s={args.batch / step_s:.1f} "
        f"model_tflop_step={flops / 1e12:.4g} achieved_tflop_s={flops / step_s / 1e12:.3g} "
        f"peak_tflop_s={peak / 1e12:.4g} peak_source={source} mfu={mfu:.2%} "
        f"compile_s={compile_s:.1f} loss={float(loss):.4f}"
    )


if __name__ == "__main__":
    main()
