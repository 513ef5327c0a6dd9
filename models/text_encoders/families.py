"""Which Flax class reads which Hugging Face checkpoint family, and the one way to load any of them.

A *family* is an architecture (``t5gemma``, ``qwen3``, ``clip`` …); the platform's catalogue maps each
encoder name of the design space (``T5Gemma``, ``qwen3-1.7b`` …) to a family plus options. Every family
class is a :class:`~models.text_encoders.hf.PretrainedTextEncoder` with

- ``from_pretrained(path, token_len, dtype, **options)``: config, tokenizer and safetensors from a local
  Hugging Face-format folder (``config.json``, tokenizer files, ``model.safetensors`` or a sharded
  ``model.safetensors.index.json``);
- ``feature_dim(config) -> int``: the width D of the features, read from the checkpoint's own config;
- ``model_types``: the ``model_type`` values of ``config.json`` the class accepts (a folder of another
  family is a mismatch, found before any weight is read).

Importing this module imports neither JAX nor transformers.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Any

#: family -> "module:Class"
FAMILIES: dict[str, str] = {
    "bert": "models.text_encoders.bert:BertEncoder",
    "t5": "models.text_encoders.t5:T5Encoder",
    "t5gemma": "models.text_encoders.t5gemma:T5GemmaEncoder",
    "t5gemma2": "models.text_encoders.t5gemma:T5Gemma2Encoder",
    "qwen3": "models.text_encoders.qwen3:Qwen3Encoder",
    "qwen3_vl": "models.text_encoders.qwen3:Qwen3VLEncoder",
    "clip": "models.text_encoders.clip:CLIPTextEncoder",
    "siglip": "models.text_encoders.clip:SiglipTextEncoder",
}


#: Any of these makes a folder's tokenizer loadable by ``transformers.AutoTokenizer``.
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "spiece.model", "vocab.txt")


class FolderMismatch(ValueError):
    """A weights folder that is not a checkpoint of the expected family (or lacks its files)."""


def family_class(family: str) -> Any:
    """The encoder class of ``family``."""
    if family not in FAMILIES:
        raise KeyError(f"unknown text-encoder family {family!r}; known: {', '.join(sorted(FAMILIES))}")
    module, _, name = FAMILIES[family].partition(":")
    return getattr(importlib.import_module(module), name)


def read_config(path: str | Path) -> dict[str, Any]:
    """``config.json`` of a checkpoint folder as a dict (FolderMismatch when absent or unreadable)."""
    file = Path(path) / "config.json"
    try:
        data = json.loads(file.read_text())
    except FileNotFoundError:
        raise FolderMismatch(f"{path}: no config.json") from None
    except (OSError, ValueError) as exc:
        raise FolderMismatch(f"{file}: unreadable ({exc})") from None
    if not isinstance(data, dict):
        raise FolderMismatch(f"{file}: not a JSON object")
    return data


def check_folder(family: str, path: str | Path) -> int:
    """The feature width D of the checkpoint in ``path``, after checking that it is one of ``family``:
    its ``model_type`` is accepted and its weights and tokenizer files exist. Reads no weights."""
    return folder_limits(family, path)[0]


def folder_limits(family: str, path: str | Path) -> tuple[int, int | None]:
    """``(D, most tokens or None)`` of the checkpoint in ``path``, checked as :func:`check_folder` does."""
    cls = family_class(family)
    path = Path(path)
    if not path.is_dir():
        raise FolderMismatch(f"{path}: no such folder")
    raw = read_config(path)
    model_type = raw.get("model_type")
    if model_type not in cls.model_types:
        raise FolderMismatch(
            f"{path}: config.json says model_type {model_type!r}, a {family} checkpoint has "
            + " or ".join(repr(t) for t in cls.model_types)
        )
    if not any((path / n).exists() for n in ("model.safetensors", "model.safetensors.index.json")):
        raise FolderMismatch(f"{path}: no model.safetensors or model.safetensors.index.json")
    if not any((path / n).exists() for n in TOKENIZER_FILES):
        raise FolderMismatch(f"{path}: no tokenizer files ({', '.join(TOKENIZER_FILES)})")
    from models.text_encoders.hf import load_hf_config

    config = load_hf_config(path)
    return int(cls.feature_dim(config)), cls.max_tokens(config)


def load_encoder(
    family: str, path: str | Path, *, token_len: int, dtype: str = "bfloat16", **options: Any
) -> Any:
    """The frozen encoder of ``family`` read from ``path`` (see the module doc)."""
    return family_class(family).from_pretrained(path, token_len=token_len, dtype=dtype, **options)
