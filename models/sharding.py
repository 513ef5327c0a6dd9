"""Sharding over a `data × fsdp × model` device mesh (docs/design-space.md §9, §13 "tp/fsdp sizes").

- `make_mesh(data, fsdp, model)` builds a `jax.sharding.Mesh` with axes ("data", "fsdp", "model")
  over every device of every process (topology-aware on TPU slices via `mesh_utils`).
- Parameters (and anything shaped like them: EMA, optimizer moments) are sharded by **rules**: an
  ordered list of `(regex, spec)` pairs matched against the leaf's path string (e.g.
  `blocks_3/attn/qkv/kernel`, or `0/mu/blocks_3/attn/qkv/kernel` inside an optax state) and its
  rank. The defaults follow §9: every 2-D kernel is split over `("model", "fsdp")` (its input
  features over `model`, its output features over `fsdp`); 4-D conv kernels split their in/out
  channels the same way; everything else (biases, norms, `pos_embed`, null captions, scalars such
  as Adam's count) is replicated. A mesh axis that does not divide its dimension is dropped for
  that dimension, so any model works on any mesh.
- The batch is split over `("data", "fsdp")` on its leading axis; `shard_batch` assembles a global
  batch from each process's local part (multi-host TPU slices) with
  `jax.make_array_from_process_local_data`.

With 1 device all specs collapse to replication, so the same code runs on one CPU, on several
simulated CPU devices (`XLA_FLAGS=--xla_force_host_platform_device_count=N`) and on TPU slices.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np
from jax.sharding import AbstractMesh, Mesh, NamedSharding, PartitionSpec

MESH_AXES = ("data", "fsdp", "model")
#: Mesh axes the batch's leading dimension is split over.
BATCH_AXES = ("data", "fsdp")

SpecEntry = str | tuple[str, ...] | None
#: (regex on the path string, per-dimension axes), first match wins; the rank must also match.
Rule = tuple[str, tuple[SpecEntry, ...]]

DEFAULT_RULES: tuple[Rule, ...] = (
    (r"(^|/)kernel$", ("model", "fsdp")),  # 2-D dense kernels (in, out) — §9
    (r"(^|/)kernel$", (None, None, "model", "fsdp")),  # conv kernels (kh, kw, in, out)
)


def make_mesh(
    data: int | None = None,
    fsdp: int = 1,
    model: int = 1,
    devices: Sequence[Any] | None = None,
) -> Mesh:
    """A (data, fsdp, model) mesh; `data=None` takes every device left after fsdp × model."""
    devices = list(jax.devices() if devices is None else devices)
    if data is None:
        if len(devices) % (fsdp * model):
            raise ValueError(f"{len(devices)} devices are not divisible by fsdp×model = {fsdp * model}")
        data = len(devices) // (fsdp * model)
    shape = (data, fsdp, model)
    if math.prod(shape) != len(devices):
        sizes = dict(zip(MESH_AXES, shape, strict=True))
        raise ValueError(f"mesh {sizes} needs {math.prod(shape)} devices, got {len(devices)}")
    try:
        from jax.experimental import mesh_utils

        grid = mesh_utils.create_device_mesh(shape, devices=devices)
    except (ValueError, NotImplementedError, AssertionError):  # e.g. CPU devices without a topology
        grid = np.asarray(devices, dtype=object).reshape(shape)
    return Mesh(grid, MESH_AXES)


def path_string(path: Sequence[Any]) -> str:
    """`blocks_0/attn/qkv/kernel` for a `jax.tree_util` key path (dict keys, indices, attributes)."""
    parts = []
    for entry in path:
        for attr in ("key", "name", "idx"):
            if hasattr(entry, attr):
                parts.append(str(getattr(entry, attr)))
                break
        else:
            parts.append(str(entry))
    return "/".join(parts)


def _axis_size(mesh: Mesh | AbstractMesh, entry: SpecEntry) -> int:
    if entry is None:
        return 1
    names = (entry,) if isinstance(entry, str) else entry
    return math.prod(mesh.shape[name] for name in names)


def spec_for(
    path: str, shape: Sequence[int], mesh: Mesh | AbstractMesh, rules: Sequence[Rule] = DEFAULT_RULES
) -> PartitionSpec:
    """The PartitionSpec of one leaf: the first rule whose regex matches `path` and whose rank
    equals `len(shape)`; axes that do not divide their dimension (or have size 1) are dropped."""
    for pattern, axes in rules:
        if len(axes) == len(shape) and re.search(pattern, path):
            entries: list[SpecEntry] = []
            for entry, dim in zip(axes, shape, strict=True):
                size = _axis_size(mesh, entry)
                entries.append(entry if size > 1 and dim % size == 0 else None)
            while entries and entries[-1] is None:
                entries.pop()
            return PartitionSpec(*entries)
    return PartitionSpec()


def tree_specs(tree: Any, mesh: Mesh, rules: Sequence[Rule] = DEFAULT_RULES) -> Any:
    """A PartitionSpec for every array leaf of `tree` (parameters, EMA or an optax state)."""

    def one(path: Any, leaf: Any) -> PartitionSpec:
        shape = tuple(getattr(leaf, "shape", ()))
        return spec_for(path_string(path), shape, mesh, rules)

    return jax.tree_util.tree_map_with_path(one, tree)


def tree_shardings(tree: Any, mesh: Mesh, rules: Sequence[Rule] = DEFAULT_RULES) -> Any:
    """`NamedSharding`s for every leaf of `tree` (use as jit `in_shardings` / `out_shardings`)."""
    return jax.tree_util.tree_map(
        lambda spec: NamedSharding(mesh, spec),
        tree_specs(tree, mesh, rules),
        is_leaf=lambda x: isinstance(x, PartitionSpec),
    )


def shard_tree(tree: Any, mesh: Mesh, rules: Sequence[Rule] = DEFAULT_RULES) -> Any:
    """Place `tree` (parameters, EMA, optimizer state) on the mesh by the rules."""
    return jax.device_put(tree, tree_shardings(tree, mesh, rules))


def sharded_init(init_fn: Any, mesh: Mesh, *args: Any, rules: Sequence[Rule] = DEFAULT_RULES) -> Any:
    """Run `init_fn(*args)` under jit with its outputs sharded by the rules, so that no device ever
    holds the whole tree (e.g. `sharded_init(optimizer.init, mesh, params)`)."""
    shapes = jax.eval_shape(init_fn, *args)
    return jax.jit(init_fn, out_shardings=tree_shardings(shapes, mesh, rules))(*args)


def batch_spec(ndim: int) -> PartitionSpec:
    """Leading (batch) axis over ("data", "fsdp"); the other axes replicated."""
    return PartitionSpec(BATCH_AXES, *([None] * (ndim - 1)))


def batch_shardings(batch: Any, mesh: Mesh) -> Any:
    """`NamedSharding`s that split every leaf of `batch` on its leading axis over (data, fsdp)."""
    return jax.tree_util.tree_map(lambda x: NamedSharding(mesh, batch_spec(np.ndim(x))), batch)


def shard_batch(local_batch: Any, mesh: Mesh) -> Any:
    """Global arrays from this process's part of the batch (the whole batch on one host).

    Each process passes its own `B / process_count` examples; the result is split over
    (data, fsdp) across all devices of all processes.
    """

    def one(x: Any) -> jax.Array:
        sharding = NamedSharding(mesh, batch_spec(np.ndim(x)))
        return jax.make_array_from_process_local_data(sharding, np.asarray(x))

    return jax.tree_util.tree_map(one, local_batch)
