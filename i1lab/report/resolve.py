"""``i1lab plan --resolve DELTA``: how many prompts (and seeds) a study needs to resolve a delta of that size,
from what its baseline has recorded.

The per-prompt standard deviation of the paired difference between a variant and the baseline is unknown
before the variant runs; the baseline's own per-prompt standard deviation (`i1lab.report.paired.prompt_sd`
of its recorded values) stands in for it — the difference of two runs on the same prompts and noise
usually spreads less, so the estimate errs on the safe side. With two or more baseline seeds, their spread
(the standard deviation of their headlines) gives the seeds per side too.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from typing import Any

from i1lab.errors import I1labError
from i1lab.registry import PromptScoreRecord, ScoreRecord
from i1lab.report.paired import LEVEL, POWER, prompt_sd, prompts_needed, resolvable, seeds_needed


def resolution(
    study: str,
    delta: float,
    baselines: Sequence[tuple[str, int]],
    prompts: Sequence[PromptScoreRecord],
    scores: Sequence[ScoreRecord],
    *,
    benchmark: str | None = None,
    metric: str | None = None,
) -> dict[str, Any]:
    """What resolving ``delta`` needs, from the baseline runs ``baselines`` (``(name, run id)``, seeds in
    order), their per-prompt values ``prompts`` and their ``scores``: the latest step of the first
    baseline run with values (for ``benchmark``/``metric``, default: the first recorded). A one-line
    `I1labError` when the baseline has none."""
    if delta == 0:
        raise I1labError("--resolve: the delta must not be 0")
    ids = {rid: name for name, rid in baselines}
    found = [
        p
        for p in prompts
        if p.run_id in ids
        and (benchmark is None or p.benchmark == benchmark)
        and (metric is None or p.metric == metric)
    ]
    if not found:
        what = "/".join(x for x in (benchmark, metric) if x) or "any benchmark"
        raise I1labError(
            f"{study}: its baseline has no per-prompt values recorded for {what} (submit the study, or "
            "evaluate the baseline on a benchmark that records them, e.g. shapes or geneval)"
        )
    order = {rid: i for i, (_, rid) in enumerate(baselines)}
    chosen = min(found, key=lambda p: (order[p.run_id], p.benchmark, p.judge, -p.step))
    sd_n = prompt_sd(chosen.values)
    if sd_n is None:
        raise I1labError(f"{study}: its baseline has fewer than two prompts recorded for {chosen.benchmark}")
    sd, n = sd_n
    out: dict[str, Any] = {
        "study": study,
        "delta": delta,
        "confidence": LEVEL,
        "power": POWER,
        "baseline": ids[chosen.run_id],
        "benchmark": chosen.benchmark,
        "metric": chosen.metric,
        "judge": chosen.judge,
        "step": chosen.step,
        "prompts": n,
        "prompt_sd": sd,
        "prompts_needed": prompts_needed(delta, sd),
        "resolvable_delta": resolvable(sd, n),
        "seeds": None,
        "seed_sd": None,
        "seeds_needed": None,
    }
    heads: Mapping[int, float] = {
        s.run_id: s.value
        for s in scores
        if s.run_id in ids
        and (s.step, s.benchmark, s.metric, s.judge)
        == (chosen.step, chosen.benchmark, chosen.metric, chosen.judge)
    }
    if len(heads) >= 2:
        seed_sd = statistics.stdev(heads.values())
        out.update(
            seeds=len(heads), seed_sd=seed_sd, seeds_needed=seeds_needed(delta, seed_sd) if seed_sd > 0 else 2
        )
    return out


def resolution_lines(r: Mapping[str, Any]) -> list[str]:
    """The report of `resolution` as lines of text."""
    lines = [
        f"{r['study']}: to resolve a delta of {r['delta']:g} on {r['benchmark']}/{r['metric']} "
        f"[{r['judge']}] at {r['confidence']:.0%} confidence with {r['power']:.0%} power:",
        f"  prompts: {r['prompts_needed']} (per-prompt sd {r['prompt_sd']:.4f} of {r['baseline']} at step "
        f"{r['step']}; it has {r['prompts']} prompts, which resolve {r['resolvable_delta']:.4f})",
    ]
    if r["seeds_needed"] is not None:
        lines.append(
            f"  seeds: {r['seeds_needed']} per side (sd {r['seed_sd']:.4f} over {r['seeds']} baseline seeds)"
        )
    else:
        lines.append(
            "  seeds: unknown (one baseline seed; list `seeds:` in the study to measure their spread)"
        )
    return lines
