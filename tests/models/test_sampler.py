"""Euler sampler with CFG (docs/design-space.md §8), against a python-loop reference."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from models.config import ModelConfig
from models.dit import DiT
from models.sampler import euler_sample, guided_velocity, time_grid

Inputs = tuple[jax.Array, jax.Array, jax.Array, jax.Array]


def reference_sample(
    apply: Callable[..., jax.Array],
    variables: Any,
    text: jax.Array,
    mask: jax.Array,
    noise: np.ndarray,
    *,
    steps: int,
    cfg_scale: float | None,
    cfg_rescale: float = 0.0,
    cfg_interval_start: float = 0.0,
    time_shift: float | None = None,
) -> np.ndarray:
    """Plain python Euler loop; `cfg_scale=None` is the unguided sampler."""
    b = noise.shape[0]
    ts = np.linspace(0.0, 1.0, steps + 1)
    if time_shift is not None:
        ts = time_shift * ts / (1 + (time_shift - 1) * ts)
    x = noise.astype(np.float64)
    for i in range(steps):
        t = np.full((b,), ts[i], np.float32)
        v_c = np.asarray(apply(variables, jnp.asarray(x, jnp.float32), t, text, mask, None), np.float64)
        v = v_c
        if cfg_scale is not None:
            null = jnp.ones((b,), bool)
            v_u = np.asarray(apply(variables, jnp.asarray(x, jnp.float32), t, text, mask, null), np.float64)
            if ts[i] >= cfg_interval_start:
                v = v_c + (cfg_scale - 1) * (v_c - v_u)
            std_c = v_c.reshape(b, -1).std(axis=1)[:, None, None, None]
            std_v = v.reshape(b, -1).std(axis=1)[:, None, None, None]
            v = v * (1 - cfg_rescale + cfg_rescale * std_c / (std_v + 1e-8))
        x = x + (ts[i + 1] - ts[i]) * v
    return x


@pytest.fixture(scope="module")
def setup(
    small_config: ModelConfig, make_inputs: Callable[..., Inputs], variables_for: Callable[..., Any]
) -> tuple[DiT, Any, jax.Array, jax.Array, np.ndarray]:
    model = DiT(small_config)
    variables = variables_for(small_config, 11)
    x, _, text, mask = make_inputs(small_config, seed=4)
    noise = np.asarray(jax.random.normal(jax.random.key(9), x.shape))
    return model, variables, text, mask, noise


def test_guided_scan_matches_python_loop(setup: tuple[DiT, Any, jax.Array, jax.Array, np.ndarray]) -> None:
    model, variables, text, mask, noise = setup
    kwargs: dict[str, Any] = {"steps": 3, "cfg_scale": 4.0, "cfg_rescale": 0.7, "cfg_interval_start": 0.3}
    got = euler_sample(
        model.apply,
        variables,
        text,
        mask,
        jax.random.key(0),
        shape=noise.shape,
        noise=jnp.asarray(noise),
        **kwargs,
    )
    want = reference_sample(jax.jit(model.apply), variables, text, mask, noise, **kwargs)
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-4, atol=1e-5)
    unguided = reference_sample(jax.jit(model.apply), variables, text, mask, noise, steps=3, cfg_scale=None)
    assert np.abs(want - unguided).max() > 1e-3  # guidance did something


def test_scale_one_is_the_unguided_sampler(setup: tuple[DiT, Any, jax.Array, jax.Array, np.ndarray]) -> None:
    model, variables, text, mask, noise = setup
    got = euler_sample(
        model.apply,
        variables,
        text,
        mask,
        jax.random.key(0),
        shape=noise.shape,
        steps=3,
        cfg_scale=1.0,
        time_shift=0.3,
        noise=jnp.asarray(noise),
    )
    apply = jax.jit(model.apply)
    want = reference_sample(apply, variables, text, mask, noise, steps=3, cfg_scale=None, time_shift=0.3)
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-4, atol=1e-5)
    # the guided formula at w = 1 gives the same result
    guided_w1 = reference_sample(apply, variables, text, mask, noise, steps=3, cfg_scale=1.0, time_shift=0.3)
    np.testing.assert_allclose(guided_w1, want, rtol=1e-5, atol=1e-6)


def test_noise_comes_from_rng_and_loop_is_one_scan() -> None:
    calls = {"n": 0}

    def fake_apply(params: Any, x: jax.Array, t: jax.Array, text: Any, mask: Any, drop: Any) -> jax.Array:
        calls["n"] += 1
        return params * jnp.ones_like(x)

    shape = (2, 1, 2, 2)
    text, mask = jnp.zeros((2, 1, 1)), jnp.ones((2, 1), bool)
    out = euler_sample(fake_apply, 1.0, text, mask, jax.random.key(5), shape=shape, steps=7, cfg_scale=3.0)
    assert calls["n"] == 1  # traced once: the 7 steps are one lax.scan, not a python loop
    noise = jax.random.normal(jax.random.key(5), shape)
    # constant velocity (v_c = v_u = 1, rescale off) integrates to noise + 1
    np.testing.assert_allclose(np.asarray(out), np.asarray(noise) + 1.0, rtol=1e-5, atol=1e-5)
    euler_sample(fake_apply, 2.0, text, mask, jax.random.key(5), shape=shape, steps=7, cfg_scale=5.0)
    assert calls["n"] == 1  # new params and w reuse the compiled sampler


def test_time_grids() -> None:
    np.testing.assert_allclose(np.asarray(time_grid(4)), [0.0, 0.25, 0.5, 0.75, 1.0])
    shifted = np.asarray(time_grid(4, 0.3))
    u = np.array([0.0, 0.25, 0.5, 0.75, 1.0])
    np.testing.assert_allclose(shifted, 0.3 * u / (1 - 0.7 * u), rtol=1e-6)
    assert shifted[0] == 0.0 and shifted[-1] == pytest.approx(1.0)
    with pytest.raises(ValueError):
        time_grid(0)


def test_guided_velocity_interval_and_rescale() -> None:
    rng = np.random.default_rng(0)
    v_c = jnp.asarray(rng.standard_normal((2, 3, 4, 4)), jnp.float32)
    v_u = jnp.asarray(rng.standard_normal((2, 3, 4, 4)), jnp.float32)
    before = guided_velocity(v_c, v_u, jnp.float32(0.2), 5.0, 0.0, 0.5)
    np.testing.assert_array_equal(np.asarray(before), np.asarray(v_c))  # t < start: unguided
    after = guided_velocity(v_c, v_u, jnp.float32(0.5), 5.0, 0.0, 0.5)
    np.testing.assert_allclose(np.asarray(after), np.asarray(v_c + 4.0 * (v_c - v_u)), rtol=1e-6)
    full = np.asarray(guided_velocity(v_c, v_u, jnp.float32(0.5), 5.0, 1.0, 0.0))
    np.testing.assert_allclose(
        full.reshape(2, -1).std(axis=1), np.asarray(v_c).reshape(2, -1).std(axis=1), rtol=1e-5
    )
