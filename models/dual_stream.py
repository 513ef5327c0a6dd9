"""The `dual_stream` backbone, MMDiT-like — the i1 backbone (docs/design-space.md §5.1, §5.4).

Block (out blocks first apply separate image and text skip linears over `concat(s, skip_s)`):

1. With AdaLN, **one** 6H modulation per block is applied to both streams.
2. Joint attention over `[image ; text]`: per-stream qkv (`qkv_image`, `qkv_text`), RoPE slices and
   output projections (`proj_image`, `proj_text`); key mask `[ones ; text_mask]`; padded query
   outputs are zeroed before the projections ⚑.
3. norm1, norm2 and the QK-norms are shared by both streams unless `use_separate_norms`; norm3
   (after attention) and norm4 (after the FFN) are **always shared** ⚑, with or without AdaLN.
4. Per-stream FFNs (`mlp_image`, `mlp_text`); afterwards the text is multiplied by the mask ⚑.

The i1 block (AdaLN off, sandwich on) is, for each stream s:
`s += norm3(Attn_s(norm1 img, norm1 txt))`, then `s += norm4(FFN_s(norm2 s))`.
Only image tokens reach the final layer; there are no refiners.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from models.config import ModelConfig
from models.cross_attn import Modulation
from models.layers import (
    Dtype,
    RopeTables,
    adaln_chunks,
    attend,
    dense,
    ffn_layer,
    modulate,
    norm_layer,
)
from models.long_skip import is_out_block, run_long_skips
from models.posemb import apply_rope

Streams = tuple[jax.Array, jax.Array]


class JointAttention(nn.Module):
    """MMDiT attention: per-stream fused qkv and output projections, one softmax over both streams.

    QK-norms (`q_norm`, `k_norm`) are shared by the streams, or per stream (`q_norm_image`,
    `q_norm_text`, …) with `separate_qk_norms`; RoPE comes after them (§2, §5.4).
    """

    heads: int
    use_qknorm: bool = True
    use_rmsnorm: bool = True
    separate_qk_norms: bool = False
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(
        self,
        image: jax.Array,
        text: jax.Array,
        image_rope: RopeTables | None,
        text_rope: RopeTables | None,
        text_mask: jax.Array,
    ) -> Streams:
        b, n, width = image.shape
        head_dim = width // self.heads
        shared = None
        if self.use_qknorm and not self.separate_qk_norms:
            shared = (
                norm_layer(self.use_rmsnorm, name="q_norm"),
                norm_layer(self.use_rmsnorm, name="k_norm"),
            )

        def project(x: jax.Array, stream: str, rope: RopeTables | None) -> tuple[jax.Array, ...]:
            qkv = dense(3 * width, dtype=self.dtype, name=f"qkv_{stream}")(x)
            qkv = qkv.reshape(b, x.shape[1], 3, self.heads, head_dim)
            q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]
            if shared is not None:
                q, k = shared[0](q), shared[1](k)
            elif self.use_qknorm:
                q = norm_layer(self.use_rmsnorm, name=f"q_norm_{stream}")(q)
                k = norm_layer(self.use_rmsnorm, name=f"k_norm_{stream}")(k)
            if rope is not None:
                q, k = apply_rope(q, *rope), apply_rope(k, *rope)
            return q, k, v

        qi, ki, vi = project(image, "image", image_rope)
        qt, kt, vt = project(text, "text", text_rope)
        key_mask = jnp.concatenate([jnp.ones((b, n), bool), text_mask.astype(bool)], axis=1)
        out = attend(
            jnp.concatenate([qi, qt], axis=1),
            jnp.concatenate([ki, kt], axis=1),
            jnp.concatenate([vi, vt], axis=1),
            key_mask,
        )
        out = out.reshape(b, -1, width) * key_mask[:, :, None].astype(out.dtype)  # ⚑ zero padded queries
        image_out = dense(width, dtype=self.dtype, name="proj_image")(out[:, :n])
        text_out = dense(width, dtype=self.dtype, name="proj_text")(out[:, n:])
        return image_out, text_out


class DualStreamBlock(nn.Module):
    """One dual-stream block; `use_skip` marks an out block with image and text skip linears (§5.1)."""

    config: ModelConfig
    use_skip: bool = False

    @nn.compact
    def __call__(
        self,
        streams: Streams,
        cond: jax.Array,
        image_rope: RopeTables | None,
        text_rope: RopeTables | None,
        text_mask: jax.Array,
        skip: Streams | None = None,
    ) -> Streams:
        c = self.config
        dtype = jnp.dtype(c.dtype)
        image, text = streams
        if self.use_skip:
            if skip is None:
                raise ValueError("an out block (use_skip=True) needs the skip tensors")
            skip_image = dense(c.hidden, dtype=dtype, name="skip_linear_image", xavier=True)
            skip_text = dense(c.hidden, dtype=dtype, name="skip_linear_text", xavier=True)
            image = skip_image(jnp.concatenate([image, skip[0]], axis=-1))
            text = skip_text(jnp.concatenate([text, skip[1]], axis=-1))

        mod = None
        if c.use_adaln:  # one modulation for both streams
            chunks = adaln_chunks(cond, c.adaln_chunks, dtype=dtype, name="adaLN_modulation")
            mod = Modulation.from_chunks(chunks, c.wo_shift)

        def norms(index: int) -> tuple[nn.Module, nn.Module]:
            if c.use_separate_norms:
                return (
                    norm_layer(c.use_rmsnorm, name=f"norm{index}_image"),
                    norm_layer(c.use_rmsnorm, name=f"norm{index}_text"),
                )
            shared = norm_layer(c.use_rmsnorm, name=f"norm{index}")
            return shared, shared

        norm1, norm2 = norms(1), norms(2)
        norm3 = norm_layer(c.use_rmsnorm, name="norm3") if c.use_sandwich_norm else None  # ⚑ shared
        norm4 = norm_layer(c.use_rmsnorm, name="norm4") if c.use_sandwich_norm else None

        h_image, h_text = norm1[0](image), norm1[1](text)
        if mod is not None:
            h_image = modulate(h_image, mod.shift_msa, mod.scale_msa)
            h_text = modulate(h_text, mod.shift_msa, mod.scale_msa)
        attn = JointAttention(
            c.heads,
            c.use_qknorm,
            c.use_rmsnorm,
            separate_qk_norms=c.use_separate_norms,
            dtype=dtype,
            name="attn",
        )
        a_image, a_text = attn(h_image, h_text, image_rope, text_rope, text_mask)
        if norm3 is not None:
            a_image, a_text = norm3(a_image), norm3(a_text)
        if mod is not None:
            a_image, a_text = mod.gate_msa * a_image, mod.gate_msa * a_text
        image, text = image + a_image, text + a_text

        h_image, h_text = norm2[0](image), norm2[1](text)
        if mod is not None:
            h_image = modulate(h_image, mod.shift_mlp, mod.scale_mlp)
            h_text = modulate(h_text, mod.shift_mlp, mod.scale_mlp)
        m_image = ffn_layer(c.use_swiglu, c.ffn_hidden, dtype=dtype, name="mlp_image")(h_image)
        m_text = ffn_layer(c.use_swiglu, c.ffn_hidden, dtype=dtype, name="mlp_text")(h_text)
        if norm4 is not None:
            m_image, m_text = norm4(m_image), norm4(m_text)
        if mod is not None:
            m_image, m_text = mod.gate_mlp * m_image, mod.gate_mlp * m_text
        image, text = image + m_image, text + m_text
        return image, text * text_mask[:, :, None].astype(text.dtype)


class DualStreamBackbone:
    """Builds `blocks_{i}` as children of the calling module (construct inside its compact method)."""

    def __init__(self, config: ModelConfig) -> None:
        self.config = config
        self.blocks = [
            DualStreamBlock(config, use_skip=is_out_block(config, i), name=f"blocks_{i}")
            for i in range(config.depth)
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
        mask = text_mask.astype(bool)

        def call(block: DualStreamBlock, s: Streams, skip: Streams | None) -> Streams:
            return block(s, cond, image_rope, text_rope, mask, skip)

        image, _ = run_long_skips(self.blocks, (image, text), call, use_long_skip=self.config.use_long_skip)
        return image
