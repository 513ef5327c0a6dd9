"""The T5 encoder stack in Flax (T5 v1.1 and the original T5), loading Hugging Face checkpoints (§4.1).

Mirrors `transformers`' `T5EncoderModel`:

- token embedding `shared` (not scaled), no absolute positions;
- each block: `x += SelfAttn(RMS(x))`, `x += FFN(RMS(x))`, where RMS is T5's layer norm
  (`x·rsqrt(mean(x²)+eps)·scale`, no mean, no bias, in float32);
- attention: q/k/v/o without biases and **without** the 1/sqrt(d) scaling; a learned relative
  position bias (bidirectional buckets, computed by the first block and shared by all blocks) is
  added to the logits, and padded keys get the most negative finite float32;
- FFN: gated-GELU for v1.1 (`wo(gelu_tanh(wi_0 x) · wi_1 x)`), or `wo(relu(wi x))` for the original;
- a final RMS norm. The features are its output (B, L, d_model).

Decoder weights and the LM head in a full `T5ForConditionalGeneration` checkpoint are ignored.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from models.hf_weights import default_module_path
from models.layers import RMSNorm
from models.text_encoders.bert import ACTIVATIONS
from models.text_encoders.hf import (
    GatedMLP,
    PretrainedTextEncoder,
    attention,
    dense,
    heads_projection,
    load_hf_config,
)


@dataclass(frozen=True)
class T5Settings:
    """The encoder fields of a Hugging Face `T5Config`."""

    vocab_size: int
    d_model: int
    d_kv: int
    heads: int
    d_ff: int
    layers: int
    buckets: int = 32
    max_distance: int = 128
    eps: float = 1e-6
    gated: bool = True
    act: str = "gelu_new"

    @classmethod
    def from_hf(cls, config: Any) -> T5Settings:
        """From a `transformers.T5Config` (`feed_forward_proj` "gated-gelu" for v1.1, "relu" for T5)."""
        proj = str(config.feed_forward_proj)
        gated = proj.startswith("gated-")
        act = proj.removeprefix("gated-")
        act = "gelu_new" if act == "gelu" else act  # HF maps "gated-gelu" to the tanh GELU
        if act not in ACTIVATIONS:
            raise NotImplementedError(f"feed_forward_proj {proj!r} is not supported")
        return cls(
            vocab_size=int(config.vocab_size),
            d_model=int(config.d_model),
            d_kv=int(config.d_kv),
            heads=int(config.num_heads),
            d_ff=int(config.d_ff),
            layers=int(config.num_layers),
            buckets=int(config.relative_attention_num_buckets),
            max_distance=int(config.relative_attention_max_distance),
            eps=float(config.layer_norm_epsilon),
            gated=gated,
            act=act,
        )


def relative_position_buckets(length: int, num_buckets: int = 32, max_distance: int = 128) -> np.ndarray:
    """Bidirectional T5 buckets of `key − query` for every (query, key) pair, (length, length) int32.

    Half of the buckets are for keys after the query. Within a half, distances below `n/2` (n the
    buckets per half) get their own bucket; larger ones share logarithmically spaced buckets up to
    `max_distance`, and everything beyond goes to the last bucket. Computed in float32 and truncated,
    as the reference does.
    """
    positions = np.arange(length, dtype=np.int64)
    relative = positions[None, :] - positions[:, None]
    half = num_buckets // 2
    buckets = (relative > 0).astype(np.int64) * half
    distance = np.abs(relative)
    max_exact = half // 2
    scaled = np.log(np.maximum(distance, 1).astype(np.float32) / np.float32(max_exact))
    scaled = scaled / np.float32(math.log(max_distance / max_exact)) * np.float32(half - max_exact)
    large = np.minimum(max_exact + scaled.astype(np.int64), half - 1)
    return (buckets + np.where(distance < max_exact, distance, large)).astype(np.int32)


class T5Attention(nn.Module):
    """q/k/v/o (no biases), no logit scaling, relative position bias (owned by the first block)."""

    settings: T5Settings
    has_relative_bias: bool = False
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(
        self, x: jax.Array, mask: jax.Array, position_bias: jax.Array | None
    ) -> tuple[jax.Array, jax.Array]:
        s = self.settings
        length = x.shape[1]
        q, k, v = (heads_projection(x, n, s.heads, s.d_kv, self.dtype, bias=False) for n in ("q", "k", "v"))
        if position_bias is None:
            if not self.has_relative_bias:
                raise ValueError("the first block must own the relative attention bias")
            table = nn.Embed(s.buckets, s.heads, param_dtype=jnp.float32, name="relative_attention_bias")
            buckets = relative_position_buckets(length, s.buckets, s.max_distance)
            position_bias = table(jnp.asarray(buckets)).transpose(2, 0, 1)[None]  # (1, heads, L, L)
        out = attention(q, k, v, mask[:, None, :], bias=position_bias)
        return dense(s.d_model, "o", self.dtype, bias=False)(out), position_bias


class T5LayerSelfAttention(nn.Module):
    """`x + SelfAttention(layer_norm(x))` (HF `T5LayerSelfAttention`, `layer.0` of a block)."""

    settings: T5Settings
    has_relative_bias: bool = False
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(
        self, x: jax.Array, mask: jax.Array, position_bias: jax.Array | None
    ) -> tuple[jax.Array, jax.Array]:
        h = RMSNorm(self.settings.eps, name="layer_norm")(x)
        attn = T5Attention(self.settings, self.has_relative_bias, self.dtype, name="SelfAttention")
        out, position_bias = attn(h, mask, position_bias)
        return x + out, position_bias


class T5DenseFFN(nn.Module):
    """The original T5's plain `wo(act(wi x))` (HF `DenseReluDense`; v1.1's gated one is a `GatedMLP`)."""

    settings: T5Settings
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        s = self.settings
        h = ACTIVATIONS[s.act](dense(s.d_ff, "wi", self.dtype, bias=False)(x))
        return dense(s.d_model, "wo", self.dtype, bias=False)(h)


class T5LayerFF(nn.Module):
    """`x + DenseReluDense(layer_norm(x))` (HF `T5LayerFF`, `layer.1` of a block)."""

    settings: T5Settings
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        s = self.settings
        h = RMSNorm(s.eps, name="layer_norm")(x)
        if s.gated:  # wo(act(wi_0 x) · wi_1 x)
            ffn: nn.Module = GatedMLP(
                s.d_model,
                s.d_ff,
                ACTIVATIONS[s.act],
                self.dtype,
                ("wi_0", "wi_1", "wo"),
                name="DenseReluDense",
            )
        else:
            ffn = T5DenseFFN(s, self.dtype, name="DenseReluDense")
        return x + ffn(h)


class T5Block(nn.Module):
    """`layer_0` (self-attention) then `layer_1` (feed-forward)."""

    settings: T5Settings
    has_relative_bias: bool = False
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(
        self, x: jax.Array, mask: jax.Array, position_bias: jax.Array | None
    ) -> tuple[jax.Array, jax.Array]:
        attn = T5LayerSelfAttention(self.settings, self.has_relative_bias, self.dtype, name="layer_0")
        x, position_bias = attn(x, mask, position_bias)
        return T5LayerFF(self.settings, self.dtype, name="layer_1")(x), position_bias


class T5EncoderStack(nn.Module):
    """`block_0 … block_{n−1}` and `final_layer_norm` (HF `T5Stack`, encoder side)."""

    settings: T5Settings
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, mask: jax.Array) -> jax.Array:
        position_bias = None
        for i in range(self.settings.layers):
            block = T5Block(self.settings, has_relative_bias=i == 0, dtype=self.dtype, name=f"block_{i}")
            x, position_bias = block(x, mask, position_bias)
        return RMSNorm(self.settings.eps, name="final_layer_norm")(x)


class T5EncoderModel(nn.Module):
    """`apply({"params": p}, ids (B, L) int, mask (B, L) bool) -> last hidden state (B, L, d_model)`."""

    settings: T5Settings
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, ids: jax.Array, mask: jax.Array) -> jax.Array:
        s = self.settings
        x = nn.Embed(s.vocab_size, s.d_model, param_dtype=jnp.float32, name="shared")(ids).astype(self.dtype)
        return T5EncoderStack(s, self.dtype, name="encoder")(x, mask.astype(bool))


def t5_module_path(torch_module: str) -> str | None:
    """HF T5 names → `T5EncoderModel` paths; `layer.0` / `block.3` become `layer_0` / `block_3`."""
    return default_module_path(torch_module)


def t5_ignored(torch_name: str) -> bool:
    """The decoder, the LM head and the tied copy `encoder.embed_tokens` are not used."""
    return torch_name.startswith(("decoder.", "lm_head.", "encoder.embed_tokens."))


def t5_untie(tensors: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Use `encoder.embed_tokens.weight` as `shared.weight` when only the tied copy was saved."""
    if "shared.weight" not in tensors and "encoder.embed_tokens.weight" in tensors:
        tensors = dict(tensors)
        tensors["shared.weight"] = tensors.pop("encoder.embed_tokens.weight")
    return tensors


class T5Encoder(PretrainedTextEncoder):
    """A T5-family encoder (T5 v1.1, e.g. DeepFloyd t5-v1_1-xxl) with its tokenizer."""

    family: ClassVar[str] = "t5"

    @classmethod
    def from_pretrained(cls, path: str | Path, token_len: int = 120, dtype: str = "float32") -> T5Encoder:
        """Load config, tokenizer and safetensors weights from a Hugging Face checkpoint directory.

        Args:
            path: directory with config.json, the tokenizer files and model.safetensors (a
                `T5EncoderModel` or a full `T5ForConditionalGeneration` checkpoint).
            token_len: captions are truncated / padded to this many tokens (120 in the reference).
            dtype: compute dtype, "float32" or "bfloat16".
        """
        settings = T5Settings.from_hf(load_hf_config(path))
        return cls.from_checkpoint(
            T5EncoderModel(settings, jnp.dtype(dtype)),
            path,
            dim=settings.d_model,
            token_len=token_len,
            dtype=dtype,
            module_path=t5_module_path,
            ignore=t5_ignored,
            prepare=t5_untie,
        )
