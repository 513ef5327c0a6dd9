"""The jitted training step: loss and gradients (with micro-batching), optimizer update, EMA."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from models.dit import DiT
from models.rectified_flow import velocity_loss


class TrainState(NamedTuple):
    step: jax.Array
    params: Any
    ema: Any
    opt_state: Any


class StepMetrics(NamedTuple):
    loss: jax.Array
    grad_norm: jax.Array
    param_norm: jax.Array
    update_norm: jax.Array


def _norm(tree: Any, mask: Any) -> jax.Array:
    leaves = [
        jnp.sum(jnp.square(x.astype(jnp.float32)))
        for x, m in zip(jax.tree_util.tree_leaves(tree), jax.tree_util.tree_leaves(mask), strict=True)
        if not m
    ]
    return jnp.sqrt(sum(leaves, jnp.float32(0.0)))


def make_train_step(
    model: DiT,
    tx: optax.GradientTransformation,
    frozen: Any,
    *,
    ema_decay: float,
    drop_prob: float,
    lognorm: bool,
    lognorm_mean: float,
    lognorm_std: float,
    train_shift: float,
    grad_accum: int,
) -> Callable[[TrainState, dict[str, jax.Array], jax.Array], tuple[TrainState, StepMetrics]]:
    """A pure ``(state, batch, rng) -> (state, metrics)`` function, jitted."""

    def loss_fn(params: Any, batch: dict[str, jax.Array], rng: jax.Array) -> jax.Array:
        return velocity_loss(
            model.apply,
            {"params": params},
            batch["latents"],
            batch["text"],
            batch["mask"],
            rng,
            drop_prob=drop_prob,
            lognorm=lognorm,
            lognorm_mean=lognorm_mean,
            lognorm_std=lognorm_std,
            train_shift=train_shift,
        )

    grad_fn = jax.value_and_grad(loss_fn)

    def step(
        state: TrainState, batch: dict[str, jax.Array], rng: jax.Array
    ) -> tuple[TrainState, StepMetrics]:
        if grad_accum == 1:
            loss, grads = grad_fn(state.params, batch, rng)
        else:
            micro = jax.tree_util.tree_map(lambda x: x.reshape(grad_accum, -1, *x.shape[1:]), batch)
            rngs = jax.random.split(rng, grad_accum)

            def body(carry: Any, xs: Any) -> tuple[Any, None]:
                acc_loss, acc_grads = carry
                mb, r = xs
                loss_i, grads_i = grad_fn(state.params, mb, r)
                return (acc_loss + loss_i, jax.tree_util.tree_map(jnp.add, acc_grads, grads_i)), None

            zeros = jax.tree_util.tree_map(jnp.zeros_like, state.params)
            (loss, grads), _ = jax.lax.scan(body, (jnp.float32(0.0), zeros), (micro, rngs))
            loss = loss / grad_accum
            grads = jax.tree_util.tree_map(lambda g: g / grad_accum, grads)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        ema = jax.tree_util.tree_map(lambda e, p: e * ema_decay + p * (1.0 - ema_decay), state.ema, params)
        metrics = StepMetrics(loss, _norm(grads, frozen), _norm(params, frozen), _norm(updates, frozen))
        return TrainState(state.step + 1, params, ema, opt_state), metrics

    return jax.jit(step, donate_argnums=(0,))
