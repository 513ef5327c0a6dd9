"""Rectified-flow training objective (docs/design-space.md §7). Pure functions.

Convention ⚑: t = 0 is noise and t = 1 is data; `x_t = (1−t)·ε + t·x₁`, target `u = x₁ − ε`.
The loss is the unweighted MSE of the velocity over all elements, in float32.

`apply_fn(params, x_t, t, text, mask, drop) -> v` is the model call, e.g. `DiT(config).apply` with
`params` the variables dict `{"params": …}`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp

ApplyFn = Callable[..., Any]


def shift_time(t: jax.Array, shift: float) -> jax.Array:
    """`s·t/(1+(s−1)t)`; shift values 0 and 1 both mean off ⚑ (§7, §8)."""
    if shift in (0.0, 1.0):
        return t
    return shift * t / (1.0 + (shift - 1.0) * t)


def sample_t(
    rng: jax.Array,
    shape: Sequence[int],
    *,
    lognorm: bool = True,
    mean: float = 0.0,
    std: float = 1.0,
    shift: float = 0.0,
) -> jax.Array:
    """Training times: `sigmoid(n)`, `n ~ N(mean, std²)` with `lognorm`, else `U(0, 1)`; then shifted (§7)."""
    shape = tuple(shape)
    if lognorm:
        t = jax.nn.sigmoid(mean + std * jax.random.normal(rng, shape, jnp.float32))
    else:
        t = jax.random.uniform(rng, shape, jnp.float32)
    return shift_time(t, shift)


def _broadcast_time(t: jax.Array, like: jax.Array) -> jax.Array:
    return t.reshape(t.shape + (1,) * (like.ndim - t.ndim)).astype(jnp.float32)


def interpolate(x1: jax.Array, eps: jax.Array, t: jax.Array) -> jax.Array:
    """`x_t = (1−t)·ε + t·x₁`, t of shape (B,) broadcast over the trailing axes (§7)."""
    tb = _broadcast_time(t, x1)
    return (1.0 - tb) * eps.astype(jnp.float32) + tb * x1.astype(jnp.float32)


def velocity_target(x1: jax.Array, eps: jax.Array) -> jax.Array:
    """`u = x₁ − ε` in float32 (§7)."""
    return x1.astype(jnp.float32) - eps.astype(jnp.float32)


#: Floor of `1 − t` when an x-prediction is mapped to a velocity (§7).
X_PREDICTION_FLOOR = 0.05


def x_to_velocity(x: jax.Array, x_t: jax.Array, t: jax.Array) -> jax.Array:
    """An estimate of the clean sample mapped to a velocity: `(x − x_t)/max(1 − t, 0.05)` (§7)."""
    denom = jnp.maximum(1.0 - _broadcast_time(t, x_t).astype(jnp.float32), X_PREDICTION_FLOOR)
    return (x.astype(jnp.float32) - x_t.astype(jnp.float32)) / denom


def velocity_model(apply_fn: ApplyFn, prediction: str = "velocity") -> ApplyFn:
    """`apply_fn` as a velocity model: itself for `prediction="velocity"`; for `"x"` (the network
    predicts x₁) its output mapped through :func:`x_to_velocity`. The wrapper is cached per
    `apply_fn`, so jitted samplers keyed on it compile once."""
    if prediction == "velocity":
        return apply_fn
    if prediction != "x":
        raise ValueError(f"prediction must be 'velocity' or 'x', got {prediction!r}")
    return _x_model(apply_fn)


@functools.cache
def _x_model(apply_fn: ApplyFn) -> ApplyFn:
    def apply(params: Any, x_t: jax.Array, t: jax.Array, *args: Any, **kwargs: Any) -> jax.Array:
        return x_to_velocity(apply_fn(params, x_t, t, *args, **kwargs), x_t, t)

    return apply


def velocity_mse(
    apply_fn: ApplyFn,
    params: Any,
    x1: jax.Array,
    text: Any,
    mask: Any,
    t: jax.Array,
    eps: jax.Array,
    drop: Any = None,
    prediction: str = "velocity",
) -> jax.Array:
    """The loss for given times, noise and dropout decisions, in float32 (§7).

    `prediction="velocity"`: mean((v − (x₁−ε))²). `"x"` (the network predicts x₁): prediction and
    target are both mapped to velocities by :func:`x_to_velocity` and compared the same way."""
    x_t = interpolate(x1, eps, t)
    out = apply_fn(params, x_t, t, text, mask, drop)
    if prediction == "x":
        v, target = x_to_velocity(out, x_t, t), x_to_velocity(x1, x_t, t)
    else:
        v, target = out.astype(jnp.float32), velocity_target(x1, eps)
    return jnp.mean(jnp.square(v - target))


def draw_caption_dropout(rng: jax.Array, batch: int, drop_prob: float | Sequence[float]) -> Any:
    """Per-sample caption-dropout decisions (§4.3).

    A scalar probability gives one (B,) bool array — one shared decision for every text encoder
    (None when the probability is 0). A sequence gives a tuple of independent (B,) arrays, one per
    encoder (entries None where the probability is 0).
    """
    if isinstance(drop_prob, (int, float)):
        return jax.random.bernoulli(rng, drop_prob, (batch,)) if drop_prob > 0 else None
    keys = jax.random.split(rng, len(drop_prob))
    return tuple(
        jax.random.bernoulli(k, p, (batch,)) if p > 0 else None for k, p in zip(keys, drop_prob, strict=True)
    )


def velocity_loss(
    apply_fn: ApplyFn,
    params: Any,
    x1: jax.Array,
    text: Any,
    mask: Any,
    rng: jax.Array,
    *,
    drop_prob: float | Sequence[float] = 0.1,
    lognorm: bool = True,
    lognorm_mean: float = 0.0,
    lognorm_std: float = 1.0,
    train_shift: float = 0.0,
) -> jax.Array:
    """Scalar float32 rectified-flow loss for clean latents `x1` (B, C, h, w) (§7, §4.3).

    Draws t (logit-normal, optionally shifted), ε ~ N(0, I) and per-sample caption dropout with
    probability `drop_prob` (passed to the model as `drop`: null caption, mask unchanged ⚑). With
    several text encoders, `text`/`mask` are tuples and `drop_prob` may be a per-encoder list
    (independent drops) or a scalar (one shared decision; see `draw_caption_dropout`).
    """
    b = x1.shape[0]
    t_rng, eps_rng, drop_rng = jax.random.split(rng, 3)
    t = sample_t(t_rng, (b,), lognorm=lognorm, mean=lognorm_mean, std=lognorm_std, shift=train_shift)
    eps = jax.random.normal(eps_rng, x1.shape, jnp.float32)
    drop = draw_caption_dropout(drop_rng, b, drop_prob)
    return velocity_mse(apply_fn, params, x1, text, mask, t, eps, drop)
