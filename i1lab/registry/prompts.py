"""Per-prompt values: the values of one checkpoint's headline on one benchmark, prompt by prompt, packed.

A benchmark that can (`evals.Benchmark.prompt_values`) gives, for each prompt, a value and a weight such
that the recorded headline is exactly ``sum(w * v) / sum(w)``; two runs judged on the same prompts can then
be compared prompt by prompt (a paired bootstrap, `i1lab.report.paired`). One row per (run, step,
benchmark, judge) of the ``prompt_scores`` table holds them, written in the transaction that records the
scores.

Layout: a sequence of little-endian (int64 prompt id, float64 value, float64 weight) triples, 24 bytes
each, ordered by prompt id. A prompt id is a 64-bit hash of the prompt's key (its identity as the
benchmark names it), so the same prompt has the same id in every run and every registry.
"""

from __future__ import annotations

import functools
import hashlib
import struct
from collections.abc import Iterable

ENTRY = struct.Struct("<qdd")  # prompt id, value, weight


@functools.lru_cache(maxsize=65536)
def prompt_id(key: str) -> int:
    """The 64-bit id of a prompt key (a signed integer)."""
    digest = hashlib.blake2b(key.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little", signed=True)


def pack(entries: Iterable[tuple[int, float, float]]) -> bytes:
    """``(prompt id, value, weight)`` triples as one value (sorted by id; the last of duplicates wins)."""
    by_id = {int(i): (float(v), float(w)) for i, v, w in entries}
    return b"".join(ENTRY.pack(i, *by_id[i]) for i in sorted(by_id))


def unpack(blob: bytes) -> list[tuple[int, float, float]]:
    """A packed value back as ``(prompt id, value, weight)`` triples, by id."""
    return [(i, v, w) for i, v, w in ENTRY.iter_unpack(bytes(blob))]
