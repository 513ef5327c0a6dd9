"""Closed-form parameter counts of `DiT(config)`, in pure Python (no JAX import).

Planning hundreds of runs needs parameter counts in microseconds; tracing the model with
`jax.eval_shape` (see `models.params`) takes about a second per configuration. These formulas mirror the
module tree leaf by leaf and are checked against `models.params.count_params` on randomly drawn
configurations in the tests, so any divergence between the two is a test failure.
"""

from __future__ import annotations

from models.config import ModelConfig

TIMESTEP_FEATURES = 256


def _dense(n_in: int, n_out: int, bias: bool = True) -> int:
    return n_in * n_out + (n_out if bias else 0)


def _norm(c: ModelConfig, width: int) -> int:
    """RMSNorm has a scale; LayerNorm a scale and a bias."""
    return width if c.use_rmsnorm else 2 * width


def _ffn(c: ModelConfig) -> int:
    h, f = c.hidden, c.ffn_hidden
    if c.use_swiglu:
        return _dense(h, 2 * f) + _dense(f, h)
    return _dense(h, f) + _dense(f, h)


def _qk_norms(c: ModelConfig) -> int:
    return 2 * _norm(c, c.head_dim) if c.use_qknorm else 0


def _self_attention(c: ModelConfig) -> int:
    return _dense(c.hidden, 3 * c.hidden) + _dense(c.hidden, c.hidden) + _qk_norms(c)


def _prenorm_block(c: ModelConfig) -> int:
    """A plain pre-norm transformer block (adapter blocks, image connector)."""
    return 2 * _norm(c, c.hidden) + _self_attention(c) + _ffn(c)


def _adapter(c: ModelConfig, text_dim: int, text_len: int) -> int:
    null = text_len * text_dim
    if c.adapter == "mlp":
        return null + _dense(text_dim, c.hidden) + _dense(c.hidden, c.hidden)
    return null + _dense(text_dim, c.hidden) + c.adapter_blocks * _prenorm_block(c)


def _cross_attn_block(c: ModelConfig, skip: bool) -> int:
    h = c.hidden
    n = 0
    if skip:
        n += _dense(2 * h, h)
    if c.use_adaln:
        n += _dense(h, c.adaln_chunks * h)
    n += 2 * _norm(c, h) + _self_attention(c) + _ffn(c)
    n += 4 * _dense(h, h) + _qk_norms(c)  # cross-attention q, k, v, proj
    if c.use_sandwich_norm:
        n += 2 * _norm(c, h)
    return n


def _single_stream_block(c: ModelConfig, skip: bool, modulated: bool) -> int:
    h = c.hidden
    n = _dense(2 * h, h) if skip else 0
    if modulated:
        n += _dense(h, c.adaln_chunks * h)
        if c.use_sandwich_norm:  # only modulated blocks have sandwich norms (§5.3)
            n += 2 * _norm(c, h)
    return n + 2 * _norm(c, h) + _self_attention(c) + _ffn(c)


def _dual_stream_block(c: ModelConfig, skip: bool) -> int:
    h = c.hidden
    n = 2 * _dense(2 * h, h) if skip else 0
    if c.use_adaln:
        n += _dense(h, c.adaln_chunks * h)
    streams = 2 if c.use_separate_norms else 1
    n += 2 * streams * _norm(c, h)  # norm1, norm2
    n += streams * _qk_norms(c)
    if c.use_sandwich_norm:
        n += 2 * _norm(c, h)  # norm3, norm4: always shared
    n += 2 * (_dense(h, 3 * h) + _dense(h, h) + _ffn(c))  # per-stream qkv, proj, FFN
    return n


def _final_layer(c: ModelConfig) -> int:
    n = _norm(c, c.hidden) + _dense(c.hidden, c.patch_dim)
    if c.use_adaln:
        n += _dense(c.hidden, 2 * c.hidden)
    return n


def _blocks(c: ModelConfig) -> int:
    half = c.depth // 2 if c.use_long_skip else 0
    n = 0
    for i in range(c.depth):
        skip = c.use_long_skip and i > half
        if c.backbone == "cross_attn":
            n += _cross_attn_block(c, skip)
        elif c.backbone == "single_stream":
            n += _single_stream_block(c, skip, modulated=c.use_adaln)
        else:
            n += _dual_stream_block(c, skip)
    if c.backbone == "single_stream":
        n += c.refiner_layers * (
            _single_stream_block(c, False, modulated=False)  # context refiner
            + _single_stream_block(c, False, modulated=c.use_adaln)  # noise refiner
        )
    return n


def count_params_fast(config: ModelConfig) -> int:
    """Total parameters of `DiT(config)` for any backbone and any number of text encoders."""
    c = config
    h = c.hidden
    n = c.patch_size * c.patch_size * c.in_channels * h + h  # x_embedder (conv with bias)
    if c.use_image_connector:
        n += _prenorm_block(c)
    if c.uses_sinusoidal:
        n += c.num_patches * h
    n += adapter_params(c)
    if c.use_timestep:
        n += _dense(TIMESTEP_FEATURES, h) + _dense(h, h)
    return n + _blocks(c) + _final_layer(c)


def adapter_params(config: ModelConfig) -> int:
    """Parameters of the text adapters (with their null captions) alone, summed over encoders."""
    return sum(_adapter(config, dim, length) for dim, length in config.encoder_specs)
