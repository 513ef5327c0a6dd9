"""The optimizer of a run (docs/design-space.md §9): clip, Adam, -lr; frozen leaves get zero updates."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import optax

from i1lab.spec.run import TrainSpec


def frozen_mask(params: Any) -> Any:
    """True for parameters that never change (the sinusoidal ``pos_embed`` table)."""
    flat = jax.tree_util.tree_flatten_with_path(params)[0]
    names = {
        jax.tree_util.keystr(path): any(getattr(k, "key", None) == "pos_embed" for k in path)
        for path, _ in flat
    }
    return jax.tree_util.tree_map_with_path(lambda path, _: names[jax.tree_util.keystr(path)], params)


def make_optimizer(train: TrainSpec, params: Any) -> optax.GradientTransformation:
    frozen = frozen_mask(params)
    trainable = jax.tree_util.tree_map(lambda f: not f, frozen)
    mu_dtype = jnp.bfloat16 if train.mu_dtype == "bfloat16" else jnp.float32
    chain = []
    if train.grad_clip > 0:
        # Clip on the trainable leaves only: frozen gradients do not count towards the global norm.
        chain.append(optax.masked(optax.clip_by_global_norm(train.grad_clip), trainable))
    chain.append(optax.scale_by_adam(b1=train.b1, b2=train.b2, eps=train.eps, mu_dtype=mu_dtype))
    if train.weight_decay > 0:
        chain.append(optax.add_decayed_weights(train.weight_decay))
    chain.append(optax.scale(-train.lr))
    tx = optax.chain(*chain)
    return optax.multi_transform(
        {"train": tx, "frozen": optax.set_to_zero()},
        jax.tree_util.tree_map(lambda f: "frozen" if f else "train", frozen),
    )
