"""The CLIP and SigLIP text towers in Flax, loading Hugging Face checkpoints (docs/design-space.md §4.1).

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
from typing import Any, ClassVar, Self

import flax.linen as nn
import jax
import jax.numpy as jnp

from models.hf_weights import default_module_path
from models.text_encoders.bert import ACTIVATIONS
from models.text_encoders.hf import (
    PretrainedTextEncoder,
    attention,
    causal_mask,
    dense,
    heads_projection,
    layer_norm,
    load_hf_config,
    token_and_position_embeddings,
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


def _layer_norm(x: jax.Array, eps: float, name: str) -> jax.Array:
    """LayerNorm in float32, returned in x's dtype."""
    return layer_norm(eps, name)(x.astype(jnp.float32)).astype(x.dtype)


class TowerAttention(nn.Module):
    """`self_attn`: q/k/v/out projections (with biases), scaled dot-product attention, float32 softmax."""

    settings: TextTowerSettings
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, allowed: jax.Array | None) -> jax.Array:
        heads, width = self.settings.heads, x.shape[-1]
        head_dim = width // heads
        q, k, v = (
            heads_projection(x, n, heads, head_dim, self.dtype) for n in ("q_proj", "k_proj", "v_proj")
        )
        out = attention(q, k, v, allowed, scale=head_dim**-0.5)
        return dense(width, "out_proj", self.dtype)(out)


class TowerMLP(nn.Module):
    """`mlp`: `fc2(act(fc1(x)))`."""

    settings: TextTowerSettings
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        s = self.settings
        h = TOWER_ACTIVATIONS[s.act](dense(s.intermediate, "fc1", self.dtype)(x))
        return dense(s.hidden, "fc2", self.dtype)(h)


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
        names = ("token_embedding", "position_embedding")
        x = token_and_position_embeddings(ids, s.vocab_size, s.max_positions, s.hidden, names)
        return x.astype(self.dtype)


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
        allowed = causal_mask(mask.astype(bool)) if s.causal else None  # (B, L, L)
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


class _TextTowerEncoder(PretrainedTextEncoder):
    """Loading shared by the CLIP and SigLIP towers; `causal` chooses the attention mask."""

    causal: ClassVar[bool] = True

    @classmethod
    def _load(cls, path: str | Path, token_len: int, dtype: str) -> Self:
        """`cls` read from the checkpoint at `path` (see the encoders' `from_pretrained`)."""
        settings = TextTowerSettings.from_hf(load_hf_config(path), causal=cls.causal)
        if token_len > settings.max_positions:
            raise ValueError(
                f"token_len={token_len} exceeds the {cls.family} text tower's "
                f"max_position_embeddings={settings.max_positions}"
            )
        return cls.from_checkpoint(
            TextTower(settings, jnp.dtype(dtype)),
            path,
            dim=settings.hidden,
            token_len=token_len,
            dtype=dtype,
            module_path=tower_module_path,
            ignore=tower_ignored,
        )


class CLIPTextEncoder(_TextTowerEncoder):
    """The CLIP text tower (`clip-large` = openai/clip-vit-large-patch14, D 768, 77 tokens): causal and
    padding-masked attention; see the module doc."""

    family: ClassVar[str] = "clip"
    causal: ClassVar[bool] = True

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
        return cls._load(path, token_len, dtype)


class SiglipTextEncoder(_TextTowerEncoder):
    """The SigLIP / SigLIP 2 text tower (FG-CLIP2 so400m: `fg-clip2-short` 64 tokens, `fg-clip2-long`
    196): attention WITHOUT a mask, padding included; the tokenizer's mask is still returned."""

    family: ClassVar[str] = "siglip"
    causal: ClassVar[bool] = False

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
        return cls._load(path, token_len, dtype)
