"""HashWordEncoder: the deterministic offline text encoder for tiny runs (docs/design-space.md §4.1)."""

from __future__ import annotations

import numpy as np
import pytest

from models.text_encoders import HashWordEncoder, TextEncoder, split_words


def test_shapes_mask_padding_and_truncation() -> None:
    enc = HashWordEncoder(dim=16, token_len=4)
    features, mask = enc.encode(["a red cube", "one two three four five six", ""])
    assert features.shape == (3, 4, 16) and features.dtype == np.float32
    assert mask.dtype == bool
    np.testing.assert_array_equal(mask.sum(axis=1), [3, 4, 0])
    assert np.all(features[~mask] == 0.0)
    assert np.all(np.abs(features[mask]).sum(axis=-1) > 0)
    assert isinstance(enc, TextEncoder)


def test_deterministic_and_case_punctuation_insensitive() -> None:
    a = HashWordEncoder(dim=8, token_len=6, seed=3)
    b = HashWordEncoder(dim=8, token_len=6, seed=3)
    fa, ma = a.encode(["A red, RED cube!"])
    fb, mb = b.encode(["a red red cube"])
    np.testing.assert_array_equal(fa, fb)
    np.testing.assert_array_equal(ma, mb)
    # same word at two positions: features differ only by the position code
    np.testing.assert_allclose(fa[0, 1] - a.positions[1], fa[0, 2] - a.positions[2], atol=1e-6)
    other_seed, _ = HashWordEncoder(dim=8, token_len=6, seed=4).encode(["a red red cube"])
    assert not np.allclose(other_seed, fa)


def test_ids_are_stable_and_never_padding() -> None:
    enc = HashWordEncoder(dim=4, token_len=3, vocab_size=8192)
    assert split_words("Hello, world_2 it's") == ["hello", "world", "2", "it", "s"]
    ids = enc.tokenize(["hello world"])
    assert ids[0, 0] == 1 + 0x3610A686 % 8191  # zlib.crc32(b"hello")
    assert 0 < ids[0, 1] < 8192 and ids[0, 2] == 0
    with pytest.raises(TypeError):
        enc.encode("not a list")
