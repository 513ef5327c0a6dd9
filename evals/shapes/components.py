"""4-connected component labelling with run-length union-find (numpy + stdlib only)."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt


def _find(parent: list[int], i: int) -> int:
    root = i
    while parent[root] != root:
        root = parent[root]
    while parent[i] != root:
        parent[i], i = root, parent[i]
    return root


def _row_runs(row: npt.NDArray[np.bool_]) -> list[tuple[int, int]]:
    edges = np.diff(np.concatenate(([0], row.astype(np.int8), [0])))
    starts = np.flatnonzero(edges == 1)
    ends = np.flatnonzero(edges == -1)
    return [(int(s), int(e)) for s, e in zip(starts, ends, strict=True)]


def label_components(mask: npt.NDArray[np.bool_]) -> tuple[npt.NDArray[np.int32], int]:
    """Label the 4-connected components of a 2-D boolean mask.

    Returns ``(labels, n)``: labels is 0 off the mask and 1…n on it, numbered in raster order of each
    component's first pixel.
    """
    if mask.ndim != 2:
        raise ValueError("mask must be 2-D")
    height = mask.shape[0]
    provisional = np.zeros(mask.shape, dtype=np.int32)
    parent: list[int] = [0]
    previous: list[tuple[int, int, int]] = []
    for y in range(height):
        current: list[tuple[int, int, int]] = []
        k = 0
        for start, end in _row_runs(mask[y]):
            while k < len(previous) and previous[k][1] <= start:
                k += 1
            label = 0
            j = k
            while j < len(previous) and previous[j][0] < end:
                root = _find(parent, previous[j][2])
                if label == 0:
                    label = root
                elif root != label:
                    keep, drop = min(root, label), max(root, label)
                    parent[drop] = keep
                    label = keep
                j += 1
            if label == 0:
                label = len(parent)
                parent.append(label)
            provisional[y, start:end] = label
            current.append((start, end, label))
        previous = current
    roots = np.asarray([_find(parent, i) for i in range(len(parent))], dtype=np.int64)
    _, compact = np.unique(roots, return_inverse=True)
    labels = compact.astype(np.int32)[provisional]
    return labels, int(compact.max())
