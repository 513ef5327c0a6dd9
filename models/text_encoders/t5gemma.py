"""The T5Gemma and T5Gemma 2 text encoders in Flax (encoder only), loading Hugging Face checkpoints (§4.1).

Mirrors the encoder of `transformers`' `T5GemmaModel` (`model_type` "t5gemma", Gemma-2-style layers)
and the text encoder of `T5Gemma2Model` ("t5gemma2", Gemma-3-style layers; the vision tower is
ignored, so features are those of text-only input):

- token embedding times `sqrt(hidden)` (the factor rounded to the compute dtype, as upstream); in
  T5Gemma 2 the end-of-image token instead takes the unscaled `eoi_embedding`;
- each layer, bidirectional: `x += post_attn_norm(Attn(pre_attn_norm(x)))`, then
  `x += post_ffn_norm(MLP(pre_ffn_norm(x)))`; every norm is Gemma's RMS norm
  `x·rsqrt(mean(x²)+eps)·(1+w)` in float32; the MLP is `down(gelu_tanh(gate x) · up x)`;
- attention: grouped-query heads, RoPE at positions 0…L−1 (T5Gemma 2 has one RoPE base per layer
  type; "linear" RoPE scaling divides the frequencies), logits scaled by `query_pre_attn_scalar^-1/2`,
  then soft-capped `c·tanh(s/c)` when `attn_logit_softcapping` is set (T5Gemma only: T5Gemma 2's
  attention never applies it, whatever its config says); T5Gemma 2 RMS-normalises q and k per head
  before RoPE. Padded keys are masked; "sliding_attention" layers also mask keys by distance: T5Gemma
  keeps `|k − q| ≤ w`, T5Gemma 2 keeps `−⌈w/2⌉ < k − q ≤ ⌊w/2⌋` (`w` the config's `sliding_window`);
- a final RMS norm, whose output are the features (B, L, hidden).

Tokenisation rule ⚑ of the design space: truncate to `token_len`, pad with id 0 on the right, and
mask = (id ≠ 0), whatever the tokenizer's own padding side and attention mask say.

Full encoder–decoder checkpoints (`model.`-prefixed or not, with `encoder.text_model.` or the hub's
`encoder.` names for T5Gemma 2) are read with the decoder, LM head, vision tower and multimodal
projector ignored.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Self

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from models.hf_weights import default_module_path
from models.text_encoders.bert import ACTIVATIONS
from models.text_encoders.families import FAMILIES, FolderMismatch
from models.text_encoders.hf import (
    GatedMLP,
    PretrainedTextEncoder,
    apply_rope,
    attention,
    dense,
    heads_projection,
    load_hf_config,
    rope_tables,
)

Window = tuple[int, int] | None  # (farthest key before, farthest key after) the query; None = all keys
_TYPES = ("sliding_attention", "full_attention")


@dataclass(frozen=True)
class GemmaEncoderSettings:
    """The encoder fields of a T5Gemma / T5Gemma 2 config, resolved per layer.

    `windows[i]` and `rope[i]` (RoPE base, linear scaling factor) are layer i's; `softcap` is None
    when the attention logits are not capped; `eoi_token` is the id that takes `eoi_embedding`.
    """

    vocab_size: int
    hidden: int
    intermediate: int
    heads: int
    kv_heads: int
    head_dim: int
    query_pre_attn_scalar: float
    windows: tuple[Window, ...]
    rope: tuple[tuple[float, float], ...]
    eps: float = 1e-6
    act: str = "gelu_pytorch_tanh"
    attention_bias: bool = False
    softcap: float | None = None
    qk_norm: bool = False
    eoi_token: int | None = None

    @classmethod
    def from_t5gemma(cls, config: Any) -> GemmaEncoderSettings:
        """From a `T5GemmaConfig` (its `encoder` sub-config): a sliding layer keeps `|k − q| ≤ w`."""
        enc = config.encoder
        rope = _rope(enc.rope_parameters)
        w = enc.sliding_window
        return cls._build(enc, window=None if w is None else (w, w), rope={t: rope for t in _TYPES})

    @classmethod
    def from_t5gemma2(cls, config: Any) -> GemmaEncoderSettings:
        """From a `T5Gemma2Config` (`encoder.text_config`): a sliding layer keeps keys at
        `q − ⌈w/2⌉ < k ≤ q + ⌊w/2⌋`; RoPE per layer type; q/k norms; the end-of-image embedding."""
        text = config.encoder.text_config
        w = text.sliding_window
        window = None if w is None else ((w + 1) // 2 - 1, w // 2)
        rope = {t: _rope(text.rope_parameters[t]) for t in _TYPES if t in text.rope_parameters}
        return cls._build(
            text, window=window, rope=rope, use_softcap=False, qk_norm=True, eoi=int(config.eoi_token_index)
        )

    @classmethod
    def _build(
        cls,
        c: Any,
        *,
        window: Window,
        rope: dict[str, tuple[float, float]],
        use_softcap: bool = True,
        qk_norm: bool = False,
        eoi: int | None = None,
    ) -> GemmaEncoderSettings:
        types = list(c.layer_types)[: int(c.num_hidden_layers)]
        unknown = sorted(set(types) - set(_TYPES))
        if unknown:
            raise NotImplementedError(f"layer types {unknown} are not supported")
        act = str(c.hidden_activation)
        if act not in ACTIVATIONS:
            raise NotImplementedError(f"hidden_activation {act!r} is not supported")
        cap = c.attn_logit_softcapping if use_softcap else None
        return cls(
            vocab_size=int(c.vocab_size),
            hidden=int(c.hidden_size),
            intermediate=int(c.intermediate_size),
            heads=int(c.num_attention_heads),
            kv_heads=int(c.num_key_value_heads),
            head_dim=int(c.head_dim),
            query_pre_attn_scalar=float(c.query_pre_attn_scalar),
            windows=tuple(window if t == "sliding_attention" else None for t in types),
            rope=tuple(rope[t] for t in types),
            eps=float(c.rms_norm_eps),
            act=act,
            attention_bias=bool(c.attention_bias),
            softcap=None if cap is None else float(cap),
            qk_norm=qk_norm,
            eoi_token=eoi,
        )


def _rope(params: dict[str, Any]) -> tuple[float, float]:
    """(base, linear factor) of one `rope_parameters` entry ("default" or "linear" RoPE)."""
    kind = params.get("rope_type", "default")
    if kind not in ("default", "linear"):
        raise NotImplementedError(f"rope_type {kind!r} is not supported")
    return float(params["rope_theta"]), float(params["factor"]) if kind == "linear" else 1.0


def window_mask(length: int, window: Window) -> np.ndarray:
    """(query, key) bool: the key lies within the window around the query."""
    offset = np.arange(length)[None, :] - np.arange(length)[:, None]  # key − query
    if window is None:
        return np.ones((length, length), bool)
    before, after = window
    return (offset >= -before) & (offset <= after)


class GemmaRMSNorm(nn.Module):
    """`x·rsqrt(mean(x²)+eps)·(1+scale)` in float32 (`scale` is the checkpoint's `weight`)."""

    eps: float = 1e-6

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        scale = self.param("scale", nn.initializers.zeros, (x.shape[-1],), jnp.float32)
        x32 = x.astype(jnp.float32)
        y = x32 * jax.lax.rsqrt(jnp.mean(jnp.square(x32), axis=-1, keepdims=True) + self.eps)
        return (y * (1.0 + scale)).astype(x.dtype)


class GemmaSelfAttention(nn.Module):
    """Bidirectional grouped-query attention of one layer (HF `self_attn`)."""

    settings: GemmaEncoderSettings
    layer: int
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, mask: jax.Array) -> jax.Array:
        s = self.settings
        length = x.shape[1]
        q = heads_projection(x, "q_proj", s.heads, s.head_dim, self.dtype, s.attention_bias)
        k = heads_projection(x, "k_proj", s.kv_heads, s.head_dim, self.dtype, s.attention_bias)
        v = heads_projection(x, "v_proj", s.kv_heads, s.head_dim, self.dtype, s.attention_bias)
        if s.qk_norm:
            q = GemmaRMSNorm(s.eps, name="q_norm")(q)
            k = GemmaRMSNorm(s.eps, name="k_norm")(k)
        cos, sin = (jnp.asarray(t) for t in rope_tables(length, s.head_dim, *s.rope[self.layer]))
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        allowed = mask[:, None, :] & jnp.asarray(window_mask(length, s.windows[self.layer]))
        out = attention(q, k, v, allowed, scale=s.query_pre_attn_scalar**-0.5, softcap=s.softcap)
        return dense(s.hidden, "o_proj", self.dtype, s.attention_bias)(out)


class GemmaEncoderLayer(nn.Module):
    """Sandwich-normed attention then MLP, each added to the residual (HF `layers.i`)."""

    settings: GemmaEncoderSettings
    layer: int
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, mask: jax.Array) -> jax.Array:
        eps = self.settings.eps
        h = GemmaRMSNorm(eps, name="pre_self_attn_layernorm")(x)
        h = GemmaSelfAttention(self.settings, self.layer, self.dtype, name="self_attn")(h, mask)
        x = x + GemmaRMSNorm(eps, name="post_self_attn_layernorm")(h)
        h = GemmaRMSNorm(eps, name="pre_feedforward_layernorm")(x)
        h = GatedMLP(
            self.settings.hidden,
            self.settings.intermediate,
            ACTIVATIONS[self.settings.act],
            self.dtype,
            name="mlp",
        )(h)
        return x + GemmaRMSNorm(eps, name="post_feedforward_layernorm")(h)


class GemmaScaledEmbed(nn.Module):
    """`embedding[ids]·sqrt(hidden)` in the compute dtype; the `eoi_token` takes `eoi_embedding`."""

    settings: GemmaEncoderSettings
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, ids: jax.Array) -> jax.Array:
        s = self.settings
        table = self.param("embedding", nn.initializers.normal(0.02), (s.vocab_size, s.hidden), jnp.float32)
        x = table[ids].astype(self.dtype) * jnp.asarray(math.sqrt(s.hidden), self.dtype)
        if s.eoi_token is None:
            return x
        eoi = self.param("eoi_embedding", nn.initializers.zeros, (s.hidden,), jnp.float32)
        return jnp.where((ids == s.eoi_token)[..., None], eoi.astype(self.dtype), x)


class GemmaEncoderModel(nn.Module):
    """`apply({"params": p}, ids (B, L) int, mask (B, L) bool) -> last hidden state (B, L, hidden)`."""

    settings: GemmaEncoderSettings
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, ids: jax.Array, mask: jax.Array) -> jax.Array:
        s = self.settings
        x = GemmaScaledEmbed(s, self.dtype, name="embed_tokens")(ids)
        for i in range(len(s.windows)):
            x = GemmaEncoderLayer(s, i, self.dtype, name=f"layers_{i}")(x, mask.astype(bool))
        return GemmaRMSNorm(s.eps, name="norm")(x)


def gemma_encoder_module_path(torch_module: str) -> str:
    """`[model.]encoder.[text_model.]layers.0.mlp` → `layers_0/mlp` (anything else stays unmatched)."""
    name = torch_module.removeprefix("model.")
    if name.startswith("encoder."):
        name = name.removeprefix("encoder.").removeprefix("text_model.")
    return default_module_path(name)


def gemma_encoder_ignored(torch_name: str) -> bool:
    """The decoder, the LM head, the vision tower and the multimodal projector are not used."""
    name = torch_name.removeprefix("model.")
    return name.startswith(
        ("decoder.", "lm_head.", "encoder.vision_tower.", "encoder.multi_modal_projector.")
    )


class _GemmaFamilyEncoder(PretrainedTextEncoder):
    """Loading and the tokenisation rule ⚑ shared by the two families."""

    @staticmethod
    def _settings(config: Any) -> GemmaEncoderSettings:
        raise NotImplementedError

    def tokenize(self, captions: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Ids (B, token_len) int32 truncated to token_len and right-padded with id 0; mask = (id ≠ 0)."""
        if isinstance(captions, str):
            raise TypeError("encode takes a list of captions, not a single string")
        ids = np.zeros((len(captions), self.token_len), np.int32)
        if not captions:
            return ids, ids != 0
        rows = self.tokenizer(list(captions), truncation=True, max_length=self.token_len)["input_ids"]
        for i, row in enumerate(rows):
            ids[i, : len(row)] = row[: self.token_len]
        return ids, ids != 0

    @classmethod
    def from_pretrained(cls, path: str | Path, token_len: int = 256, dtype: str = "bfloat16") -> Self:
        """Load config, tokenizer and safetensors (single file or sharded index) from a local folder.

        Args:
            path: a full encoder–decoder checkpoint (`…Model`, `…ForConditionalGeneration`) or, for
                T5Gemma, a `T5GemmaEncoderModel` one.
            token_len: captions are truncated / padded to this many tokens (256 in the catalogue).
            dtype: compute dtype, "bfloat16" or "float32".

        Raises:
            FolderMismatch: the config's model_type is not one of the family's (`FAMILIES`).
        """
        config = load_hf_config(path)
        if config.model_type not in FAMILIES[cls.family].model_types:
            raise FolderMismatch(f"{path}: model_type {config.model_type!r} is not a {cls.family} checkpoint")
        settings = cls._settings(config)
        return cls.from_checkpoint(
            GemmaEncoderModel(settings, jnp.dtype(dtype)),
            path,
            dim=settings.hidden,
            token_len=token_len,
            dtype=dtype,
            module_path=gemma_encoder_module_path,
            ignore=gemma_encoder_ignored,
        )


class T5GemmaEncoder(_GemmaFamilyEncoder):
    """The T5Gemma encoder (google/t5gemma-2b-2b-ul2[-it], 9b-2b …): D = `encoder.hidden_size`."""

    family: ClassVar[str] = "t5gemma"

    @staticmethod
    def _settings(config: Any) -> GemmaEncoderSettings:
        return GemmaEncoderSettings.from_t5gemma(config)


class T5Gemma2Encoder(_GemmaFamilyEncoder):
    """The T5Gemma 2 text encoder (google/t5gemma-2-1b-1b, -4b-4b): D = `encoder.text_config.hidden_size`."""

    family: ClassVar[str] = "t5gemma2"

    @staticmethod
    def _settings(config: Any) -> GemmaEncoderSettings:
        return GemmaEncoderSettings.from_t5gemma2(config)
