"""The existing T5 and BERT Flax encoders against transformers' PyTorch classes (docs/design-space.md §4.1).

A tiny `T5EncoderModel` (v1.1: gated-GELU; relative-attention buckets 8 and max distance 8, so that the
exact, logarithmic and clipped bucket ranges all occur within 12 tokens) and a tiny `BertModel` are
built with random weights by transformers, saved with `save_pretrained` next to a word tokenizer,
read by `T5Encoder.from_pretrained` / `BertEncoder.from_pretrained`, and compared with
`last_hidden_state` given the tokenizer's attention mask.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from models.text_encoders.bert import BertEncoder
from models.text_encoders.families import FolderMismatch, check_folder
from models.text_encoders.t5 import T5Encoder
from tests.models.hf_reference import CAPTIONS, assert_matches_reference, relative_error, write_word_tokenizer

TOKEN_LEN = 12


def _t5(folder: Path) -> Any:
    import torch
    from transformers import T5Config, T5EncoderModel

    torch.manual_seed(0)
    config = T5Config(
        vocab_size=100,
        d_model=64,
        d_kv=16,
        d_ff=128,
        num_layers=2,
        num_heads=4,
        relative_attention_num_buckets=8,
        relative_attention_max_distance=8,
        feed_forward_proj="gated-gelu",
        pad_token_id=0,
        eos_token_id=3,
    )
    model = T5EncoderModel(config).eval()
    model.save_pretrained(folder)
    write_word_tokenizer(folder, eos="<eos>")  # T5 appends </s>
    return model


def _bert(folder: Path) -> Any:
    import torch
    from transformers import BertConfig, BertModel

    torch.manual_seed(1)
    config = BertConfig(
        vocab_size=100,
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=128,
        max_position_embeddings=16,
        pad_token_id=0,
    )
    model = BertModel(config).eval()
    model.save_pretrained(folder, max_shard_size="40KB")  # sharded: the index is read
    assert (folder / "model.safetensors.index.json").exists()
    write_word_tokenizer(
        folder,
        specials=("[PAD]", "[UNK]", "[CLS]", "[SEP]"),
        pad="[PAD]",
        unk="[UNK]",
        bos="[CLS]",
        eos="[SEP]",
    )
    return model


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, Any]]:
    """`family -> (folder, torch model)`."""
    out = {}
    for family, build in (("t5", _t5), ("bert", _bert)):
        folder = tmp_path_factory.mktemp(family)
        out[family] = (folder, build(folder))
    return out


def _reference(torch_model: Any, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
    import torch

    with torch.no_grad():
        out = torch_model(
            input_ids=torch.from_numpy(ids.astype(np.int64)),
            attention_mask=torch.from_numpy(mask.astype(np.int64)),
        )
    return np.asarray(out.last_hidden_state.numpy(), np.float32)


ENCODERS: dict[str, Any] = {"t5": T5Encoder, "bert": BertEncoder}
#: tokens per caption: the 6-word and 2-word captions plus the specials; the long one is truncated
LENGTHS = {"t5": [7, 3, TOKEN_LEN], "bert": [8, 4, TOKEN_LEN]}


@pytest.mark.parametrize("family", ["t5", "bert"])
def test_matches_transformers(family: str, checkpoints: dict[str, tuple[Path, Any]]) -> None:
    folder, torch_model = checkpoints[family]
    encoder = ENCODERS[family].from_pretrained(folder, token_len=TOKEN_LEN, dtype="float32")
    features, mask = encoder.encode(CAPTIONS)
    assert features.shape == (3, TOKEN_LEN, 64) and encoder.dim == 64
    assert mask.sum(1).tolist() == LENGTHS[family]
    ids, _ = encoder.tokenize(CAPTIONS)
    err = assert_matches_reference(features, mask, _reference(torch_model, ids, mask), mask)
    print(f"{family} float32: max |Δ| / mean |ref| = {err:.2e}")


@pytest.mark.parametrize("family", ["t5", "bert"])
def test_bfloat16_is_finite_and_close(family: str, checkpoints: dict[str, tuple[Path, Any]]) -> None:
    folder, torch_model = checkpoints[family]
    encoder = ENCODERS[family].from_pretrained(folder, token_len=TOKEN_LEN, dtype="bfloat16")
    features, mask = encoder.encode(CAPTIONS)
    assert features.dtype == np.float32 and np.isfinite(features).all()
    ids, _ = encoder.tokenize(CAPTIONS)
    err = relative_error(features, mask, _reference(torch_model, ids, mask))
    print(f"{family} bfloat16 vs torch float32: {err:.2e}")
    assert err < 0.1


def test_check_folder_refuses_the_other_family(checkpoints: dict[str, tuple[Path, Any]]) -> None:
    assert check_folder("t5", checkpoints["t5"][0]) == 64
    assert check_folder("bert", checkpoints["bert"][0]) == 64
    with pytest.raises(FolderMismatch, match="model_type 'bert'"):
        check_folder("t5", checkpoints["bert"][0])
    with pytest.raises(FolderMismatch, match="model_type 't5'"):
        check_folder("bert", checkpoints["t5"][0])
