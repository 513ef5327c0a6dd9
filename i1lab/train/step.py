"""The jitted training step: loss and gradients (with micro-batching), optimizer update, EMA.

The step's randomness (timesteps, noise, caption dropout) is drawn for the whole batch first, exactly as
:func:`models.rectified_flow.velocity_loss` draws it, and only then split into ``grad_accum``
micro-batches. Each micro-batch loss is a mean over equally many elements, so the mean of the
micro-batch losses and gradients is the full batch's: accumulation changes memory, not the result
(up to floating-point summation order).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from models.dit import DiT
from models.rectified_flow import draw_caption_dropout, sample_t, velocity_mse


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
    finite: jax.Array  # bool: loss and gradient norm are finite (checked by the loop every step)


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
    drop_prob: float | tuple[float, ...],
    lognorm: bool,
    lognorm_mean: float,
    lognorm_std: float,
    train_shift: float,
    grad_accum: int,
    prediction: str = "velocity",
    jit: bool = True,
) -> Callable[[TrainState, dict[str, jax.Array], jax.Array], tuple[TrainState, StepMetrics]]:
    """A pure ``(state, batch, rng) -> (state, metrics)`` function, jitted (state donated)."""

    def loss_fn(params: Any, mb: dict[str, Any]) -> jax.Array:
        return velocity_mse(
            model.apply,
            {"params": params},
            mb["latents"],
            mb["text"],
            mb["mask"],
            mb["t"],
            mb["eps"],
            mb.get("drop"),
            prediction,
        )

    grad_fn = jax.value_and_grad(loss_fn)

    def step(
        state: TrainState, batch: dict[str, jax.Array], rng: jax.Array
    ) -> tuple[TrainState, StepMetrics]:
        x1 = batch["latents"]
        b = x1.shape[0]
        # The same draws as models.rectified_flow.velocity_loss, for the whole batch.
        t_rng, eps_rng, drop_rng = jax.random.split(rng, 3)
        full: dict[str, Any] = {
            **batch,
            "t": sample_t(
                t_rng, (b,), lognorm=lognorm, mean=lognorm_mean, std=lognorm_std, shift=train_shift
            ),
            "eps": jax.random.normal(eps_rng, x1.shape, jnp.float32),
        }
        drop = draw_caption_dropout(drop_rng, b, drop_prob)
        if drop is not None:
            full["drop"] = drop
        if grad_accum == 1:
            loss, grads = grad_fn(state.params, full)
        else:
            micro = jax.tree_util.tree_map(lambda x: x.reshape(grad_accum, -1, *x.shape[1:]), full)

            def body(carry: Any, mb: Any) -> tuple[Any, None]:
                acc_loss, acc_grads = carry
                loss_i, grads_i = grad_fn(state.params, mb)
                return (acc_loss + loss_i, jax.tree_util.tree_map(jnp.add, acc_grads, grads_i)), None

            zeros = jax.tree_util.tree_map(jnp.zeros_like, state.params)
            (loss, grads), _ = jax.lax.scan(body, (jnp.float32(0.0), zeros), micro)
            loss = loss / grad_accum
            grads = jax.tree_util.tree_map(lambda g: g / grad_accum, grads)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        ema = jax.tree_util.tree_map(lambda e, p: e * ema_decay + p * (1.0 - ema_decay), state.ema, params)
        grad_norm = _norm(grads, frozen)
        metrics = StepMetrics(
            loss,
            grad_norm,
            _norm(params, frozen),
            _norm(updates, frozen),
            jnp.isfinite(loss) & jnp.isfinite(grad_norm),
        )
        return TrainState(state.step + 1, params, ema, opt_state), metrics

    return jax.jit(step, donate_argnums=(0,)) if jit else step
