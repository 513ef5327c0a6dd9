"""SHA-256 digests of train-state trees: equal digests mean bitwise-equal arrays (dtype and shape too).

A digest covers the leaves in tree-flattening order (which is the same for a state in memory and the
same state restored from a checkpoint), each as its dtype, shape and raw bytes.
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np


def tree_digest(tree: Any) -> str | None:
    """The digest of a pytree of arrays; None when some array is split over several processes (it
    cannot be read whole here). An array replicated over several processes is read from this
    process's copy."""
    import jax

    h = hashlib.sha256()
    for leaf in jax.tree_util.tree_leaves(tree):
        if isinstance(leaf, jax.Array) and not leaf.is_fully_addressable:
            if not leaf.is_fully_replicated:
                return None
            leaf = leaf.addressable_data(0)
        a = np.ascontiguousarray(np.asarray(leaf))
        h.update(f"{a.dtype.str}|{a.dtype.name}|{a.shape};".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def state_digests(state: Any) -> dict[str, str | None]:
    """Digests of a TrainState's parameters, EMA parameters and optimizer state."""
    return {
        "params": tree_digest(state.params),
        "ema": tree_digest(state.ema),
        "opt_state": tree_digest(state.opt_state),
    }
