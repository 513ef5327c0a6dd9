"""Per-caption text features cached on disk (docs/design-space.md §4.1: the encoder is frozen).

Layout: `root/<sha256(encoder_id)[:16]>/<h[:2]>/<h>.npz` with `h = sha256(encoder_id ‖ 0 ‖ caption)`;
each file holds `features` (token_len, dim) float32 and `mask` (token_len,) bool. The directory also
gets an `encoder.json` naming the full encoder id. Files are written atomically (temporary file
then `os.replace`), so concurrent writers of the same caption are harmless. Pure numpy.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from models.text_encoders.hash import TextEncoder


def caption_key(encoder_id: str, caption: str) -> str:
    """sha256 hex digest of `encoder_id ‖ NUL ‖ caption` (UTF-8)."""
    return hashlib.sha256(f"{encoder_id}\0{caption}".encode()).hexdigest()


class FeatureCache:
    """A `TextEncoder` that answers from disk and encodes only captions it has not seen.

    Attributes:
        encoder: the wrapped encoder (any object with `dim`, `token_len`, `encoder_id`, `encode`).
        directory: where this encoder's features live.
        hits, misses: how many captions were loaded / computed so far.
    """

    def __init__(self, encoder: TextEncoder, root: str | Path) -> None:
        self.encoder = encoder
        self.dim = encoder.dim
        self.token_len = encoder.token_len
        encoder_id = encoder.encoder_id
        self.directory = Path(root) / hashlib.sha256(encoder_id.encode()).hexdigest()[:16]
        self.directory.mkdir(parents=True, exist_ok=True)
        meta = self.directory / "encoder.json"
        if not meta.exists():
            _atomic_write(meta, json.dumps({"encoder_id": encoder_id}).encode())
        self.hits = 0
        self.misses = 0

    @property
    def encoder_id(self) -> str:
        """The wrapped encoder's id (the cache does not change features)."""
        return self.encoder.encoder_id

    def path_for(self, caption: str) -> Path:
        """The file that holds (or will hold) the features of `caption`."""
        key = caption_key(self.encoder_id, caption)
        return self.directory / key[:2] / f"{key}.npz"

    def encode(self, captions: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Features (B, token_len, dim) float32 and mask (B, token_len) bool, as the encoder gives."""
        if isinstance(captions, str):
            raise TypeError("encode takes a list of captions, not a single string")
        captions = list(captions)
        features = np.zeros((len(captions), self.token_len, self.dim), np.float32)
        mask = np.zeros((len(captions), self.token_len), bool)
        missing: dict[str, list[int]] = {}
        for row, caption in enumerate(captions):
            path = self.path_for(caption)
            if path.exists():
                with np.load(path) as stored:
                    features[row], mask[row] = stored["features"], stored["mask"]
                self.hits += 1
            else:
                missing.setdefault(caption, []).append(row)
        if missing:
            todo = list(missing)
            new_features, new_mask = self.encoder.encode(todo)
            self.misses += len(todo)
            for caption, f, m in zip(todo, new_features, new_mask, strict=True):
                features[missing[caption]], mask[missing[caption]] = f, m
                self._store(caption, np.asarray(f, np.float32), np.asarray(m, bool))
        return features, mask

    __call__ = encode

    def _store(self, caption: str, features: np.ndarray, mask: np.ndarray) -> None:
        path = self.path_for(caption)
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path.parent, suffix=".tmp", delete=False) as tmp:
            np.savez(tmp, features=features, mask=mask)
        os.replace(tmp.name, path)


def _atomic_write(path: Path, data: bytes) -> None:
    with tempfile.NamedTemporaryFile(dir=path.parent, suffix=".tmp", delete=False) as tmp:
        tmp.write(data)
    os.replace(tmp.name, path)
