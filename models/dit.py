"""The top-level i1 diffusion transformer `DiT` (docs/design-space.md §1, §2, §3, §4, §5).

Forward pass (all three backbones):

1. `(B, C, h, w)` latent → channels-last → p×p stride-p conv `x_embedder` → row-major tokens (§1).
2. Optional image connector (one pre-norm block, before the sinusoidal table; §2).
3. `+ pos_embed` (frozen 2-D sinusoidal table) unless `position_embedding == "rope_only"` (§3).
4. Text, per encoder: caption dropout (null caption, mask kept) → adapter; then the outputs and
   masks are concatenated over encoders → optional repeat → context (§4).
5. `cond = t_emb + pooled` (cross_attn may switch either off; §5.2), consumed only with AdaLN (§5.5).
6. The backbone: `cross_attn` blocks with 2-D image RoPE (§5.2); `single_stream` refiners and joint
   blocks (§5.3) or `dual_stream` MMDiT blocks (§5.4) with 3-axis RoPE; long skips (§5.1).
7. Final layer on the image tokens, unpatchify back to `(B, C, h, w)` in float32 (§1).
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from models.adapters import DropInput, MaskInput, TextInput, masked_mean, text_path
from models.config import IMPLEMENTED_BACKBONES, ModelConfig
from models.cross_attn import make_blocks, run_blocks
from models.dual_stream import DualStreamBackbone
from models.layers import FinalLayer, TimestepEmbedder, TransformerBlock
from models.posemb import POS_EMBED_NAME, multimodal_rope, pos_embed_table, rope_2d_tables
from models.single_stream import SingleStreamBackbone


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
        text: (B, L, D) frozen text-encoder features, L ≤ text_len; with several text encoders a
            tuple of (B, L_i, D_i), one per entry of `config.text_encoders` (a 1-tuple also works
            for one encoder).
        mask: (B, L) bool/int text mask, or None for all-valid; a tuple (entries may be None) that
            matches a tuple `text`.
        drop: caption-dropout decisions (True → null caption): None, one (B,) bool array (one
            shared decision for every encoder) or a tuple of per-encoder (B,) arrays (§4.3).

    Returns: (B, C, h, w) float32 velocity.
    """

    config: ModelConfig

    @nn.compact
    def __call__(
        self,
        x: jax.Array,
        t: jax.Array,
        text: TextInput,
        mask: MaskInput = None,
        drop: DropInput = None,
    ) -> jax.Array:
        c = self.config
        if c.backbone not in IMPLEMENTED_BACKBONES:
            raise NotImplementedError(f"backbone {c.backbone!r} is not implemented")
        expected = (c.in_channels, c.latent_size, c.latent_size)
        if tuple(x.shape[1:]) != expected:
            raise ValueError(f"x must be (B, {expected[0]}, {expected[1]}, {expected[2]}), got {x.shape}")
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

        # text context (every encoder's adapter, concatenated, optionally repeated)
        context, context_mask = text_path(c, text, mask, drop)

        # conditioning vector (computed even when AdaLN is off, then unused; §5.5)
        cond = jnp.zeros((x.shape[0], c.hidden), dtype)
        if c.use_timestep:
            cond = cond + TimestepEmbedder(c.hidden, dtype=dtype, name="t_embedder")(t)
        if c.use_pooled_text:
            cond = cond + masked_mean(context, context_mask)

        if c.backbone == "cross_attn":
            rope = None
            if c.uses_rope:
                cos, sin = rope_2d_tables(c)
                rope = (jnp.asarray(cos), jnp.asarray(sin))
            tokens = run_blocks(
                make_blocks(c), tokens, context, context_mask, cond, rope, use_long_skip=c.use_long_skip
            )
        else:
            image_rope = text_rope = None
            if c.uses_rope:
                image_rope, text_rope = multimodal_rope(c, context_mask)
            backbone = SingleStreamBackbone(c) if c.backbone == "single_stream" else DualStreamBackbone(c)
            tokens = backbone(tokens, context, context_mask, cond, image_rope, text_rope)

        out = FinalLayer(c.patch_dim, c.use_adaln, c.use_rmsnorm, dtype=dtype, name="final_layer")(
            tokens, cond
        )
        return unpatchify(out, c).astype(jnp.float32)


def dummy_inputs(config: ModelConfig, batch_size: int = 1) -> tuple[jax.Array, jax.Array, Any, Any]:
    """Zero inputs `(x, t, text, mask)` of the right shapes, for `init` and `eval_shape`.

    With several text encoders, `text` and `mask` are tuples with one entry per encoder.
    """
    x = jnp.zeros((batch_size, config.in_channels, config.latent_size, config.latent_size), jnp.float32)
    t = jnp.zeros((batch_size,), jnp.float32)
    texts = tuple(jnp.zeros((batch_size, n, d), jnp.float32) for d, n in config.encoder_specs)
    masks = tuple(jnp.ones((batch_size, n), bool) for _, n in config.encoder_specs)
    if config.num_encoders == 1:
        return x, t, texts[0], masks[0]
    return x, t, texts, masks


def init_variables(config: ModelConfig, rng: jax.Array) -> dict[str, Any]:
    """Freshly initialised variables `{"params": …}` of `DiT(config)` (§1 initialisation)."""
    variables = DiT(config).init(rng, *dummy_inputs(config))
    return dict(variables)
