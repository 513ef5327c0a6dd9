"""Euler sampler with classifier-free guidance (docs/design-space.md §8).

Euler from t = 0 (noise) to t = 1 (data) on a uniform grid (the JAX reference) or the shifted grid
`s·t/(1+(s−1)t)` (the PyTorch reference, s = 0.3; here computed in float32, not bf16).

CFG doubles the batch as [cond ; uncond]; uncond is the null caption (`drop=True`) with the **cond
mask** ⚑. `v = v_c + 𝟙[t ≥ start]·(w−1)·(v_c − v_u)`, then the rescale
`v ← v·(1 − φ + φ·std(v_c)/(std(v)+1e-8))` with per-sample population std ⚑.

The whole integration is one `lax.scan` inside one `jax.jit`. The compiled sampler is cached per
(apply_fn, shape, steps, guided): bind the model once (e.g. `model = DiT(cfg); model.apply`) and
reuse it. w, φ, the interval start and the grid are traced, so changing them does not recompile.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp

from models.rectified_flow import shift_time

ApplyFn = Callable[..., Any]

RESCALE_EPS = 1e-8


def time_grid(steps: int, time_shift: float | None = None) -> jax.Array:
    """The `steps + 1` float32 times from 0 to 1: uniform, or shifted by `time_shift` (§8)."""
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    grid = jnp.linspace(0.0, 1.0, steps + 1, dtype=jnp.float32)
    return grid if time_shift is None else shift_time(grid, float(time_shift))


def _per_sample_std(v: jax.Array) -> jax.Array:
    """Population std over every non-batch axis, shaped to broadcast against v."""
    axes = tuple(range(1, v.ndim))
    return jnp.std(v, axis=axes, keepdims=True)


def guided_velocity(
    v_cond: jax.Array,
    v_uncond: jax.Array,
    t: jax.Array,
    cfg_scale: jax.Array | float,
    cfg_rescale: jax.Array | float = 0.0,
    cfg_interval_start: jax.Array | float = 0.0,
) -> jax.Array:
    """CFG with interval and rescale (§8): `v_c + 𝟙[t ≥ start](w−1)(v_c − v_u)`, then rescale by φ."""
    weight = jnp.where(t >= cfg_interval_start, cfg_scale - 1.0, 0.0)
    v = v_cond + weight * (v_cond - v_uncond)
    factor = 1.0 - cfg_rescale + cfg_rescale * _per_sample_std(v_cond) / (_per_sample_std(v) + RESCALE_EPS)
    return v * factor


@partial(jax.jit, static_argnames=("apply_fn", "steps", "guided"))
def _euler_scan(
    apply_fn: ApplyFn,
    params: Any,
    text: Any,
    mask: Any,
    noise: jax.Array,
    grid: jax.Array,
    cfg_scale: jax.Array,
    cfg_rescale: jax.Array,
    cfg_interval_start: jax.Array,
    *,
    steps: int,
    guided: bool,
) -> jax.Array:
    b = noise.shape[0]
    mask = jax.tree_util.tree_map(lambda m: m.astype(bool), mask)
    if guided:
        doubled = lambda a: jnp.concatenate([a, a], axis=0)  # noqa: E731
        text_in = jax.tree_util.tree_map(doubled, text)
        mask_in = jax.tree_util.tree_map(doubled, mask)  # uncond keeps the cond mask ⚑
        drop_in = jnp.concatenate([jnp.zeros((b,), bool), jnp.ones((b,), bool)])

    def velocity(x: jax.Array, t: jax.Array) -> jax.Array:
        tb = jnp.full((b,), t, jnp.float32)
        if not guided:
            return apply_fn(params, x, tb, text, mask, None).astype(jnp.float32)
        both = apply_fn(
            params,
            jnp.concatenate([x, x], axis=0),
            jnp.concatenate([tb, tb], axis=0),
            text_in,
            mask_in,
            drop_in,
        ).astype(jnp.float32)
        return guided_velocity(both[:b], both[b:], t, cfg_scale, cfg_rescale, cfg_interval_start)

    def step(x: jax.Array, times: tuple[jax.Array, jax.Array]) -> tuple[jax.Array, None]:
        t0, t1 = times
        return x + (t1 - t0) * velocity(x, t0), None

    x, _ = jax.lax.scan(step, noise.astype(jnp.float32), (grid[:-1], grid[1:]), length=steps)
    return x


def euler_sample(
    apply_fn: ApplyFn,
    params: Any,
    text: Any,
    mask: Any,
    rng: jax.Array,
    *,
    shape: Sequence[int],
    steps: int,
    cfg_scale: float,
    cfg_rescale: float = 0.0,
    cfg_interval_start: float = 0.0,
    time_shift: float | None = None,
    noise: jax.Array | None = None,
) -> jax.Array:
    """Sample latents of `shape` (B, C, h, w) by Euler integration from t = 0 to 1 (§8).

    Args:
        apply_fn: `apply_fn(params, x, t, text, mask, drop) -> v`, e.g. `DiT(cfg).apply`.
        params: what `apply_fn` takes (the EMA variables for evaluation; §8).
        text, mask: (B, L, D) features and (B, L) mask of the prompts (tuples of them with several
            text encoders; uncond drops every encoder's caption).
        rng: key of the initial noise N(0, I) (ignored when `noise` is given).
        steps: number of Euler steps.
        cfg_scale: guidance weight w; w = 1 runs the unguided model once per step (no uncond pass,
            so `cfg_rescale` has nothing to rescale: v = v_c).
        cfg_rescale: φ; cfg_interval_start: guidance applies where t ≥ start.
        time_shift: None for the uniform grid, s for the shifted grid `s·t/(1+(s−1)t)`.
        noise: optional explicit initial noise of `shape`.

    Returns: (B, C, h, w) float32 latents at t = 1.
    """
    shape = tuple(int(s) for s in shape)
    if noise is None:
        noise = jax.random.normal(rng, shape, jnp.float32)
    elif tuple(noise.shape) != shape:
        raise ValueError(f"noise has shape {noise.shape}, expected {shape}")
    return _euler_scan(
        apply_fn,
        params,
        jax.tree_util.tree_map(jnp.asarray, text),
        jax.tree_util.tree_map(jnp.asarray, mask),
        noise,
        time_grid(steps, time_shift),
        jnp.float32(cfg_scale),
        jnp.float32(cfg_rescale),
        jnp.float32(cfg_interval_start),
        steps=steps,
        guided=float(cfg_scale) != 1.0,
    )
