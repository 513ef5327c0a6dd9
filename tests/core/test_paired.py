"""Paired statistics: the bootstrap interval of a delta over prompts, sample sizes, per-prompt values of
GenEval-style benchmarks, their registry round trip, ``compare`` showing the intervals from scores
recorded through ``record_scores``, ``plan --resolve``, and per-prompt initial noise."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from evals.geneval.benchmark import prompt_values_of
from evals.geneval_score import summarize
from i1lab.errors import I1labError
from i1lab.evaluation.checkpoint import record_scores
from i1lab.evaluation.evaluate import prompt_noise_ids
from i1lab.evaluation.judging import BenchmarkScore
from i1lab.registry import PlannedMember, PromptScoreRecord, Registry
from i1lab.registry.prompts import pack, prompt_id, unpack
from i1lab.report import tables as report
from i1lab.report.paired import paired_bootstrap, prompt_sd, prompts_needed, resolvable, seeds_needed
from i1lab.report.resolve import resolution


def values(v: np.ndarray, w: np.ndarray | None = None) -> list[tuple[int, float, float]]:
    w = np.ones_like(v) if w is None else w
    return [(i, float(a), float(b)) for i, (a, b) in enumerate(zip(v, w, strict=True))]


def test_a_known_paired_shift_is_beyond_noise_and_same_distribution_is_not() -> None:
    rng = np.random.default_rng(1)
    base = rng.uniform(0, 1, 200)  # prompts differ a lot among themselves...
    shifted = base + 0.03 + rng.normal(0, 0.02, 200)  # ...but the variant is 0.03 better on each
    ci = paired_bootstrap(values(base), values(shifted))
    assert ci is not None and ci.n == 200
    assert ci.delta == pytest.approx(float(np.mean(shifted - base)))
    assert ci.low > 0 and ci.low < 0.03 < ci.high and ci.beyond_noise
    # unpaired, the same shift is lost in the spread between prompts
    same = paired_bootstrap(values(base), values(base[::-1].copy()))
    assert same is not None and same.low < 0 < same.high and not same.beyond_noise
    noisy = paired_bootstrap(values(base), values(base + rng.normal(0, 0.1, 200)))
    assert noisy is not None and not noisy.beyond_noise
    # deterministic: the same numbers every time, and only shared prompts count
    assert paired_bootstrap(values(base), values(shifted)) == ci
    assert paired_bootstrap(values(base)[:1], values(shifted)) is None


def test_weights_make_the_interval_centre_the_weighted_delta() -> None:
    v = np.array([1.0, 0.0, 1.0, 0.0])
    w = np.array([3.0, 1.0, 1.0, 1.0])
    ci = paired_bootstrap(values(np.zeros(4), w), values(v, w))
    assert ci is not None and ci.delta == pytest.approx(4 / 6)


def test_sample_sizes_follow_the_normal_approximation() -> None:
    # (1.96 + 0.8416)^2 * (1 / 0.5)^2 = 31.4 -> 32 prompts; twice that per side for seeds
    assert prompts_needed(0.5, 1.0) == 32
    assert seeds_needed(0.5, 1.0) == 63
    assert prompts_needed(-0.05, 0.3) == math.ceil((2.8016 * 0.3 / 0.05) ** 2)
    assert resolvable(1.0, 32) == pytest.approx(0.4953, abs=1e-3)
    with pytest.raises(ValueError):
        prompts_needed(0.0, 1.0)
    x = np.array([0.0, 1.0, 1.0, 0.0, 1.0])
    sd, n = prompt_sd(values(x)) or (0.0, 0)
    assert n == 5 and sd == pytest.approx(float(np.std(x, ddof=1)))


def test_geneval_per_prompt_values_reproduce_the_headline() -> None:
    rows = []
    for folder, (tag, correct) in enumerate(
        [("single", [1, 1, 0, 1]), ("single", [0, 0, 0, 0]), ("two", [1, 0, 1, 1]), ("count", [1, 1])]
    ):
        meta = json.dumps({"tag": tag, "prompt": f"p{folder}", "include": []})
        rows += [
            {
                "filename": f"/x/{folder:05d}/samples/{k:05d}.png",
                "tag": tag,
                "correct": bool(c),
                "metadata": meta,
            }
            for k, c in enumerate(correct)
        ]
    out = prompt_values_of(rows)
    assert len(out) == 4 and sum(w for _, _, w in out) == pytest.approx(1.0)
    assert sum(v * w for _, v, w in out) == pytest.approx(summarize(rows).headline)
    assert out[0][0] == json.dumps({"include": [], "prompt": "p0", "tag": "single"})


def test_prompt_values_round_trip_through_the_registry(home: Path) -> None:
    registry = Registry()
    ids = registry.record_plan("s", [_member("baseline", 0, True)])
    entries = [(prompt_id("b"), 0.5, 2.0), (prompt_id("a"), 1.0, 1.0)]
    assert unpack(pack(entries)) == sorted(entries)
    record = PromptScoreRecord(
        run_id=ids["baseline"],
        step=10,
        benchmark="shapes",
        judge="exact-pixel",
        metric="overall",
        values=entries,
    )
    registry.add_scores([], [record])
    registry.add_scores([], [record.model_copy(update={"values": entries[:1]})])  # replaced, not added
    (got,) = registry.prompt_scores([ids["baseline"]])
    assert got.values == entries[:1] and got.metric == "overall" and got.step == 10


def _member(name: str, i: int, is_baseline: bool) -> PlannedMember:
    return PlannedMember(
        name=name,
        label=name,
        hash=f"{i:064x}",
        is_baseline=is_baseline,
        baseline="baseline",
        varied={},
        spec={"i": i},
        total_steps=10,
    )


def _score(correct: np.ndarray) -> BenchmarkScore:
    n = len(correct)
    prompts = [(f"prompt {i}", float(c), 1.0 / n) for i, c in enumerate(correct)]
    return BenchmarkScore(
        benchmark="shapes",
        judge="exact-pixel",
        step=10,
        metrics={"overall": float(np.mean(correct))},
        headline="overall",
        prompts=prompts,
    )


def test_compare_shows_paired_intervals_recorded_through_record_scores(home: Path) -> None:
    from i1lab.cli import main as cli

    registry = Registry()
    ids = registry.record_plan(
        "pairs", [_member("baseline", 0, True), _member("better", 1, False), _member("reseeded", 2, False)]
    )
    rng = np.random.default_rng(0)
    base = (rng.uniform(0, 1, 120) < 0.5).astype(float)
    better = np.maximum(base, (rng.uniform(0, 1, 120) < 0.4).astype(float))  # fixes ~40% of failures
    reseeded = np.where(rng.uniform(0, 1, 120) < 0.1, 1 - base, base)  # flips 10% either way
    for name, correct in (("baseline", base), ("better", better), ("reseeded", reseeded)):
        assert record_scores(registry, ids[name], [_score(correct)])
    runner = CliRunner()
    md = runner.invoke(cli.app, ["compare", "pairs", "--format", "markdown"])
    assert md.exit_code == 0, md.output
    lines = {
        line.split(" | ")[0].strip("| *"): line for line in md.output.splitlines() if line.startswith("|")
    }
    assert "↑* [+" in lines["better"]  # beyond noise, interval above 0
    assert "*" not in lines["reseeded"].split(" | ", 2)[2] and "[-" in lines["reseeded"]
    assert "paired bootstrap 95% interval" in md.output
    data = json.loads(runner.invoke(cli.app, ["compare", "pairs", "--format", "json"]).output)
    cells = {r["name"]: r["cells"][0] for r in data["rows"]}
    assert cells["better"]["beyond_noise"] is True and cells["better"]["ci_low"] > 0
    assert cells["reseeded"]["beyond_noise"] is False
    assert cells["reseeded"]["ci_low"] < 0 < cells["reseeded"]["ci_high"]
    assert cells["baseline"]["ci_low"] is None
    csv_out = runner.invoke(cli.app, ["compare", "pairs", "--format", "csv"]).output
    assert "shapes/overall ci_low" in csv_out.splitlines()[0]
    latex = runner.invoke(cli.app, ["compare", "pairs", "--format", "latex"]).output
    assert "^{*}" in latex and "95\\%" in latex
    table = runner.invoke(cli.app, ["compare", "pairs"])
    assert table.exit_code == 0 and "excludes 0" in table.output and "[lo, hi] =" in table.output
    # plan --resolve's arithmetic, from the baseline's recorded values
    r = resolution(
        "pairs",
        0.05,
        [("baseline", ids["baseline"])],
        registry.prompt_scores(ids.values()),
        registry.scores(ids.values()),
    )
    sd = float(np.std(base, ddof=1))
    assert r["prompts"] == 120 and r["prompt_sd"] == pytest.approx(sd)
    assert r["prompts_needed"] == prompts_needed(0.05, sd) and r["seeds_needed"] is None
    with pytest.raises(I1labError, match="no per-prompt values"):
        resolution("pairs", 0.05, [("baseline", ids["baseline"])], [], [])
    assert (
        report.noise_note(report.ablation_table("pairs", registry.members("pairs"))) is None
    )  # no prompts given


def test_a_prompt_gets_the_same_noise_wherever_it_is_listed() -> None:
    ids = prompt_noise_ids(["a", "b", "c"], 2)
    assert ids[0] == (ids[0][0], 0) and ids[1] == (ids[0][0], 1)
    moved = prompt_noise_ids(["c", "a"], 2)
    assert moved[:2] == ids[4:] and moved[2:] == ids[:2]
    repeated = prompt_noise_ids(["a", "a"], 1)
    assert repeated[0] == (ids[0][0], 0) and repeated[1] != repeated[0]
    assert all(0 <= pid < 2**32 for pid, _ in ids)
