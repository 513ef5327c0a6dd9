"""The `single_stream` backbone, Lumina-Image-2.0-like (docs/design-space.md §5.1, §5.3).

1. `refiner_layers` **context refiners** on the text only, with the text mask and text RoPE, never
   modulated.
2. `refiner_layers` **noise refiners** on the image only, with image RoPE and no mask; modulated
   when `use_adaln`.
3. The main blocks run on `[image ; text]` with one set of qkv / projection / FFN weights and one
   AdaLN modulation; the key mask is `[ones ; text_mask]`. Out blocks start with one skip linear
   over the concatenated sequence (§5.1).
4. In every masked block the attention outputs at padded query positions are zeroed before the
   output projection, and the block output is multiplied by the mask ⚑.
5. The image tokens go to the final layer.

Sandwich norms (norm3/norm4) exist only in modulated blocks ⚑: without AdaLN, and in the context
refiners, `use_sandwich_norm` does nothing and creates no parameters.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from models.config import ModelConfig
from models.cross_attn import Modulation
from models.layers import Attention, RopeTables, adaln_chunks, dense, ffn_layer, modulate, norm_layer
from models.long_skip import is_out_block, run_long_skips


class SingleStreamBlock(nn.Module):
    """One single-stream block (main block or refiner).

    Attributes:
        config: the model config.
        modulated: AdaLN-modulated (shift/scale/gate from `cond`); only then can sandwich norms exist.
        use_skip: an out block that starts with `skip_linear` over `concat(x, skip)` (§5.1).

    `__call__(x, cond, rope, mask, skip)`: `mask` (B, N) marks valid tokens (None: no mask). With a
    mask, keys are masked, padded query outputs are zeroed before the projection and the block
    output is multiplied by the mask ⚑.
    """

    config: ModelConfig
    modulated: bool = True
    use_skip: bool = False

    @nn.compact
    def __call__(
        self,
        x: jax.Array,
        cond: jax.Array,
        rope: RopeTables | None,
        mask: jax.Array | None = None,
        skip: jax.Array | None = None,
    ) -> jax.Array:
        c = self.config
        dtype = jnp.dtype(c.dtype)
        if self.use_skip:
            if skip is None:
                raise ValueError("an out block (use_skip=True) needs the skip tensor")
            skip_linear = dense(c.hidden, dtype=dtype, name="skip_linear", xavier=True)
            x = skip_linear(jnp.concatenate([x, skip], axis=-1))

        mod = None
        if self.modulated:
            chunks = adaln_chunks(cond, c.adaln_chunks, dtype=dtype, name="adaLN_modulation")
            mod = Modulation.from_chunks(chunks, c.wo_shift)
        sandwich = c.use_sandwich_norm and mod is not None  # ⚑ only in modulated blocks

        h = norm_layer(c.use_rmsnorm, name="norm1")(x)
        if mod is not None:
            h = modulate(h, mod.shift_msa, mod.scale_msa)
        a = Attention(c.heads, c.use_qknorm, c.use_rmsnorm, dtype=dtype, name="attn")(h, rope, mask)
        if sandwich:
            a = norm_layer(c.use_rmsnorm, name="norm3")(a)
        x = x + (a if mod is None else mod.gate_msa * a)

        h = norm_layer(c.use_rmsnorm, name="norm2")(x)
        if mod is not None:
            h = modulate(h, mod.shift_mlp, mod.scale_mlp)
        m = ffn_layer(c.use_swiglu, c.ffn_hidden, dtype=dtype, name="mlp")(h)
        if sandwich:
            m = norm_layer(c.use_rmsnorm, name="norm4")(m)
        x = x + (m if mod is None else mod.gate_mlp * m)
        if mask is not None:
            x = x * mask[:, :, None].astype(x.dtype)
        return x


class SingleStreamBackbone:
    """Builds the refiners and blocks as children of the calling module and runs them.

    Construct inside the parent's compact method: the modules become `context_refiner_{i}`,
    `noise_refiner_{i}` and `blocks_{i}` of the parent.
    """

    def __init__(self, config: ModelConfig) -> None:
        c = config
        self.config = c
        self.context_refiners = [
            SingleStreamBlock(c, modulated=False, name=f"context_refiner_{i}")
            for i in range(c.refiner_layers)
        ]
        self.noise_refiners = [
            SingleStreamBlock(c, modulated=c.use_adaln, name=f"noise_refiner_{i}")
            for i in range(c.refiner_layers)
        ]
        self.blocks = [
            SingleStreamBlock(c, modulated=c.use_adaln, use_skip=is_out_block(c, i), name=f"blocks_{i}")
            for i in range(c.depth)
        ]

    def __call__(
        self,
        image: jax.Array,
        text: jax.Array,
        text_mask: jax.Array,
        cond: jax.Array,
        image_rope: RopeTables | None,
        text_rope: RopeTables | None,
    ) -> jax.Array:
        """image (B, N, H), text (B, L, H), text_mask (B, L) bool → image tokens (B, N, H)."""
        for refiner in self.context_refiners:
            text = refiner(text, cond, text_rope, text_mask)
        for refiner in self.noise_refiners:
            image = refiner(image, cond, image_rope, None)

        n = image.shape[1]
        x = jnp.concatenate([image, text], axis=1)
        mask = jnp.concatenate([jnp.ones(image.shape[:2], bool), text_mask.astype(bool)], axis=1)
        rope = None
        if image_rope is not None and text_rope is not None:
            rope = (
                jnp.concatenate([image_rope[0], text_rope[0]], axis=1),
                jnp.concatenate([image_rope[1], text_rope[1]], axis=1),
            )

        def call(block: SingleStreamBlock, h: jax.Array, skip: jax.Array | None) -> jax.Array:
            return block(h, cond, rope, mask, skip)

        x = run_long_skips(self.blocks, x, call, use_long_skip=self.config.use_long_skip)
        return x[:, :n]
