"""Model FLOPs of a DiT training step, from the config alone (pure Python; used for MFU).

Counted: every matrix multiplication, at 2 FLOPs per multiply-add —

- dense layers: `2 · tokens · fan_in · fan_out` for the tokens they are applied to (image tokens
  N = grid², text tokens L_i per encoder, the context L_ctx after concatenation and repeat);
- attention: `4 · N_q · N_k · H` per layer (q·kᵀ and probs·v over all heads);
- per-sample layers (timestep embedder, AdaLN projections): `2 · fan_in · fan_out`.

Not counted: norms, softmax, activations, RoPE, elementwise ops, the optimizer, the frozen text
encoder and the VAE (features and latents are inputs of the step). Padded text tokens are counted
(the reference computes them). A training step is forward + backward = 3 × forward per image.
"""

from __future__ import annotations

from models.config import ModelConfig

TIMESTEP_FEATURES = 256


def _ffn(c: ModelConfig) -> int:
    """Multiply-adds of one FFN per token: SwiGLU H·2F + F·H, or MLP 2·H·F."""
    return 3 * c.hidden * c.ffn_hidden if c.use_swiglu else 2 * c.hidden * c.ffn_hidden


def _self_attention(c: ModelConfig, tokens: int) -> int:
    """FLOPs of a fused-qkv self-attention over `tokens` (projections and scores)."""
    h = c.hidden
    return 2 * tokens * 4 * h * h + 4 * tokens * tokens * h


def _prenorm_block(c: ModelConfig, tokens: int) -> int:
    return _self_attention(c, tokens) + 2 * tokens * _ffn(c)


def _adaln(c: ModelConfig) -> int:
    return 2 * c.hidden * c.adaln_chunks * c.hidden if c.use_adaln else 0


def forward_flops(config: ModelConfig) -> int:
    """Forward FLOPs of `DiT(config)` for one image (see the module doc for what is counted)."""
    c = config
    h, n, ctx = c.hidden, c.num_patches, c.context_len
    flops = 2 * n * c.patch_dim * h  # patchify conv
    if c.use_image_connector:
        flops += _prenorm_block(c, n)
    for dim, length in c.encoder_specs:  # adapters run on each encoder's own tokens
        flops += 2 * length * dim * h
        if c.adapter == "mlp":
            flops += 2 * length * h * h
        else:
            flops += c.adapter_blocks * _prenorm_block(c, length)
    if c.use_timestep:
        flops += 2 * (TIMESTEP_FEATURES * h + h * h)
    skips = c.depth // 2 if c.use_long_skip else 0

    if c.backbone == "cross_attn":
        cross = 2 * n * 2 * h * h + 2 * ctx * 2 * h * h + 4 * n * ctx * h  # q, proj; k, v; scores
        block = _adaln(c) + _self_attention(c, n) + cross + 2 * n * _ffn(c)
        flops += c.depth * block + skips * 2 * n * 2 * h * h
    elif c.backbone == "single_stream":
        joint = n + ctx
        flops += c.refiner_layers * (_prenorm_block(c, ctx) + _prenorm_block(c, n) + _adaln(c))
        flops += c.depth * (_adaln(c) + _prenorm_block(c, joint)) + skips * 2 * joint * 2 * h * h
    else:  # dual_stream: per-stream projections and FFNs, one joint softmax
        joint = n + ctx
        block = _adaln(c) + 2 * joint * (4 * h * h + _ffn(c)) + 4 * joint * joint * h
        flops += c.depth * block + skips * 2 * joint * 2 * h * h
    final = 2 * n * h * c.patch_dim + (2 * h * 2 * h if c.use_adaln else 0)
    return flops + final


def train_flops_per_image(config: ModelConfig) -> int:
    """Forward + backward (2× forward) FLOPs for one image: `3 · forward_flops`."""
    return 3 * forward_flops(config)


def train_flops_per_step(config: ModelConfig, batch_size: int) -> int:
    """Model FLOPs of one training step on `batch_size` images."""
    return batch_size * train_flops_per_image(config)
