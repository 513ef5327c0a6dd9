"""End-to-end learning check: the tiny preset memorises a fixed batch (docs/design-space.md §7)."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import optax

from models.dit import DiT, init_variables
from models.presets import make_config
from models.rectified_flow import sample_t, velocity_mse


def test_tiny_model_overfits_a_fixed_batch() -> None:
    config = make_config("tiny", in_channels=3, latent_size=16, resolution=16, text_dim=32, text_len=8)
    model = DiT(config)
    keys = jax.random.split(jax.random.key(0), 5)
    batch = 8
    images = jax.random.uniform(keys[0], (batch, 3, 16, 16), minval=-1.0, maxval=1.0)
    text = jax.random.normal(keys[1], (batch, 8, 32))
    mask = jnp.arange(8)[None, :] < jnp.array([8, 3, 5, 8, 1, 6, 7, 2])[:, None]
    t = sample_t(keys[2], (batch,))  # fixed times and noise: a memorisation task
    eps = jax.random.normal(keys[3], images.shape)

    variables = init_variables(config, keys[4])
    optimizer = optax.adam(1e-3)
    opt_state = optimizer.init(variables)

    def loss_fn(v: Any) -> jax.Array:
        return velocity_mse(model.apply, v, images, text, mask, t, eps)

    @jax.jit
    def step(v: Any, state: Any) -> tuple[Any, Any, jax.Array]:
        loss, grads = jax.value_and_grad(loss_fn)(v)
        updates, state = optimizer.update(grads, state, v)
        return optax.apply_updates(v, updates), state, loss

    first = None
    loss = jnp.inf
    for _ in range(300):
        variables, opt_state, loss = step(variables, opt_state)
        first = float(loss) if first is None else first
        if float(loss) < first / 20:
            break
    final = float(loss_fn(variables))
    assert first is not None and first > 1.0
    assert final <= first / 10, f"loss {first:.3f} -> {final:.3f}"
