"""The Qwen3 and Qwen3-VL (language tower) decoders in Flax as text encoders, loading HF checkpoints (§4.1).

Mirrors `transformers`' `Qwen3Model` / `Qwen3VLTextModel`; the features are their last hidden state:

- token embedding `embed_tokens` (not scaled), no absolute positions;
- each layer: `x += Attn(RMS(x))`, `x += MLP(RMS(x))` (`input_layernorm`, `post_attention_layernorm`),
  RMS = `x·rsqrt(mean(x²)+eps)·scale` in float32;
- attention: q/k/v/o (biases only if `attention_bias`), grouped-query (each key/value head serves
  `heads / kv_heads` consecutive query heads), an RMS norm over the head dim of every q and k head
  (`q_norm`, `k_norm`) *before* RoPE, logits scaled by 1/sqrt(head_dim), causal and key-padding mask;
- RoPE on the positions 0…L−1 (`rotate_half` layout: frequencies `θ^(−2i/d)` repeated over both halves);
- MLP: SwiGLU `down(silu(gate x) · up x)`; a final RMS norm `norm`.

Qwen3-VL's multimodal RoPE splits the frequencies among three position axes (t, h, w; `mrope_section`,
interleaved in transformers). For text-only input all three axes carry the same positions 0…L−1, so
every frequency is taken at the same position whatever the split: it reduces exactly to the 1-D RoPE above.
The vision tower and the LM head of a checkpoint are ignored.

Padding is on the right, so the valid positions (0…n−1) and, with causal attention, their features do
not depend on the padding. Option `system_prompt` (the `_system_prompt` catalogue variants) wraps each
caption in the Qwen-Image chat template :data:`QWEN_IMAGE_TEMPLATE`; the prefix tokens (the template
before the caption, counted with the checkpoint's own tokenizer) are dropped from the features and the
mask after the model ran on the wrapped sequence, leaving `token_len` positions. The wrapped sequence is
truncated to prefix + `token_len` tokens before the model runs: with causal attention this equals running
on the whole wrapped sequence and truncating afterwards.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Self

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from models.hf_weights import default_module_path
from models.layers import RMSNorm
from models.text_encoders.hf import (
    GatedMLP,
    PretrainedTextEncoder,
    apply_rope,
    attention,
    causal_mask,
    dense,
    heads_projection,
    load_hf_config,
    load_tokenizer,
    rope_tables,
)

#: Qwen-Image's chat template (the `_system_prompt` encoder variants, §4.1); the caption replaces `{}`.
QWEN_IMAGE_TEMPLATE = (
    "<|im_start|>system\nDescribe the image by detailing the color, shape, size, texture, quantity, text, "
    "spatial relationships of the objects and background:<|im_end|>\n<|im_start|>user\n{}<|im_end|>\n"
    "<|im_start|>assistant\n"
)

#: Checkpoint name prefixes of the language tower: `Qwen3VLForConditionalGeneration`, `Qwen3VLModel`,
#: `Qwen3ForCausalLM` (`Qwen3Model` / `Qwen3VLTextModel` have none). Checked in this order.
TOWER_PREFIXES = ("model.language_model.", "language_model.", "model.")
#: Tensors not used by the text encoder: the LM head and the vision tower.
IGNORED_PREFIXES = ("lm_head.", "visual.", "model.visual.")


@dataclass(frozen=True)
class Qwen3Settings:
    """The fields of a `Qwen3Config` / `Qwen3VLTextConfig` the language model needs."""

    vocab_size: int
    hidden: int
    intermediate: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    rope_theta: float
    eps: float = 1e-6
    attention_bias: bool = False

    @classmethod
    def from_hf(cls, config: Any) -> Qwen3Settings:
        """From a `Qwen3Config`, a `Qwen3VLTextConfig` or a `Qwen3VLConfig` (its `text_config`)."""
        text = config.get_text_config()
        rope = dict(text.rope_parameters or {})
        if rope.get("rope_type", "default") != "default":
            raise NotImplementedError(f"rope_type {rope['rope_type']!r} is not supported")
        if text.hidden_act != "silu":
            raise NotImplementedError(f"hidden_act {text.hidden_act!r} is not supported")
        layer_types = getattr(text, "layer_types", None) or ["full_attention"]
        if set(layer_types) != {"full_attention"}:
            raise NotImplementedError("sliding-window attention layers are not supported")
        heads = int(text.num_attention_heads)
        return cls(
            vocab_size=int(text.vocab_size),
            hidden=int(text.hidden_size),
            intermediate=int(text.intermediate_size),
            layers=int(text.num_hidden_layers),
            heads=heads,
            kv_heads=int(text.num_key_value_heads or heads),
            head_dim=int(getattr(text, "head_dim", None) or text.hidden_size // heads),
            rope_theta=float(rope["rope_theta"]),
            eps=float(text.rms_norm_eps),
            attention_bias=bool(text.attention_bias),
        )


class Qwen3Attention(nn.Module):
    """Causal grouped-query self-attention with per-head q/k RMS norms and RoPE (HF `self_attn`)."""

    settings: Qwen3Settings
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, mask: jax.Array, cos: jax.Array, sin: jax.Array) -> jax.Array:
        s = self.settings
        q = heads_projection(x, "q_proj", s.heads, s.head_dim, self.dtype, s.attention_bias)
        k = heads_projection(x, "k_proj", s.kv_heads, s.head_dim, self.dtype, s.attention_bias)
        v = heads_projection(x, "v_proj", s.kv_heads, s.head_dim, self.dtype, s.attention_bias)
        q = apply_rope(RMSNorm(s.eps, name="q_norm")(q), cos, sin, jnp.float32)
        k = apply_rope(RMSNorm(s.eps, name="k_norm")(k), cos, sin, jnp.float32)
        out = attention(q, k, v, causal_mask(mask), scale=s.head_dim**-0.5)
        return dense(s.hidden, "o_proj", self.dtype, s.attention_bias)(out)


class Qwen3DecoderLayer(nn.Module):
    """`x += self_attn(input_layernorm(x))`, then `x += mlp(post_attention_layernorm(x))`."""

    settings: Qwen3Settings
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, mask: jax.Array, cos: jax.Array, sin: jax.Array) -> jax.Array:
        s = self.settings
        x = x + Qwen3Attention(s, self.dtype, name="self_attn")(
            RMSNorm(s.eps, name="input_layernorm")(x), mask, cos, sin
        )
        return x + GatedMLP(s.hidden, s.intermediate, nn.silu, self.dtype, name="mlp")(
            RMSNorm(s.eps, name="post_attention_layernorm")(x)
        )


class Qwen3TextModel(nn.Module):
    """`apply({"params": p}, ids (B, L) int, mask (B, L) bool) -> last hidden state (B, L, hidden)`."""

    settings: Qwen3Settings
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, ids: jax.Array, mask: jax.Array) -> jax.Array:
        s = self.settings
        x = nn.Embed(s.vocab_size, s.hidden, param_dtype=jnp.float32, name="embed_tokens")(ids).astype(
            self.dtype
        )
        cos, sin = (jnp.asarray(t) for t in rope_tables(ids.shape[1], s.head_dim, s.rope_theta))
        for i in range(s.layers):
            x = Qwen3DecoderLayer(s, self.dtype, name=f"layers_{i}")(x, mask.astype(bool), cos, sin)
        return RMSNorm(s.eps, name="norm")(x)


def language_tower(tensors: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The language-model tensors named as in `Qwen3Model`: the LM head and vision tower dropped, the
    wrapper prefix (:data:`TOWER_PREFIXES`) removed; anything else is left for the mapping to reject."""
    out: dict[str, np.ndarray] = {}
    for name, tensor in tensors.items():
        if name.startswith(IGNORED_PREFIXES):
            continue
        prefix = next((p for p in TOWER_PREFIXES if name.startswith(p)), "")
        out[name.removeprefix(prefix)] = tensor
    return out


class Qwen3Encoder(PretrainedTextEncoder):
    """Qwen3 decoder LLMs (qwen3-1.7b, qwen3-4b-instruct-2507) as text encoders, with their tokenizer.

    With a `template`, captions are wrapped in it and its `prefix_ids` are dropped (see the module doc).
    """

    family: ClassVar[str] = "qwen3"

    def __init__(
        self,
        module: nn.Module,
        params: Any,
        tokenizer: Any,
        *,
        dim: int,
        token_len: int,
        encoder_id: str,
        template: str | None = None,
    ) -> None:
        super().__init__(module, params, tokenizer, dim=dim, token_len=token_len, encoder_id=encoder_id)
        self.template = template
        prefix = [] if template is None else tokenizer(template.split("{}")[0])["input_ids"]
        self.prefix_ids = np.asarray(prefix, np.int32)

    def tokenize(self, captions: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Ids and mask (B, prefix + token_len): the template's prefix (if any), then the caption."""
        if isinstance(captions, str):
            raise TypeError("encode takes a list of captions, not a single string")
        n = len(self.prefix_ids)
        if len(captions) == 0:
            return np.zeros((0, n + self.token_len), np.int32), np.zeros((0, n + self.token_len), bool)
        texts = [c if self.template is None else self.template.format(c) for c in captions]
        out = self.tokenizer(
            texts, padding="max_length", truncation=True, max_length=n + self.token_len, return_tensors="np"
        )
        ids, mask = np.asarray(out["input_ids"], np.int32), np.asarray(out["attention_mask"]).astype(bool)
        if not (np.all(ids[:, :n] == self.prefix_ids) and mask[:, :n].all()):
            raise ValueError("the wrapped captions do not start with the template's prefix tokens")
        return ids, mask

    def encode(self, captions: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Features (B, token_len, dim) float32 (last hidden state) and mask (B, token_len) bool, the
        template's prefix positions dropped."""
        ids, mask = self.tokenize(captions)
        n = len(self.prefix_ids)
        if len(ids) == 0:
            return np.zeros((0, self.token_len, self.dim), np.float32), mask[:, n:]
        features = self._forward(self.params, jnp.asarray(ids), jnp.asarray(mask))
        return np.asarray(features, np.float32)[:, n:], mask[:, n:]

    __call__ = encode

    @classmethod
    def from_pretrained(
        cls, path: str | Path, token_len: int = 256, dtype: str = "bfloat16", system_prompt: bool = False
    ) -> Self:
        """Load config, tokenizer and safetensors weights from a Hugging Face checkpoint directory.

        Args:
            path: directory with config.json, the tokenizer files and model.safetensors or a sharded
                model.safetensors.index.json (a bare model, a causal LM or, for Qwen3-VL, the full
                vision-language model: only the language tower is read).
            token_len: captions are truncated / padded (on the right) to this many tokens (256 in the
                catalogue).
            dtype: compute dtype, "bfloat16" or "float32".
            system_prompt: wrap captions in :data:`QWEN_IMAGE_TEMPLATE` and drop its prefix tokens.
        """
        settings = Qwen3Settings.from_hf(load_hf_config(path))
        tokenizer = load_tokenizer(path)
        tokenizer.padding_side = "right"
        tokenizer.truncation_side = "right"
        return cls.from_checkpoint(
            Qwen3TextModel(settings, jnp.dtype(dtype)),
            path,
            dim=settings.hidden,
            token_len=token_len,
            dtype=dtype,
            module_path=default_module_path,
            prepare=language_tower,
            tokenizer=tokenizer,
            id_suffix=":system_prompt=qwen-image" if system_prompt else "",
            template=QWEN_IMAGE_TEMPLATE if system_prompt else None,
        )


class Qwen3VLEncoder(Qwen3Encoder):
    """The language tower of Qwen3-VL (qwen3-vl-2b/4b-instruct, and their `_system_prompt` variants)."""

    family: ClassVar[str] = "qwen3_vl"
