"""Model FLOPs from the config agree with XLA's count of the lowered forward pass (`models.flops`)."""

from __future__ import annotations

from typing import Any

import jax
import pytest

from models.config import ModelConfig
from models.dit import DiT, dummy_inputs
from models.flops import forward_flops, train_flops_per_image, train_flops_per_step
from models.params import param_shapes
from models.presets import i1_config


@pytest.mark.parametrize(
    "changes",
    [
        {"backbone": "cross_attn", "adapter": "transformer"},
        {"backbone": "single_stream", "use_long_skip": False, "use_adaln": False},
        {"backbone": "dual_stream", "repeat_text_emb": True, "text_encoders": ((64, 24), (32, 8))},
    ],
)
def test_forward_flops_match_xla_within_3_percent(changes: dict[str, Any]) -> None:
    """XLA also counts elementwise work, so it is slightly above; matmuls dominate at H = 256."""
    sizes = {"hidden": 256, "depth": 3, "heads": 4, "in_channels": 4, "latent_size": 32, "resolution": 256}
    config = ModelConfig(**sizes, text_dim=64, text_len=32, **changes)
    x, t, text, mask = dummy_inputs(config)

    def forward(p: Any, *args: Any) -> Any:
        return DiT(config).apply({"params": p}, *args)

    cost = jax.jit(forward).lower(param_shapes(config), x, t, text, mask).cost_analysis()
    xla = float((cost if isinstance(cost, dict) else cost[0])["flops"])
    ours = forward_flops(config)
    assert abs(ours - xla) / xla < 0.03, (ours, xla)


def test_training_flops_scale_with_batch_and_i1_size() -> None:
    c = i1_config()
    per_image = train_flops_per_image(c)
    assert per_image == 3 * forward_flops(c)
    assert train_flops_per_step(c, 512) == 512 * per_image
    # ≈ 6 · params · tokens for a dense transformer: 3.17 B params, 256 image + 256 text tokens
    assert 4e12 < per_image < 1.2e13
