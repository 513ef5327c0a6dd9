"""The CLIP and SigLIP text towers against transformers' PyTorch classes (docs/design-space.md §4.1).

Small random-weight models are built by transformers itself (hidden 64, 2 layers, 4 heads, 16
positions), saved with `save_pretrained` next to a word tokenizer, read back by
`CLIPTextEncoder` / `SiglipTextEncoder` and compared with `last_hidden_state` on the same ids:

- CLIP with the tokenizer's attention mask (causal + padding), from a `CLIPTextModel` checkpoint and
  from a sharded full `CLIPModel` one (vision tensors ignored);
- SigLIP without any mask, from a `SiglipTextModel` checkpoint and from a sharded full `SiglipModel`
  (vision tower and text head ignored);
- a full `Siglip2Model` (model_type siglip2). `Siglip2TextModel` is the same class as
  `SiglipTextModel` in transformers 5, but `AutoTokenizer` always reads a siglip2 folder with
  `Siglip2Tokenizer` (Gemma BPE, lower-cased, left padding by default), whatever tokenizer_config.json
  names: the comparison there runs on the ids that tokenizer gives.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from models.text_encoders.clip import CLIPTextEncoder, SiglipTextEncoder
from models.text_encoders.families import FolderMismatch, check_folder, load_encoder
from tests.models.hf_reference import CAPTIONS, assert_matches_reference, relative_error, write_word_tokenizer

TOKEN_LEN = 12
TEXT: dict[str, Any] = {
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "vocab_size": 100,
    "max_position_embeddings": 16,
    "pad_token_id": 0,
    "bos_token_id": 2,
    "eos_token_id": 3,
}
KINDS = ("clip_text", "clip", "siglip_text", "siglip", "siglip2")
SHARDED = ("clip", "siglip")
VISION: dict[str, Any] = {
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 1,
    "num_attention_heads": 2,
}


def _build(kind: str) -> Any:
    """A transformers model of `kind` with random weights (eval mode)."""
    import torch
    import transformers as tf

    torch.manual_seed(KINDS.index(kind))
    model: Any
    if kind == "clip_text":
        model = tf.CLIPTextModel(tf.CLIPTextConfig(**TEXT))
    elif kind == "clip":
        vision = {**VISION, "image_size": 32, "patch_size": 16}
        model = tf.CLIPModel(tf.CLIPConfig(text_config=TEXT, vision_config=vision))
    elif kind == "siglip_text":
        model = tf.SiglipTextModel(tf.SiglipTextConfig(**TEXT))
    elif kind == "siglip":
        vision = {**VISION, "image_size": 32, "patch_size": 16}
        model = tf.SiglipModel(tf.SiglipConfig(text_config=TEXT, vision_config=vision))
    else:
        vision = {**VISION, "num_patches": 16, "patch_size": 16}
        model = tf.Siglip2Model(tf.Siglip2Config(text_config=TEXT, vision_config=vision))
    return model.eval()


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, Any]]:
    """`kind -> (folder, torch text model)`; the full models are saved in small shards."""
    out = {}
    for kind in KINDS:
        folder = tmp_path_factory.mktemp(kind)
        model = _build(kind)
        sharded = kind in SHARDED
        model.save_pretrained(folder, max_shard_size="40KB" if sharded else "1GB")
        assert (folder / "model.safetensors.index.json").exists() == sharded
        if kind.startswith("clip"):
            write_word_tokenizer(folder, bos="<bos>", eos="<eos>")  # CLIP: <|startoftext|> … <|endoftext|>
        else:
            write_word_tokenizer(folder, eos="<eos>")
        out[kind] = (folder, getattr(model, "text_model", model))
    return out


def _reference(torch_model: Any, ids: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    import torch

    with torch.no_grad():
        kwargs = {} if mask is None else {"attention_mask": torch.from_numpy(mask.astype(np.int64))}
        out = torch_model(input_ids=torch.from_numpy(ids.astype(np.int64)), **kwargs)
    return np.asarray(out.last_hidden_state.numpy(), np.float32)


@pytest.mark.parametrize("kind", ["clip_text", "clip"])
def test_clip_matches_transformers(kind: str, checkpoints: dict[str, tuple[Path, Any]]) -> None:
    folder, torch_model = checkpoints[kind]
    encoder = CLIPTextEncoder.from_pretrained(folder, token_len=TOKEN_LEN, dtype="float32")
    features, mask = encoder.encode(CAPTIONS)
    assert features.shape == (3, TOKEN_LEN, 64) and encoder.dim == 64
    assert mask.sum(1).tolist() == [8, 4, TOKEN_LEN]  # <bos> words <eos>; the long one truncated
    ids, _ = encoder.tokenize(CAPTIONS)
    reference = _reference(torch_model, ids, mask)
    err = assert_matches_reference(features, mask, reference, mask)
    # the padding mask acts on padded queries only (the causal mask hides padding from real ones)
    err_all = relative_error(features, np.ones_like(mask), reference)
    print(f"CLIP ({kind}) float32: max |Δ| / mean |ref| = {err:.2e} (unmasked), {err_all:.2e} (all)")
    assert err_all <= 1e-4
    assert encoder.encoder_id.startswith("clip:") and encoder.encoder_id.endswith(
        f"len={TOKEN_LEN}:dtype=float32"
    )


@pytest.mark.parametrize("kind", ["siglip_text", "siglip"])
def test_siglip_matches_transformers_without_a_mask(
    kind: str, checkpoints: dict[str, tuple[Path, Any]]
) -> None:
    folder, torch_model = checkpoints[kind]
    encoder = SiglipTextEncoder.from_pretrained(folder, token_len=TOKEN_LEN, dtype="float32")
    features, mask = encoder.encode(CAPTIONS)
    assert features.shape == (3, TOKEN_LEN, 64)
    assert mask.sum(1).tolist() == [7, 3, TOKEN_LEN]  # the tokenizer's mask is returned
    ids, _ = encoder.tokenize(CAPTIONS)
    reference = _reference(torch_model, ids, None)
    err = assert_matches_reference(features, mask, reference, mask)
    err_all = relative_error(features, np.ones_like(mask), reference)
    print(f"SigLIP ({kind}) float32: max |Δ| / mean |ref| = {err:.2e} (unmasked), {err_all:.2e} (all)")
    assert err_all <= 1e-4
    # padding is attended: the masked reference differs at real tokens of a padded caption
    masked = _reference(torch_model, ids, mask)
    assert relative_error(masked[1:2], mask[1:2], reference[1:2]) > 1e-2
    assert encoder.encoder_id.startswith("siglip:")


def test_siglip2_checkpoint_matches_transformers(checkpoints: dict[str, tuple[Path, Any]]) -> None:
    folder, torch_model = checkpoints["siglip2"]
    encoder = SiglipTextEncoder.from_pretrained(folder, token_len=TOKEN_LEN, dtype="float32")
    assert type(encoder.tokenizer).__name__ == "Siglip2Tokenizer"  # forced by transformers for siglip2
    features, mask = encoder.encode(CAPTIONS)
    ids, _ = encoder.tokenize(CAPTIONS)
    assert not mask[1].all() and mask[:, -1].all()  # padding on the left
    reference = _reference(torch_model, ids, None)
    err = assert_matches_reference(features, mask, reference, mask)
    print(f"SigLIP 2 (siglip2) float32: max |Δ| / mean |ref| = {err:.2e}")
    assert relative_error(features, np.ones_like(mask), reference) <= 1e-4


@pytest.mark.parametrize(("family", "kind"), [("clip", "clip"), ("siglip", "siglip")])
def test_bfloat16_is_finite_and_close(
    family: str, kind: str, checkpoints: dict[str, tuple[Path, Any]]
) -> None:
    folder, _ = checkpoints[kind]
    f32, mask = load_encoder(family, folder, token_len=TOKEN_LEN, dtype="float32").encode(CAPTIONS)
    bf16_encoder = load_encoder(family, folder, token_len=TOKEN_LEN)  # bf16 by default
    bf16, bf16_mask = bf16_encoder.encode(CAPTIONS)
    assert bf16.dtype == np.float32 and np.isfinite(bf16).all()
    np.testing.assert_array_equal(bf16_mask, mask)
    err = relative_error(bf16, mask, f32)
    print(f"{family} bfloat16 vs float32: {err:.2e}")
    assert err < 0.1
    assert bf16_encoder.encoder_id.endswith("dtype=bfloat16")


def test_token_len_above_max_positions_is_refused(checkpoints: dict[str, tuple[Path, Any]]) -> None:
    with pytest.raises(ValueError, match="max_position_embeddings=16"):
        SiglipTextEncoder.from_pretrained(checkpoints["siglip"][0], token_len=17)
    with pytest.raises(ValueError, match="max_position_embeddings=16"):
        CLIPTextEncoder.from_pretrained(checkpoints["clip"][0], token_len=17)


def test_check_folder_reads_d_and_refuses_other_model_types(checkpoints: dict[str, tuple[Path, Any]]) -> None:
    for family, kinds in (("clip", ("clip_text", "clip")), ("siglip", ("siglip_text", "siglip", "siglip2"))):
        for kind in kinds:
            assert check_folder(family, checkpoints[kind][0]) == 64
    with pytest.raises(FolderMismatch, match="model_type 'siglip2'"):
        check_folder("clip", checkpoints["siglip2"][0])
    with pytest.raises(FolderMismatch, match="model_type 'clip_text_model'"):
        check_folder("siglip", checkpoints["clip_text"][0])
