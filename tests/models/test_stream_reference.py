"""Hand-written numpy references of one single-stream and one dual-stream block, and of the 3-axis
RoPE position ids and tables (docs/design-space.md §2, §3, §5.3, §5.4, §12 items 3, 4, 10).

The blocks are out blocks (skip linears first) with a padded text mask, 3-axis RoPE, QK-norm,
SwiGLU and RMSNorm, with randomised biases and norm scales so that every parameter matters.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from models.config import ModelConfig, default_rope_axes_dims
from models.dual_stream import DualStreamBlock
from models.posemb import MultiAxisRope, multimodal_position_ids, multimodal_rope
from models.single_stream import SingleStreamBlock

F32_MIN = float(np.finfo(np.float32).min)
HEADS = 2


def _dense(p: dict[str, np.ndarray], x: np.ndarray) -> np.ndarray:
    return x @ p["kernel"] + p["bias"]


def _rms(p: dict[str, np.ndarray], x: np.ndarray) -> np.ndarray:
    return x / np.sqrt(np.mean(x**2, axis=-1, keepdims=True) + 1e-6) * p["scale"]


def _silu(x: np.ndarray) -> np.ndarray:
    return x / (1.0 + np.exp(-x))


def _swiglu(p: Any, x: np.ndarray) -> np.ndarray:
    a, b = np.split(_dense(p["w12"], x), 2, axis=-1)
    return _dense(p["w3"], _silu(a) * b)


def _rope(x: np.ndarray, cos: np.ndarray, sin: np.ndarray) -> np.ndarray:
    """x (B, N, heads, d); cos/sin (B, N, d/2): rotate pairs (2m, 2m+1) by the angle of pair m."""
    out = np.empty_like(x)
    c, s = cos[:, :, None, :], sin[:, :, None, :]
    out[..., 0::2] = x[..., 0::2] * c - x[..., 1::2] * s
    out[..., 1::2] = x[..., 0::2] * s + x[..., 1::2] * c
    return out


def _attention(q: np.ndarray, k: np.ndarray, v: np.ndarray, key_mask: np.ndarray) -> np.ndarray:
    d = q.shape[-1]
    logits = np.einsum("bqhd,bkhd->bhqk", q * d**-0.5, k)
    logits = np.where(key_mask[:, None, None, :], logits, F32_MIN)
    z = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return np.einsum("bhqk,bkhd->bqhd", z / z.sum(axis=-1, keepdims=True), v)


def _split_qkv(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    b, n, three_w = x.shape
    qkv = x.reshape(b, n, 3, HEADS, three_w // 3 // HEADS)  # q heads, k heads, v heads
    return qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]


def _numpy_position_ids(mask: np.ndarray, grid: int) -> tuple[np.ndarray, np.ndarray]:
    b, length = mask.shape
    text = np.zeros((b, length, 3), np.int64)
    image = np.zeros((b, grid * grid, 3), np.int64)
    for i in range(b):
        for j in range(length):
            text[i, j] = (j if mask[i, j] else 0, 0, 0)
        for row in range(grid):
            for col in range(grid):
                image[i, row * grid + col] = (mask[i].sum(), row, col)
    return text, image


def _numpy_rope_tables(
    ids: np.ndarray, dims: tuple[int, ...], lens: tuple[int, ...], scale: float
) -> tuple[np.ndarray, np.ndarray]:
    """Angles: axis a, pair k → clip(id_a)·s_a·θ^(−2k/dim_a), s = (1, scale, scale), axes concatenated."""
    angles = []
    for axis, (dim, length) in enumerate(zip(dims, lens, strict=True)):
        pos = np.clip(ids[..., axis], 0, length - 1).astype(np.float64) * (1.0 if axis == 0 else scale)
        freqs = 1e4 ** (-2.0 * np.arange(dim // 2) / dim)
        angles.append(pos[..., None] * freqs)
    a = np.concatenate(angles, axis=-1)
    return np.cos(a), np.sin(a)


def _randomise(shapes: Any, rng: np.random.Generator) -> Any:
    """Parameters for a shape tree: kernels N(0, 1/fan_in), random biases and norm scales."""

    def one(path: Any, leaf: Any) -> np.ndarray:
        name = jax.tree_util.keystr(path)
        if name.endswith("['bias']"):
            return rng.normal(0.0, 0.1, leaf.shape).astype(np.float32)
        if name.endswith("['scale']"):
            return (1.0 + rng.normal(0.0, 0.2, leaf.shape)).astype(np.float32)
        return rng.normal(0.0, float(np.prod(leaf.shape[:-1])) ** -0.5, leaf.shape).astype(np.float32)

    return jax.tree_util.tree_map_with_path(one, shapes)


def _config(backbone: str, **changes: Any) -> ModelConfig:
    return ModelConfig(
        backbone=backbone,
        hidden=32,
        depth=3,
        heads=HEADS,
        in_channels=4,
        latent_size=8,  # the shapes of `test_stream_backbones`, so eager compiles are shared
        resolution=128,  # positions scale by 2
        text_dim=16,
        text_len=6,
        **changes,
    )


def _inputs(config: ModelConfig) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    b, n, length = 2, config.num_patches, 6
    mask = np.array([[True] * 6, [True, True, False, False, False, False]])
    return {
        "image": rng.standard_normal((b, n, 32)).astype(np.float32),
        "text": rng.standard_normal((b, length, 32)).astype(np.float32),
        "skip_image": rng.standard_normal((b, n, 32)).astype(np.float32),
        "skip_text": rng.standard_normal((b, length, 32)).astype(np.float32),
        "cond": rng.standard_normal((b, 32)).astype(np.float32),
        "mask": mask,
    }


def test_position_ids_and_rope_tables_match_numpy() -> None:
    config = _config("dual_stream", rope_axes_lens=(4, 3, 3))  # short tables: ids get clipped
    assert default_rope_axes_dims(72) == (36, 18, 18) and config.rope_dims == (8, 4, 4)
    assert default_rope_axes_dims(12) == (6, 2, 4)
    mask = np.array([[True, True, True, True, True], [True, True, False, True, False]])
    text_ids, image_ids = multimodal_position_ids(jnp.asarray(mask), config.grid_size)
    want_text, want_image = _numpy_position_ids(mask, config.grid_size)
    np.testing.assert_array_equal(np.asarray(text_ids), want_text)
    np.testing.assert_array_equal(np.asarray(image_ids), want_image)
    assert want_image[1, 0, 0] == 3 and want_text[1, 3, 0] == 3  # padding in the middle: ids as specified

    rope = MultiAxisRope(config)
    for ids in (want_text, want_image):
        cos, sin = rope(jnp.asarray(ids))
        want_cos, want_sin = _numpy_rope_tables(ids, (8, 4, 4), (4, 3, 3), scale=2.0)
        np.testing.assert_allclose(np.asarray(cos), want_cos, atol=1e-6)
        np.testing.assert_allclose(np.asarray(sin), want_sin, atol=1e-6)
    # default lengths: (context_len + 1, grid, grid); the text axis is never scaled
    assert _config("single_stream").rope_lens == (7, 4, 4)
    assert _config("single_stream", repeat_text_emb=True).rope_lens == (13, 4, 4)
    (img_cos, _), (txt_cos, _) = multimodal_rope(_config("single_stream"), jnp.asarray(mask))
    assert img_cos.shape == (2, 16, 8) and txt_cos.shape == (2, 5, 8)
    np.testing.assert_allclose(np.asarray(txt_cos)[0, 4, 0], np.cos(4.0), atol=1e-6)


def _rope_arrays(config: ModelConfig, mask: np.ndarray) -> tuple[Any, Any, Any]:
    text_ids, image_ids = _numpy_position_ids(mask, config.grid_size)
    lens = config.rope_lens
    img = _numpy_rope_tables(image_ids, config.rope_dims, lens, config.position_scale)
    txt = _numpy_rope_tables(text_ids, config.rope_dims, lens, config.position_scale)
    jax_tables = multimodal_rope(config, jnp.asarray(mask))
    return img, txt, jax_tables


def reference_single_block(
    p: Any, x: np.ndarray, skip: np.ndarray, cond: np.ndarray, mask: np.ndarray, cos: Any, sin: Any
) -> np.ndarray:
    """Modulated single-stream out block with sandwich norms over a masked joint sequence."""
    x = _dense(p["skip_linear"], np.concatenate([x, skip], axis=-1))
    mod = _dense(p["adaLN_modulation"], _silu(cond))[:, None, :]
    shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = np.split(mod, 6, axis=-1)
    h = _rms(p["norm1"], x) * (1 + scale_msa) + shift_msa
    q, k, v = _split_qkv(_dense(p["attn"]["qkv"], h))
    q = _rope(_rms(p["attn"]["q_norm"], q), cos, sin)
    k = _rope(_rms(p["attn"]["k_norm"], k), cos, sin)
    o = _attention(q, k, v, mask).reshape(x.shape) * mask[..., None]  # zero padded queries ⚑
    x = x + gate_msa * _rms(p["norm3"], _dense(p["attn"]["proj"], o))
    h = _rms(p["norm2"], x) * (1 + scale_mlp) + shift_mlp
    x = x + gate_mlp * _rms(p["norm4"], _swiglu(p["mlp"], h))
    return x * mask[..., None]


def test_single_stream_block_matches_numpy_reference() -> None:
    config = _config("single_stream", use_sandwich_norm=True)
    d = _inputs(config)
    (icos, isin), (tcos, tsin), ((jic, jis), (jtc, jts)) = _rope_arrays(config, d["mask"])
    x = np.concatenate([d["image"], d["text"]], axis=1)
    skip = np.concatenate([d["skip_image"], d["skip_text"]], axis=1)
    mask = np.concatenate([np.ones((2, config.num_patches), bool), d["mask"]], axis=1)
    rope = (jnp.concatenate([jic, jtc], axis=1), jnp.concatenate([jis, jts], axis=1))

    block = SingleStreamBlock(config, modulated=True, use_skip=True)
    args = (jnp.asarray(x), jnp.asarray(d["cond"]), rope, jnp.asarray(mask), jnp.asarray(skip))
    shapes = jax.eval_shape(block.init, jax.random.key(0), *args)["params"]
    params = _randomise(shapes, np.random.default_rng(1))
    out = np.asarray(block.apply({"params": params}, *args))

    p64 = jax.tree_util.tree_map(lambda a: np.asarray(a, np.float64), params)
    cos = np.concatenate([icos, tcos], axis=1)
    sin = np.concatenate([isin, tsin], axis=1)
    f64 = lambda a: a.astype(np.float64)  # noqa: E731
    expected = reference_single_block(p64, f64(x), f64(skip), f64(d["cond"]), mask, cos, sin)
    assert np.abs(expected).max() > 0.5
    np.testing.assert_allclose(out, expected, rtol=2e-5, atol=2e-5)
    assert np.all(out[1, config.num_patches + 2 :] == 0.0)  # padded text rows are multiplied by the mask


def reference_dual_block(
    p: Any,
    image: np.ndarray,
    text: np.ndarray,
    skip: tuple[np.ndarray, np.ndarray],
    cond: np.ndarray,
    mask: np.ndarray,
    image_rope: Any,
    text_rope: Any,
    *,
    adaln: bool,
    separate: bool,
) -> tuple[np.ndarray, np.ndarray]:
    """Dual-stream out block with sandwich norms (norm3/norm4 always shared ⚑)."""
    image = _dense(p["skip_linear_image"], np.concatenate([image, skip[0]], axis=-1))
    text = _dense(p["skip_linear_text"], np.concatenate([text, skip[1]], axis=-1))
    shift_msa = scale_msa = shift_mlp = scale_mlp = np.zeros(())
    gate_msa = gate_mlp = np.ones(())
    if adaln:
        mod = _dense(p["adaLN_modulation"], _silu(cond))[:, None, :]
        shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = np.split(mod, 6, axis=-1)

    def norm(index: int, stream: str) -> dict[str, np.ndarray]:
        return p[f"norm{index}_{stream}"] if separate else p[f"norm{index}"]

    def qk(stream: str, x: np.ndarray, rope: Any) -> tuple[np.ndarray, ...]:
        q, k, v = _split_qkv(_dense(p["attn"][f"qkv_{stream}"], x))
        suffix = f"_{stream}" if separate else ""
        q = _rope(_rms(p["attn"][f"q_norm{suffix}"], q), *rope)
        k = _rope(_rms(p["attn"][f"k_norm{suffix}"], k), *rope)
        return q, k, v

    n = image.shape[1]
    hi = _rms(norm(1, "image"), image) * (1 + scale_msa) + shift_msa
    ht = _rms(norm(1, "text"), text) * (1 + scale_msa) + shift_msa
    qi, ki, vi = qk("image", hi, image_rope)
    qt, kt, vt = qk("text", ht, text_rope)
    key_mask = np.concatenate([np.ones((2, n), bool), mask], axis=1)
    cat = lambda a, b: np.concatenate([a, b], axis=1)  # noqa: E731
    o = _attention(cat(qi, qt), cat(ki, kt), cat(vi, vt), key_mask)
    o = o.reshape(2, -1, image.shape[-1]) * key_mask[..., None]  # zero padded queries ⚑
    image = image + gate_msa * _rms(p["norm3"], _dense(p["attn"]["proj_image"], o[:, :n]))
    text = text + gate_msa * _rms(p["norm3"], _dense(p["attn"]["proj_text"], o[:, n:]))
    hi = _rms(norm(2, "image"), image) * (1 + scale_mlp) + shift_mlp
    ht = _rms(norm(2, "text"), text) * (1 + scale_mlp) + shift_mlp
    image = image + gate_mlp * _rms(p["norm4"], _swiglu(p["mlp_image"], hi))
    text = text + gate_mlp * _rms(p["norm4"], _swiglu(p["mlp_text"], ht))
    return image, text * mask[..., None]


@pytest.mark.parametrize(("adaln", "separate"), [(True, False), (False, True)])
def test_dual_stream_block_matches_numpy_reference(adaln: bool, separate: bool) -> None:
    config = _config("dual_stream", use_sandwich_norm=True, use_adaln=adaln, use_separate_norms=separate)
    d = _inputs(config)
    image_rope, text_rope, (jax_image_rope, jax_text_rope) = _rope_arrays(config, d["mask"])
    block = DualStreamBlock(config, use_skip=True)
    j = jnp.asarray
    args = (
        (j(d["image"]), j(d["text"])),
        j(d["cond"]),
        jax_image_rope,
        jax_text_rope,
        j(d["mask"]),
        (j(d["skip_image"]), j(d["skip_text"])),
    )
    shapes = jax.eval_shape(block.init, jax.random.key(0), *args)["params"]
    params = _randomise(shapes, np.random.default_rng(2))
    names = set(params) | set(params["attn"])
    assert ("norm1_image" in names) == separate and ("q_norm_text" in names) == separate
    assert ("adaLN_modulation" in names) == adaln and {"norm3", "norm4"} <= names
    out_image, out_text = block.apply({"params": params}, *args)

    p64 = jax.tree_util.tree_map(lambda a: np.asarray(a, np.float64), params)
    f64 = lambda a: a.astype(np.float64)  # noqa: E731
    want_image, want_text = reference_dual_block(
        p64,
        f64(d["image"]),
        f64(d["text"]),
        (f64(d["skip_image"]), f64(d["skip_text"])),
        f64(d["cond"]),
        d["mask"],
        image_rope,
        text_rope,
        adaln=adaln,
        separate=separate,
    )
    assert np.abs(want_image).max() > 0.5
    np.testing.assert_allclose(np.asarray(out_image), want_image, rtol=2e-5, atol=2e-5)
    np.testing.assert_allclose(np.asarray(out_text), want_text, rtol=2e-5, atol=2e-5)
    assert np.all(np.asarray(out_text)[1, 2:] == 0.0)
