"""Every ablation switch changes the forward pass (docs/design-space.md §13 "model" rows).

Each variant is compared with the baseline on the same inputs. Parameters that exist in both trees
with the same shape are shared, so a difference comes from the switch itself, not from new weights.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from models.config import ModelConfig
from models.dit import DiT

SWITCHES: dict[str, dict[str, Any]] = {
    "adapter_transformer": {"adapter": "transformer"},
    "no_long_skip": {"use_long_skip": False},
    "no_adaln": {"use_adaln": False},
    "no_pooled_text": {"use_pooled_text": False},
    "no_timestep": {"use_timestep": False},
    "sinusoidal_only": {"position_embedding": "sinusoidal_only"},
    "rope_only": {"position_embedding": "rope_only"},
    "no_qknorm": {"use_qknorm": False},
    "no_swiglu": {"use_swiglu": False},
    "layernorm": {"use_rmsnorm": False},
    "sandwich_norm": {"use_sandwich_norm": True},
    "image_connector": {"use_image_connector": True},
    "wo_shift": {"wo_shift": True},
}

Inputs = tuple[jax.Array, jax.Array, jax.Array, jax.Array]


def _shared_params(base: Any, variant: Any) -> Any:
    """`variant` with every leaf that `base` has at the same path and shape taken from `base`."""
    flat_base = {jax.tree_util.keystr(p): v for p, v in jax.tree_util.tree_leaves_with_path(base)}

    def pick(path: Any, leaf: jax.Array) -> jax.Array:
        other = flat_base.get(jax.tree_util.keystr(path))
        return other if other is not None and other.shape == leaf.shape else leaf

    return jax.tree_util.tree_map_with_path(pick, variant)


def _forward(config: ModelConfig, variables: Any, inputs: Inputs) -> np.ndarray:
    return np.asarray(DiT(config).apply(variables, *inputs))


@pytest.fixture(scope="module")
def baseline(
    small_config: ModelConfig, make_inputs: Callable[..., Inputs], variables_for: Callable[..., Any]
) -> tuple[Any, Inputs, np.ndarray]:
    inputs = make_inputs(small_config)
    variables = variables_for(small_config, 0)
    return variables, inputs, _forward(small_config, variables, inputs)


@pytest.mark.parametrize("name", sorted(SWITCHES))
def test_switch_changes_the_output(
    name: str,
    small_config: ModelConfig,
    baseline: tuple[Any, Inputs, np.ndarray],
    variables_for: Callable[..., Any],
) -> None:
    base_vars, inputs, base_out = baseline
    config = small_config.replace(**SWITCHES[name])
    variables = _shared_params(base_vars, variables_for(config, 0))
    out = _forward(config, variables, inputs)
    assert out.shape == base_out.shape and np.all(np.isfinite(out))
    rel = np.abs(out - base_out).max() / np.abs(base_out).max()
    assert rel > 1e-3, f"switch {name} left the output unchanged (relative diff {rel:.2e})"


def test_switches_build_the_expected_parameters(
    small_config: ModelConfig, variables_for: Callable[..., Any]
) -> None:
    def block0(**changes: Any) -> dict[str, Any]:
        return dict(variables_for(small_config.replace(**changes), 0)["params"])

    base = block0()
    assert "norm3" not in base["blocks_0"] and "adaLN_modulation" in base["blocks_0"]
    assert {"norm3", "norm4"} <= set(block0(use_sandwich_norm=True)["blocks_0"])
    assert "adaLN_modulation" not in block0(use_adaln=False)["blocks_0"]
    assert "t_embedder" in block0(use_adaln=False)  # dead but present (§5.5)
    assert "t_embedder" not in block0(use_timestep=False)
    assert "pos_embed" not in block0(position_embedding="rope_only")
    assert "image_connector" in block0(use_image_connector=True)
    assert "q_norm" not in block0(use_qknorm=False)["blocks_0"]["attn"]
    assert set(block0(use_swiglu=False)["blocks_0"]["mlp"]) == {"fc1", "fc2"}
    assert "bias" in block0(use_rmsnorm=False)["blocks_0"]["norm1"]
    assert block0(wo_shift=True)["blocks_0"]["adaLN_modulation"]["kernel"].shape == (32, 4 * 32)
    skips = [k for k, v in base.items() if k.startswith("blocks_") and "skip_linear" in v]
    assert skips == ["blocks_2"]
    assert not any(
        "skip_linear" in v for k, v in block0(use_long_skip=False).items() if k.startswith("blocks")
    )
    adapter = block0(adapter="transformer", adapter_blocks=2)["text_encoder_adapter"]
    assert {"connector_in", "blocks_0", "blocks_1", "learnable_null_caption"} == set(adapter)


def test_repeat_text_emb_doubles_the_context(
    small_config: ModelConfig, baseline: tuple[Any, Inputs, np.ndarray]
) -> None:
    """The blocks see 2L context tokens and a doubled mask.

    In the cross_attn backbone a repeated context is mathematically a no-op (attention over
    duplicated keys and the masked mean are unchanged), so the output must agree to rounding.
    """
    base_vars, inputs, base_out = baseline
    config = small_config.replace(repeat_text_emb=True)
    seen: list[tuple[tuple[int, ...], np.ndarray]] = []

    def spy(next_fun: Callable[..., Any], args: Any, kwargs: Any, context: Any) -> Any:
        if context.module.name == "blocks_0" and context.method_name == "__call__":
            seen.append((tuple(args[1].shape), np.asarray(args[2])))
        return next_fun(*args, **kwargs)

    with nn.intercept_methods(spy):
        out = DiT(config).apply(base_vars, *inputs)
    ((context_shape, context_mask),) = seen
    assert context_shape == (2, 2 * config.text_len, config.hidden)
    mask = np.asarray(inputs[3])
    np.testing.assert_array_equal(context_mask, np.concatenate([mask, mask], axis=1))
    np.testing.assert_allclose(np.asarray(out), base_out, rtol=1e-4, atol=1e-4)


def test_adapter_blocks_count_matters(
    small_config: ModelConfig, make_inputs: Callable[..., Inputs], variables_for: Callable[..., Any]
) -> None:
    inputs = make_inputs(small_config)
    one = small_config.replace(adapter="transformer", adapter_blocks=1)
    two = small_config.replace(adapter="transformer", adapter_blocks=2)
    vars_one = variables_for(one, 0)
    vars_two = _shared_params(vars_one, variables_for(two, 0))
    diff = np.abs(_forward(one, vars_one, inputs) - _forward(two, vars_two, inputs)).max()
    assert diff > 1e-4
    assert jnp.asarray(
        vars_two["params"]["text_encoder_adapter"]["blocks_1"]["attn"]["qkv"]["kernel"]
    ).shape == (
        32,
        96,
    )
