"""The train step and optimizer: gradient accumulation, compute precision, the finite flag, and the
optimizer chain of docs/design-space.md §9 (clip over non-frozen parameters, Adam with a bf16 first moment,
weight decay, frozen ``pos_embed``)."""

from __future__ import annotations

from functools import cache
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from i1lab.data.pipeline import BatchStream
from i1lab.plan.planner import expand
from i1lab.spec import load_study
from i1lab.spec.model import model_config
from i1lab.spec.run import RunSpec, TrainSpec
from i1lab.train.build import TextEncoder, encode_images
from i1lab.train.optim import make_optimizer
from i1lab.train.runner import initial_state
from i1lab.train.step import TrainState, make_train_step
from models.dit import DiT
from tests.conftest import EXPERIMENTS

#: A very small run of the tiny profile (compiles in seconds): shared by the train tests.
SMALL = {
    "model.hidden": 32,
    "model.depth": 1,
    "data.resolution": 16,
    "data.sources": [
        {"name": "shapes_a", "kind": "shapes", "count": 5000, "group": "real"},
        {"name": "words", "kind": "shapes", "family": "words", "count": 500, "group": "text"},
    ],
    "train.batch_size": 4,
}


def shared_xla_cache(factory: pytest.TempPathFactory) -> str:
    """One on-disk XLA cache for the train tests of a session (processes and in-process runs)."""
    return str(factory.getbasetemp() / "xla-cache")


def tiny_spec(**dotted: Any) -> RunSpec:
    """The baseline's tiny profile with ``SMALL`` and then ``dotted`` overrides (``a.b`` keys)."""
    raw = expand(load_study(EXPERIMENTS / "baseline.yaml"), "tiny")[0].spec.model_dump(mode="json")
    for key, value in {**SMALL, **dotted}.items():
        node = raw
        *parents, leaf = key.split(".")
        for p in parents:
            node = node[p]
        node[leaf] = value
    return RunSpec.model_validate(raw)


def make_batch(spec: RunSpec, step: int = 0) -> dict[str, jax.Array]:
    raw = BatchStream(spec.data, spec.train.batch_size, spec.train.seed)[step]
    text, mask = TextEncoder(spec)([str(c) for c in raw["caption"]])
    return {
        "latents": jnp.asarray(encode_images(spec, raw["image"])),
        "text": jnp.asarray(text),
        "mask": jnp.asarray(mask),
    }


#: One spec for the step tests, so they share compilations. Adam's eps = 1 makes the first update
#: ~ lr * g (linear in the gradient): parameters after one step then compare the gradients themselves.
STEP = {
    "train.batch_size": 8,
    "train.eps": 1.0,
    "train.lr": 1.0,
    "train.mu_dtype": "float32",
    "train.caption_dropout": 0.5,
    "train.ema_decay": 0.5,
}


@cache
def _initial(spec_json: str) -> Any:
    return jax.device_get(initial_state(RunSpec.model_validate_json(spec_json))[0])


@cache
def _step(spec_json: str, grad_accum: int) -> Any:
    spec = RunSpec.model_validate_json(spec_json)
    _, tx, frozen = initial_state(spec, abstract=True)
    t = spec.train
    return make_train_step(
        DiT(model_config(spec)),
        tx,
        frozen,
        ema_decay=t.ema_decay,
        drop_prob=t.caption_dropout,
        lognorm=True,
        lognorm_mean=0.0,
        lognorm_std=1.0,
        train_shift=0.0,
        grad_accum=grad_accum,
    )


def step_fn(spec: RunSpec, grad_accum: int = 1) -> tuple[Any, Any]:
    """A fresh copy of the initial state (the step donates its input) and the jitted step."""
    key = spec.model_dump_json()
    return jax.tree_util.tree_map(jnp.asarray, _initial(key)), _step(key, grad_accum)


def leaves(tree: Any) -> list[Any]:
    return list(jax.tree_util.tree_leaves(tree))


def test_gradient_accumulation_equals_the_full_batch() -> None:
    spec = tiny_spec(**STEP)
    batch = make_batch(spec)
    rng = jax.random.PRNGKey(3)
    results = []
    for accum in (1, 4):
        state, fn = step_fn(spec, grad_accum=accum)
        new, metrics = fn(state, batch, rng)
        results.append((jax.device_get(new), jax.device_get(metrics)))
    (full, m1), (acc, m4) = results
    assert float(m4.loss) == pytest.approx(float(m1.loss), rel=1e-5)
    assert float(m4.grad_norm) == pytest.approx(float(m1.grad_norm), rel=1e-5)
    for name in ("params", "ema"):
        for a, b in zip(leaves(getattr(full, name)), leaves(getattr(acc, name)), strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    # the comparison has teeth: another step key gives another loss and other parameters
    state, fn = step_fn(spec)
    other, m_other = fn(state, batch, jax.random.PRNGKey(4))
    assert abs(float(m_other.loss) - float(m1.loss)) > 1e-4
    pairs = zip(leaves(other.params), leaves(full.params), strict=True)
    assert not all(np.allclose(a, b, rtol=1e-5, atol=1e-6) for a, b in pairs)


def test_finite_flag_frozen_pos_embed_and_ema() -> None:
    spec = tiny_spec(**STEP)
    state, fn = step_fn(spec)
    before = jax.device_get(state)
    batch = make_batch(spec)
    bad = {**batch, "latents": batch["latents"].at[0, 0, 0, 0].set(jnp.nan)}
    assert not bool(fn(state, bad, jax.random.PRNGKey(0))[1].finite)
    state, fn = step_fn(spec)
    for s in range(2):
        state, metrics = fn(state, make_batch(spec, s), jax.random.PRNGKey(s))
        assert bool(metrics.finite)
    after = jax.device_get(state)
    assert int(after.step) == 2
    np.testing.assert_array_equal(after.params["pos_embed"], before.params["pos_embed"])
    changed = [
        not np.array_equal(a, b) for a, b in zip(leaves(after.params), leaves(before.params), strict=True)
    ]
    assert sum(changed) >= len(changed) - 2  # all but the frozen table (and maybe the unused null caption)
    # EMA with decay 0.5 from the initial parameters, updated each step: e2 = (p0 + p1 + 2 p2) / 4
    state, fn = step_fn(spec)
    p = [before.params]
    for s in range(2):
        state, _ = fn(state, make_batch(spec, s), jax.random.PRNGKey(s))
        p.append(jax.device_get(state.params))
    for e, a, b, c in zip(leaves(jax.device_get(state.ema)), *(leaves(x) for x in p), strict=True):
        np.testing.assert_allclose(e, (a + b + 2 * c) / 4, rtol=1e-5, atol=1e-6)


def test_bf16_compute_policy() -> None:
    spec = tiny_spec(**STEP)
    half = tiny_spec(**STEP, **{"model.precision": "bfloat16"})
    assert model_config(half).dtype == "bfloat16" and model_config(spec).dtype == "float32"
    batch = make_batch(spec)
    state, fn = step_fn(spec)
    _, m32 = fn(state, batch, jax.random.PRNGKey(0))
    state, fn = step_fn(half)
    new, m16 = fn(state, batch, jax.random.PRNGKey(0))
    assert bool(m16.finite)
    assert {x.dtype for x in leaves(new.params)} == {jnp.dtype("float32")}  # parameters stay fp32
    assert {x.dtype for x in leaves(new.ema)} == {jnp.dtype("float32")}
    # bf16 compute: close to the fp32 loss, not equal to it
    assert float(m16.loss) == pytest.approx(float(m32.loss), rel=0.05)
    assert float(m16.loss) != float(m32.loss)


def _mu(state: Any) -> Any:
    return optax.tree_utils.tree_get(state, "mu")


def test_clipping_ignores_frozen_gradients_and_weight_decay_applies() -> None:
    params = {"pos_embed": jnp.zeros((3,)), "w": jnp.full((4,), 2.0)}
    grads = {"pos_embed": jnp.full((3,), 1e6), "w": jnp.full((4,), 3.0)}  # |g_w| = 6
    tx = make_optimizer(TrainSpec(grad_clip=1.0, mu_dtype="float32"), params)
    updates, state = tx.update(grads, tx.init(params), params)
    # first moment = (1 - b1) * clipped gradient: w clipped to norm 1 alone (pos_embed does not count)
    np.testing.assert_allclose(_mu(state)["w"], 0.1 * 3.0 / 6.0, rtol=1e-6)
    assert float(jnp.abs(updates["pos_embed"]).max()) == 0.0
    default = make_optimizer(TrainSpec(), params)  # the paper's first moment is stored in bf16
    assert _mu(default.init(params))["w"].dtype == jnp.bfloat16
    unclipped = make_optimizer(TrainSpec(grad_clip=0.0, mu_dtype="float32"), params)
    np.testing.assert_allclose(_mu(unclipped.update(grads, unclipped.init(params), params)[1])["w"], 0.3)

    decayed = make_optimizer(TrainSpec(weight_decay=0.1, lr=0.01, grad_clip=0.0), params)
    zero = jax.tree_util.tree_map(jnp.zeros_like, params)
    updates, _ = decayed.update(zero, decayed.init(params), params)
    np.testing.assert_allclose(updates["w"], -0.01 * 0.1 * 2.0, rtol=1e-6)
    assert float(jnp.abs(updates["pos_embed"]).max()) == 0.0


def test_train_state_round_trips_through_a_checkpoint(tmp_path: Any) -> None:
    from i1lab.train.checkpoint import Checkpoints
    from i1lab.train.digest import state_digests

    spec = tiny_spec()
    state, _, _ = initial_state(spec)
    ckpts = Checkpoints(tmp_path / "c", every=1, keep_every=2, total_steps=4)
    ckpts.save(1, state, {"digests": state_digests(state), "precision": "float32"})
    ckpts.wait()
    abstract, _, _ = initial_state(spec, abstract=True)
    restored, meta = ckpts.restore(1, abstract)
    ckpts.close()
    assert isinstance(restored, TrainState)
    assert state_digests(restored) == state_digests(state) == meta["digests"]
