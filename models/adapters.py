"""The text path: adapters, null caption, caption dropout, repeat and pooling (DESIGN_SPACE §4.2, §4.3).

Each adapter owns a learnable null caption `(1, text_len, D)` in encoder-feature space, drawn from
N(0, D^-1/2). Caption dropout replaces a sample's whole feature sequence by the null caption
**before** the adapter, and leaves the mask unchanged ⚑.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from models.config import ModelConfig
from models.layers import TransformerBlock, dense

NULL_CAPTION_NAME = "learnable_null_caption"


def apply_caption_dropout(text: jax.Array, null_caption: jax.Array, drop: jax.Array | None) -> jax.Array:
    """Replace `text[i]` by the null caption where `drop[i]` (§4.3).

    text: (B, L, D); null_caption: (1, L_null, D), truncated to L; drop: (B,) bool or None.
    """
    if drop is None:
        return text
    length = text.shape[1]
    if length > null_caption.shape[1]:
        raise ValueError(f"text has {length} tokens but the null caption only {null_caption.shape[1]}")
    null = null_caption[:, :length].astype(text.dtype)
    return jnp.where(jnp.asarray(drop, dtype=bool)[:, None, None], null, text)


def repeat_context(context: jax.Array, mask: jax.Array, repeat: bool) -> tuple[jax.Array, jax.Array]:
    """With `repeat`, concatenate the adapter output with itself and double the mask (§4.3)."""
    if not repeat:
        return context, mask
    return jnp.concatenate([context, context], axis=1), jnp.concatenate([mask, mask], axis=1)


def masked_mean(x: jax.Array, mask: jax.Array) -> jax.Array:
    """Mean over valid tokens, denominator clipped to ≥ 1 ⚑.

    x (B, L, H), mask (B, L) → (B, H) in x's dtype.
    """
    weights = mask.astype(jnp.float32)[..., None]
    total = jnp.sum(x.astype(jnp.float32) * weights, axis=1)
    count = jnp.maximum(jnp.sum(weights, axis=1), 1.0)
    return (total / count).astype(x.dtype)


def _null_caption(module: nn.Module, config: ModelConfig) -> jax.Array:
    init = nn.initializers.normal(stddev=config.text_dim**-0.5)
    return module.param(NULL_CAPTION_NAME, init, (1, config.text_len, config.text_dim), jnp.float32)


class MLPAdapter(nn.Module):
    """Per-token `Dense_H → GELU(exact) → Dense_H`, Xavier-uniform kernels (§4.2, §1)."""

    config: ModelConfig

    @nn.compact
    def __call__(self, text: jax.Array, drop: jax.Array | None = None) -> jax.Array:
        c = self.config
        dtype = jnp.dtype(c.dtype)
        x = apply_caption_dropout(text, _null_caption(self, c), drop)
        x = dense(c.hidden, dtype=dtype, name="fc1", xavier=True)(x)
        return dense(c.hidden, dtype=dtype, name="fc2", xavier=True)(nn.gelu(x, approximate=False))


class TransformerAdapter(nn.Module):
    """`connector_in: Dense_H` (Xavier) then `adapter_blocks` pre-norm blocks (§4.2).

    The blocks use the backbone's heads, mlp_ratio and norm/FFN switches, and run with no mask ⚑,
    no RoPE and no AdaLN.
    """

    config: ModelConfig

    @nn.compact
    def __call__(self, text: jax.Array, drop: jax.Array | None = None) -> jax.Array:
        c = self.config
        dtype = jnp.dtype(c.dtype)
        x = apply_caption_dropout(text, _null_caption(self, c), drop)
        x = dense(c.hidden, dtype=dtype, name="connector_in", xavier=True)(x)
        for i in range(c.adapter_blocks):
            block = TransformerBlock(
                c.heads,
                c.ffn_hidden,
                use_qknorm=c.use_qknorm,
                use_swiglu=c.use_swiglu,
                use_rmsnorm=c.use_rmsnorm,
                dtype=dtype,
                name=f"blocks_{i}",
            )
            x = block(x)
        return x


def text_adapter(config: ModelConfig, *, name: str) -> MLPAdapter | TransformerAdapter:
    """The adapter selected by `config.adapter`."""
    if config.adapter == "mlp":
        return MLPAdapter(config, name=name)
    return TransformerAdapter(config, name=name)
