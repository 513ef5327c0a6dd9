"""data × fsdp × model sharding (DESIGN_SPACE §9): rules, one device, and 4 simulated CPU devices.

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
from jax.sharding import PartitionSpec as P
from models.config import ModelConfig
from models.dit import DiT, init_variables
from models.rectified_flow import velocity_loss
from models.sharding import (batch_shardings, make_mesh, shard_batch, shard_tree, sharded_init,
                             tree_shardings, tree_specs)

assert jax.device_count() == 4, jax.devices()
out = {}
for backbone, meshes in (("cross_attn", [(1, 2, 2), (4, 1, 1)]), ("dual_stream", [(2, 1, 2)])):
    c = ModelConfig(backbone=backbone, hidden=32, depth=3, heads=2, in_channels=4, latent_size=8,
                    resolution=64, text_dim=16, text_len=6)
    model = DiT(c)
    params = init_variables(c, jax.random.key(0))["params"]
    k = jax.random.split(jax.random.key(1), 3)
    batch = {"x": jax.random.normal(k[0], (8, 4, 8, 8)), "text": jax.random.normal(k[1], (8, 6, 16)),
             "mask": jnp.arange(6)[None] < jnp.arange(8)[:, None] % 6 + 1}
    tx = optax.adam(1e-2, b2=0.95)
    rng = k[2]

    def step(p, o, b, r):
        def loss_fn(q):
            return velocity_loss(model.apply, {"params": q}, b["x"], b["text"], b["mask"], r)
        loss, grads = jax.value_and_grad(loss_fn)(p)
        updates, o = tx.update(grads, o, p)
        gnorm = optax.global_norm(grads)
        return optax.apply_updates(p, updates), o, loss, gnorm

    ref_p, _, ref_loss, ref_g = jax.jit(step)(params, tx.init(params), batch, rng)
    for shape in meshes:
        mesh = make_mesh(*shape)
        p_sh = shard_tree(params, mesh)
        o_sh = sharded_init(tx.init, mesh, p_sh)
        b_sh = shard_batch(jax.tree_util.tree_map(np.asarray, batch), mesh)
        shardings = (tree_shardings(p_sh, mesh), tree_shardings(o_sh, mesh), batch_shardings(batch, mesh), None)
        run = jax.jit(step, in_shardings=shardings, out_shardings=shardings[:2] + (None, None))
        new_p, new_o, loss, gnorm = run(p_sh, o_sh, b_sh, rng)
        diff = max(float(jnp.abs(a - b).max()) for a, b in zip(jax.tree_util.tree_leaves(new_p),
                                                                 jax.tree_util.tree_leaves(ref_p)))
        block = "blocks_0/attn/qkv/kernel" if backbone == "cross_attn" else "blocks_0/attn/qkv_image/kernel"
        keys = block.split("/")
        leaf = new_p
        for key in keys:
            leaf = leaf[key]
        mu = new_o[0].mu
        for key in keys:
            mu = mu[key]
        out[f"{backbone}:{shape}"] = {
            "loss": float(loss), "ref_loss": float(ref_loss), "gnorm": float(gnorm), "ref_gnorm": float(ref_g),
            "max_param_diff": diff,
            "kernel_spec": str(leaf.sharding.spec), "kernel_shard": list(leaf.addressable_shards[0].data.shape),
            "kernel_shape": list(leaf.shape), "mu_spec": str(mu.sharding.spec),
            "batch_spec": str(b_sh["x"].sharding.spec), "batch_shard": list(b_sh["x"].addressable_shards[0].data.shape),
            "count_spec": str(new_o[0].count.sharding.spec),
        }
print("RESULT" + json.dumps(out))
"""


def test_sharded_train_step_matches_unsharded_on_4_simulated_devices() -> None:
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4", JAX_PLATFORMS="cpu")
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT], cwd=REPO, env=env, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = next(x for x in proc.stdout.splitlines() if x.startswith("RESULT"))
    results = json.loads(line.removeprefix("RESULT"))
    assert set(results) == {"cross_attn:(1, 2, 2)", "cross_attn:(4, 1, 1)", "dual_stream:(2, 1, 2)"}
    for name, r in results.items():
        assert abs(r["loss"] - r["ref_loss"]) <= 1e-5 * abs(r["ref_loss"]), name
        assert abs(r["gnorm"] - r["ref_gnorm"]) <= 1e-4 * r["ref_gnorm"], name
        assert r["max_param_diff"] < 1e-5, name
        assert r["mu_spec"] == r["kernel_spec"] and r["count_spec"] == "PartitionSpec()", name
    tp = results["cross_attn:(1, 2, 2)"]  # fsdp 2 × model 2: the (32, 96) qkv kernel is split both ways
    assert tp["kernel_spec"] == "PartitionSpec('model', 'fsdp')" and tp["kernel_shard"] == [16, 48]
    assert tp["batch_spec"] == "PartitionSpec(('data', 'fsdp'),)" and tp["batch_shard"] == [4, 4, 8, 8]
    dp = results["cross_attn:(4, 1, 1)"]  # pure data parallel: parameters replicated, batch in 4
    assert dp["kernel_spec"] == "PartitionSpec()" and dp["batch_shard"] == [2, 4, 8, 8]
    dual = results["dual_stream:(2, 1, 2)"]
    assert dual["kernel_spec"] == "PartitionSpec('model',)" and dual["kernel_shard"] == [16, 96]


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
    custom = (("bias$", ("model",)),)
    assert spec_for("a/qkv/bias", (96,), mesh, custom) == P("model")
