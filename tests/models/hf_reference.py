"""Helpers of the numerical-equivalence tests against the upstream PyTorch implementations.

Each test builds a small random-weight model with the upstream library's own class (transformers or
diffusers, torch on CPU), saves it in Hugging Face format with ``save_pretrained`` next to a small
tokenizer written here, reads it back with i1lab's Flax code and compares the outputs.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

#: A small vocabulary the test captions are written in.
WORDS = [
    "a",
    "red",
    "blue",
    "green",
    "yellow",
    "cube",
    "sphere",
    "cone",
    "on",
    "under",
    "beside",
    "the",
    "table",
    "two",
    "three",
    "dogs",
    "cat",
    "photo",
    "of",
    "with",
    "and",
    "small",
    "large",
    "sign",
    "that",
    "says",
    "hello",
    "world",
    "in",
    "front",
    "city",
    "street",
    "at",
    "night",
]

#: The acceptance rule of issue #19: max |Δ| over unmasked positions ≤ this × mean |reference feature|.
RELATIVE_TOLERANCE = 1e-4

CAPTIONS = [
    "a red cube on the table",
    "two dogs",
    "a photo of a large blue sphere beside a small green cone at night with a sign that says hello world",
]


def write_word_tokenizer(
    folder: Path,
    *,
    specials: Sequence[str] = ("<pad>", "<unk>", "<bos>", "<eos>"),
    pad: str = "<pad>",
    unk: str = "<unk>",
    bos: str | None = None,
    eos: str | None = None,
    words: Sequence[str] = WORDS,
    extra_config: dict[str, object] | None = None,
) -> int:
    """A whitespace word-level ``tokenizer.json`` (+ ``tokenizer_config.json``) in ``folder``.

    Ids: the ``specials`` in order (so ``specials[0]`` is id 0), then ``words``. With ``bos``/``eos``
    the post-processor adds them around every sequence, as Gemma (bos) and T5 (eos) tokenizers do.
    Returns the vocabulary size.
    """
    from tokenizers import Tokenizer, models, pre_tokenizers, processors

    vocab = {t: i for i, t in enumerate([*specials, *words])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token=unk))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    if bos or eos:
        single = " ".join([*([bos] if bos else []), "$A", *([eos] if eos else [])])
        special_ids = [(t, vocab[t]) for t in (bos, eos) if t]
        tok.post_processor = processors.TemplateProcessing(single=single, special_tokens=special_ids)
    folder.mkdir(parents=True, exist_ok=True)
    tok.save(str(folder / "tokenizer.json"))
    config: dict[str, object] = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "pad_token": pad,
        "unk_token": unk,
    }
    if bos:
        config["bos_token"] = bos
    if eos:
        config["eos_token"] = eos
    config.update(extra_config or {})
    (folder / "tokenizer_config.json").write_text(json.dumps(config))
    return len(vocab)


def relative_error(features: np.ndarray, mask: np.ndarray, reference: np.ndarray) -> float:
    """max |features − reference| over unmasked positions, divided by the mean |reference| there."""
    valid = np.asarray(mask, bool)
    assert valid.any(), "no unmasked position to compare"
    diff = np.abs(np.asarray(features, np.float64) - np.asarray(reference, np.float64))[valid]
    scale = np.abs(np.asarray(reference, np.float64))[valid].mean()
    return float(diff.max() / scale)


def assert_matches_reference(
    features: np.ndarray, mask: np.ndarray, reference: np.ndarray, reference_mask: np.ndarray
) -> float:
    """Masks equal and features within :data:`RELATIVE_TOLERANCE` of the reference at every unmasked
    position (float32). Returns the relative error for the test's report."""
    np.testing.assert_array_equal(np.asarray(mask, bool), np.asarray(reference_mask, bool))
    assert features.shape == reference.shape, (features.shape, reference.shape)
    assert features.dtype == np.float32
    err = relative_error(features, mask, reference)
    assert err <= RELATIVE_TOLERANCE, (
        f"max |Δ| is {err:.3g} of the mean |feature| (limit {RELATIVE_TOLERANCE})"
    )
    return err
