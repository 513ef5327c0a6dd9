"""The text-encoder protocol and `HashWordEncoder`, the dependency-free encoder for tiny runs (§4.1).

Every encoder follows the same protocol: attributes `dim`, `token_len` and `encoder_id` (a string
that changes whenever the features could, used as the `FeatureCache` key), and
`encode(captions) -> (features float32 (B, token_len, dim), mask bool (B, token_len))`.

`HashWordEncoder` maps words to random (but fixed) embeddings, so captions that share words get
related features. Pure numpy: importing this module does not import JAX.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import numpy as np

_WORD = re.compile(r"[^\W_]+")


@runtime_checkable
class TextEncoder(Protocol):
    """What the model family expects from a frozen text encoder."""

    dim: int
    token_len: int

    @property
    def encoder_id(self) -> str:
        """Identifies the features: same id, same features for the same caption."""
        ...

    def encode(self, captions: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Features (B, token_len, dim) float32 and mask (B, token_len) bool."""
        ...


def split_words(caption: str) -> list[str]:
    """Lower-cased words: maximal runs of letters/digits (whitespace, punctuation and `_` split)."""
    return _WORD.findall(caption.lower())


def sinusoidal_positions(length: int, dim: int) -> np.ndarray:
    """A fixed (length, dim) float32 position code `[sin(j·ω_k), cos(j·ω_k)]`, ω_k = 10000^(−2k/dim)."""
    half = (dim + 1) // 2
    omega = 1.0 / 10000.0 ** (np.arange(half, dtype=np.float64) * 2.0 / max(dim, 1))
    angles = np.outer(np.arange(length, dtype=np.float64), omega)
    code = np.concatenate([np.sin(angles), np.cos(angles)], axis=1)[:, :dim]
    return code.astype(np.float32)


class HashWordEncoder:
    """Deterministic random word-embedding encoder for tiny runs (pure numpy).

    Each word gets id `1 + crc32(word) mod (vocab_size − 1)` (id 0 is padding); its feature is a
    row of a N(0, 1) table drawn with `numpy.random.default_rng(seed)`, plus a fixed sinusoidal
    position code. Sequences are truncated to `token_len`; padding is zero with mask False.
    """

    def __init__(self, dim: int, token_len: int, seed: int = 0, vocab_size: int = 8192) -> None:
        if dim < 1 or token_len < 1 or vocab_size < 2:
            raise ValueError("dim and token_len must be >= 1 and vocab_size >= 2")
        self.dim = dim
        self.token_len = token_len
        self.seed = seed
        self.vocab_size = vocab_size
        self.table = np.random.default_rng(seed).standard_normal((vocab_size, dim)).astype(np.float32)
        self.table[0] = 0.0
        self.positions = sinusoidal_positions(token_len, dim)

    @property
    def encoder_id(self) -> str:
        """`hash-word:dim=…:len=…:seed=…:vocab=…`."""
        return f"hash-word:dim={self.dim}:len={self.token_len}:seed={self.seed}:vocab={self.vocab_size}"

    def word_id(self, word: str) -> int:
        """Stable id in [1, vocab_size) of one (lower-cased) word."""
        return 1 + zlib.crc32(word.encode("utf-8")) % (self.vocab_size - 1)

    def tokenize(self, captions: Sequence[str]) -> np.ndarray:
        """Ids (B, token_len) int32, truncated and padded with 0."""
        ids = np.zeros((len(captions), self.token_len), np.int32)
        for row, caption in enumerate(captions):
            words = split_words(caption)[: self.token_len]
            ids[row, : len(words)] = [self.word_id(w) for w in words]
        return ids

    def encode(self, captions: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Features (B, token_len, dim) float32 and mask (B, token_len) bool (mask = id ≠ 0)."""
        if isinstance(captions, str):
            raise TypeError("encode takes a list of captions, not a single string")
        ids = self.tokenize(captions)
        mask = ids != 0
        features = (self.table[ids] + self.positions[None]) * mask[..., None]
        return features.astype(np.float32), mask

    __call__ = encode
