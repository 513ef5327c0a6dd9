"""The `cross_attn` backbone: blocks and long-skip wiring (docs/design-space.md §5.1, §5.2).

Block with AdaLN (out blocks first apply the skip linear over `concat(x, skip)`):

1. `a = SelfAttn(modulate(norm1 x), RoPE)`; `a ← norm3(a)` if sandwich; `x += gate_msa·a`.
2. `x += CrossAttn(q = x, kv = context, key mask)` — no pre-norm, gate, modulation or sandwich ⚑.
3. `m = FFN(modulate(norm2 x))`; `m ← norm4(m)` if sandwich; `x += gate_mlp·m`.

Without AdaLN: the same steps with plain pre-norms and no gates; `cond` is ignored (§5.5).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import flax.linen as nn
import jax
import jax.numpy as jnp

from models.config import ModelConfig
from models.layers import (
    Attention,
    CrossAttention,
    RopeTables,
    adaln_chunks,
    dense,
    ffn_layer,
    modulate,
    norm_layer,
)
from models.long_skip import is_out_block, num_in_blocks, run_long_skips

__all__ = ["CrossAttnBlock", "Modulation", "make_blocks", "num_in_blocks", "run_blocks"]


@dataclass(frozen=True)
class Modulation:
    """The AdaLN modulation tensors of a block, each (B, 1, H); shifts are None under `wo_shift` (§2)."""

    shift_msa: jax.Array | None
    scale_msa: jax.Array
    gate_msa: jax.Array
    shift_mlp: jax.Array | None
    scale_mlp: jax.Array
    gate_mlp: jax.Array

    @classmethod
    def from_chunks(cls, chunks: Sequence[jax.Array], wo_shift: bool) -> Modulation:
        """Split order: shift, scale, gate (msa) then shift, scale, gate (mlp).

        With `wo_shift` the 4 chunks are scale_msa, gate_msa, scale_mlp, gate_mlp [uncertain order].
        """
        if wo_shift:
            scale_msa, gate_msa, scale_mlp, gate_mlp = chunks
            return cls(None, scale_msa, gate_msa, None, scale_mlp, gate_mlp)
        shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = chunks
        return cls(shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp)


class CrossAttnBlock(nn.Module):
    """One `cross_attn` block; `use_skip` marks an out block that starts with the skip linear (§5.1)."""

    config: ModelConfig
    use_skip: bool = False

    @nn.compact
    def __call__(
        self,
        x: jax.Array,
        context: jax.Array,
        context_mask: jax.Array,
        cond: jax.Array,
        rope: RopeTables | None,
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
        if c.use_adaln:
            chunks = adaln_chunks(cond, c.adaln_chunks, dtype=dtype, name="adaLN_modulation")
            mod = Modulation.from_chunks(chunks, c.wo_shift)

        # 1. self-attention on image tokens, with RoPE
        h = norm_layer(c.use_rmsnorm, name="norm1")(x)
        if mod is not None:
            h = modulate(h, mod.shift_msa, mod.scale_msa)
        a = Attention(c.heads, c.use_qknorm, c.use_rmsnorm, dtype=dtype, name="attn")(h, rope)
        if c.use_sandwich_norm:
            a = norm_layer(c.use_rmsnorm, name="norm3")(a)
        x = x + (a if mod is None else mod.gate_msa * a)

        # 2. cross-attention to the text context: no norm, gate, modulation or sandwich ⚑
        cross = CrossAttention(c.heads, c.use_qknorm, c.use_rmsnorm, dtype=dtype, name="cross_attn")
        x = x + cross(x, context, context_mask)

        # 3. feed-forward
        h = norm_layer(c.use_rmsnorm, name="norm2")(x)
        if mod is not None:
            h = modulate(h, mod.shift_mlp, mod.scale_mlp)
        m = ffn_layer(c.use_swiglu, c.ffn_hidden, dtype=dtype, name="mlp")(h)
        if c.use_sandwich_norm:
            m = norm_layer(c.use_rmsnorm, name="norm4")(m)
        return x + (m if mod is None else mod.gate_mlp * m)


def make_blocks(config: ModelConfig) -> list[CrossAttnBlock]:
    """`blocks_0 … blocks_{d−1}`; with long skips the last d//2 are out blocks (§5.1).

    Call inside the parent's compact method so the blocks become its children.
    """
    return [
        CrossAttnBlock(config, use_skip=is_out_block(config, i), name=f"blocks_{i}")
        for i in range(config.depth)
    ]


def run_blocks(
    blocks: Sequence[CrossAttnBlock],
    x: jax.Array,
    context: jax.Array,
    context_mask: jax.Array,
    cond: jax.Array,
    rope: RopeTables | None,
    *,
    use_long_skip: bool,
) -> jax.Array:
    """Run the blocks; with long skips, in-block outputs go on a stack that out blocks pop LIFO ⚑."""

    def call(block: CrossAttnBlock, h: jax.Array, skip: jax.Array | None) -> jax.Array:
        return block(h, context, context_mask, cond, rope, skip)

    return run_long_skips(blocks, x, call, use_long_skip=use_long_skip)
