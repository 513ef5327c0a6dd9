"""Shared fixtures for the `models` tests: a very small config and deterministic inputs."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from models.config import ModelConfig
from models.dit import init_variables
from models.params import param_shapes
from models.posemb import pos_embed_table

Inputs = tuple[jax.Array, jax.Array, jax.Array, jax.Array]


@pytest.fixture(scope="session")
def small_config() -> ModelConfig:
    """A CPU-instant cross_attn config: H 32, depth 3, 2 heads, 8×8×4 latents, L 6, D 16."""
    return ModelConfig(
        hidden=32,
        depth=3,
        heads=2,
        in_channels=4,
        latent_size=8,
        resolution=64,
        text_dim=16,
        text_len=6,
    )


@pytest.fixture(scope="session")
def make_inputs() -> Callable[..., Inputs]:
    """Factory of fixed inputs `(x, t, text, mask)`; the mask has one fully padded-after-2 row."""

    def make(config: ModelConfig, batch: int = 2, seed: int = 0) -> Inputs:
        kx, kt, ktext = jax.random.split(jax.random.key(seed), 3)
        x = jax.random.normal(kx, (batch, config.in_channels, config.latent_size, config.latent_size))
        t = jax.random.uniform(kt, (batch,))
        text = jax.random.normal(ktext, (batch, config.text_len, config.text_dim))
        lengths = jnp.array([config.text_len, 2, 1, config.text_len - 1][:batch] + [3] * max(0, batch - 4))
        mask = jnp.arange(config.text_len)[None, :] < lengths[:, None]
        return x, t, text, mask

    return make


@pytest.fixture(scope="session")
def variables_for() -> Callable[[ModelConfig, int], Any]:
    """Session cache of `init_variables(config, key(seed))`: compiles on CPU are the slow part."""
    cache: dict[tuple[ModelConfig, int], Any] = {}

    def get(config: ModelConfig, seed: int = 0) -> Any:
        if (config, seed) not in cache:
            cache[(config, seed)] = init_variables(config, jax.random.key(seed))
        return cache[(config, seed)]

    return get


@pytest.fixture(scope="session")
def fast_variables() -> Callable[[ModelConfig, int], Any]:
    """Session cache of random variables drawn with numpy from `param_shapes` — no eager `init`
    compiles. Kernels N(0, 1/fan_in), null captions N(0, 1/D), the real `pos_embed`, norm scales 1,
    biases 0 (close to §1, enough for behaviour tests; `variables_for` gives the real init)."""
    cache: dict[tuple[ModelConfig, int], Any] = {}

    def get(config: ModelConfig, seed: int = 0) -> Any:
        if (config, seed) not in cache:
            rng = np.random.default_rng(seed)

            def draw(path: Any, leaf: Any) -> jax.Array:
                name = jax.tree_util.keystr(path)
                if name.endswith("['kernel']"):
                    value = rng.normal(0.0, math.prod(leaf.shape[:-1]) ** -0.5, leaf.shape)
                elif name.endswith("['learnable_null_caption']"):
                    value = rng.normal(0.0, leaf.shape[-1] ** -0.5, leaf.shape)
                elif name.endswith("['pos_embed']"):
                    value = pos_embed_table(config)
                else:
                    value = np.full(leaf.shape, 1.0 if name.endswith("['scale']") else 0.0)
                return jnp.asarray(value, jnp.float32)

            cache[(config, seed)] = {"params": jax.tree_util.tree_map_with_path(draw, param_shapes(config))}
        return cache[(config, seed)]

    return get
