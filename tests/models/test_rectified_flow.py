"""Rectified-flow objective (docs/design-space.md §7)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from models.rectified_flow import (
    interpolate,
    sample_t,
    shift_time,
    velocity_loss,
    velocity_mse,
    velocity_target,
)


def test_interpolation_runs_from_noise_to_data() -> None:
    k1, k2 = jax.random.split(jax.random.key(0))
    x1 = jax.random.normal(k1, (3, 2, 4, 4))
    eps = jax.random.normal(k2, (3, 2, 4, 4))
    xt = interpolate(x1, eps, jnp.array([0.0, 1.0, 0.25]))
    np.testing.assert_allclose(xt[0], eps[0])  # t = 0 is noise ⚑
    np.testing.assert_allclose(xt[1], x1[1])  # t = 1 is data
    np.testing.assert_allclose(xt[2], 0.75 * eps[2] + 0.25 * x1[2], rtol=1e-6)
    np.testing.assert_allclose(velocity_target(x1, eps), x1 - eps)


def test_sample_t_distributions_and_shift() -> None:
    key = jax.random.key(1)
    t = np.asarray(sample_t(key, (20000,)))
    assert t.dtype == np.float32 and t.min() > 0.0 and t.max() < 1.0
    assert abs(np.median(t) - 0.5) < 0.02  # sigmoid(N(0, 1))
    logit = np.log(t / (1 - t))
    assert abs(logit.std() - 1.0) < 0.03
    shifted = np.asarray(sample_t(key, (20000,), shift=0.3))
    np.testing.assert_allclose(shifted, 0.3 * t / (1 + (0.3 - 1) * t), rtol=1e-5)
    assert shifted.mean() < t.mean() - 0.1  # s = 0.3 pushes t toward noise
    for off in (0.0, 1.0):  # both mean "off" ⚑
        np.testing.assert_array_equal(np.asarray(sample_t(key, (100,), shift=off)), t[:100])
    uniform = np.asarray(sample_t(key, (20000,), lognorm=False))
    assert abs(uniform.mean() - 0.5) < 0.01 and abs(uniform.std() - 12**-0.5) < 0.01
    mean_shifted = np.asarray(sample_t(key, (20000,), mean=1.0, std=0.5))
    assert abs(np.median(np.log(mean_shifted / (1 - mean_shifted))) - 1.0) < 0.02
    assert float(shift_time(jnp.float32(0.5), 3.0)) == pytest.approx(0.75)


def _oracle(x1: jax.Array, eps: jax.Array) -> Callable[..., jax.Array]:
    """A "model" whose prediction is `params · (x₁ − ε)`: exact for params = 1."""

    def apply_fn(
        params: Any, xt: jax.Array, t: jax.Array, text: jax.Array, mask: jax.Array, drop: Any
    ) -> jax.Array:
        return (x1 - eps) * params

    return apply_fn


def test_velocity_mse_is_zero_for_the_exact_velocity_and_mse_otherwise() -> None:
    k1, k2 = jax.random.split(jax.random.key(2))
    x1 = jax.random.normal(k1, (2, 3, 4, 4))
    eps = jax.random.normal(k2, (2, 3, 4, 4))
    apply_fn = _oracle(x1, eps)
    text, mask, t = jnp.zeros((2, 1, 1)), jnp.ones((2, 1), bool), jnp.array([0.2, 0.7])
    assert float(velocity_mse(apply_fn, 1.0, x1, text, mask, t, eps)) == 0.0
    expected = float(jnp.mean((0.5 * (x1 - eps) - (x1 - eps)) ** 2))
    loss = velocity_mse(apply_fn, 0.5, x1, text, mask, t, eps)
    assert loss.dtype == jnp.float32 and loss.shape == ()
    assert float(loss) == pytest.approx(expected, rel=1e-6)


def test_velocity_loss_draws_dropout_with_the_given_probability() -> None:
    x1 = jnp.ones((4000, 1, 1, 1))
    text, mask = jnp.zeros((4000, 1, 1)), jnp.ones((4000, 1), bool)
    seen: dict[str, Any] = {}

    def apply_fn(
        params: Any, xt: jax.Array, t: jax.Array, text: jax.Array, mask: jax.Array, drop: Any
    ) -> jax.Array:
        seen["drop"], seen["t"] = drop, t
        return jnp.zeros_like(xt)

    loss = velocity_loss(apply_fn, None, x1, text, mask, jax.random.key(3), drop_prob=0.1)
    assert abs(float(jnp.mean(seen["drop"])) - 0.1) < 0.02
    assert float(loss) == pytest.approx(2.0, rel=0.1)  # E[(1 − ε)²] = 2
    velocity_loss(apply_fn, None, x1, text, mask, jax.random.key(3), drop_prob=0.0, train_shift=0.3)
    assert seen["drop"] is None
    assert float(jnp.median(seen["t"])) < 0.3  # shifted toward noise
