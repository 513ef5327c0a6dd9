"""Keyed pseudorandom permutations: the per-epoch shuffle of a source and its nested subsets.

**Nested subsets.** The reference keeps an example iff a hash of its id falls under
``(2^31-1)·N/total`` (docs/design-space.md §11 ``subset_count``): deterministic and nested, but only
approximately N. Here a source's subset of size N is the first N positions of a fixed permutation of
its indices: deterministic, nested (prefixes of one permutation) and exactly N. The permutation is keyed
by the source's name only (never by the run's seed), so runs that differ in subset size or seed draw
from nested sets.

**Epoch shuffles.** Epoch ``e`` of a source visits its (subset) positions in the order of a permutation
keyed by (seed, source, e): every image exactly once per epoch, a fresh order every epoch.

The permutation is a balanced Feistel network over the smallest even-bit domain covering ``n``, with
cycle walking to stay inside ``[0, n)`` (at most 4 rounds expected): O(1) per index and no table, so it
serves random access into sources of any size. (Grain's ``shuffle`` does the same job but costs
milliseconds per index on small sources.)
"""

from __future__ import annotations

import hashlib
from functools import lru_cache

_M64 = (1 << 64) - 1
ROUNDS = 6


def _mix(x: int) -> int:
    """SplitMix64's finaliser: a bijective 64-bit mixer."""
    x = (x + 0x9E3779B97F4A7C15) & _M64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _M64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _M64
    return x ^ (x >> 31)


class KeyedPermutation:
    """A bijection of ``[0, n)`` determined by ``key``: ``perm[j]`` for ``0 <= j < n``."""

    def __init__(self, key: str, n: int) -> None:
        if n < 1:
            raise ValueError("a permutation needs n >= 1")
        self.n = n
        self.half = max(1, ((n - 1).bit_length() + 1) // 2)
        self.mask = (1 << self.half) - 1
        digest = hashlib.sha256(f"i1lab-permutation\0{key}".encode()).digest()
        self.keys = [int.from_bytes(digest[4 * r : 4 * r + 8], "little") for r in range(ROUNDS)]

    def _feistel(self, x: int) -> int:
        left, right = x >> self.half, x & self.mask
        for k in self.keys:
            left, right = right, left ^ (_mix(right ^ k) & self.mask)
        return (left << self.half) | right

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, j: int) -> int:
        if not 0 <= j < self.n:
            raise IndexError(f"position {j} out of range [0, {self.n})")
        x = self._feistel(int(j))
        while x >= self.n:  # cycle walking: a bijection of [0, n) onto itself
            x = self._feistel(x)
        return x

    def members(self, count: int) -> list[int]:
        """The first ``count`` values (for a subset permutation: the size-``count`` subset)."""
        return [self[j] for j in range(min(count, self.n))]


def nested_subset(source: str, total: int) -> KeyedPermutation:
    """The subset permutation of a source: its size-N subset is ``members(N)``, for every N."""
    return KeyedPermutation(f"subset\0{source}", total)


@lru_cache(maxsize=64)
def epoch_permutation(seed: int, source: str, epoch: int, n: int) -> KeyedPermutation:
    return KeyedPermutation(f"epoch\0{seed}\0{source}\0{epoch}", n)


class EpochShuffle:
    """Stream position ``k`` of a repeated, per-epoch shuffled sequence of length ``n``."""

    def __init__(self, seed: int, source: str, n: int) -> None:
        self.seed, self.source, self.n = seed, source, n

    def __call__(self, k: int) -> int:
        epoch, pos = divmod(int(k), self.n)
        return epoch_permutation(self.seed, self.source, epoch, self.n)[pos]
