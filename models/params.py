"""Parameter shapes and counts without allocating weights (docs/design-space.md §6).

Counts include every leaf of the parameter tree: the frozen `pos_embed`, the null caption and any
dead weights (e.g. the timestep embedder when AdaLN is off), as the §6 calibration counts do.
"""

from __future__ import annotations

import math
from typing import Any

import jax

from models.config import ModelConfig
from models.dit import DiT, dummy_inputs


def param_shapes(config: ModelConfig) -> Any:
    """The parameter tree of `DiT(config)` as `jax.ShapeDtypeStruct` leaves (via `jax.eval_shape`)."""
    model = DiT(config)
    variables = jax.eval_shape(model.init, jax.random.key(0), *dummy_inputs(config))
    return variables["params"]


def count_params(config: ModelConfig) -> int:
    """Total number of parameters of `DiT(config)`, computed from shapes only."""
    return sum(math.prod(leaf.shape) for leaf in jax.tree_util.tree_leaves(param_shapes(config)))


def count_params_by_module(config: ModelConfig) -> dict[str, int]:
    """Parameter counts per top-level module (`x_embedder`, `blocks_0`, `pos_embed`, …)."""
    return {
        name: sum(math.prod(leaf.shape) for leaf in jax.tree_util.tree_leaves(subtree))
        for name, subtree in param_shapes(config).items()
    }
