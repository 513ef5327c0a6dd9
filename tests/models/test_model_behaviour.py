"""Behaviours of the full model: AdaLN-off invariance, caption dropout, masks, wiring, init (§1–§5)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from models.adapters import MLPAdapter, TransformerAdapter, masked_mean
from models.config import BACKBONES, IMPLEMENTED_BACKBONES, ModelConfig
from models.cross_attn import CrossAttnBlock
from models.dit import DiT, unpatchify
from models.params import param_shapes
from models.posemb import rope_2d_tables

Inputs = tuple[jax.Array, jax.Array, jax.Array, jax.Array]


def forward(model: DiT, variables: Any, *args: Any) -> jax.Array:
    """`model.apply` with its output typed as an array."""
    return cast(jax.Array, model.apply(variables, *args))


@pytest.fixture(scope="module")
def model_and_vars(small_config: ModelConfig, variables_for: Callable[..., Any]) -> tuple[DiT, Any]:
    return DiT(small_config), variables_for(small_config, 1)


def test_output_shape_and_dtype(model_and_vars: tuple[DiT, Any], make_inputs: Callable[..., Inputs]) -> None:
    model, variables = model_and_vars
    x, t, text, mask = make_inputs(model.config, batch=3)
    out = forward(model, variables, x, t, text, mask)
    assert out.shape == x.shape and out.dtype == jnp.float32
    with pytest.raises(ValueError, match="x must be"):
        forward(model, variables, x[:, :2], t, text, mask)


def test_adaln_off_ignores_t_bit_exactly(
    small_config: ModelConfig, make_inputs: Callable[..., Inputs], variables_for: Callable[..., Any]
) -> None:
    config = small_config.replace(use_adaln=False)
    model = DiT(config)
    variables = variables_for(config, 2)
    x, _, text, mask = make_inputs(config)
    outs = [np.asarray(forward(model, variables, x, jnp.full((2,), t), text, mask)) for t in (0.0, 0.37, 1.0)]
    np.testing.assert_array_equal(outs[0], outs[1])
    np.testing.assert_array_equal(outs[0], outs[2])
    # the timestep weights exist but are dead: changing them changes nothing (zero gradient; §5.5)
    params = variables["params"]
    assert "t_embedder" in params
    perturbed = dict(params, t_embedder=jax.tree_util.tree_map(lambda w: w + 1.0, params["t_embedder"]))
    out = forward(model, {"params": perturbed}, x, jnp.full((2,), 0.0), text, mask)
    np.testing.assert_array_equal(np.asarray(out), outs[0])


def test_adaln_on_depends_on_t(model_and_vars: tuple[DiT, Any], make_inputs: Callable[..., Inputs]) -> None:
    model, variables = model_and_vars
    x, _, text, mask = make_inputs(model.config)
    a = forward(model, variables, x, jnp.full((2,), 0.1), text, mask)
    b = forward(model, variables, x, jnp.full((2,), 0.9), text, mask)
    assert float(jnp.abs(a - b).max()) > 1e-4


@pytest.mark.parametrize("adapter", ["mlp", "transformer"])
def test_caption_dropout_is_the_null_caption_with_the_same_mask(
    adapter: str,
    small_config: ModelConfig,
    make_inputs: Callable[..., Inputs],
    variables_for: Callable[..., Any],
) -> None:
    config = small_config.replace(adapter=adapter)
    model = DiT(config)
    variables = variables_for(config, 3)
    x, t, text, mask = make_inputs(config)
    null = variables["params"]["text_encoder_adapter"]["learnable_null_caption"]
    dropped = forward(model, variables, x, t, text, mask, jnp.array([True, False]))
    replaced_text = text.at[0].set(null[0])
    manual = forward(model, variables, x, t, replaced_text, mask)
    np.testing.assert_allclose(np.asarray(dropped), np.asarray(manual), rtol=1e-6, atol=1e-6)
    # the mask is kept: the same drop with another mask gives another output
    other_mask = mask.at[0].set(jnp.arange(mask.shape[1]) < 3)
    other = forward(model, variables, x, t, text, other_mask, jnp.array([True, False]))
    assert float(jnp.abs(other[0] - dropped[0]).max()) > 1e-5
    # drop all False is no dropout
    kept = forward(model, variables, x, t, text, mask, jnp.array([False, False]))
    np.testing.assert_array_equal(np.asarray(kept), np.asarray(forward(model, variables, x, t, text, mask)))


def test_null_caption_is_truncated_for_shorter_text(
    model_and_vars: tuple[DiT, Any], make_inputs: Callable[..., Inputs]
) -> None:
    model, variables = model_and_vars
    x, t, text, mask = make_inputs(model.config)
    out = forward(model, variables, x, t, text[:, :4], mask[:, :4], jnp.array([True, True]))
    assert out.shape == x.shape and bool(jnp.all(jnp.isfinite(out)))


def test_int_and_bool_masks_agree(
    model_and_vars: tuple[DiT, Any], make_inputs: Callable[..., Inputs]
) -> None:
    model, variables = model_and_vars
    x, t, text, mask = make_inputs(model.config)
    a = forward(model, variables, x, t, text, mask)
    b = forward(model, variables, x, t, text, mask.astype(jnp.int32))
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_padding_is_ignored_by_mlp_adapter_but_not_by_transformer_adapter(
    small_config: ModelConfig, make_inputs: Callable[..., Inputs], variables_for: Callable[..., Any]
) -> None:
    x, t, text, mask = make_inputs(small_config)
    garbage = jnp.where(mask[..., None], text, 100.0)  # change only padded features
    for adapter, invariant in (("mlp", True), ("transformer", False)):
        config = small_config.replace(adapter=adapter)
        model = DiT(config)
        variables = variables_for(config, 3)
        clean, dirty = (
            forward(model, variables, x, t, text, mask),
            forward(model, variables, x, t, garbage, mask),
        )
        diff = float(jnp.abs(clean - dirty).max())
        if invariant:
            assert diff < 1e-5
        else:  # the transformer adapter attends over padding ⚑ (§4.2)
            assert diff > 1e-4


def test_fully_masked_text_gives_finite_output(
    model_and_vars: tuple[DiT, Any], make_inputs: Callable[..., Inputs]
) -> None:
    model, variables = model_and_vars
    x, t, text, mask = make_inputs(model.config)
    out = forward(model, variables, x, t, text, jnp.zeros_like(mask))
    assert bool(jnp.all(jnp.isfinite(out)))


def test_unpatchify_inverts_row_major_patchify(small_config: ModelConfig) -> None:
    c = small_config
    shape = (2, c.in_channels, c.latent_size, c.latent_size)
    image = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    g, p = c.grid_size, c.patch_size
    tokens = np.zeros((2, g * g, p * p * c.in_channels), np.float32)
    for gr in range(g):
        for gc in range(g):
            for r in range(p):
                for col in range(p):
                    for ch in range(c.in_channels):
                        index = (r * p + col) * c.in_channels + ch  # (row-in-patch, col-in-patch, channel)
                        tokens[:, gr * g + gc, index] = image[:, ch, gr * p + r, gc * p + col]
    np.testing.assert_array_equal(np.asarray(unpatchify(jnp.asarray(tokens), c)), image)


def test_every_backbone_is_implemented(small_config: ModelConfig) -> None:
    assert IMPLEMENTED_BACKBONES == BACKBONES == ("cross_attn", "single_stream", "dual_stream")
    shapes = param_shapes(small_config.replace(backbone="dual_stream"))
    assert "qkv_image" in shapes["blocks_0"]["attn"]


def test_bfloat16_compute_matches_float32_roughly(
    model_and_vars: tuple[DiT, Any], make_inputs: Callable[..., Inputs]
) -> None:
    model, variables = model_and_vars
    x, t, text, mask = make_inputs(model.config)
    ref = np.asarray(forward(model, variables, x, t, text, mask))
    low = np.asarray(jax.jit(DiT(model.config.replace(dtype="bfloat16")).apply)(variables, x, t, text, mask))
    assert low.dtype == np.float32
    assert np.abs(low - ref).max() / np.abs(ref).max() < 0.05


def test_long_skips_pair_lifo(make_inputs: Callable[..., Inputs], variables_for: Callable[..., Any]) -> None:
    """Depth 5: blocks_3 gets blocks_1's output and blocks_4 gets blocks_0's (§5.1 ⚑)."""
    config = ModelConfig(
        hidden=32, depth=5, heads=2, in_channels=4, latent_size=8, resolution=64, text_dim=16, text_len=6
    )
    model = DiT(config)
    variables = variables_for(config, 5)
    x, t, text, mask = make_inputs(config)
    _, state = model.apply(variables, x, t, text, mask, capture_intermediates=True, mutable=["intermediates"])
    inter = state["intermediates"]
    out = {i: inter[f"blocks_{i}"]["__call__"][0] for i in range(5)}
    context = inter["text_encoder_adapter"]["__call__"][0]
    cond = inter["t_embedder"]["__call__"][0] + masked_mean(context, mask)
    rope = tuple(jnp.asarray(a) for a in rope_2d_tables(config))
    params = variables["params"]

    def run(i: int, h: jax.Array, skip: jax.Array) -> jax.Array:
        block = CrossAttnBlock(config, use_skip=True)
        out = block.apply({"params": params[f"blocks_{i}"]}, h, context, mask, cond, rope, skip)
        return cast(jax.Array, out)

    np.testing.assert_allclose(run(3, out[2], out[1]), out[3], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(run(4, out[3], out[0]), out[4], rtol=1e-5, atol=1e-5)
    assert float(jnp.abs(run(3, out[2], out[0]) - out[3]).max()) > 1e-4  # FIFO would differ


def test_initialisation_follows_section_1(model_and_vars: tuple[DiT, Any]) -> None:
    params = model_and_vars[1]["params"]
    for path, leaf in jax.tree_util.tree_leaves_with_path(params):
        name = jax.tree_util.keystr(path)
        if name.endswith("['bias']"):
            assert float(jnp.abs(leaf).max()) == 0.0, name
        if name.endswith("['scale']"):
            assert bool(jnp.all(leaf == 1.0)), name
    # no adaLN-zero and no zero-init output ⚑
    assert float(jnp.std(params["blocks_0"]["adaLN_modulation"]["kernel"])) > 0.05
    assert float(jnp.std(params["final_layer"]["linear"]["kernel"])) > 0.05
    # LeCun normal (truncated): std ≈ fan_in^-1/2, |w| ≤ 2·fan_in^-1/2/0.8796
    for kernel in (params["blocks_0"]["attn"]["qkv"]["kernel"], params["blocks_1"]["mlp"]["w12"]["kernel"]):
        assert abs(float(jnp.std(kernel)) * 32**0.5 - 1.0) < 0.1
        assert float(jnp.abs(kernel).max()) <= 2 / 0.8796 * 32**-0.5 + 1e-6
    # Xavier uniform: bounded by sqrt(6/(fan_in+fan_out)), std = bound/sqrt(3)
    for kernel in (
        params["text_encoder_adapter"]["fc2"]["kernel"],
        params["blocks_2"]["skip_linear"]["kernel"],
    ):
        bound = (6.0 / sum(kernel.shape)) ** 0.5
        assert float(jnp.abs(kernel).max()) <= bound
        assert abs(float(jnp.std(kernel)) / (bound / 3**0.5) - 1.0) < 0.1


@pytest.mark.parametrize("adapter_cls", [MLPAdapter, TransformerAdapter])
def test_adapter_initialisation(adapter_cls: type[nn.Module]) -> None:
    """Null caption ~ N(0, D^-1/2); the adapter's input layer is Xavier-uniform (§1)."""
    config = ModelConfig(hidden=32, depth=1, heads=2, in_channels=4, latent_size=8, text_dim=256, text_len=64)
    params = adapter_cls(config).init(jax.random.key(8), jnp.zeros((1, 64, 256)))["params"]
    null = params["learnable_null_caption"]
    assert null.shape == (1, 64, 256)
    assert abs(float(jnp.std(null)) * 256**0.5 - 1.0) < 0.05
    kernel = params["fc1" if adapter_cls is MLPAdapter else "connector_in"]["kernel"]
    bound = (6.0 / (256 + 32)) ** 0.5
    assert float(jnp.abs(kernel).max()) <= bound
    assert float(jnp.abs(kernel).max()) > 0.9 * bound  # uniform fills the range; LeCun normal would not


def test_intercepted_blocks_receive_the_text_mask(
    model_and_vars: tuple[DiT, Any], make_inputs: Callable[..., Inputs]
) -> None:
    model, variables = model_and_vars
    x, t, text, mask = make_inputs(model.config)
    masks: list[np.ndarray] = []

    def spy(next_fun: Callable[..., Any], args: Any, kwargs: Any, context: Any) -> Any:
        if context.module.name == "cross_attn" and context.method_name == "__call__":
            masks.append(np.asarray(args[2]))
        return next_fun(*args, **kwargs)

    with nn.intercept_methods(spy):
        model.apply(variables, x, t, text, mask)
    assert len(masks) == model.config.depth
    for m in masks:
        np.testing.assert_array_equal(m, np.asarray(mask))
