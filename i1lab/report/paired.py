"""Paired statistics over prompts: the confidence interval of a delta, and how many prompts or seeds a
delta of a given size needs.

Every run of a study is sampled with the same per-prompt initial noise (`i1lab.evaluation.evaluate`), and a
benchmark that can records its headline prompt by prompt as ``(prompt id, value, weight)`` with
``headline = sum(w * v) / sum(w)`` (`i1lab.registry.prompts`). Two runs' headlines are then compared on the
prompts both have, prompt by prompt:

* `paired_bootstrap`: resample the shared prompts with replacement (`RESAMPLES` times, a fixed RNG seed so
  a table is the same every time it is printed), recompute each side's weighted mean on the SAME resample,
  and take the 2.5th and 97.5th percentiles of the difference (a 95% percentile interval). A delta whose
  interval excludes 0 is *beyond noise*: the variant would very likely differ from the baseline on more
  prompts like these. It says nothing about training noise (another seed of either run): that is the
  seed band's job (`i1lab.report.tables`).
* `prompts_needed` / `seeds_needed`: the normal-approximation sample size to resolve a delta at 95%
  confidence (two-sided) with 80% power, from a standard deviation measured on the baseline.

Pure functions of numbers; numpy only.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

RESAMPLES = 2000
SEED = 0
LEVEL = 0.95
POWER = 0.8
_BLOCK = 250  # resamples drawn at once (bounds the index matrix)

Values = Sequence[tuple[int, float, float]]  # (prompt id, value, weight)


@dataclass(frozen=True)
class PairedInterval:
    """The paired delta (other − base) over ``n`` shared prompts and its percentile interval."""

    delta: float
    low: float
    high: float
    n: int

    @property
    def beyond_noise(self) -> bool:
        """The interval excludes 0."""
        return self.low > 0 or self.high < 0


def _aligned(base: Values, other: Values) -> tuple[np.ndarray, ...]:
    a = {int(i): (float(v), float(w)) for i, v, w in base}
    b = {int(i): (float(v), float(w)) for i, v, w in other}
    shared = sorted(a.keys() & b.keys())
    va, wa = (np.asarray([a[i][j] for i in shared], dtype=np.float64) for j in (0, 1))
    vb, wb = (np.asarray([b[i][j] for i in shared], dtype=np.float64) for j in (0, 1))
    return va, wa, vb, wb


def paired_bootstrap(
    base: Values, other: Values, *, resamples: int = RESAMPLES, seed: int = SEED, level: float = LEVEL
) -> PairedInterval | None:
    """The paired bootstrap interval of ``mean_w(other) - mean_w(base)`` over the prompts both have
    (see the module doc); None with fewer than two shared prompts or no weight."""
    va, wa, vb, wb = _aligned(base, other)
    n = len(va)
    if n < 2 or wa.sum() <= 0 or wb.sum() <= 0:
        return None
    delta = float((wb * vb).sum() / wb.sum() - (wa * va).sum() / wa.sum())
    rng = np.random.default_rng(seed)
    draws = []
    for start in range(0, resamples, _BLOCK):
        idx = rng.integers(0, n, size=(min(_BLOCK, resamples - start), n))
        sa, sb = wa[idx].sum(axis=1), wb[idx].sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            draws.append((wb * vb)[idx].sum(axis=1) / sb - (wa * va)[idx].sum(axis=1) / sa)
    d = np.concatenate(draws)
    d = d[np.isfinite(d)]
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(d, [tail, 100 - tail])
    return PairedInterval(delta=delta, low=float(low), high=float(high), n=n)


def prompt_sd(values: Values) -> tuple[float, int] | None:
    """``(s, n)``: the per-prompt standard deviation of a weighted mean over ``n`` prompts, defined so
    that its standard error is ``s / sqrt(n)`` (with equal weights: the sample standard deviation of
    the values). None with fewer than two prompts."""
    v = np.asarray([x[1] for x in values], dtype=np.float64)
    w = np.asarray([x[2] for x in values], dtype=np.float64)
    n = len(v)
    if n < 2 or w.sum() <= 0:
        return None
    w = w / w.sum()
    mean = float((w * v).sum())
    variance = n / (n - 1) * n * float((w**2 * (v - mean) ** 2).sum())
    return math.sqrt(variance), n


def _z(level: float, power: float) -> float:
    normal = NormalDist()
    return normal.inv_cdf(1 - (1 - level) / 2) + normal.inv_cdf(power)


def prompts_needed(delta: float, sd: float, *, level: float = LEVEL, power: float = POWER) -> int:
    """Prompts a paired comparison needs to resolve ``delta`` at ``level`` confidence (two-sided) with
    ``power``: ``ceil(((z_(1-a/2) + z_power) * sd / delta) ** 2)``, ``sd`` the standard deviation of the
    per-prompt difference."""
    if delta == 0:
        raise ValueError("the delta to resolve must not be 0")
    return max(2, math.ceil((_z(level, power) * sd / abs(delta)) ** 2))


def seeds_needed(delta: float, sd: float, *, level: float = LEVEL, power: float = POWER) -> int:
    """Seeds per side to resolve ``delta`` between the means of two sets of seeds whose runs spread with
    standard deviation ``sd``: ``ceil(2 * ((z_(1-a/2) + z_power) * sd / delta) ** 2)``."""
    if delta == 0:
        raise ValueError("the delta to resolve must not be 0")
    return max(2, math.ceil(2 * (_z(level, power) * sd / abs(delta)) ** 2))


def resolvable(sd: float, n: int, *, level: float = LEVEL, power: float = POWER) -> float:
    """The smallest delta a paired comparison over ``n`` prompts resolves:
    ``(z_(1-a/2) + z_power) * sd / sqrt(n)``."""
    return _z(level, power) * sd / math.sqrt(n)
