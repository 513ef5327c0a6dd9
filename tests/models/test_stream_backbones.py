"""The single_stream and dual_stream backbones in the full model: every switch, AdaLN-off invariance,
masking, parameter layout and long skips (docs/design-space.md §5.1, §5.3, §5.4, §5.5, §12).

As in `test_model_switches`, a variant shares every parameter that the baseline has at the same path
and shape. The baseline's norm scales and biases are randomised, so that switches which only add
fresh norms (e.g. `use_separate_norms`) are visible too.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from models.config import ModelConfig
from models.dit import DiT
from models.params import param_shapes

Inputs = tuple[jax.Array, jax.Array, jax.Array, jax.Array]
FAMILIES = ("single_stream", "dual_stream")

COMMON_SWITCHES: dict[str, dict[str, Any]] = {
    "adapter_transformer": {"adapter": "transformer"},
    "no_long_skip": {"use_long_skip": False},
    "no_adaln": {"use_adaln": False},
    "sinusoidal_only": {"position_embedding": "sinusoidal_only"},
    "rope_only": {"position_embedding": "rope_only"},
    "no_qknorm": {"use_qknorm": False},
    "no_swiglu": {"use_swiglu": False},
    "layernorm": {"use_rmsnorm": False},
    "sandwich_norm": {"use_sandwich_norm": True},
    "image_connector": {"use_image_connector": True},
    "wo_shift": {"wo_shift": True},
    "repeat_text_emb": {"repeat_text_emb": True},
    "rope_axes_dims": {"rope_axes_dims": (4, 6, 6)},
    "rope_theta": {"rope_theta": 100.0},
}
CASES = [(family, name) for family in FAMILIES for name in sorted(COMMON_SWITCHES)]
CASES += [("single_stream", "no_refiners"), ("dual_stream", "separate_norms")]
EXTRA = {"no_refiners": {"refiner_layers": 0}, "separate_norms": {"use_separate_norms": True}}


def stream_config(family: str, **changes: Any) -> ModelConfig:
    """H 32, depth 3, 2 heads (head_dim 16: RoPE dims (8, 4, 4)), 4×4 token grid, L 6, 1 refiner."""
    fields: dict[str, Any] = {
        "backbone": family,
        "hidden": 32,
        "depth": 3,
        "heads": 2,
        "in_channels": 4,
        "latent_size": 8,
        "resolution": 64,
        "text_dim": 16,
        "text_len": 6,
        "refiner_layers": 1,
    }
    fields.update(changes)
    return ModelConfig(**fields)


def _forward(config: ModelConfig, variables: Any, *args: Any) -> np.ndarray:
    return np.asarray(cast(jax.Array, DiT(config).apply(variables, *args)))


def _randomise_norms(variables: Any, seed: int) -> Any:
    rng = np.random.default_rng(seed)

    def one(path: Any, leaf: jax.Array) -> jax.Array:
        name = jax.tree_util.keystr(path)
        if name.endswith("['scale']") or name.endswith("['bias']"):
            return leaf + jnp.asarray(rng.normal(0.0, 0.3, leaf.shape), leaf.dtype)
        return leaf

    return jax.tree_util.tree_map_with_path(one, variables)


def _shared_params(base: Any, variant: Any) -> Any:
    flat_base = {jax.tree_util.keystr(p): v for p, v in jax.tree_util.tree_leaves_with_path(base)}

    def pick(path: Any, leaf: jax.Array) -> jax.Array:
        other = flat_base.get(jax.tree_util.keystr(path))
        return other if other is not None and other.shape == leaf.shape else leaf

    return jax.tree_util.tree_map_with_path(pick, variant)


@pytest.fixture(scope="module")
def baselines(
    make_inputs: Callable[..., Inputs], fast_variables: Callable[..., Any]
) -> dict[str, tuple[Any, Inputs, np.ndarray]]:
    out = {}
    for family in FAMILIES:
        config = stream_config(family)
        inputs = make_inputs(config)
        variables = _randomise_norms(fast_variables(config, 0), seed=1)
        out[family] = (variables, inputs, _forward(config, variables, *inputs))
    return out


@pytest.mark.parametrize(("family", "name"), CASES)
def test_switch_changes_the_output(
    family: str,
    name: str,
    baselines: dict[str, tuple[Any, Inputs, np.ndarray]],
    fast_variables: Callable[..., Any],
) -> None:
    base_vars, inputs, base_out = baselines[family]
    config = stream_config(family, **(COMMON_SWITCHES.get(name) or EXTRA[name]))
    variables = _shared_params(base_vars, fast_variables(config, 0))
    out = _forward(config, variables, *inputs)
    assert out.shape == base_out.shape and np.all(np.isfinite(out))
    rel = np.abs(out - base_out).max() / np.abs(base_out).max()
    assert rel > 1e-3, f"{family}: switch {name} left the output unchanged (relative diff {rel:.2e})"


@pytest.mark.parametrize("family", FAMILIES)
def test_adaln_off_ignores_t_bit_exactly(
    family: str, make_inputs: Callable[..., Inputs], fast_variables: Callable[..., Any]
) -> None:
    config = stream_config(family, use_adaln=False, use_sandwich_norm=True)
    variables = _randomise_norms(fast_variables(config, 2), seed=3)
    x, _, text, mask = make_inputs(config)
    outs = [_forward(config, variables, x, jnp.full((2,), t), text, mask) for t in (0.0, 0.5, 1.0)]
    np.testing.assert_array_equal(outs[0], outs[1])
    np.testing.assert_array_equal(outs[0], outs[2])
    params = variables["params"]
    assert "t_embedder" in params  # dead but present (§5.5)
    perturbed = dict(params, t_embedder=jax.tree_util.tree_map(lambda w: w + 1.0, params["t_embedder"]))
    np.testing.assert_array_equal(
        _forward(config, {"params": perturbed}, x, jnp.zeros((2,)), text, mask), outs[0]
    )


@pytest.mark.parametrize("family", FAMILIES)
def test_adaln_on_depends_on_t(
    family: str,
    baselines: dict[str, tuple[Any, Inputs, np.ndarray]],
) -> None:
    variables, (x, _, text, mask), _ = baselines[family]
    config = stream_config(family)
    a = _forward(config, variables, x, jnp.full((2,), 0.1), text, mask)
    b = _forward(config, variables, x, jnp.full((2,), 0.9), text, mask)
    assert np.abs(a - b).max() > 1e-4


@pytest.mark.parametrize("family", FAMILIES)
def test_padded_text_features_are_fully_masked(
    family: str, baselines: dict[str, tuple[Any, Inputs, np.ndarray]]
) -> None:
    """Keys masked, padded queries zeroed, text multiplied by the mask: garbage in padded positions
    cannot reach the image tokens (MLP adapter, which is per token)."""
    variables, (x, t, text, mask), base_out = baselines[family]
    garbage = jnp.where(mask[..., None], text, 100.0)
    out = _forward(stream_config(family), variables, x, t, garbage, mask)
    np.testing.assert_allclose(out, base_out, rtol=1e-5, atol=1e-5)
    shorter = mask.at[0, -1].set(False)  # but the mask itself matters
    assert np.abs(_forward(stream_config(family), variables, x, t, text, shorter) - base_out).max() > 1e-4


def test_parameter_layout_of_single_stream() -> None:
    def params(**changes: Any) -> dict[str, Any]:
        return dict(param_shapes(stream_config("single_stream", **changes)))

    base = params()
    assert {"context_refiner_0", "noise_refiner_0", "t_embedder"} <= set(base)
    assert "adaLN_modulation" not in base["context_refiner_0"]  # never modulated
    assert "adaLN_modulation" in base["noise_refiner_0"] and "adaLN_modulation" in base["blocks_0"]
    sandwich = params(use_sandwich_norm=True)
    assert {"norm3", "norm4"} <= set(sandwich["blocks_0"]) and "norm3" in sandwich["noise_refiner_0"]
    assert "norm3" not in sandwich["context_refiner_0"]  # ⚑ only modulated blocks get sandwich norms
    no_adaln = params(use_sandwich_norm=True, use_adaln=False)
    for name in ("blocks_0", "blocks_2", "noise_refiner_0", "context_refiner_0"):
        assert not {"norm3", "norm4", "adaLN_modulation"} & set(no_adaln[name]), name
    skips = [k for k, v in base.items() if k.startswith("blocks_") and "skip_linear" in v]
    assert skips == ["blocks_2"] and base["blocks_2"]["skip_linear"]["kernel"].shape == (64, 32)
    assert "context_refiner_0" not in params(refiner_layers=0)
    assert {"context_refiner_1", "noise_refiner_1"} <= set(params(refiner_layers=2))


def test_parameter_layout_of_dual_stream() -> None:
    def params(**changes: Any) -> dict[str, Any]:
        return dict(param_shapes(stream_config("dual_stream", **changes)))

    base = params()
    block = base["blocks_0"]
    assert {"norm1", "norm2", "mlp_image", "mlp_text", "adaLN_modulation"} <= set(block)
    assert {"qkv_image", "qkv_text", "proj_image", "proj_text", "q_norm", "k_norm"} == set(block["attn"])
    assert block["adaLN_modulation"]["kernel"].shape == (32, 6 * 32)  # one modulation for both streams
    assert not any(k.startswith(("context_refiner", "noise_refiner")) for k in base)  # no refiners
    separate = params(use_separate_norms=True)["blocks_0"]
    assert {"norm1_image", "norm1_text", "norm2_image", "norm2_text"} <= set(separate)
    assert {"q_norm_image", "k_norm_image", "q_norm_text", "k_norm_text"} <= set(separate["attn"])
    # ⚑ norm3/norm4 are shared in both branches, also with separate norms and without AdaLN
    for changes in ({"use_adaln": False}, {"use_separate_norms": True}):
        b0 = params(use_sandwich_norm=True, **changes)["blocks_0"]
        assert {"norm3", "norm4"} <= set(b0) and "norm3_image" not in b0
    out_block = base["blocks_2"]
    assert out_block["skip_linear_image"]["kernel"].shape == (64, 32) and "skip_linear_text" in out_block
    assert "skip_linear_image" not in base["blocks_1"]


@pytest.mark.parametrize("family", FAMILIES)
def test_long_skips_change_the_wiring_but_not_the_block_count(family: str) -> None:
    with_skips = param_shapes(stream_config(family, depth=5))
    without = param_shapes(stream_config(family, depth=5, use_long_skip=False))
    blocks = sorted(k for k in with_skips if k.startswith("blocks_"))
    assert blocks == sorted(k for k in without if k.startswith("blocks_")) and len(blocks) == 5
    skip_names = {"skip_linear", "skip_linear_image"}
    assert [k for k in blocks if skip_names & set(with_skips[k])] == ["blocks_3", "blocks_4"]
    assert not any(skip_names & set(without[k]) for k in blocks)


def test_reserved_sizes_are_validated() -> None:
    with pytest.raises(ValueError, match="too small for 3-axis RoPE"):
        stream_config("dual_stream", hidden=8, heads=2)  # head_dim 4
    with pytest.raises(ValueError, match="must be 3 values summing to head_dim"):
        stream_config("single_stream", rope_axes_dims=(8, 4, 2))
    assert stream_config("dual_stream", hidden=8, heads=2, position_embedding="sinusoidal_only").head_dim == 4
