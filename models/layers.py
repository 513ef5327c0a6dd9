"""Shared components of every backbone (docs/design-space.md §1 initialisation, §2 components).

Conventions: tokens are channels-last `(B, N, H)`; parameters are float32; `dtype` is the compute
dtype. Norms, RoPE and the attention softmax always run in float32. Dense and conv kernels use the
Flax default LeCun-normal initialiser with zero biases — no adaLN-Zero, no zero-init output ⚑.
"""

from __future__ import annotations

import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from models.posemb import apply_rope

Dtype = Any
#: (cos, sin) RoPE tables, each (N, head_dim/2).
RopeTables = tuple[jax.Array, jax.Array]

NORM_EPS = 1e-6
#: Logit given to masked keys: the most negative finite float32 (a fully masked row becomes uniform) ⚑.
MASK_VALUE = float(jnp.finfo(jnp.float32).min)
#: Xavier-uniform, used by the adapters' input layers and the long-skip linears (§1).
xavier_uniform = nn.initializers.xavier_uniform()


def dense(features: int, *, dtype: Dtype, name: str, xavier: bool = False) -> nn.Dense:
    """A Dense layer with bias, float32 parameters, LeCun-normal (default) or Xavier-uniform kernel."""
    kernel_init = xavier_uniform if xavier else nn.linear.default_kernel_init
    return nn.Dense(features, dtype=dtype, param_dtype=jnp.float32, kernel_init=kernel_init, name=name)


# ---------------------------------------------------------------------------- norms
class RMSNorm(nn.Module):
    """`x·rsqrt(mean(x²)+1e-6)·scale` over the last axis, in float32; returns x's dtype (§2)."""

    eps: float = NORM_EPS

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        scale = self.param("scale", nn.initializers.ones, (x.shape[-1],), jnp.float32)
        x32 = x.astype(jnp.float32)
        y = x32 * jax.lax.rsqrt(jnp.mean(jnp.square(x32), axis=-1, keepdims=True) + self.eps)
        return (y * scale).astype(x.dtype)


class LayerNorm(nn.Module):
    """LayerNorm with eps 1e-6, scale and bias, in float32; returns x's dtype (§2)."""

    eps: float = NORM_EPS

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        scale = self.param("scale", nn.initializers.ones, (x.shape[-1],), jnp.float32)
        bias = self.param("bias", nn.initializers.zeros, (x.shape[-1],), jnp.float32)
        x32 = x.astype(jnp.float32)
        mean = jnp.mean(x32, axis=-1, keepdims=True)
        var = jnp.mean(jnp.square(x32 - mean), axis=-1, keepdims=True)
        y = (x32 - mean) * jax.lax.rsqrt(var + self.eps)
        return (y * scale + bias).astype(x.dtype)


def norm_layer(use_rmsnorm: bool, *, name: str) -> nn.Module:
    """RMSNorm when `use_rmsnorm` (the default everywhere, QK-norm included), else LayerNorm (§2)."""
    return RMSNorm(name=name) if use_rmsnorm else LayerNorm(name=name)


# ---------------------------------------------------------------------------- feed-forward
class SwiGLU(nn.Module):
    """Fused `H → 2F` dense (with bias) split into a, b; output `W3(silu(a)·b)` (§2)."""

    hidden_features: int
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        ab = dense(2 * self.hidden_features, dtype=self.dtype, name="w12")(x)
        a, b = jnp.split(ab, 2, axis=-1)
        return dense(x.shape[-1], dtype=self.dtype, name="w3")(nn.silu(a) * b)


class Mlp(nn.Module):
    """Dense → GELU (tanh approximation) → Dense, the FFN when SwiGLU is off (§2)."""

    hidden_features: int
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        h = dense(self.hidden_features, dtype=self.dtype, name="fc1")(x)
        return dense(x.shape[-1], dtype=self.dtype, name="fc2")(nn.gelu(h, approximate=True))


def ffn_layer(use_swiglu: bool, hidden_features: int, *, dtype: Dtype, name: str) -> nn.Module:
    """SwiGLU or plain MLP with the given hidden width (see `ModelConfig.ffn_hidden`)."""
    if use_swiglu:
        return SwiGLU(hidden_features, dtype=dtype, name=name)
    return Mlp(hidden_features, dtype=dtype, name=name)


# ---------------------------------------------------------------------------- attention
def attend(q: jax.Array, k: jax.Array, v: jax.Array, key_mask: jax.Array | None = None) -> jax.Array:
    """Softmax attention with float32 logits and softmax (§2).

    q: (B, Nq, heads, d); k, v: (B, Nk, heads, d); key_mask: (B, Nk) bool or None.
    Logits are `(q·d^-1/2)kᵀ`; masked keys get the most negative finite float32 ⚑.
    Returns (B, Nq, heads, d) in v's dtype.
    """
    q = q * jnp.asarray(1.0 / math.sqrt(q.shape[-1]), dtype=q.dtype)
    logits = jnp.einsum("bqhd,bkhd->bhqk", q, k, preferred_element_type=jnp.float32)
    if key_mask is not None:
        logits = jnp.where(key_mask[:, None, None, :].astype(bool), logits, MASK_VALUE)
    probs = jax.nn.softmax(logits, axis=-1)
    return jnp.einsum("bhqk,bkhd->bqhd", probs.astype(v.dtype), v)


def split_heads(x: jax.Array, heads: int) -> jax.Array:
    """(B, N, H) → (B, N, heads, H/heads)."""
    return x.reshape(*x.shape[:-1], heads, x.shape[-1] // heads)


class Attention(nn.Module):
    """Self-attention: fused qkv (q heads, k heads, v heads), QK-norm, RoPE, output dense (§2).

    The QK-norms have one (head_dim,) scale each, shared by all heads; RoPE comes after them.
    With a `key_mask` (the single-stream blocks and context refiners), the attention outputs at
    padded query positions are zeroed before the output projection, so they keep only its bias ⚑.
    """

    heads: int
    use_qknorm: bool = True
    use_rmsnorm: bool = True
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(
        self, x: jax.Array, rope: RopeTables | None = None, key_mask: jax.Array | None = None
    ) -> jax.Array:
        b, n, width = x.shape
        qkv = dense(3 * width, dtype=self.dtype, name="qkv")(x)
        qkv = qkv.reshape(b, n, 3, self.heads, width // self.heads)
        q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]
        if self.use_qknorm:
            q = norm_layer(self.use_rmsnorm, name="q_norm")(q)
            k = norm_layer(self.use_rmsnorm, name="k_norm")(k)
        if rope is not None:
            q = apply_rope(q, *rope)
            k = apply_rope(k, *rope)
        out = attend(q, k, v, key_mask).reshape(b, n, width)
        if key_mask is not None:
            out = out * key_mask[:, :, None].astype(out.dtype)
        return dense(width, dtype=self.dtype, name="proj")(out)


class CrossAttention(nn.Module):
    """Cross-attention from image queries to text context: separate q/k/v/out dense layers,
    optional QK-norm, key mask; no RoPE (§2, §5.2)."""

    heads: int
    use_qknorm: bool = True
    use_rmsnorm: bool = True
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, context: jax.Array, key_mask: jax.Array | None = None) -> jax.Array:
        width = x.shape[-1]
        q = split_heads(dense(width, dtype=self.dtype, name="q")(x), self.heads)
        k = split_heads(dense(width, dtype=self.dtype, name="k")(context), self.heads)
        v = split_heads(dense(width, dtype=self.dtype, name="v")(context), self.heads)
        if self.use_qknorm:
            q = norm_layer(self.use_rmsnorm, name="q_norm")(q)
            k = norm_layer(self.use_rmsnorm, name="k_norm")(k)
        out = attend(q, k, v, key_mask).reshape(x.shape)
        return dense(width, dtype=self.dtype, name="proj")(out)


# ---------------------------------------------------------------------------- AdaLN
def modulate(x: jax.Array, shift: jax.Array | None, scale: jax.Array) -> jax.Array:
    """`x·(1+scale)+shift` (shift omitted under `wo_shift`); shift/scale are (B, 1, H) (§2)."""
    out = x * (1 + scale)
    return out if shift is None else out + shift


def adaln_chunks(cond: jax.Array, chunks: int, *, dtype: Dtype, name: str) -> list[jax.Array]:
    """`Dense_{chunks·H}(SiLU(cond))` split into `chunks` arrays of shape (B, 1, H) (§2).

    Must be called inside a compact method: the Dense becomes a child named `name`.
    """
    width = cond.shape[-1]
    out = dense(chunks * width, dtype=dtype, name=name)(nn.silu(cond))
    return [c[:, None, :] for c in jnp.split(out, chunks, axis=-1)]


# ---------------------------------------------------------------------------- timestep
def timestep_features(t: jax.Array, dim: int = 256, max_period: float = 10000.0) -> jax.Array:
    """`[cos(t·f_k), sin(t·f_k)]` (cos first), f_k = exp(−ln(max_period)·k/(dim/2)), k < dim/2 (§2).

    t ∈ [0, 1] enters unscaled ⚑. Returns (B, dim) float32.
    """
    half = dim // 2
    freqs = jnp.exp(-math.log(max_period) * jnp.arange(half, dtype=jnp.float32) / half)
    args = t.astype(jnp.float32)[:, None] * freqs[None, :]
    return jnp.concatenate([jnp.cos(args), jnp.sin(args)], axis=-1)


class TimestepEmbedder(nn.Module):
    """cos-first features of t (256), then Dense(H) → SiLU → Dense(H) (§2)."""

    hidden: int
    frequency_dim: int = 256
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, t: jax.Array) -> jax.Array:
        h = dense(self.hidden, dtype=self.dtype, name="linear1")(timestep_features(t, self.frequency_dim))
        return dense(self.hidden, dtype=self.dtype, name="linear2")(nn.silu(h))


# ---------------------------------------------------------------------------- blocks and heads
class TransformerBlock(nn.Module):
    """Pre-norm block `x += Attn(norm1 x); x += FFN(norm2 x)` with no RoPE, mask or AdaLN.

    Used by the transformer text adapter (§4.2, attends over padding ⚑) and the image connector (§2).
    """

    heads: int
    ffn_hidden: int
    use_qknorm: bool = True
    use_swiglu: bool = True
    use_rmsnorm: bool = True
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        attn = Attention(self.heads, self.use_qknorm, self.use_rmsnorm, dtype=self.dtype, name="attn")
        x = x + attn(norm_layer(self.use_rmsnorm, name="norm1")(x))
        ffn = ffn_layer(self.use_swiglu, self.ffn_hidden, dtype=self.dtype, name="mlp")
        return x + ffn(norm_layer(self.use_rmsnorm, name="norm2")(x))


class FinalLayer(nn.Module):
    """norm → [modulate with `Dense_2H(SiLU(cond))`, shift then scale] → `Dense(p²C)` (§2).

    `wo_shift` does not apply here [uncertain: §2 specifies the 2H split only].
    """

    patch_dim: int
    use_adaln: bool = True
    use_rmsnorm: bool = True
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, cond: jax.Array) -> jax.Array:
        x = norm_layer(self.use_rmsnorm, name="norm_final")(x)
        if self.use_adaln:
            shift, scale = adaln_chunks(cond, 2, dtype=self.dtype, name="adaLN_modulation")
            x = modulate(x, shift, scale)
        return dense(self.patch_dim, dtype=self.dtype, name="linear")(x)
