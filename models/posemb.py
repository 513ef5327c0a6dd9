"""Positional embeddings for image tokens (docs/design-space.md §3).

* The frozen 2-D sinusoidal table (MAE-style, **column channels first** ⚑), stored as the
  parameter `pos_embed` and recomputed on resume (`reset_frozen`); `frozen_param_mask` marks it.
* 2-D RoPE for the `cross_attn` backbone: the first head_dim/2 dims rotate with the row index,
  the last head_dim/2 with the column index, as complex rotations of adjacent pairs.
* 3-axis RoPE (text/time, row, col) for `single_stream` / `dual_stream`: per-sample position ids
  text j → (j, 0, 0), padded text → (0, 0, 0), image → (n_valid_text, row, col) ⚑, looked up in
  per-axis tables (ids clipped into range) and concatenated over the axes.

All image positions are integer grid indices multiplied by 256/resolution ⚑; the text axis is not.
Tables are numpy constants (computed in float64, returned as float32).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from models.config import ModelConfig

#: Name of the frozen sinusoidal parameter (its updates are zeroed by the trainer; §3, §9).
POS_EMBED_NAME = "pos_embed"


# ---------------------------------------------------------------------------- sinusoidal table
def sincos_1d(dim: int, positions: np.ndarray) -> np.ndarray:
    """`[sin(p·ω_k), cos(p·ω_k)]` with ω_k = 10000^(−k/(dim/2)), k < dim/2; shape (len(p), dim), float64."""
    if dim % 2:
        raise ValueError(f"sincos_1d needs an even dim, got {dim}")
    omega = 1.0 / 10000.0 ** (np.arange(dim // 2, dtype=np.float64) / (dim / 2.0))
    angles = np.outer(np.asarray(positions, dtype=np.float64).reshape(-1), omega)
    return np.concatenate([np.sin(angles), np.cos(angles)], axis=1)


def sincos_2d_table(hidden: int, grid_size: int, scale: float = 1.0) -> np.ndarray:
    """The 2-D table of shape (grid_size², hidden) for a row-major token grid, float32 (§3).

    Channels [0, H/2) encode the column index and [H/2, H) the row index ⚑; each half is
    `sincos_1d(H/2, index·scale)`.
    """
    if hidden % 4:
        raise ValueError(f"the 2-D sinusoidal table needs hidden % 4 == 0, got {hidden}")
    index = np.arange(grid_size, dtype=np.float64) * float(scale)
    rows = np.repeat(index, grid_size)  # token n = row·G + col
    cols = np.tile(index, grid_size)
    table = np.concatenate([sincos_1d(hidden // 2, cols), sincos_1d(hidden // 2, rows)], axis=1)
    return table.astype(np.float32)


def pos_embed_table(config: ModelConfig) -> np.ndarray:
    """The `pos_embed` value for `config`: shape (1, N, H), float32, positions scaled by 256/res."""
    table = sincos_2d_table(config.hidden, config.grid_size, config.position_scale)
    return table[None]


def _is_pos_embed(path: tuple[Any, ...]) -> bool:
    for entry in path:
        key = getattr(entry, "key", getattr(entry, "name", None))
        if key == POS_EMBED_NAME:
            return True
    return False


def frozen_param_mask(params: Any) -> Any:
    """A pytree of bools with the structure of `params`: True for `pos_embed` leaves (frozen; §3, §9)."""
    return jax.tree_util.tree_map_with_path(lambda path, _: _is_pos_embed(path), params)


def reset_frozen(params: Any, config: ModelConfig) -> Any:
    """`params` with every `pos_embed` leaf overwritten by the table for `config`'s resolution (§3).

    Works on any pytree that holds `pos_embed` leaves (parameters, EMA); shapes must agree.
    """
    table = pos_embed_table(config)

    def reset(path: tuple[Any, ...], leaf: Any) -> Any:
        if not _is_pos_embed(path):
            return leaf
        if tuple(leaf.shape) != table.shape:
            raise ValueError(
                f"pos_embed has shape {tuple(leaf.shape)} but the config gives {table.shape}; "
                "hidden size or latent grid changed"
            )
        return jnp.asarray(table, dtype=leaf.dtype)

    return jax.tree_util.tree_map_with_path(reset, params)


# ---------------------------------------------------------------------------- RoPE
def rope_frequencies(dim: int, theta: float = 10000.0) -> np.ndarray:
    """The dim/2 frequencies θ^(−2k/dim), k < dim/2, of one RoPE axis of `dim` head dims (float64)."""
    if dim % 2:
        raise ValueError(f"a RoPE axis needs an even number of dims, got {dim}")
    return theta ** (-2.0 * np.arange(dim // 2, dtype=np.float64) / dim)


def rope_2d_angles(head_dim: int, grid_size: int, scale: float = 1.0, theta: float = 10000.0) -> np.ndarray:
    """Rotation angle of every adjacent pair, shape (grid_size², head_dim/2), float64 (§3, cross_attn).

    Pair m < head_dim/4 turns by row·scale·f_m, pair head_dim/4 + m by col·scale·f_m, with
    f_m = θ^(−2m/(head_dim/2)). (Per head dim this is the `[f0, f0, f1, f1, …]` layout per axis.)
    """
    if head_dim % 4:
        raise ValueError(f"2-D RoPE needs head_dim % 4 == 0, got {head_dim}")
    freqs = rope_frequencies(head_dim // 2, theta)
    index = np.arange(grid_size, dtype=np.float64) * float(scale)
    rows = np.repeat(index, grid_size)
    cols = np.tile(index, grid_size)
    return np.concatenate([np.outer(rows, freqs), np.outer(cols, freqs)], axis=1)


def rope_2d_tables(config: ModelConfig) -> tuple[np.ndarray, np.ndarray]:
    """(cos, sin) of the cross_attn image RoPE for `config`, each (N, head_dim/2) float32."""
    angles = rope_2d_angles(config.head_dim, config.grid_size, config.position_scale, config.rope_theta)
    return np.cos(angles).astype(np.float32), np.sin(angles).astype(np.float32)


def apply_rope(x: jax.Array, cos: jax.Array, sin: jax.Array) -> jax.Array:
    """Rotate adjacent pairs (x₂ₘ, x₂ₘ₊₁) of the last axis as complex numbers, in float32 (§3).

    x: (B, N, heads, head_dim); cos, sin: (N, head_dim/2) or per sample (B, N, head_dim/2).
    Returns x's dtype.
    """
    pairs = x.astype(jnp.float32).reshape(*x.shape[:-1], x.shape[-1] // 2, 2)
    x0, x1 = pairs[..., 0], pairs[..., 1]
    c = cos[..., None, :].astype(jnp.float32)
    s = sin[..., None, :].astype(jnp.float32)
    rotated = jnp.stack([x0 * c - x1 * s, x0 * s + x1 * c], axis=-1)
    return rotated.reshape(x.shape).astype(x.dtype)


# ---------------------------------------------------------------------------- 3-axis RoPE
def rope_axis_angles(dim: int, length: int, scale: float = 1.0, theta: float = 10000.0) -> np.ndarray:
    """Table of one axis: angle of pair k at id p is `p·scale·θ^(−2k/dim)`; (length, dim/2) float64."""
    positions = np.arange(length, dtype=np.float64) * float(scale)
    return np.outer(positions, rope_frequencies(dim, theta))


def multimodal_position_ids(text_mask: jax.Array, grid_size: int) -> tuple[jax.Array, jax.Array]:
    """Integer position ids (text/time, row, col) of the text and image tokens (§3 ⚑).

    text_mask: (B, L) bool. Returns text ids (B, L, 3) — valid token j → (j, 0, 0), padding →
    (0, 0, 0) — and image ids (B, N, 3) — token row·G + col → (n_valid_text, row, col).
    """
    mask = text_mask.astype(bool)
    b, length = mask.shape
    j = jnp.broadcast_to(jnp.arange(length, dtype=jnp.int32), (b, length))
    text_time = jnp.where(mask, j, 0)
    zeros = jnp.zeros_like(text_time)
    text_ids = jnp.stack([text_time, zeros, zeros], axis=-1)
    n = grid_size * grid_size
    rows = jnp.repeat(jnp.arange(grid_size, dtype=jnp.int32), grid_size)
    cols = jnp.tile(jnp.arange(grid_size, dtype=jnp.int32), grid_size)
    n_valid = jnp.sum(mask, axis=1, dtype=jnp.int32)
    image_ids = jnp.stack(
        [
            jnp.broadcast_to(n_valid[:, None], (b, n)),
            jnp.broadcast_to(rows, (b, n)),
            jnp.broadcast_to(cols, (b, n)),
        ],
        axis=-1,
    )
    return text_ids, image_ids


class MultiAxisRope:
    """3-axis RoPE tables of a single/dual-stream config (§3).

    Axis a has `rope_dims[a]` head dims (frequencies θ^(−2k/dim_a)), a table of `rope_lens[a]`
    positions, and a scale: 1 for the text/time axis, 256/res for row and col ⚑. `__call__(ids)`
    maps (B, N, 3) integer ids (clipped into each table) to (cos, sin), each (B, N, head_dim/2),
    with the axes concatenated in order.
    """

    def __init__(self, config: ModelConfig) -> None:
        scales = (1.0, config.position_scale, config.position_scale)
        self.dims = config.rope_dims
        self.lens = config.rope_lens
        angles = [
            rope_axis_angles(dim, length, scale, config.rope_theta)
            for dim, length, scale in zip(self.dims, self.lens, scales, strict=True)
        ]
        self.cos = [np.cos(a).astype(np.float32) for a in angles]
        self.sin = [np.sin(a).astype(np.float32) for a in angles]

    def __call__(self, ids: jax.Array) -> tuple[jax.Array, jax.Array]:
        cos, sin = [], []
        for axis, (cos_table, sin_table) in enumerate(zip(self.cos, self.sin, strict=True)):
            index = jnp.clip(ids[..., axis], 0, cos_table.shape[0] - 1)
            cos.append(jnp.take(jnp.asarray(cos_table), index, axis=0))
            sin.append(jnp.take(jnp.asarray(sin_table), index, axis=0))
        return jnp.concatenate(cos, axis=-1), jnp.concatenate(sin, axis=-1)


def multimodal_rope(
    config: ModelConfig, text_mask: jax.Array
) -> tuple[tuple[jax.Array, jax.Array], tuple[jax.Array, jax.Array]]:
    """(image (cos, sin), text (cos, sin)) for a (B, L) text mask; each table (B, ·, head_dim/2)."""
    text_ids, image_ids = multimodal_position_ids(text_mask, config.grid_size)
    rope = MultiAxisRope(config)
    return rope(image_ids), rope(text_ids)
