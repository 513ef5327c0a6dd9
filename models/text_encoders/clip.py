"""The CLIP and SigLIP text towers in Flax, loading Hugging Face checkpoints (DESIGN_SPACE §4.1).

Both mirror `transformers`' `CLIPTextModel` / `SiglipTextModel` (`Siglip2TextModel` is the same
class as `SiglipTextModel`) up to `last_hidden_state`:

- token embedding plus a learned absolute position embedding (positions 0 … L−1);
- pre-LN blocks `x += Attn(LN1(x))`, `x += fc2(act(fc1(LN2(x))))`, attention with biased q/k/v/out
  projections and logits scaled by head_dim^-1/2; `act` is the config's `hidden_act` (quick_gelu for
  clip-vit-large-patch14, tanh GELU for SigLIP);
- a final LayerNorm. The features are its output (B, L, hidden); no pooler, projection or head.

The towers differ in the attention mask only:

- CLIP (`clip-large`): causal AND padding mask — query i sees keys j ≤ i that are not padding;
- SigLIP (FG-CLIP2's so400m tower): NO mask — every position attends to every position, padding
  included, as the model was trained. The tokenizer's mask is still returned with the features.

A full two-tower checkpoint (`CLIPModel`, `SiglipModel`, `Siglip2Model`, tensors under `text_model.`)
or a text-only one is read; the vision tower, projections, logit scale/bias and the SigLIP text head
are ignored.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import flax.linen as nn
import jax
import jax.numpy as jnp

from models.hf_weights import default_module_path
from models.text_encoders.bert import ACTIVATIONS, MASK_VALUE
from models.text_encoders.hf import (
    PretrainedTextEncoder,
    checkpoint_id,
    load_hf_config,
    load_params,
    load_tokenizer,
)

#: `hidden_act` values of the towers: BERT's set plus CLIP's `x·sigmoid(1.702x)`.
TOWER_ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    **ACTIVATIONS,
    "quick_gelu": lambda x: x * jax.nn.sigmoid(1.702 * x),
}


def text_config(config: Any) -> Any:
    """The text config of a full two-tower config (its `text_config`), or the config itself."""
    return getattr(config, "text_config", None) or config


@dataclass(frozen=True)
class TextTowerSettings:
    """The fields of a `CLIPTextConfig` / `SiglipTextConfig`, and which mask the tower uses."""

    vocab_size: int
    hidden: int
    layers: int
    heads: int
    intermediate: int
    max_positions: int
    eps: float
    act: str
    causal: bool

    @classmethod
    def from_hf(cls, config: Any, *, causal: bool) -> TextTowerSettings:
        """From a text config or a full CLIP / SigLIP config (its `text_config` is used).

        `causal=True`: causal and padding mask (CLIP); `causal=False`: no mask at all (SigLIP).
        """
        text = text_config(config)
        act = str(text.hidden_act)
        if act not in TOWER_ACTIVATIONS:
            raise NotImplementedError(
                f"hidden_act {act!r} is not supported; known: {sorted(TOWER_ACTIVATIONS)}"
            )
        return cls(
            vocab_size=int(text.vocab_size),
            hidden=int(text.hidden_size),
            layers=int(text.num_hidden_layers),
            heads=int(text.num_attention_heads),
            intermediate=int(text.intermediate_size),
            max_positions=int(text.max_position_embeddings),
            eps=float(text.layer_norm_eps),
            act=act,
            causal=causal,
        )


def _dense(features: int, name: str, dtype: Any) -> nn.Dense:
    return nn.Dense(features, dtype=dtype, param_dtype=jnp.float32, name=name)


def _layer_norm(x: jax.Array, eps: float, name: str) -> jax.Array:
    """LayerNorm in float32, returned in x's dtype."""
    norm = nn.LayerNorm(epsilon=eps, dtype=jnp.float32, param_dtype=jnp.float32, name=name)
    return norm(x.astype(jnp.float32)).astype(x.dtype)


class TowerAttention(nn.Module):
    """`self_attn`: q/k/v/out projections (with biases), scaled dot-product attention, float32 softmax."""

    settings: TextTowerSettings
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, allowed: jax.Array | None) -> jax.Array:
        s = self.settings
        b, length, width = x.shape
        head_dim = width // s.heads

        def heads(name: str) -> jax.Array:
            return _dense(width, name, self.dtype)(x).reshape(b, length, s.heads, head_dim)

        q, k, v = heads("q_proj"), heads("k_proj"), heads("v_proj")
        logits = jnp.einsum("bqhd,bkhd->bhqk", q, k, preferred_element_type=jnp.float32) * head_dim**-0.5
        if allowed is not None:
            logits = jnp.where(allowed, logits, MASK_VALUE)
        probs = jax.nn.softmax(logits, axis=-1).astype(v.dtype)
        out = jnp.einsum("bhqk,bkhd->bqhd", probs, v).reshape(b, length, width)
        return _dense(width, "out_proj", self.dtype)(out)


class TowerMLP(nn.Module):
    """`mlp`: `fc2(act(fc1(x)))`."""

    settings: TextTowerSettings
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        s = self.settings
        h = TOWER_ACTIVATIONS[s.act](_dense(s.intermediate, "fc1", self.dtype)(x))
        return _dense(s.hidden, "fc2", self.dtype)(h)


class TowerLayer(nn.Module):
    """One pre-LN layer: `x += self_attn(layer_norm1(x))`, `x += mlp(layer_norm2(x))`."""

    settings: TextTowerSettings
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, allowed: jax.Array | None) -> jax.Array:
        eps = self.settings.eps
        x = x + TowerAttention(self.settings, self.dtype, name="self_attn")(
            _layer_norm(x, eps, "layer_norm1"), allowed
        )
        return x + TowerMLP(self.settings, self.dtype, name="mlp")(_layer_norm(x, eps, "layer_norm2"))


class TowerEmbeddings(nn.Module):
    """`embeddings`: `token_embedding(ids) + position_embedding(0 … L−1)`."""

    settings: TextTowerSettings
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, ids: jax.Array) -> jax.Array:
        s = self.settings
        if ids.shape[1] > s.max_positions:
            raise ValueError(f"{ids.shape[1]} tokens exceed max_position_embeddings={s.max_positions}")
        tokens = nn.Embed(s.vocab_size, s.hidden, param_dtype=jnp.float32, name="token_embedding")(ids)
        positions = nn.Embed(s.max_positions, s.hidden, param_dtype=jnp.float32, name="position_embedding")
        return (tokens + positions(jnp.arange(ids.shape[1]))[None]).astype(self.dtype)


class TowerEncoder(nn.Module):
    """`encoder`: `layers_0 … layers_{n−1}`."""

    settings: TextTowerSettings
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, allowed: jax.Array | None) -> jax.Array:
        for i in range(self.settings.layers):
            x = TowerLayer(self.settings, self.dtype, name=f"layers_{i}")(x, allowed)
        return x


class TextTower(nn.Module):
    """`apply({"params": p}, ids (B, L) int, mask (B, L) bool) -> last hidden state (B, L, hidden)`.

    With `settings.causal` the attention sees keys j ≤ i with `mask[j]` (CLIP); otherwise `mask` is not
    used and attention is unmasked (SigLIP).
    """

    settings: TextTowerSettings
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, ids: jax.Array, mask: jax.Array) -> jax.Array:
        s = self.settings
        x = TowerEmbeddings(s, self.dtype, name="embeddings")(ids)
        allowed = None
        if s.causal:
            length = ids.shape[1]
            causal = jnp.tril(jnp.ones((length, length), bool))
            allowed = causal[None, None] & mask.astype(bool)[:, None, None, :]  # (B, 1, L, L)
        x = TowerEncoder(s, self.dtype, name="encoder")(x, allowed)
        return _layer_norm(x, s.eps, "final_layer_norm")


def tower_module_path(torch_module: str) -> str | None:
    """HF names → `TextTower` paths; the `text_model.` prefix of full checkpoints is dropped."""
    return default_module_path(torch_module.removeprefix("text_model."))


def tower_ignored(torch_name: str) -> bool:
    """Tensors the features do not use: the vision tower, the projections, the logit scale and bias,
    SigLIP's text `head` (pooler) and the `position_ids` buffer of older checkpoints."""
    name = torch_name.removeprefix("text_model.")
    return (
        name.startswith(("vision_model.", "visual_projection.", "text_projection.", "head."))
        or name in ("logit_scale", "logit_bias")
        or name.endswith("position_ids")
    )


Encoder = TypeVar("Encoder", bound=PretrainedTextEncoder)


def _load(
    cls: type[Encoder], family: str, path: str | Path, token_len: int, dtype: str, *, causal: bool
) -> Encoder:
    """`cls` read from the checkpoint at `path` (see the encoders' `from_pretrained`)."""
    settings = TextTowerSettings.from_hf(load_hf_config(path), causal=causal)
    if token_len > settings.max_positions:
        raise ValueError(
            f"token_len={token_len} exceeds the {family} text tower's "
            f"max_position_embeddings={settings.max_positions}"
        )
    module = TextTower(settings, jnp.dtype(dtype))
    example = (jnp.zeros((1, token_len), jnp.int32), jnp.ones((1, token_len), bool))
    params = load_params(module, example, path, tower_module_path, tower_ignored)
    return cls(
        module,
        params,
        load_tokenizer(path),
        dim=settings.hidden,
        token_len=token_len,
        encoder_id=checkpoint_id(family, path, token_len, dtype),
    )


class CLIPTextEncoder(PretrainedTextEncoder):
    """The CLIP text tower (`clip-large` = openai/clip-vit-large-patch14, D 768, 77 tokens): causal and
    padding-masked attention; see the module doc."""

    model_types: ClassVar[tuple[str, ...]] = ("clip", "clip_text_model")

    @staticmethod
    def feature_dim(config: Any) -> int:
        """D = the text config's hidden size."""
        return int(text_config(config).hidden_size)

    @classmethod
    def from_pretrained(
        cls, path: str | Path, token_len: int = 77, dtype: str = "bfloat16"
    ) -> CLIPTextEncoder:
        """Load config, tokenizer and safetensors weights from a Hugging Face checkpoint directory.

        Args:
            path: a `CLIPModel` (vision tensors ignored) or `CLIPTextModel` checkpoint directory.
            token_len: captions are truncated / padded to this many tokens (≤ max positions, 77).
            dtype: compute dtype, "bfloat16" (the reference) or "float32".
        """
        return _load(cls, "clip", path, token_len, dtype, causal=True)


class SiglipTextEncoder(PretrainedTextEncoder):
    """The SigLIP / SigLIP 2 text tower (FG-CLIP2 so400m: `fg-clip2-short` 64 tokens, `fg-clip2-long`
    196): attention WITHOUT a mask, padding included; the tokenizer's mask is still returned."""

    model_types: ClassVar[tuple[str, ...]] = ("siglip", "siglip2", "siglip_text_model", "siglip2_text_model")

    @staticmethod
    def feature_dim(config: Any) -> int:
        """D = the text config's hidden size."""
        return int(text_config(config).hidden_size)

    @classmethod
    def from_pretrained(
        cls, path: str | Path, token_len: int = 64, dtype: str = "bfloat16"
    ) -> SiglipTextEncoder:
        """Load config, tokenizer and safetensors weights from a Hugging Face checkpoint directory.

        Args:
            path: a `SiglipModel` / `Siglip2Model` (vision tensors ignored) or text-model checkpoint.
            token_len: captions are truncated / padded to this many tokens (64 short, 196 long); a
                value above the config's max_position_embeddings is refused (ValueError).
            dtype: compute dtype, "bfloat16" (the reference) or "float32".
        """
        return _load(cls, "siglip", path, token_len, dtype, causal=False)
