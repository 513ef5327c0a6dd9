"""The closed-form parameter counter agrees with jax.eval_shape on random configurations."""

from __future__ import annotations

import random

import pytest

from models.param_count import count_params_fast
from models.params import count_params
from models.presets import make_config


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
    }


@pytest.mark.parametrize("seed", range(12))
def test_fast_count_equals_eval_shape(seed: int) -> None:
    rng = random.Random(seed)
    while True:
        try:
            config = make_config("tiny", **random_config_kwargs(rng))
            break
        except ValueError:
            continue
    assert count_params_fast(config) == count_params(config)


def test_fast_count_matches_calibration_exactly() -> None:
    assert count_params_fast(make_config("DiT-XL")) == 894_068_384
    assert count_params_fast(make_config("DiT-XL", adapter="transformer")) == 908_679_728
    assert count_params_fast(make_config("DiT-XL", use_adaln=False)) == 660_295_328
