"""Shared machinery of the Flax text encoders that load Hugging Face-format checkpoints (§4.1).

A checkpoint directory holds `config.json` (read with `transformers.AutoConfig`), the tokenizer
files (read with `transformers.AutoTokenizer`) and `model.safetensors` (or a sharded
`model.safetensors.index.json`). Tokenisation truncates to `token_len` and pads to exactly
`token_len` with the tokenizer's pad token; the mask is the tokenizer's attention mask. Features are
the last hidden state, returned as float32; the encoder is frozen (no gradients are ever taken).

The layers that several families compute alike live here too: `dense` / `layer_norm` (float32
parameters), `heads_projection`, learned absolute `token_and_position_embeddings`, the masked
(grouped-query) softmax `attention` with float32 logits and softmax, rotate-half RoPE
(`rope_tables`, `apply_rope`) and the `GatedMLP`. `PretrainedTextEncoder.from_checkpoint` is the
shared body of every `from_pretrained`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any, ClassVar, Self

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from models.hf_weights import load_safetensors, map_torch_state, safetensors_fingerprint
from models.layers import MASK_VALUE
from models.text_encoders.families import weights_file

# transformers serves tokenizers and configs here (the models are Flax): its advice that PyTorch is absent
# would only be noise in a command's output
os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")

ModulePath = Callable[[str], str | None]
Tensors = dict[str, np.ndarray]


def load_tokenizer(path: str | Path) -> Any:
    """`transformers.AutoTokenizer.from_pretrained(path)` (local files only)."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(path), local_files_only=True)


def load_hf_config(path: str | Path) -> Any:
    """`transformers.AutoConfig.from_pretrained(path)` (local files only)."""
    from transformers import AutoConfig

    return AutoConfig.from_pretrained(str(path), local_files_only=True)


def load_params(
    module: nn.Module,
    example: tuple[jax.Array, ...],
    path: str | Path,
    module_path: ModulePath,
    ignore: Callable[[str], bool] | None = None,
    prepare: Callable[[Tensors], Tensors] | None = None,
) -> dict[str, Any]:
    """The module's parameters read from the checkpoint at `path`, every tensor mapped (float32).

    `prepare` may rewrite the raw `{name: tensor}` dict first (e.g. restore a tied weight).
    """
    template = jax.eval_shape(module.init, jax.random.key(0), *example)["params"]
    tensors = load_safetensors(weights_file(path))
    if prepare is not None:
        tensors = prepare(tensors)
    return map_torch_state(template, tensors, module_path, ignore=ignore)


# ---------------------------------------------------------------------------- layers
def dense(features: int, name: str, dtype: Any, bias: bool = True) -> nn.Dense:
    """The checkpoint's linear layer `name`: float32 parameters, compute in `dtype`."""
    return nn.Dense(features, use_bias=bias, dtype=dtype, param_dtype=jnp.float32, name=name)


def layer_norm(eps: float, name: str) -> nn.LayerNorm:
    """The checkpoint's LayerNorm `name` (scale and bias), float32 parameters and compute."""
    return nn.LayerNorm(epsilon=eps, dtype=jnp.float32, param_dtype=jnp.float32, name=name)


def heads_projection(
    x: jax.Array, name: str, heads: int, head_dim: int, dtype: Any, bias: bool = True
) -> jax.Array:
    """The linear layer `name` of x (B, L, ·) split into heads: (B, L, heads, head_dim)."""
    b, length, _ = x.shape
    return dense(heads * head_dim, name, dtype, bias)(x).reshape(b, length, heads, head_dim)


def token_and_position_embeddings(
    ids: jax.Array, vocab_size: int, max_positions: int, hidden: int, names: tuple[str, str]
) -> jax.Array:
    """`token(ids) + position(0 … L−1)` (B, L, hidden) float32: learned token and absolute position
    tables named `names`. ValueError when L exceeds `max_positions`."""
    if ids.shape[1] > max_positions:
        raise ValueError(f"{ids.shape[1]} tokens exceed max_position_embeddings={max_positions}")
    tokens = nn.Embed(vocab_size, hidden, param_dtype=jnp.float32, name=names[0])(ids)
    positions = nn.Embed(max_positions, hidden, param_dtype=jnp.float32, name=names[1])
    return tokens + positions(jnp.arange(ids.shape[1]))[None]


def causal_mask(mask: jax.Array) -> jax.Array:
    """(B, query, key) bool: key j ≤ query i and `mask[j]` (causal attention over unpadded keys)."""
    length = mask.shape[1]
    return jnp.tril(jnp.ones((length, length), bool))[None] & mask[:, None, :]


def attention(
    q: jax.Array,
    k: jax.Array,
    v: jax.Array,
    allowed: jax.Array | None,
    *,
    scale: float | None = None,
    bias: jax.Array | None = None,
    softcap: float | None = None,
) -> jax.Array:
    """Softmax attention of the encoders: q (B, L, H, d), k and v (B, S, K, d); query head h reads
    key/value head h // (H/K) (grouped-query attention when K < H). Returns (B, L, H·d).

    Logits `q·kᵀ` in float32, times `scale`, plus `bias` ((B or 1, H, L, S)), soft-capped
    `c·tanh(s/c)` when `softcap` is set; keys where `allowed` (broadcastable to (B, L, S)) is False get
    the most negative finite float32. Softmax in float32, probabilities cast to v's dtype.
    """
    b, length, heads, head_dim = q.shape
    kv_heads = k.shape[2]
    groups = heads // kv_heads
    q = q.reshape(b, length, kv_heads, groups, head_dim)  # query head h = kv_head·groups + g
    logits = jnp.einsum("bqkgd,bskd->bkgqs", q, k, preferred_element_type=jnp.float32)
    if scale is not None:
        logits = logits * scale
    if bias is not None:
        logits = logits + bias.reshape(*bias.shape[:-3], kv_heads, groups, *bias.shape[-2:])
    if softcap is not None:
        logits = jnp.tanh(logits / softcap) * softcap
    if allowed is not None:
        logits = jnp.where(allowed[:, None, None], logits, MASK_VALUE)
    probs = jax.nn.softmax(logits, axis=-1).astype(v.dtype)
    return jnp.einsum("bkgqs,bskd->bqkgd", probs, v).reshape(b, length, heads * head_dim)


def rope_tables(
    length: int, head_dim: int, base: float, factor: float = 1.0
) -> tuple[np.ndarray, np.ndarray]:
    """cos and sin (length, head_dim) float32 of rotate-half RoPE at positions 0…length−1: frequencies
    `base^(−2i/d)` ("linear" scaling divides them by `factor`), repeated over both halves."""
    exponents = np.arange(0, head_dim, 2, dtype=np.float32) / np.float32(head_dim)
    inv_freq = (np.float32(1.0) / np.power(np.float32(base), exponents)) / np.float32(factor)
    angles = np.arange(length, dtype=np.float32)[:, None] * inv_freq[None, :]
    angles = np.concatenate([angles, angles], axis=-1)
    return np.cos(angles), np.sin(angles)


def apply_rope(x: jax.Array, cos: jax.Array, sin: jax.Array, dtype: Any = None) -> jax.Array:
    """`x·cos + rotate_half(x)·sin` on x (B, L, heads, head_dim), rotate_half(a, b) = (−b, a); computed
    in `dtype` (default: x's) and returned in x's dtype."""
    y = x if dtype is None else x.astype(dtype)
    half = y.shape[-1] // 2
    rotated = jnp.concatenate([-y[..., half:], y[..., :half]], axis=-1)
    cos, sin = cos.astype(y.dtype)[None, :, None], sin.astype(y.dtype)[None, :, None]
    return (y * cos + rotated * sin).astype(x.dtype)


class GatedMLP(nn.Module):
    """`down(act(gate x) · up x)`, no biases: the MLP of Gemma- and Qwen-family layers (HF `mlp`:
    `gate_proj`, `up_proj`, `down_proj`) and T5 v1.1's gated FFN (`wi_0`, `wi_1`, `wo`): `names`.
    Parameters float32, compute in `dtype`."""

    hidden: int
    intermediate: int
    act: Callable[[jax.Array], jax.Array] = nn.silu
    dtype: Any = jnp.float32
    names: tuple[str, str, str] = ("gate_proj", "up_proj", "down_proj")

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        gate, up, down = (partial(dense, dtype=self.dtype, bias=False, name=n) for n in self.names)
        return down(self.hidden)(self.act(gate(self.intermediate)(x)) * up(self.intermediate)(x))


# ---------------------------------------------------------------------------- the encoder
class PretrainedTextEncoder:
    """A frozen Flax encoder with its tokenizer: `encode(captions) -> (features, mask)`.

    Attributes:
        module: the Flax module, `module.apply({"params": p}, ids, mask) -> (B, L, dim)`.
        params: its parameters (float32).
        tokenizer: a `transformers` tokenizer.
        dim: feature width D.
        token_len: every caption is truncated / padded to this many tokens.
        encoder_id: identifies the features (family, checkpoint fingerprint, token_len, dtype).
    """

    #: the checkpoint family named in `encoder_id` (see `checkpoint_id`).
    family: ClassVar[str] = ""

    def __init__(
        self,
        module: nn.Module,
        params: Any,
        tokenizer: Any,
        *,
        dim: int,
        token_len: int,
        encoder_id: str,
    ) -> None:
        if token_len < 1:
            raise ValueError(f"token_len must be >= 1, got {token_len}")
        self.module = module
        self.params = jax.tree_util.tree_map(jnp.asarray, params)
        self.tokenizer = tokenizer
        self.dim = dim
        self.token_len = token_len
        self._id = encoder_id

        def forward(p: Any, ids: jax.Array, mask: jax.Array) -> jax.Array:
            out = module.apply({"params": p}, ids, mask)
            return jax.lax.stop_gradient(jnp.asarray(out)).astype(jnp.float32)

        self._forward = jax.jit(forward)

    @property
    def encoder_id(self) -> str:
        """Identifies the features: same id, same features for the same caption."""
        return self._id

    def tokenize(self, captions: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Ids (B, token_len) int32 and mask (B, token_len) bool (the tokenizer's attention mask)."""
        if isinstance(captions, str):
            raise TypeError("encode takes a list of captions, not a single string")
        out = self.tokenizer(
            list(captions),
            padding="max_length",
            truncation=True,
            max_length=self.token_len,
            return_tensors="np",
        )
        return np.asarray(out["input_ids"], np.int32), np.asarray(out["attention_mask"]).astype(bool)

    def encode(self, captions: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Features (B, token_len, dim) float32 (last hidden state) and mask (B, token_len) bool."""
        ids, mask = self.tokenize(captions)
        if len(ids) == 0:
            return np.zeros((0, self.token_len, self.dim), np.float32), mask
        features = self._forward(self.params, jnp.asarray(ids), jnp.asarray(mask))
        return np.asarray(features, np.float32), mask

    __call__ = encode

    @classmethod
    def from_checkpoint(
        cls,
        module: nn.Module,
        path: str | Path,
        *,
        dim: int,
        token_len: int,
        dtype: str,
        module_path: ModulePath,
        ignore: Callable[[str], bool] | None = None,
        prepare: Callable[[Tensors], Tensors] | None = None,
        tokenizer: Any = None,
        id_suffix: str = "",
        **init: Any,
    ) -> Self:
        """The shared body of the subclasses' `from_pretrained`: `module` with its parameters read from
        the checkpoint folder `path` (`load_params`, traced at `token_len` tokens), the folder's tokenizer
        unless one is given, and `encoder_id = checkpoint_id(cls.family, path, token_len, dtype) +
        id_suffix`; `init` goes to the constructor."""
        example = (jnp.zeros((1, token_len), jnp.int32), jnp.ones((1, token_len), bool))
        return cls(
            module,
            load_params(module, example, path, module_path, ignore, prepare),
            load_tokenizer(path) if tokenizer is None else tokenizer,
            dim=dim,
            token_len=token_len,
            encoder_id=checkpoint_id(cls.family, path, token_len, dtype) + id_suffix,
            **init,
        )


def checkpoint_id(family: str, path: str | Path, token_len: int, dtype: str) -> str:
    """`family:fingerprint:len=…:dtype=…` for a checkpoint directory."""
    return f"{family}:{safetensors_fingerprint(weights_file(path))}:len={token_len}:dtype={dtype}"
