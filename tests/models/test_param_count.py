"""The closed-form parameter counter agrees with jax.eval_shape on random configurations."""

from __future__ import annotations

import random

import pytest

from models.param_count import count_params_fast
from models.params import count_params
from models.presets import i1_config, make_config


def random_config_kwargs(rng: random.Random) -> dict[str, object]:
    return {
        "in_channels": rng.choice([3, 4]),
        "latent_size": 8,
        "resolution": 16,
        "text_dim": rng.choice([16, 24]),
        "text_len": rng.choice([4, 6]),
        "adapter": rng.choice(["mlp", "transformer"]),
        "adapter_blocks": rng.choice([1, 2]),
        "use_long_skip": rng.random() < 0.5,
        "use_adaln": rng.random() < 0.5,
        "use_qknorm": rng.random() < 0.5,
        "use_swiglu": rng.random() < 0.5,
        "use_rmsnorm": rng.random() < 0.5,
        "use_sandwich_norm": rng.random() < 0.5,
        "use_image_connector": rng.random() < 0.5,
        "position_embedding": rng.choice(["sinusoidal_and_rope", "sinusoidal_only", "rope_only"]),
        "wo_shift": rng.random() < 0.3,
        "use_timestep": rng.random() < 0.5,
        "depth": rng.choice([1, 3, 5]),
        "patch_size": rng.choice([1, 2]),
        "backbone": rng.choice(["cross_attn", "single_stream", "dual_stream"]),
        "refiner_layers": rng.choice([0, 1, 2]),
        "use_separate_norms": rng.random() < 0.5,
        "text_encoders": rng.choice([(), ((16, 4), (8, 3))]),
    }


@pytest.mark.parametrize("seed", range(18))
def test_fast_count_equals_eval_shape(seed: int) -> None:
    rng = random.Random(seed)
    while True:
        try:
            kwargs = random_config_kwargs(rng)
            if kwargs["backbone"] != "cross_attn":
                kwargs["use_timestep"] = True  # single/dual always use t (and pooled text)
            config = make_config("tiny", **kwargs)
            break
        except ValueError:
            continue
    assert count_params_fast(config) == count_params(config)


@pytest.mark.parametrize(
    "changes",
    [
        {
            "backbone": "dual_stream",
            "use_separate_norms": True,
            "use_sandwich_norm": True,
            "use_adaln": False,
        },
        {"backbone": "dual_stream", "use_separate_norms": True, "use_rmsnorm": False, "wo_shift": True},
        {"backbone": "single_stream", "use_sandwich_norm": True, "use_adaln": False, "refiner_layers": 2},
        {"backbone": "single_stream", "use_sandwich_norm": True, "use_rmsnorm": False, "refiner_layers": 1},
    ],
)
def test_fast_count_of_stream_backbones(changes: dict[str, object]) -> None:
    sizes = {"in_channels": 4, "latent_size": 8, "resolution": 16, "text_dim": 16, "text_len": 4}
    config = make_config("tiny", **sizes, **changes)
    assert count_params_fast(config) == count_params(config)


def test_fast_count_matches_calibration_exactly() -> None:
    assert count_params_fast(make_config("DiT-XL")) == 894_068_384
    assert count_params_fast(make_config("DiT-XL", adapter="transformer")) == 908_679_728
    assert count_params_fast(make_config("DiT-XL", use_adaln=False)) == 660_295_328


def test_i1_count_matches_the_dual_stream_layout() -> None:
    """The i1 recipe (dual_stream, DiT-XL_2016) counted by hand from §2, §4.2, §5.4 (≈ 3.17 B)."""
    c = i1_config()
    h, f, d, length, hd, depth = 2016, 5376, 2304, 256, 72, 29
    swiglu = 2 * h * f + 2 * f + f * h + h
    adapter_block = 2 * h + (3 * h * h + 3 * h) + 2 * hd + (h * h + h) + swiglu
    block = 4 * h + 2 * (3 * h * h + 3 * h) + 2 * hd + 2 * (h * h + h) + 2 * swiglu  # norm1-4, attn, 2 FFNs
    expected = (
        (4 * 32 * h + h)  # x_embedder
        + 256 * h  # pos_embed
        + (256 * h + h + h * h + h)  # t_embedder (dead: AdaLN off)
        + (length * d + d * h + h + 2 * adapter_block)  # null caption, connector_in, 2 blocks
        + depth * block
        + (depth // 2) * 2 * (2 * h * h + h)  # image and text skip linears of the out blocks
        + (h + h * 128 + 128)  # final layer without AdaLN
    )
    assert c.ffn_hidden == f and count_params(c) == expected == count_params_fast(c)
    assert 3.1e9 < expected < 3.2e9
