"""Several text encoders: one adapter and null caption each, concatenated outputs and masks,
per-encoder vs shared caption dropout (docs/design-space.md §4.3, §8)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from models.adapters import MLPAdapter
from models.config import ModelConfig
from models.dit import DiT, dummy_inputs
from models.params import param_shapes
from models.rectified_flow import draw_caption_dropout, velocity_loss
from models.sampler import euler_sample

ENCODERS = ((16, 6), (8, 3))


def multi_config(**changes: Any) -> ModelConfig:
    fields: dict[str, Any] = {
        "hidden": 32,
        "depth": 3,
        "heads": 2,
        "in_channels": 4,
        "latent_size": 8,
        "resolution": 64,
        "text_encoders": ENCODERS,
    }
    fields.update(changes)
    return ModelConfig(**fields)


def _inputs(seed: int = 0) -> tuple[jax.Array, jax.Array, tuple[jax.Array, ...], tuple[jax.Array, ...]]:
    keys = jax.random.split(jax.random.key(seed), 4)
    x = jax.random.normal(keys[0], (2, 4, 8, 8))
    t = jnp.array([0.3, 0.8])
    texts = (jax.random.normal(keys[1], (2, 6, 16)), jax.random.normal(keys[2], (2, 3, 8)))
    masks = (jnp.arange(6)[None] < jnp.array([[6], [2]]), jnp.arange(3)[None] < jnp.array([[1], [3]]))
    return x, t, texts, masks


def _forward(config: ModelConfig, variables: Any, *args: Any) -> np.ndarray:
    return np.asarray(cast(jax.Array, DiT(config).apply(variables, *args)))


def test_config_lists_encoders_and_keeps_single_encoder_defaults() -> None:
    single = ModelConfig(text_dim=16, text_len=6)
    assert single.encoder_specs == ((16, 6),) and single.num_encoders == 1 and single.context_len == 6
    c = multi_config(repeat_text_emb=True)
    assert (c.text_dim, c.text_len) == (16, 6)  # the first encoder wins over the single fields
    assert c.num_encoders == 2 and c.total_text_len == 9 and c.context_len == 18
    assert ModelConfig.from_dict(c.to_dict()) == c and c.to_dict()["text_encoders"] == [[16, 6], [8, 3]]
    assert multi_config(text_encoders=[[16, 6], [8, 3]]) == multi_config()  # lists are normalised
    with pytest.raises(ValueError, match="text_encoders"):
        multi_config(text_encoders=((16, 0),))


def test_each_encoder_has_its_own_adapter_and_null_caption() -> None:
    params = param_shapes(multi_config())
    assert "text_encoder_adapter" not in params
    null0 = params["text_encoder_adapter_0"]["learnable_null_caption"]
    null1 = params["text_encoder_adapter_1"]["learnable_null_caption"]
    assert null0.shape == (1, 6, 16) and null1.shape == (1, 3, 8)
    assert params["text_encoder_adapter_1"]["fc1"]["kernel"].shape == (8, 32)
    _, _, texts, masks = dummy_inputs(multi_config())
    assert [a.shape for a in texts] == [(1, 6, 16), (1, 3, 8)]
    assert [m.shape for m in masks] == [(1, 6), (1, 3)]


def test_outputs_and_masks_are_concatenated(fast_variables: Callable[..., Any]) -> None:
    config = multi_config()
    variables = fast_variables(config, 0)
    x, t, texts, masks = _inputs()
    seen: list[tuple[np.ndarray, np.ndarray]] = []

    def spy(next_fun: Callable[..., Any], args: Any, kwargs: Any, context: Any) -> Any:
        if context.module.name == "blocks_0" and context.method_name == "__call__":
            seen.append((np.asarray(args[1]), np.asarray(args[2])))
        return next_fun(*args, **kwargs)

    with nn.intercept_methods(spy):
        DiT(config).apply(variables, x, t, texts, masks)
    ((context, context_mask),) = seen
    params = variables["params"]
    parts = [
        MLPAdapter(config, i).apply({"params": params[f"text_encoder_adapter_{i}"]}, texts[i]) for i in (0, 1)
    ]
    np.testing.assert_allclose(context, np.concatenate([np.asarray(p) for p in parts], axis=1), atol=1e-6)
    np.testing.assert_array_equal(context_mask, np.concatenate([np.asarray(m) for m in masks], axis=1))


def test_per_encoder_and_shared_dropout(fast_variables: Callable[..., Any]) -> None:
    config = multi_config()
    variables = fast_variables(config, 1)
    params = variables["params"]
    x, t, texts, masks = _inputs(1)
    null = [params[f"text_encoder_adapter_{i}"]["learnable_null_caption"] for i in (0, 1)]
    yes, no = jnp.array([True, False]), jnp.array([False, False])

    # independent drops: only encoder 1 of sample 0
    dropped = _forward(config, variables, x, t, texts, masks, (no, yes))
    manual = _forward(config, variables, x, t, (texts[0], texts[1].at[0].set(null[1][0])), masks)
    np.testing.assert_allclose(dropped, manual, rtol=1e-6, atol=1e-6)
    assert np.abs(dropped - _forward(config, variables, x, t, texts, masks)).max() > 1e-5

    # one shared decision: every encoder of sample 0 gets its null caption
    shared = _forward(config, variables, x, t, texts, masks, yes)
    both = (texts[0].at[0].set(null[0][0]), texts[1].at[0].set(null[1][0]))
    np.testing.assert_allclose(shared, _forward(config, variables, x, t, both, masks), rtol=1e-6, atol=1e-6)


def test_single_encoder_accepts_a_one_tuple(
    small_config: ModelConfig, make_inputs: Callable[..., Any], variables_for: Callable[..., Any]
) -> None:
    variables = variables_for(small_config, 0)
    x, t, text, mask = make_inputs(small_config)
    drop = jnp.array([True, False])
    np.testing.assert_array_equal(
        _forward(small_config, variables, x, t, (text,), (mask,), (drop,)),
        _forward(small_config, variables, x, t, text, mask, drop),
    )


def test_wrong_number_of_encoders_raises(fast_variables: Callable[..., Any]) -> None:
    config = multi_config()
    variables = fast_variables(config, 0)
    x, t, texts, masks = _inputs()
    with pytest.raises(ValueError, match="2 text encoders"):
        DiT(config).apply(variables, x, t, texts[:1], masks[:1])
    with pytest.raises(ValueError, match="one entry per text encoder"):
        DiT(config).apply(variables, x, t, texts[0], masks[0])
    with pytest.raises(ValueError, match=r"text 1 must be \(B, L <= 3, 8\)"):
        DiT(config).apply(variables, x, t, (texts[0], texts[0]), masks)


def test_dropout_draws_shared_or_independent_decisions() -> None:
    key = jax.random.key(3)
    shared = draw_caption_dropout(key, 4000, 0.3)
    assert shared.shape == (4000,) and abs(float(shared.mean()) - 0.3) < 0.03
    assert draw_caption_dropout(key, 8, 0.0) is None
    a, b, c = draw_caption_dropout(key, 4000, [0.5, 0.5, 0.0])
    assert c is None and abs(float(a.mean()) - 0.5) < 0.04
    assert 0.2 < float(jnp.mean(a == b)) < 0.8  # independent, not one decision


def test_loss_and_sampler_take_several_encoders(fast_variables: Callable[..., Any]) -> None:
    config = multi_config()
    variables = fast_variables(config, 0)
    model = DiT(config)
    x, _, texts, masks = _inputs(2)
    loss = velocity_loss(model.apply, variables, x, texts, masks, jax.random.key(0), drop_prob=[0.5, 0.1])
    assert np.isfinite(float(loss)) and float(loss) > 0.0
    out = euler_sample(
        model.apply, variables, texts, masks, jax.random.key(1), shape=x.shape, steps=1, cfg_scale=3.0
    )
    assert out.shape == x.shape and bool(jnp.all(jnp.isfinite(out)))
