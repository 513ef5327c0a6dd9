"""The text path: adapters, null caption, caption dropout, repeat and pooling (docs/design-space.md §4.2–4.3).

Each adapter owns a learnable null caption `(1, text_len, D)` in encoder-feature space, drawn from
N(0, D^-1/2). Caption dropout replaces a sample's whole feature sequence by the null caption
**before** the adapter, and leaves the mask unchanged ⚑.

With several text encoders (`ModelConfig.text_encoders`), encoder i has its own adapter
`text_encoder_adapter_{i}` (with its own null caption of its own (L_i, D_i)); `text_path` runs them
and concatenates the outputs and masks along the sequence, then applies the repeat (§4.3).
A single encoder keeps the name `text_encoder_adapter`.
"""

from __future__ import annotations

from collections.abc import Sequence

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


def _null_caption(module: nn.Module, config: ModelConfig, encoder: int) -> jax.Array:
    dim, length = config.encoder_specs[encoder]
    init = nn.initializers.normal(stddev=dim**-0.5)
    return module.param(NULL_CAPTION_NAME, init, (1, length, dim), jnp.float32)


class MLPAdapter(nn.Module):
    """Per-token `Dense_H → GELU(exact) → Dense_H`, Xavier-uniform kernels (§4.2, §1).

    `encoder` selects which of `config.encoder_specs` this adapter (and its null caption) serves.
    """

    config: ModelConfig
    encoder: int = 0

    @nn.compact
    def __call__(self, text: jax.Array, drop: jax.Array | None = None) -> jax.Array:
        c = self.config
        dtype = jnp.dtype(c.dtype)
        x = apply_caption_dropout(text, _null_caption(self, c, self.encoder), drop)
        x = dense(c.hidden, dtype=dtype, name="fc1", xavier=True)(x)
        return dense(c.hidden, dtype=dtype, name="fc2", xavier=True)(nn.gelu(x, approximate=False))


class TransformerAdapter(nn.Module):
    """`connector_in: Dense_H` (Xavier) then `adapter_blocks` pre-norm blocks (§4.2).

    The blocks use the backbone's heads, mlp_ratio and norm/FFN switches, and run with no mask ⚑,
    no RoPE and no AdaLN. `encoder` selects which of `config.encoder_specs` it serves.
    """

    config: ModelConfig
    encoder: int = 0

    @nn.compact
    def __call__(self, text: jax.Array, drop: jax.Array | None = None) -> jax.Array:
        c = self.config
        dtype = jnp.dtype(c.dtype)
        x = apply_caption_dropout(text, _null_caption(self, c, self.encoder), drop)
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


def text_adapter(config: ModelConfig, *, name: str, encoder: int = 0) -> MLPAdapter | TransformerAdapter:
    """The adapter selected by `config.adapter`, for text encoder number `encoder`."""
    if config.adapter == "mlp":
        return MLPAdapter(config, encoder, name=name)
    return TransformerAdapter(config, encoder, name=name)


def adapter_name(config: ModelConfig, encoder: int) -> str:
    """`text_encoder_adapter` for a single encoder, else `text_encoder_adapter_{encoder}`."""
    return "text_encoder_adapter" if config.num_encoders == 1 else f"text_encoder_adapter_{encoder}"


TextInput = jax.Array | Sequence[jax.Array]
MaskInput = jax.Array | None | Sequence[jax.Array | None]
DropInput = jax.Array | None | Sequence[jax.Array | None]


def _per_encoder(value: object, n: int, what: str) -> list[object]:
    if isinstance(value, (tuple, list)):
        if len(value) != n:
            raise ValueError(f"{what}: got {len(value)} entries for {n} text encoders")
        return list(value)
    if what != "drop" and n != 1 and value is not None:
        raise ValueError(f"{what}: pass a tuple with one entry per text encoder ({n})")
    return [value] * n  # drop: one array is one shared decision for every encoder (§4.3)


def text_path(
    config: ModelConfig, text: TextInput, mask: MaskInput, drop: DropInput
) -> tuple[jax.Array, jax.Array]:
    """Run every adapter of `config` (§4.3). Call from a compact method: they become its children.

    text: (B, L, D) or a tuple of (B, L_i, D_i), one per encoder; mask: matching (B, L_i) masks
    (None = all valid); drop: None, one (B,) bool array (one shared dropout decision) or a tuple of
    per-encoder (B,) arrays (independent decisions). Returns the context (B, L_ctx, H), after the
    concatenation over encoders and the optional repeat, and its bool mask (B, L_ctx).
    """
    n = config.num_encoders
    texts = _per_encoder(text, n, "text")
    masks = _per_encoder(mask, n, "mask")
    drops = _per_encoder(drop, n, "drop")
    contexts, context_masks = [], []
    for i, (dim, length) in enumerate(config.encoder_specs):
        features = jnp.asarray(texts[i])
        if features.ndim != 3 or features.shape[2] != dim or features.shape[1] > length:
            raise ValueError(f"text {i} must be (B, L <= {length}, {dim}), got {features.shape}")
        m = masks[i]
        valid = jnp.ones(features.shape[:2], bool) if m is None else jnp.asarray(m).astype(bool)
        d = drops[i]
        adapter = text_adapter(config, name=adapter_name(config, i), encoder=i)
        contexts.append(adapter(features, None if d is None else jnp.asarray(d)))
        context_masks.append(valid)
    context = jnp.concatenate(contexts, axis=1) if n > 1 else contexts[0]
    context_mask = jnp.concatenate(context_masks, axis=1) if n > 1 else context_masks[0]
    return repeat_context(context, context_mask, config.repeat_text_emb)
