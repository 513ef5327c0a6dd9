"""The Flax T5Gemma / T5Gemma 2 encoders against transformers' own PyTorch classes (random weights).

Each checkpoint is a tiny model (hidden 64, 2 layers: one sliding-window layer whose window is smaller
than the 12 tokens, one full layer; 4 query heads over 2 key/value heads; T5Gemma with attention
soft-capping, which T5Gemma 2's attention ignores although its config sets it too; T5Gemma 2 with a
linear-scaled RoPE on its full layer and the end-of-image id mapped to a caption word), saved with
``save_pretrained`` (once as a full encoder–decoder checkpoint cut into shards, once as a single file)
next to a word tokenizer (Gemma's ids: pad 0, eos 1, bos 2, which the tokenizer prepends; it pads on
the left, so that the rule "pad with id 0 on the right, mask = id ≠ 0" is seen to win).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from models.text_encoders.families import FolderMismatch, check_folder, family_class
from tests.models.hf_reference import (
    CAPTIONS,
    WORDS,
    assert_matches_reference,
    relative_error,
    write_word_tokenizer,
)

TOKEN_LEN = 12
SPECIALS = ("<pad>", "<eos>", "<bos>", "<unk>")
VOCAB = len(SPECIALS) + len(WORDS)
EOI_WORD = "blue"  # T5Gemma 2: this word's id plays the end-of-image token (in the third caption)

#: (family, transformers class, max_shard_size or None for one file)
VARIANTS = [
    ("t5gemma", "T5GemmaForConditionalGeneration", "100KB"),
    ("t5gemma", "T5GemmaEncoderModel", None),
    ("t5gemma2", "T5Gemma2ForConditionalGeneration", "100KB"),
    ("t5gemma2", "T5Gemma2Model", None),
]


def _stack(**extra: Any) -> dict[str, Any]:
    return dict(
        vocab_size=VOCAB,
        hidden_size=64,
        intermediate_size=96,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=16,
        query_pre_attn_scalar=24,
        layer_types=["sliding_attention", "full_attention"],
        attn_logit_softcapping=2.0,
        **extra,
    )


def _build(family: str, class_name: str) -> Any:
    import torch
    import transformers

    if family == "t5gemma":
        stack = _stack(sliding_window=3, rope_parameters={"rope_type": "default", "rope_theta": 100.0})
        config: Any = transformers.T5GemmaConfig(
            encoder=stack,
            decoder=stack,
            vocab_size=VOCAB,
            is_encoder_decoder=class_name != "T5GemmaEncoderModel",
        )
    else:
        rope = {
            "sliding_attention": {"rope_type": "default", "rope_theta": 100.0},
            "full_attention": {"rope_type": "linear", "factor": 2.0, "rope_theta": 1000.0},
        }
        text = _stack(sliding_window=4, rope_parameters=rope)
        vision = dict(
            hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2, image_size=32
        )
        encoder = dict(
            text_config=text,
            vision_config={**vision, "patch_size": 8},
            mm_tokens_per_image=4,
            eoi_token_index=len(SPECIALS) + WORDS.index(EOI_WORD),
        )
        config = transformers.T5Gemma2Config(encoder=encoder, decoder=dict(text))
    torch.manual_seed(0)
    model = getattr(transformers, class_name)(config).eval()
    with torch.no_grad():  # norms (1 + w) and the end-of-image embedding start at 0: randomise all
        for p in model.parameters():
            p.normal_(0.0, 0.2)
    return model


@pytest.fixture(scope="module", params=VARIANTS, ids=lambda v: f"{v[1]}{'-sharded' if v[2] else ''}")
def checkpoint(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> tuple[str, Path, Any]:
    family, class_name, shard = request.param
    folder = tmp_path_factory.mktemp(class_name)
    model = _build(family, class_name)
    model.save_pretrained(folder, **({"max_shard_size": shard} if shard else {}))
    index = (folder / "model.safetensors.index.json").exists()
    assert index == bool(shard) and (folder / "model.safetensors").exists() != index
    write_word_tokenizer(folder, specials=SPECIALS, bos="<bos>", extra_config={"padding_side": "left"})
    return family, folder, model


def _expected_ids() -> np.ndarray:
    """CAPTIONS as ids by hand: bos, the words, truncated to TOKEN_LEN, zeros after."""
    ids = np.zeros((len(CAPTIONS), TOKEN_LEN), np.int32)
    for i, caption in enumerate(CAPTIONS):
        row = [SPECIALS.index("<bos>"), *(len(SPECIALS) + WORDS.index(w) for w in caption.split())][
            :TOKEN_LEN
        ]
        ids[i, : len(row)] = row
    return ids


def _reference(model: Any, ids: np.ndarray) -> np.ndarray:
    import torch

    with torch.no_grad():
        out = model.get_encoder()(
            input_ids=torch.from_numpy(ids).long(), attention_mask=torch.from_numpy(ids != 0).long()
        )
    return np.asarray(out.last_hidden_state.float().numpy())


def test_matches_upstream_float32(checkpoint: tuple[str, Path, Any]) -> None:
    family, folder, model = checkpoint
    encoder = family_class(family).from_pretrained(folder, token_len=TOKEN_LEN, dtype="float32")
    ids = _expected_ids()
    assert {int(n) for n in (ids != 0).sum(1)} == {3, 7, TOKEN_LEN}  # padding and truncation both covered
    got_ids, _ = encoder.tokenize(CAPTIONS)
    np.testing.assert_array_equal(got_ids, ids)
    features, mask = encoder.encode(CAPTIONS)
    assert features.shape == (len(CAPTIONS), TOKEN_LEN, 64) and encoder.dim == 64
    err = assert_matches_reference(features, mask, _reference(model, ids), ids != 0)
    print(f"{family} {type(model).__name__}: relative error {err:.3g}")


def test_bfloat16_close(checkpoint: tuple[str, Path, Any]) -> None:
    family, folder, model = checkpoint
    encoder = family_class(family).from_pretrained(folder, token_len=TOKEN_LEN)
    assert encoder.encoder_id.startswith(f"{family}:") and encoder.encoder_id.endswith(":dtype=bfloat16")
    features, mask = encoder.encode(CAPTIONS)
    assert features.dtype == np.float32 and np.isfinite(features).all()
    err = relative_error(features, mask, _reference(model, _expected_ids()))
    print(f"{family} {type(model).__name__} bf16: relative error {err:.3g}")
    assert err < 0.15
    assert encoder.encode([])[0].shape == (0, TOKEN_LEN, 64)


def test_other_family_folder_is_refused(checkpoint: tuple[str, Path, Any]) -> None:
    family, folder, _ = checkpoint
    other = "t5gemma2" if family == "t5gemma" else "t5gemma"
    assert check_folder(family, folder) == 64
    with pytest.raises(FolderMismatch, match=f"model_type '{family}'"):
        check_folder(other, folder)
    with pytest.raises(FolderMismatch, match=f"not a {other} checkpoint"):
        family_class(other).from_pretrained(folder, token_len=TOKEN_LEN, dtype="float32")


def test_checkpoint_names() -> None:
    """The encoder under every prefix a checkpoint may use (also `text_model.`); the rest is ignored."""
    from models.text_encoders.t5gemma import gemma_encoder_ignored, gemma_encoder_module_path

    for prefix in ("", "model.", "model.encoder.text_model."):
        name = prefix + ("" if "encoder" in prefix else "encoder.") + "layers.1.self_attn.q_norm"
        assert gemma_encoder_module_path(name) == "layers_1/self_attn/q_norm"
        assert not gemma_encoder_ignored(name + ".weight")
    for ignored in (
        "lm_head.out_proj.weight",
        "model.decoder.norm.weight",
        "encoder.vision_tower.encoder.layers.0.mlp.fc1.weight",
        "model.encoder.multi_modal_projector.mm_input_projection_weight",
    ):
        assert gemma_encoder_ignored(ignored)
