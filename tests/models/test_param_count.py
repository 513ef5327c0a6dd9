"""Parameter counting from shapes only, and the §6 calibration counts of DESIGN_SPACE."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import jax
import pytest

from models.config import ModelConfig
from models.params import count_params, count_params_by_module, param_shapes
from models.presets import make_config

# §6: cross_attn DiT-XL, 256 px, FLUX.2 (32 ch, 32×32 latent), p 2, T5Gemma (D 2304, 256 tokens),
# QK-norm, SwiGLU, RMSNorm, long skips, sinusoidal + RoPE, pooled text and timestep on.
CALIBRATION: dict[str, tuple[dict[str, Any], float]] = {
    "mlp_adaln": ({"adapter": "mlp"}, 0.8941e9),
    "transformer1_adaln": ({"adapter": "transformer", "adapter_blocks": 1}, 0.9087e9),
    "mlp_no_adaln": ({"adapter": "mlp", "use_adaln": False}, 0.6603e9),
}


def _calibration_config(**changes: Any) -> ModelConfig:
    return make_config(
        "DiT-XL",
        backbone="cross_attn",
        resolution=256,
        in_channels=32,
        latent_size=32,
        patch_size=2,
        text_dim=2304,
        text_len=256,
        use_qknorm=True,
        use_swiglu=True,
        use_rmsnorm=True,
        use_long_skip=True,
        position_embedding="sinusoidal_and_rope",
        use_sandwich_norm=False,
        use_image_connector=False,
        use_pooled_text=True,
        use_timestep=True,
        **changes,
    )


@pytest.mark.parametrize("variant", sorted(CALIBRATION))
def test_calibration_counts_within_half_a_percent(variant: str) -> None:
    changes, expected = CALIBRATION[variant]
    total = count_params(_calibration_config(**changes))
    assert abs(total - expected) / expected < 0.005, f"{variant}: {total:,} vs {expected:,.0f}"


def test_counts_include_frozen_null_and_dead_weights() -> None:
    by_module = count_params_by_module(_calibration_config(use_adaln=False))
    assert by_module["pos_embed"] == 256 * 1152
    assert by_module["t_embedder"] == 256 * 1152 + 1152 + 1152 * 1152 + 1152  # dead but counted
    assert "learnable_null_caption" in param_shapes(_calibration_config())["text_encoder_adapter"]


def test_count_matches_real_initialisation(
    small_config: ModelConfig, variables_for: Callable[..., Any]
) -> None:
    params = variables_for(small_config, 0)["params"]
    real = sum(math.prod(leaf.shape) for leaf in jax.tree_util.tree_leaves(params))
    assert count_params(small_config) == real
    shapes = param_shapes(small_config)
    assert str(jax.tree_util.tree_structure(shapes)) == str(jax.tree_util.tree_structure(params))
