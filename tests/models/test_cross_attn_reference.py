"""A hand-written numpy reference of one cross_attn block with AdaLN (docs/design-space.md §2, §3, §5.2).

The block is an out block (skip linear first), with RoPE, QK-norm, SwiGLU and RMSNorm, a padded
context, and randomised biases and norm scales so that every parameter matters.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from models.config import ModelConfig
from models.cross_attn import CrossAttnBlock
from models.posemb import rope_2d_tables

F32_MIN = float(np.finfo(np.float32).min)


def _dense(p: dict[str, np.ndarray], x: np.ndarray) -> np.ndarray:
    return x @ p["kernel"] + p["bias"]


def _rms(p: dict[str, np.ndarray], x: np.ndarray) -> np.ndarray:
    return x / np.sqrt(np.mean(x**2, axis=-1, keepdims=True) + 1e-6) * p["scale"]


def _silu(x: np.ndarray) -> np.ndarray:
    return x / (1.0 + np.exp(-x))


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def _rope(x: np.ndarray, cos: np.ndarray, sin: np.ndarray) -> np.ndarray:
    """x (B, N, heads, d): rotate pairs (2m, 2m+1) by the angle of pair m."""
    out = np.empty_like(x)
    c, s = cos[None, :, None, :], sin[None, :, None, :]
    out[..., 0::2] = x[..., 0::2] * c - x[..., 1::2] * s
    out[..., 1::2] = x[..., 0::2] * s + x[..., 1::2] * c
    return out


def _attention(q: np.ndarray, k: np.ndarray, v: np.ndarray, key_mask: np.ndarray | None) -> np.ndarray:
    d = q.shape[-1]
    logits = np.einsum("bqhd,bkhd->bhqk", q * d**-0.5, k)
    if key_mask is not None:
        logits = np.where(key_mask[:, None, None, :], logits, F32_MIN)
    return np.einsum("bhqk,bkhd->bqhd", _softmax(logits), v)


def _heads(x: np.ndarray, heads: int) -> np.ndarray:
    return x.reshape(*x.shape[:-1], heads, x.shape[-1] // heads)


def reference_block(
    p: Any,
    x: np.ndarray,
    skip: np.ndarray,
    context: np.ndarray,
    mask: np.ndarray,
    cond: np.ndarray,
    cos: np.ndarray,
    sin: np.ndarray,
    heads: int,
) -> np.ndarray:
    b, n, width = x.shape
    x = _dense(p["skip_linear"], np.concatenate([x, skip], axis=-1))
    mod = _dense(p["adaLN_modulation"], _silu(cond))[:, None, :]
    shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = np.split(mod, 6, axis=-1)

    h = _rms(p["norm1"], x) * (1 + scale_msa) + shift_msa
    qkv = _dense(p["attn"]["qkv"], h).reshape(b, n, 3, heads, width // heads)  # q heads, k heads, v heads
    q = _rope(_rms(p["attn"]["q_norm"], qkv[:, :, 0]), cos, sin)
    k = _rope(_rms(p["attn"]["k_norm"], qkv[:, :, 1]), cos, sin)
    a = _dense(p["attn"]["proj"], _attention(q, k, qkv[:, :, 2], None).reshape(b, n, width))
    x = x + gate_msa * a

    ca = p["cross_attn"]
    q = _rms(ca["q_norm"], _heads(_dense(ca["q"], x), heads))
    k = _rms(ca["k_norm"], _heads(_dense(ca["k"], context), heads))
    v = _heads(_dense(ca["v"], context), heads)
    x = x + _dense(ca["proj"], _attention(q, k, v, mask).reshape(b, n, width))

    h = _rms(p["norm2"], x) * (1 + scale_mlp) + shift_mlp
    a_, b_ = np.split(_dense(p["mlp"]["w12"], h), 2, axis=-1)
    return x + gate_mlp * _dense(p["mlp"]["w3"], _silu(a_) * b_)


def test_cross_attn_block_matches_numpy_reference() -> None:
    config = ModelConfig(
        hidden=32, depth=3, heads=2, in_channels=4, latent_size=8, resolution=128, text_dim=16, text_len=5
    )
    rng = np.random.default_rng(0)
    b, n, length = 2, config.num_patches, 5
    x, skip = (rng.standard_normal((b, n, 32)).astype(np.float32) for _ in range(2))
    context = rng.standard_normal((b, length, 32)).astype(np.float32)
    cond = rng.standard_normal((b, 32)).astype(np.float32)
    mask = np.array([[True] * 5, [True, True, False, False, False]])
    cos, sin = rope_2d_tables(config)

    block = CrossAttnBlock(config, use_skip=True)
    args = (jnp.asarray(x), jnp.asarray(context), jnp.asarray(mask), jnp.asarray(cond))
    rope = (jnp.asarray(cos), jnp.asarray(sin))
    params = block.init(jax.random.key(0), *args, rope, jnp.asarray(skip))["params"]

    def randomise(path: Any, leaf: jax.Array) -> np.ndarray:
        name = jax.tree_util.keystr(path)
        value = np.asarray(leaf, np.float32)
        if name.endswith("['bias']"):
            return rng.normal(0.0, 0.1, value.shape).astype(np.float32)
        if name.endswith("['scale']"):
            return (1.0 + rng.normal(0.0, 0.2, value.shape)).astype(np.float32)
        return value

    params = jax.tree_util.tree_map_with_path(randomise, params)
    out = block.apply({"params": params}, *args, rope, jnp.asarray(skip))

    p64 = jax.tree_util.tree_map(lambda a: np.asarray(a, np.float64), params)
    expected = reference_block(
        p64,
        x.astype(np.float64),
        skip.astype(np.float64),
        context.astype(np.float64),
        mask,
        cond.astype(np.float64),
        cos.astype(np.float64),
        sin.astype(np.float64),
        heads=2,
    )
    assert np.abs(expected).max() > 0.5  # a non-trivial output
    np.testing.assert_allclose(np.asarray(out), expected, rtol=1e-5, atol=1e-5)
