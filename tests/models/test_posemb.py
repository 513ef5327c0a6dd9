"""Sinusoidal table layout and scaling, frozen-parameter helpers, 2-D RoPE (docs/design-space.md §3)."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from models.config import ModelConfig
from models.dit import init_variables
from models.posemb import (
    apply_rope,
    frozen_param_mask,
    pos_embed_table,
    reset_frozen,
    rope_2d_angles,
    rope_2d_tables,
    sincos_2d_table,
)


def _half(p: float) -> list[float]:
    # H/2 = 4 channels for one axis: ω = 10000^(-k/2), k < 2 → ω = (1, 0.01); [sin, sin, cos, cos]
    return [math.sin(p), math.sin(0.01 * p), math.cos(p), math.cos(0.01 * p)]


def test_sinusoidal_table_puts_the_column_first() -> None:
    table = sincos_2d_table(hidden=8, grid_size=3)
    assert table.shape == (9, 8) and table.dtype == np.float32
    for row in range(3):
        for col in range(3):
            expected = _half(col) + _half(row)  # column channels first ⚑
            np.testing.assert_allclose(table[row * 3 + col], expected, rtol=0, atol=1e-7)


def test_sinusoidal_positions_scale_by_256_over_resolution() -> None:
    half_scale = sincos_2d_table(hidden=8, grid_size=4, scale=0.5)
    unit = sincos_2d_table(hidden=8, grid_size=4)
    np.testing.assert_array_equal(half_scale[2 * 4 + 2], unit[1 * 4 + 1])  # (2, 2)·0.5 = (1, 1)
    np.testing.assert_allclose(half_scale[1 * 4 + 3], _half(1.5) + _half(0.5), atol=1e-7)
    config = ModelConfig(hidden=8, heads=2, depth=1, latent_size=8, resolution=512, text_dim=4, text_len=2)
    np.testing.assert_array_equal(pos_embed_table(config)[0], sincos_2d_table(8, 4, scale=0.5))


def test_pos_embed_param_mask_and_reset(small_config: ModelConfig) -> None:
    config = small_config.replace(resolution=128)
    params = init_variables(config, jax.random.key(0))["params"]
    np.testing.assert_array_equal(params["pos_embed"], pos_embed_table(config))

    mask = frozen_param_mask({"params": params})
    flags = jax.tree_util.tree_leaves_with_path(mask)
    marked = [jax.tree_util.keystr(path) for path, flag in flags if flag]
    assert marked == ["['params']['pos_embed']"]
    assert len(flags) == len(jax.tree_util.tree_leaves(params))

    damaged = dict(params, pos_embed=params["pos_embed"] + 1.0)
    restored = reset_frozen(damaged, config)
    np.testing.assert_array_equal(restored["pos_embed"], pos_embed_table(config))
    kernel = damaged["blocks_0"]["attn"]["qkv"]["kernel"]
    assert restored["blocks_0"]["attn"]["qkv"]["kernel"] is kernel  # other leaves untouched

    at_256 = reset_frozen(params, config.replace(resolution=256))  # a resume at a new resolution
    np.testing.assert_array_equal(at_256["pos_embed"], pos_embed_table(config.replace(resolution=256)))
    assert not np.allclose(at_256["pos_embed"], params["pos_embed"])
    with pytest.raises(ValueError, match="shape"):
        reset_frozen(params, config.replace(latent_size=16))


def _numpy_rope(x: np.ndarray, grid: int, scale: float, theta: float) -> np.ndarray:
    """Hand-written 2-D RoPE for x (N, head_dim): first half by row, second half by column."""
    n, d = x.shape
    per_axis = d // 2
    out = np.empty_like(x, dtype=np.float64)
    for token in range(n):
        row, col = divmod(token, grid)
        for i in range(0, d, 2):
            axis_pos = row if i < per_axis else col
            k = (i % per_axis) // 2
            angle = axis_pos * scale * theta ** (-2.0 * k / per_axis)
            c, s = math.cos(angle), math.sin(angle)
            out[token, i] = x[token, i] * c - x[token, i + 1] * s
            out[token, i + 1] = x[token, i] * s + x[token, i + 1] * c
    return out


def test_rope_matches_numpy_reference_and_preserves_norms() -> None:
    config = ModelConfig(
        hidden=16, heads=2, depth=1, latent_size=6, resolution=128, text_dim=4, text_len=2
    )  # head_dim 8, 3×3 grid, scale 2
    cos, sin = rope_2d_tables(config)
    assert cos.shape == (9, 4)
    x = np.random.default_rng(0).standard_normal((2, 9, 2, 8)).astype(np.float32)
    rotated = np.asarray(apply_rope(jnp.asarray(x), jnp.asarray(cos), jnp.asarray(sin)))
    for b in range(2):
        for h in range(2):
            expected = _numpy_rope(x[b, :, h].astype(np.float64), grid=3, scale=2.0, theta=1e4)
            np.testing.assert_allclose(rotated[b, :, h], expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(rotated, axis=-1), np.linalg.norm(x, axis=-1), rtol=1e-5)
    pair_norms = lambda a: np.linalg.norm(a.reshape(*a.shape[:-1], -1, 2), axis=-1)  # noqa: E731
    np.testing.assert_allclose(pair_norms(rotated), pair_norms(x), rtol=1e-5, atol=1e-6)


def test_rope_angle_layout_rows_then_columns() -> None:
    angles = rope_2d_angles(head_dim=72, grid_size=4, scale=1.0)
    assert angles.shape == (16, 36)  # 18 frequencies per axis
    freqs = 1e4 ** (-2.0 * np.arange(18) / 36)
    np.testing.assert_allclose(angles[1 * 4 + 3, :18], 1 * freqs)  # row 1
    np.testing.assert_allclose(angles[1 * 4 + 3, 18:], 3 * freqs)  # col 3
