"""Shared machinery of the Flax text encoders that load Hugging Face-format checkpoints (§4.1).

A checkpoint directory holds `config.json` (read with `transformers.AutoConfig`), the tokenizer
files (read with `transformers.AutoTokenizer`) and `model.safetensors` (or a sharded
`model.safetensors.index.json`). Tokenisation truncates to `token_len` and pads to exactly
`token_len` with the tokenizer's pad token; the mask is the tokenizer's attention mask. Features are
the last hidden state, returned as float32; the encoder is frozen (no gradients are ever taken).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from models.hf_weights import load_safetensors, map_torch_state, safetensors_fingerprint

ModulePath = Callable[[str], str | None]


def load_tokenizer(path: str | Path) -> Any:
    """`transformers.AutoTokenizer.from_pretrained(path)` (local files only)."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(path), local_files_only=True)


def load_hf_config(path: str | Path) -> Any:
    """`transformers.AutoConfig.from_pretrained(path)` (local files only)."""
    from transformers import AutoConfig

    return AutoConfig.from_pretrained(str(path), local_files_only=True)


def weights_file(path: str | Path) -> Path:
    """The safetensors file (or shard index) of a checkpoint directory."""
    path = Path(path)
    for name in ("model.safetensors", "model.safetensors.index.json"):
        if (path / name).exists():
            return path / name
    raise FileNotFoundError(f"no model.safetensors(.index.json) in {path}")


def load_params(
    module: nn.Module,
    example: tuple[jax.Array, ...],
    path: str | Path,
    module_path: ModulePath,
    ignore: Callable[[str], bool] | None = None,
    prepare: Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]] | None = None,
) -> dict[str, Any]:
    """The module's parameters read from the checkpoint at `path`, every tensor mapped (float32).

    `prepare` may rewrite the raw `{name: tensor}` dict first (e.g. restore a tied weight).
    """
    template = jax.eval_shape(module.init, jax.random.key(0), *example)["params"]
    tensors = load_safetensors(weights_file(path))
    if prepare is not None:
        tensors = prepare(tensors)
    return map_torch_state(template, tensors, module_path, ignore=ignore)


class GatedMLP(nn.Module):
    """`down_proj(act(gate_proj x) · up_proj x)`, no biases: the MLP of Gemma- and Qwen-family layers
    (HF `mlp`). Parameters float32, compute in `dtype`."""

    hidden: int
    intermediate: int
    act: Callable[[jax.Array], jax.Array] = nn.silu
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        def proj(name: str, features: int, h: jax.Array) -> jax.Array:
            return nn.Dense(features, use_bias=False, dtype=self.dtype, param_dtype=jnp.float32, name=name)(h)

        gated = self.act(proj("gate_proj", self.intermediate, x)) * proj("up_proj", self.intermediate, x)
        return proj("down_proj", self.hidden, gated)


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

    #: ``model_type`` values of ``config.json`` this class reads (see models.text_encoders.families).
    model_types: ClassVar[tuple[str, ...]] = ()

    @staticmethod
    def feature_dim(config: Any) -> int:
        """The feature width D given the checkpoint's ``transformers`` config."""
        raise NotImplementedError

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


def checkpoint_id(family: str, path: str | Path, token_len: int, dtype: str) -> str:
    """`family:fingerprint:len=…:dtype=…` for a checkpoint directory."""
    return f"{family}:{safetensors_fingerprint(weights_file(path))}:len={token_len}:dtype={dtype}"
