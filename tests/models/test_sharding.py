"""data × fsdp × model sharding (docs/design-space.md §9): rules, one device, and 4 simulated CPU devices.

The multi-device test runs in a subprocess with `XLA_FLAGS=--xla_force_host_platform_device_count=4`
(the flag must be set before JAX starts) and checks that a sharded train step — loss, gradients and
an optax Adam update — agrees with the unsharded one.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import AbstractMesh
from jax.sharding import PartitionSpec as P

from models.sharding import make_mesh, path_string, shard_batch, shard_tree, spec_for, tree_specs

REPO = Path(__file__).resolve().parents[2]

SCRIPT = r"""
import json
import jax, jax.numpy as jnp, numpy as np, optax
from models.config import ModelConfig
from models.dit import DiT, dummy_inputs
from models.rectified_flow import velocity_loss
from models.sharding import (batch_shardings, make_mesh, shard_batch, shard_tree, sharded_init,
                             tree_shardings)

assert jax.device_count() == 4, jax.devices()
c = ModelConfig(backbone="dual_stream", hidden=32, depth=1, use_long_skip=False, heads=2, in_channels=4,
                latent_size=8, resolution=64, text_dim=16, text_len=6)
model = DiT(c)
params = jax.jit(model.init)(jax.random.key(0), *dummy_inputs(c))["params"]
k = jax.random.split(jax.random.key(1), 3)
batch = {"x": jax.random.normal(k[0], (8, 4, 8, 8)), "text": jax.random.normal(k[1], (8, 6, 16)),
         "mask": jnp.arange(6)[None] < jnp.arange(8)[:, None] % 6 + 1}
tx = optax.adam(1e-3, b2=0.95)

def spec(x):
    entries = [list(e) if isinstance(e, tuple) else e for e in x.sharding.spec]
    while entries and entries[-1] is None:
        entries.pop()
    return entries

def step(p, o, b, r):
    def loss_fn(q):
        return velocity_loss(model.apply, {"params": q}, b["x"], b["text"], b["mask"], r)
    loss, grads = jax.value_and_grad(loss_fn)(p)
    updates, o = tx.update(grads, o, p)
    return optax.apply_updates(p, updates), o, loss, grads

ref_p, _, ref_loss, ref_g = jax.jit(step)(params, tx.init(params), batch, k[2])
out = {}
for shape in ((1, 2, 2),):
    mesh = make_mesh(*shape)
    p_sh = shard_tree(params, mesh)
    o_sh = sharded_init(tx.init, mesh, p_sh)
    b_sh = shard_batch(jax.tree_util.tree_map(np.asarray, batch), mesh)
    ps, os_ = tree_shardings(p_sh, mesh), tree_shardings(o_sh, mesh)
    run = jax.jit(step, in_shardings=(ps, os_, batch_shardings(batch, mesh), None),
                  out_shardings=(ps, os_, None, ps))
    new_p, new_o, loss, grads = run(p_sh, o_sh, b_sh, k[2])

    def max_diff(a, b):
        return max(float(jnp.abs(x - y).max()) for x, y in zip(jax.tree_util.tree_leaves(a),
                                                                 jax.tree_util.tree_leaves(b)))
    kernel = new_p["blocks_0"]["attn"]["qkv_image"]["kernel"]
    out[str(shape)] = {
        "loss": float(loss), "ref_loss": float(ref_loss),
        "grad_diff": max_diff(grads, ref_g),
        "grad_max": max(float(jnp.abs(g).max()) for g in jax.tree_util.tree_leaves(ref_g)),
        "param_diff": max_diff(new_p, ref_p),
        "kernel_spec": spec(kernel),
        "kernel_shard": list(kernel.addressable_shards[0].data.shape),
        "grad_spec": spec(grads["blocks_0"]["attn"]["qkv_image"]["kernel"]),
        "mu_spec": spec(new_o[0].mu["blocks_0"]["attn"]["qkv_image"]["kernel"]),
        "count_spec": spec(new_o[0].count),
        "batch_spec": spec(b_sh["x"]),
        "batch_shard": list(b_sh["x"].addressable_shards[0].data.shape),
    }
print("RESULT" + json.dumps(out))
"""


def test_sharded_train_step_matches_unsharded_on_4_simulated_devices() -> None:
    # 4 CPU devices; LLVM optimisation level 0 keeps the compiles short (same numerics)
    flags = "--xla_force_host_platform_device_count=4 --xla_backend_optimization_level=0"
    env = dict(os.environ, XLA_FLAGS=flags, JAX_PLATFORMS="cpu")
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT], cwd=REPO, env=env, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = next(x for x in proc.stdout.splitlines() if x.startswith("RESULT"))
    results = json.loads(line.removeprefix("RESULT"))
    assert set(results) == {"(1, 2, 2)"}
    for name, r in results.items():
        assert abs(r["loss"] - r["ref_loss"]) <= 1e-5 * abs(r["ref_loss"]), name
        assert r["grad_diff"] <= 1e-4 * r["grad_max"], name
        assert r["param_diff"] < 1e-4, name  # one Adam step of lr 1e-3
        assert r["mu_spec"] == r["grad_spec"] == r["kernel_spec"], name
        assert r["count_spec"] == [], name
    r = results["(1, 2, 2)"]  # fsdp 2 × model 2: the (32, 96) qkv kernel is split both ways
    assert r["kernel_spec"] == ["model", "fsdp"] and r["kernel_shard"] == [16, 48]
    assert r["batch_spec"] == [["data", "fsdp"]] and r["batch_shard"] == [4, 4, 8, 8]


def test_rules_on_one_device_and_paths() -> None:
    mesh = make_mesh()
    assert dict(mesh.shape) == {"data": 1, "fsdp": 1, "model": 1}
    params = {"blocks_0": {"attn": {"qkv": {"kernel": jnp.ones((8, 24)), "bias": jnp.zeros(24)}}}}
    specs = jax.tree_util.tree_leaves(tree_specs(params, mesh), is_leaf=lambda x: isinstance(x, P))
    assert specs == [P(), P()]
    placed = shard_tree(params, mesh)
    np.testing.assert_array_equal(placed["blocks_0"]["attn"]["qkv"]["kernel"], np.ones((8, 24)))
    batch = shard_batch({"x": np.zeros((4, 3))}, mesh)
    assert batch["x"].shape == (4, 3)
    state = optax.adam(1e-3).init(params)
    paths = [path_string(p) for p, _ in jax.tree_util.tree_leaves_with_path(state)]
    assert "0/mu/blocks_0/attn/qkv/kernel" in paths and "0/count" in paths


def test_spec_rules_drop_axes_that_do_not_divide() -> None:
    mesh = AbstractMesh((2, 2, 4), ("data", "fsdp", "model"))  # rules only read the axis sizes
    assert spec_for("a/qkv/kernel", (32, 96), mesh) == P("model", "fsdp")
    assert spec_for("a/proj/kernel", (6, 96), mesh) == P(None, "fsdp")  # 6 % 4 != 0: replicated dim
    assert spec_for("x_embedder/kernel", (2, 2, 4, 32), mesh) == P(None, None, "model", "fsdp")
    assert spec_for("a/qkv/bias", (96,), mesh) == P()
    assert spec_for("pos_embed", (1, 16, 32), mesh) == P()
    assert spec_for("a/w3/kernel", (96, 32), AbstractMesh((4, 1, 1), ("data", "fsdp", "model"))) == P()
    assert spec_for("a/w3/kernel", (96, 32), AbstractMesh((2, 2, 1), ("data", "fsdp", "model"))) == P(
        None, "fsdp"
    )
    custom = (("bias$", ("model",)),)
    assert spec_for("a/qkv/bias", (96,), mesh, custom) == P("model")
