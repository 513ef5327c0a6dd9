"""Score vectors: all the scores of one checkpoint (run, step) packed into one value.

A table of thousands of runs with several metric columns at a step would otherwise read one index entry
per (run, metric); reading one packed value per run and unpacking them all at once with numpy is about
three times faster. The scores table stays the source of truth: a vector is recomputed from it whenever a
checkpoint's scores change, in the same transaction (``Registry._refresh_vectors``).

Layout: a sequence of little-endian (int64 key id, float64 value) pairs, 16 bytes each, ordered by key id.
A key id is a 64-bit hash of (benchmark, metric, judge), so ids need no allocation and are the same in
every registry; the catalogue of keys (``score_keys``) maps them back to names.
"""

from __future__ import annotations

import functools
import hashlib
import struct
from collections.abc import Iterable, Sequence
from typing import Any

PAIR = struct.Struct("<qd")  # key id, value
ENTRY_FIELDS = [("key", "<i8"), ("value", "<f8")]  # the same, as a numpy record


@functools.lru_cache(maxsize=4096)
def key_id(benchmark: str, metric: str, judge: str) -> int:
    """The 64-bit id of a score key (a signed integer, as SQL stores it); memoised, as a registry has a
    few keys and writes them over and over."""
    digest = hashlib.blake2b(f"{benchmark}\x1f{metric}\x1f{judge}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little", signed=True)


def pack(entries: Iterable[tuple[int, float]]) -> bytes:
    """One checkpoint's ``(key id, value)`` pairs as a vector (sorted by key id; one value per key)."""
    by_key = dict(entries)
    return b"".join(PAIR.pack(k, v) for k, v in sorted(by_key.items()))


def unpack(blob: bytes) -> dict[int, float]:
    """A vector back as ``{key id: value}``."""
    return {k: v for k, v in PAIR.iter_unpack(bytes(blob))}


def matrix(run_ids: Sequence[int], keys: Sequence[int], rows: Sequence[tuple[int, Any]]) -> Any:
    """A float matrix, one row per run id (``run_ids`` sorted ascending) and one column per key id in
    ``keys``, NaN where a run has no such score; ``rows`` are ``(run id, vector)`` for some of the runs."""
    import numpy as np

    entry = np.dtype(ENTRY_FIELDS)
    out = np.full((len(run_ids), len(keys)), np.nan)
    if not rows or not keys:
        return out
    blobs = [r[1] if isinstance(r[1], bytes) else bytes(r[1]) for r in rows]
    sizes = np.fromiter((len(b) for b in blobs), dtype=np.int64, count=len(blobs)) // entry.itemsize
    entries = np.frombuffer(b"".join(blobs), dtype=entry)
    owners = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
    where = np.searchsorted(np.asarray(run_ids, dtype=np.int64), owners)
    row_of = np.repeat(where, sizes)  # the output row of each entry
    order = np.argsort(np.asarray(keys, dtype=np.int64))
    wanted = np.asarray(keys, dtype=np.int64)[order]
    pos = np.searchsorted(wanted, entries["key"])
    pos_ok = np.minimum(pos, len(wanted) - 1)
    hit = wanted[pos_ok] == entries["key"]
    out[row_of[hit], order[pos_ok[hit]]] = entries["value"][hit]
    return out
