"""Loading PyTorch-layout checkpoints (Hugging Face transformers / diffusers safetensors) into Flax.

A checkpoint is a flat `{dotted.name: array}` dict in PyTorch layout. `map_torch_state` converts it
to the nested parameter dict of a Flax module, given that module's parameter *template* (shapes,
e.g. from `jax.eval_shape(module.init, …)`) and a function that renames a checkpoint module path to
a Flax module path (or None to ignore the tensor on purpose). The leaf is picked from what the
template holds at that path:

- `weight` → `kernel` (Linear: transposed; Conv2d `(O, I, kh, kw)` → `(kh, kw, I, O)`), `scale`
  (norms) or `embedding` (embedding tables);
- `bias` → `bias`; anything else (e.g. `running_mean`) keeps its name.

Every template leaf must be filled and every non-ignored tensor used, with matching shapes; otherwise
`WeightMappingError` lists the differences. Pure numpy.
"""

from __future__ import annotations

import hashlib
import json
import re
import struct
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

_INDEX = re.compile(r"\.(\d+)(?=\.|$)")


class WeightMappingError(ValueError):
    """The checkpoint and the module disagree: missing, unexpected or mis-shaped tensors."""


def default_module_path(torch_module: str) -> str:
    """`encoder.layer.0.attention.self` → `encoder/layer_0/attention/self` (indices join their list)."""
    return _INDEX.sub(r"_\1", torch_module).replace(".", "/")


def _flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in tree.items():
        path = f"{prefix}/{key}" if prefix else str(key)
        if isinstance(value, Mapping):
            out.update(_flatten(value, path))
        else:
            out[path] = value
    return out


def unflatten(flat: Mapping[str, Any], sep: str = "/") -> dict[str, Any]:
    """``{"a/b": x}`` -> ``{"a": {"b": x}}``: a nested tree from names joined by ``sep``."""
    tree: dict[str, Any] = {}
    for path, value in flat.items():
        node = tree
        *parents, leaf = path.split(sep)
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return tree


def _convert(name: str, array: np.ndarray) -> np.ndarray:
    if name == "kernel" and array.ndim == 2:
        return array.T
    if name == "kernel" and array.ndim == 4:
        return array.transpose(2, 3, 1, 0)
    return array


def map_torch_state(
    template: Mapping[str, Any],
    tensors: Mapping[str, np.ndarray],
    module_path: Callable[[str], str | None] = default_module_path,
    *,
    ignore: Callable[[str], bool] | None = None,
    dtype: Any = np.float32,
) -> dict[str, Any]:
    """The Flax parameters for `template` filled from the PyTorch-layout `tensors` (see module doc).

    Args:
        template: nested dict whose leaves have `.shape` (arrays or `jax.ShapeDtypeStruct`).
        tensors: `{dotted.torch.name: array}`.
        module_path: checkpoint module path (the name without its last part) → Flax module path
            with `/` separators, or None to skip the tensor (heads the module lacks).
        ignore: full tensor names to skip (e.g. buffers such as `embeddings.position_ids`).
        dtype: dtype of the returned arrays.

    Raises:
        WeightMappingError: listing missing leaves, unexpected tensors and shape mismatches.
    """
    flat_template = _flatten(template)
    filled: dict[str, np.ndarray] = {}
    unexpected: list[str] = []
    mismatched: list[str] = []
    for torch_name, array in tensors.items():
        if ignore is not None and ignore(torch_name):
            continue
        module, _, leaf = torch_name.rpartition(".")
        target_module = module_path(module)
        if target_module is None:
            continue
        if leaf == "weight":
            candidates = [f"{target_module}/{n}" for n in ("kernel", "scale", "embedding")]
        else:
            candidates = [f"{target_module}/{leaf}"]
        path = next((c for c in candidates if c in flat_template), None)
        if path is None:
            unexpected.append(torch_name)
            continue
        value = _convert(path.rsplit("/", 1)[1], np.asarray(array))
        want = tuple(flat_template[path].shape)
        if tuple(value.shape) != want:
            mismatched.append(f"{torch_name} {tuple(value.shape)} -> {path} {want}")
            continue
        if path in filled:
            unexpected.append(f"{torch_name} (duplicate for {path})")
            continue
        filled[path] = value.astype(dtype)
    missing = sorted(set(flat_template) - set(filled))
    if missing or unexpected or mismatched:
        parts = []
        if missing:
            parts.append(f"missing {len(missing)}: {missing[:8]}")
        if unexpected:
            parts.append(f"unexpected {len(unexpected)}: {sorted(unexpected)[:8]}")
        if mismatched:
            parts.append(f"shape mismatch {len(mismatched)}: {mismatched[:8]}")
        raise WeightMappingError("checkpoint does not match the module: " + "; ".join(parts))
    return unflatten(filled)


def load_safetensors(path: str | Path) -> dict[str, np.ndarray]:
    """All tensors of a `.safetensors` file (or of every shard listed in a `*.index.json`) as numpy."""
    from safetensors.numpy import load_file

    path = Path(path)
    if path.name.endswith(".index.json"):
        shards = sorted(set(json.loads(path.read_text())["weight_map"].values()))
        out: dict[str, np.ndarray] = {}
        for shard in shards:
            out.update(load_file(str(path.parent / shard)))
        return out
    if path.is_dir():
        single = path / "model.safetensors"
        index = path / "model.safetensors.index.json"
        return load_safetensors(single if single.exists() else index)
    return dict(load_file(str(path)))


def safetensors_fingerprint(path: str | Path, samples: int = 16, chunk: int = 4096) -> str:
    """A cheap identity of a safetensors file: its size, JSON header (names, dtypes, offsets) and
    `samples` evenly spaced `chunk`-byte slices of the data.

    Used in encoder ids (the `FeatureCache` key); reading a few slices avoids hashing gigabytes of
    weights while still telling apart checkpoints of one architecture (e.g. two fine-tunes).
    """
    path = Path(path)
    digest = hashlib.sha256()
    if path.name.endswith(".index.json"):  # a sharded checkpoint: combine the shards' fingerprints
        shards = sorted(set(json.loads(path.read_text())["weight_map"].values()))
        for shard in shards:
            digest.update(safetensors_fingerprint(path.parent / shard, samples, chunk).encode())
        return digest.hexdigest()[:16]
    size = path.stat().st_size
    digest.update(str(size).encode())
    with path.open("rb") as f:
        (length,) = struct.unpack("<Q", f.read(8))
        digest.update(f.read(length))
        start = 8 + length
        span = max(size - start - chunk, 0)
        for i in range(samples):
            f.seek(start + span * i // max(samples - 1, 1))
            digest.update(f.read(chunk))
    return digest.hexdigest()[:16]
