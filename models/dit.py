"""The top-level i1 diffusion transformer `DiT` (DESIGN_SPACE §1, §2, §3, §4, §5).

Forward pass (`cross_attn` backbone):

1. `(B, C, h, w)` latent → channels-last → p×p stride-p conv `x_embedder` → row-major tokens (§1).
2. Optional image connector (one pre-norm block, before the sinusoidal table; §2).
3. `+ pos_embed` (frozen 2-D sinusoidal table) unless `position_embedding == "rope_only"` (§3).
4. Text: caption dropout (null caption, mask kept) → adapter → optional repeat → context (§4).
5. `cond = t_emb + pooled` (either may be switched off; §5.2), consumed only with AdaLN (§5.5).
6. Blocks with long skips, final layer, unpatchify back to `(B, C, h, w)` in float32 (§1, §5.1).
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from models.adapters import masked_mean, repeat_context, text_adapter
from models.config import IMPLEMENTED_BACKBONES, ModelConfig
from models.cross_attn import make_blocks, run_blocks
from models.layers import FinalLayer, TimestepEmbedder, TransformerBlock
from models.posemb import POS_EMBED_NAME, pos_embed_table, rope_2d_tables


def unpatchify(tokens: jax.Array, config: ModelConfig) -> jax.Array:
    """(B, N, p²C) tokens ordered (row-in-patch, col-in-patch, channel) → (B, C, h, w) (§1)."""
    b = tokens.shape[0]
    g, p, ch = config.grid_size, config.patch_size, config.in_channels
    x = tokens.reshape(b, g, g, p, p, ch)
    x = x.transpose(0, 1, 3, 2, 4, 5).reshape(b, g * p, g * p, ch)
    return x.transpose(0, 3, 1, 2)


class DiT(nn.Module):
    """An i1 model. `apply(variables, x, t, text, mask, drop)` returns the velocity.

    Args of `__call__`:
        x: (B, C, h, w) latent, channels-first.
        t: (B,) times in [0, 1] (t = 0 noise, t = 1 data; §7).
        text: (B, L, D) frozen text-encoder features, L ≤ text_len.
        mask: (B, L) bool/int text mask, or None for all-valid.
        drop: (B,) bool caption-dropout decisions (True → null caption), or None.

    Returns: (B, C, h, w) float32 velocity.
    """

    config: ModelConfig

    @nn.compact
    def __call__(
        self,
        x: jax.Array,
        t: jax.Array,
        text: jax.Array,
        mask: jax.Array | None = None,
        drop: jax.Array | None = None,
    ) -> jax.Array:
        c = self.config
        if c.backbone not in IMPLEMENTED_BACKBONES:
            raise NotImplementedError(f"backbone {c.backbone!r} is reserved but not implemented yet")
        expected = (c.in_channels, c.latent_size, c.latent_size)
        if tuple(x.shape[1:]) != expected:
            raise ValueError(f"x must be (B, {expected[0]}, {expected[1]}, {expected[2]}), got {x.shape}")
        if text.ndim != 3 or text.shape[2] != c.text_dim or text.shape[1] > c.text_len:
            raise ValueError(f"text must be (B, L <= {c.text_len}, {c.text_dim}), got {text.shape}")
        dtype = jnp.dtype(c.dtype)

        # image tokens
        patches = nn.Conv(
            c.hidden,
            (c.patch_size, c.patch_size),
            strides=(c.patch_size, c.patch_size),
            padding="VALID",
            dtype=dtype,
            param_dtype=jnp.float32,
            name="x_embedder",
        )(x.transpose(0, 2, 3, 1).astype(dtype))
        tokens = patches.reshape(x.shape[0], c.num_patches, c.hidden)
        if c.use_image_connector:
            tokens = TransformerBlock(
                c.heads,
                c.ffn_hidden,
                use_qknorm=c.use_qknorm,
                use_swiglu=c.use_swiglu,
                use_rmsnorm=c.use_rmsnorm,
                dtype=dtype,
                name="image_connector",
            )(tokens)
        if c.uses_sinusoidal:
            table = pos_embed_table(c)
            pos_embed = self.param(POS_EMBED_NAME, lambda _rng: jnp.asarray(table))
            tokens = tokens + pos_embed.astype(dtype)

        # text context
        text_mask = jnp.ones(text.shape[:2], dtype=bool) if mask is None else jnp.asarray(mask).astype(bool)
        context = text_adapter(c, name="text_encoder_adapter")(text, drop)
        context, context_mask = repeat_context(context, text_mask, c.repeat_text_emb)

        # conditioning vector (computed even when AdaLN is off, then unused; §5.5)
        cond = jnp.zeros((x.shape[0], c.hidden), dtype)
        if c.use_timestep:
            cond = cond + TimestepEmbedder(c.hidden, dtype=dtype, name="t_embedder")(t)
        if c.use_pooled_text:
            cond = cond + masked_mean(context, context_mask)

        rope = None
        if c.uses_rope:
            cos, sin = rope_2d_tables(c)
            rope = (jnp.asarray(cos), jnp.asarray(sin))

        tokens = run_blocks(
            make_blocks(c), tokens, context, context_mask, cond, rope, use_long_skip=c.use_long_skip
        )
        out = FinalLayer(c.patch_dim, c.use_adaln, c.use_rmsnorm, dtype=dtype, name="final_layer")(
            tokens, cond
        )
        return unpatchify(out, c).astype(jnp.float32)


def dummy_inputs(
    config: ModelConfig, batch_size: int = 1
) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
    """Zero inputs `(x, t, text, mask)` of the right shapes, for `init` and `eval_shape`."""
    x = jnp.zeros((batch_size, config.in_channels, config.latent_size, config.latent_size), jnp.float32)
    t = jnp.zeros((batch_size,), jnp.float32)
    text = jnp.zeros((batch_size, config.text_len, config.text_dim), jnp.float32)
    mask = jnp.ones((batch_size, config.text_len), bool)
    return x, t, text, mask


def init_variables(config: ModelConfig, rng: jax.Array) -> dict[str, Any]:
    """Freshly initialised variables `{"params": …}` of `DiT(config)` (§1 initialisation)."""
    variables = DiT(config).init(rng, *dummy_inputs(config))
    return dict(variables)
