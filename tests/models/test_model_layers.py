"""Shared components (docs/design-space.md §2): norms, FFN widths, attention masking, timestep features."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from models.config import ModelConfig
from models.layers import (
    Attention,
    LayerNorm,
    RMSNorm,
    SwiGLU,
    TransformerBlock,
    attend,
    modulate,
    timestep_features,
)


def test_timestep_features_are_cos_first_and_unscaled() -> None:
    t = jnp.array([0.0, 0.3, 1.0])
    feats = np.asarray(timestep_features(t))
    assert feats.shape == (3, 256)
    freqs = np.exp(-math.log(1e4) * np.arange(128) / 128)
    np.testing.assert_allclose(feats[:, :128], np.cos(np.outer([0.0, 0.3, 1.0], freqs)), atol=1e-6)
    np.testing.assert_allclose(feats[:, 128:], np.sin(np.outer([0.0, 0.3, 1.0], freqs)), atol=1e-6)
    assert feats[0, 0] == 1.0 and feats[0, 128] == 0.0  # t = 0: cos half is 1, sin half is 0


def test_norms_compute_in_float32_with_eps_1e_6() -> None:
    x = jnp.asarray(np.random.default_rng(0).standard_normal((2, 5, 8)), jnp.bfloat16)
    params = {"params": {"scale": jnp.linspace(0.5, 1.5, 8)}}
    out = jnp.asarray(RMSNorm().apply(params, x))
    x32 = np.asarray(x, np.float32)
    want = x32 / np.sqrt((x32**2).mean(-1, keepdims=True) + 1e-6) * np.linspace(0.5, 1.5, 8)
    assert out.dtype == jnp.bfloat16
    np.testing.assert_allclose(np.asarray(out, np.float32), want, rtol=1e-2, atol=1e-2)
    ln = LayerNorm().apply(
        {"params": {"scale": jnp.ones(8), "bias": jnp.full(8, 0.5)}}, x.astype(jnp.float32)
    )
    centred = x32 - x32.mean(-1, keepdims=True)
    want_ln = centred / np.sqrt((centred**2).mean(-1, keepdims=True) + 1e-6) + 0.5
    np.testing.assert_allclose(np.asarray(ln), want_ln, rtol=1e-5, atol=1e-5)


def test_swiglu_width_matches_reference_formula() -> None:
    assert ModelConfig().ffn_hidden == 3072  # int(2/3 · int(1152 · 4))
    assert ModelConfig(hidden=2016, heads=28).ffn_hidden == int(2 / 3 * 8064)
    params = SwiGLU(170).init(jax.random.key(0), jnp.zeros((1, 64)))["params"]
    assert params["w12"]["kernel"].shape == (64, 340) and params["w3"]["kernel"].shape == (170, 64)


def test_attention_masks_keys_and_a_fully_masked_row_is_uniform() -> None:
    rng = np.random.default_rng(1)
    q, k, v = (jnp.asarray(rng.standard_normal((2, 3, 1, 4)), jnp.float32) for _ in range(3))
    mask = jnp.array([[True, False, True], [False, False, False]])
    out = np.asarray(attend(q, k, v, mask))
    # sample 0 ignores key 1: same as attending to keys 0 and 2 only
    np.testing.assert_allclose(out[0], np.asarray(attend(q[:1], k[:1, ::2], v[:1, ::2]))[0], rtol=1e-6)
    # sample 1 masks every key: min-float logits give a uniform average, not NaN ⚑
    np.testing.assert_allclose(out[1], np.broadcast_to(np.asarray(v[1]).mean(0), (3, 1, 4)), rtol=1e-6)


def test_qkv_layout_is_q_heads_then_k_heads_then_v_heads() -> None:
    """With identity-like qkv weights the v part of the fused output must be the last H columns."""
    width, heads = 4, 2
    x = jnp.asarray(np.random.default_rng(2).standard_normal((1, 3, width)), jnp.float32)
    kernel = np.zeros((width, 3 * width), np.float32)
    kernel[:, 2 * width :] = np.eye(width)  # only v is non-zero: q = k = 0 → uniform attention
    params = {
        "qkv": {"kernel": jnp.asarray(kernel), "bias": jnp.zeros(3 * width)},
        "proj": {"kernel": jnp.eye(width), "bias": jnp.zeros(width)},
    }
    out = Attention(heads, use_qknorm=False).apply({"params": params}, x)
    np.testing.assert_allclose(
        np.asarray(out), np.broadcast_to(np.asarray(x).mean(1, keepdims=True), x.shape), rtol=1e-6
    )


def test_modulate_with_and_without_shift() -> None:
    x, shift, scale = jnp.ones((1, 2, 3)), jnp.full((1, 1, 3), 0.5), jnp.full((1, 1, 3), 2.0)
    np.testing.assert_allclose(np.asarray(modulate(x, shift, scale)), 3.5)
    np.testing.assert_allclose(np.asarray(modulate(x, None, scale)), 3.0)


def test_prenorm_block_with_layernorm_and_gelu_mlp_matches_numpy() -> None:
    """The adapter / image-connector block, in its LayerNorm + GELU(tanh) MLP variant (§2, §4.2)."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 5, 8)).astype(np.float32)
    block = TransformerBlock(heads=2, ffn_hidden=16, use_qknorm=True, use_swiglu=False, use_rmsnorm=False)
    params = block.init(jax.random.key(0), jnp.asarray(x))["params"]
    params = jax.tree_util.tree_map(
        lambda a: np.asarray(a) + rng.normal(0, 0.1, a.shape).astype(np.float32), params
    )
    out = np.asarray(block.apply({"params": params}, jnp.asarray(x)))

    p = jax.tree_util.tree_map(lambda a: np.asarray(a, np.float64), params)

    def ln(q: dict[str, np.ndarray], h: np.ndarray) -> np.ndarray:
        c = h - h.mean(-1, keepdims=True)
        return c / np.sqrt((c**2).mean(-1, keepdims=True) + 1e-6) * q["scale"] + q["bias"]

    def dense(q: dict[str, np.ndarray], h: np.ndarray) -> np.ndarray:
        return h @ q["kernel"] + q["bias"]

    h = ln(p["norm1"], x.astype(np.float64))
    qkv = dense(p["attn"]["qkv"], h).reshape(2, 5, 3, 2, 4)
    q, k, v = ln(p["attn"]["q_norm"], qkv[:, :, 0]), ln(p["attn"]["k_norm"], qkv[:, :, 1]), qkv[:, :, 2]
    logits = np.einsum("bqhd,bkhd->bhqk", q / 2.0, k)
    probs = np.exp(logits - logits.max(-1, keepdims=True))
    probs /= probs.sum(-1, keepdims=True)
    y = x + dense(p["attn"]["proj"], np.einsum("bhqk,bkhd->bqhd", probs, v).reshape(2, 5, 8))
    m = dense(p["mlp"]["fc1"], ln(p["norm2"], y))
    gelu = 0.5 * m * (1 + np.tanh(np.sqrt(2 / np.pi) * (m + 0.044715 * m**3)))
    np.testing.assert_allclose(out, y + dense(p["mlp"]["fc2"], gelu), rtol=1e-5, atol=1e-5)
