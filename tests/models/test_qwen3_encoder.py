"""The Flax Qwen3 / Qwen3-VL text encoders against transformers' own PyTorch models (§4.1).

Small random-weight models are built with `Qwen3ForCausalLM`, `Qwen3Model` and
`Qwen3VLForConditionalGeneration` (tiny vision tower, ignored by the encoder), saved with
`save_pretrained` (single file and sharded index) next to a word tokenizer, read back with
`from_pretrained(folder, token_len=12, dtype="float32")` and compared on `CAPTIONS` with the torch
model's `last_hidden_state` on the same ids and attention mask. The system-prompt variant is compared
with the torch output of the whole wrapped caption, prefix positions dropped.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from models.text_encoders.families import FolderMismatch, check_folder
from models.text_encoders.qwen3 import QWEN_IMAGE_TEMPLATE, Qwen3Encoder, Qwen3VLEncoder
from tests.models.hf_reference import CAPTIONS, WORDS, assert_matches_reference, write_word_tokenizer

TOKEN_LEN = 12
SPECIALS = ("<|endoftext|>", "<unk>", "<|im_start|>", "<|im_end|>")
#: the template's words and punctuation, so that the word tokenizer reads the wrapped captions
TEMPLATE_WORDS = re.findall(r"\w+|[^\w\s]+", re.sub(r"<\|im_(start|end)\|>|\{\}", " ", QWEN_IMAGE_TEMPLATE))
TEXT: dict[str, Any] = {
    "vocab_size": 100,
    "hidden_size": 64,
    "intermediate_size": 96,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "head_dim": 16,
    "rms_norm_eps": 1e-6,
    "initializer_range": 0.2,
}
ROPE: dict[str, Any] = {"rope_type": "default", "rope_theta": 10000.0}
MROPE: dict[str, Any] = {
    **ROPE,
    "mrope_section": [3, 3, 2],
    "mrope_interleaved": True,
}  # 3 + 3 + 2 = head_dim / 2
VISION: dict[str, Any] = {
    "depth": 1,
    "hidden_size": 32,
    "intermediate_size": 48,
    "num_heads": 2,
    "out_hidden_size": 64,
}
VISION |= {"patch_size": 4, "num_position_embeddings": 16, "deepstack_visual_indexes": [0]}


def _randomise_norms(model: Any, seed: int) -> None:
    """Norm scales away from 1, so that a wrongly mapped q_norm / k_norm / layer norm shows."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.copy_(1 + 0.3 * torch.randn(p.shape, generator=gen))


def _save(model: Any, folder: Path, sharded: bool) -> Any:
    """`model` (eval mode, random norm scales) saved with a word tokenizer; returns the model."""
    model.eval()
    _randomise_norms(model, seed=1)
    model.save_pretrained(str(folder), max_shard_size="40KB" if sharded else "1GB")
    words = sorted(set(WORDS) | set(TEMPLATE_WORDS))
    write_word_tokenizer(
        folder,
        specials=SPECIALS,
        pad="<|endoftext|>",
        words=words,
        extra_config={"extra_special_tokens": SPECIALS[2:]},
    )
    return model


def _build(kind: str, folder: Path) -> Any:
    import torch
    from transformers import (
        Qwen3Config,
        Qwen3ForCausalLM,
        Qwen3Model,
        Qwen3VLConfig,
        Qwen3VLForConditionalGeneration,
    )

    torch.manual_seed(0)
    if kind == "qwen3_vl":
        config = Qwen3VLConfig(text_config={**TEXT, "rope_parameters": MROPE}, vision_config=VISION)
        return _save(Qwen3VLForConditionalGeneration(config), folder, sharded=True)
    cls = Qwen3ForCausalLM if kind == "qwen3_causal_lm" else Qwen3Model
    return _save(cls(Qwen3Config(**TEXT, rope_parameters=ROPE)), folder, sharded=kind == "qwen3_causal_lm")


def _last_hidden_state(model: Any, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
    import torch

    base = getattr(model, "model", model)  # the bare model under a causal / conditional-generation LM
    with torch.no_grad():
        out = base(
            input_ids=torch.as_tensor(ids, dtype=torch.long), attention_mask=torch.as_tensor(mask).long()
        )
    return out.last_hidden_state.float().numpy()


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, Any]]:
    out = {}
    for kind in ("qwen3_causal_lm", "qwen3_model", "qwen3_vl"):
        folder = tmp_path_factory.mktemp(kind)
        out[kind] = (folder, _build(kind, folder))
    return out


@pytest.mark.parametrize(
    ("kind", "cls"),
    [("qwen3_causal_lm", Qwen3Encoder), ("qwen3_model", Qwen3Encoder), ("qwen3_vl", Qwen3VLEncoder)],
)
def test_matches_transformers(kind: str, cls: Any, checkpoints: dict[str, tuple[Path, Any]]) -> None:
    folder, model = checkpoints[kind]
    assert (folder / "model.safetensors.index.json").exists() == (kind != "qwen3_model")
    encoder = cls.from_pretrained(folder, token_len=TOKEN_LEN, dtype="float32")
    assert encoder.dim == 64 and encoder.encoder_id.startswith(f"{cls.family}:")
    features, mask = encoder.encode(CAPTIONS)
    assert features.shape == (len(CAPTIONS), TOKEN_LEN, 64)
    assert mask.sum(1).tolist() == [6, 2, TOKEN_LEN]  # padding (right) and truncation covered
    assert mask[:, 0].all() and not mask[1, 2:].any()
    ids, _ = encoder.tokenize(CAPTIONS)
    reference = _last_hidden_state(model, ids, mask)
    err = assert_matches_reference(features, mask, reference, mask)
    print(f"{kind}: relative error {err:.2e}")

    bf16, bf16_mask = cls.from_pretrained(folder, token_len=TOKEN_LEN, dtype="bfloat16").encode(CAPTIONS)
    np.testing.assert_array_equal(bf16_mask, mask)
    assert np.isfinite(bf16).all()
    bf16_err = np.abs(bf16 - reference)[mask].mean() / np.abs(reference[mask]).mean()
    print(f"{kind}: bfloat16 mean relative error {bf16_err:.2e}")
    assert bf16_err < 0.03  # about 0.014 (torch's own bfloat16 model: about 0.015)


def test_system_prompt_drops_the_template_prefix(checkpoints: dict[str, tuple[Path, Any]]) -> None:
    folder, model = checkpoints["qwen3_vl"]
    encoder = Qwen3VLEncoder.from_pretrained(folder, token_len=TOKEN_LEN, dtype="float32", system_prompt=True)
    plain = Qwen3VLEncoder.from_pretrained(folder, token_len=TOKEN_LEN, dtype="float32")
    assert encoder.encoder_id != plain.encoder_id
    features, mask = encoder.encode(CAPTIONS)

    tok = encoder.tokenizer
    n = len(tok(QWEN_IMAGE_TEMPLATE.split("{}")[0])["input_ids"])
    assert n == TEMPLATE_WORDS.index("user") + 1 + 3  # the words up to "user", <|im_start|> twice, <|im_end|>
    wrapped = tok([QWEN_IMAGE_TEMPLATE.format(c) for c in CAPTIONS], padding="longest", return_tensors="np")
    whole = _last_hidden_state(model, wrapped["input_ids"], wrapped["attention_mask"])[:, n : n + TOKEN_LEN]
    whole_mask = wrapped["attention_mask"].astype(bool)[:, n : n + TOKEN_LEN]
    assert whole_mask.shape == (len(CAPTIONS), TOKEN_LEN)  # the longest caption fills token_len
    # the caption and the template's suffix (<|im_end|> <|im_start|> assistant) are kept, then padding
    assert whole_mask.sum(1).tolist() == [6 + 3, 2 + 3, TOKEN_LEN]
    err = assert_matches_reference(features, mask, whole, whole_mask)
    print(f"qwen3_vl system prompt (prefix {n} tokens): relative error {err:.2e}")


def test_folders_of_other_families_are_refused(
    checkpoints: dict[str, tuple[Path, Any]], tmp_path: Path
) -> None:
    assert check_folder("qwen3", checkpoints["qwen3_causal_lm"][0]) == 64
    assert check_folder("qwen3_vl", checkpoints["qwen3_vl"][0]) == 64
    with pytest.raises(FolderMismatch, match="qwen3_vl"):
        check_folder("qwen3", checkpoints["qwen3_vl"][0])
    with pytest.raises(FolderMismatch, match="'qwen3'"):
        check_folder("qwen3_vl", checkpoints["qwen3_model"][0])
    folder = tmp_path / "llama"
    write_word_tokenizer(folder)
    (folder / "config.json").write_text(json.dumps({"model_type": "llama", **TEXT}))
    (folder / "model.safetensors").write_bytes(b"")
    for family in ("qwen3", "qwen3_vl"):
        with pytest.raises(FolderMismatch, match="model_type 'llama'"):
            check_folder(family, folder)
