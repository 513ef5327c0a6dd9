"""``i1lab compare``: arrows, the seed-noise band (a delta within ±2σ of the baseline's seeds), LaTeX,
and curves over checkpoint steps."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import pytest
from typer.testing import CliRunner

from i1lab.errors import I1labError
from i1lab.registry import PlannedMember, Registry, ScoreRecord
from i1lab.report import tables as report

BASE = {0: (0.40, 0.50), 1: (0.42, 0.52), 2: (0.44, 0.54)}  # seed -> values at steps 10, 20


@pytest.fixture
def reg(home: Path) -> Registry:
    registry = Registry()
    members, values = [], {}
    for seed, pair in BASE.items():
        members.append((f"baseline#seed={seed}", True, f"baseline#seed={seed}"))
        values[f"baseline#seed={seed}"] = pair
    for name, pair in (
        ("close#seed=0", (0.41, 0.53)),
        ("far#seed=0", (0.30, 0.60)),
        ("a_b&c%#seed=1", (0.5, 0.51)),
    ):
        seed = name.rsplit("=", 1)[1]
        members.append((name, False, f"baseline#seed={seed}"))
        values[name] = pair
    ids = registry.record_plan(
        "seeds",
        [
            PlannedMember(
                name=n,
                label=n,
                hash=f"{i:064x}",
                is_baseline=b,
                baseline=base,
                varied={},
                spec={"i": i},
                total_steps=20,
            )
            for i, (n, b, base) in enumerate(members)
        ],
    )
    registry.add_scores(
        [
            ScoreRecord(run_id=ids[n], step=st, benchmark="geneval", metric="overall", judge="m2f", value=v)
            for n, pair in values.items()
            for st, v in zip((10, 20), pair, strict=True)
        ]
        + [
            ScoreRecord(
                run_id=ids["far#seed=0"],
                step=30,
                benchmark="geneval",
                metric="overall",
                judge="m2f",
                value=0.7,
            )
        ]
    )
    return registry


def test_noise_band_marks_deltas_within_two_sigma(reg: Registry) -> None:
    table = report.ablation_table("seeds", reg.members("seeds"), at_step=20)
    cells = {r.name: r.cells[0] for r in table.rows}
    sigma = statistics.stdev([0.50, 0.52, 0.54])
    close, far, other = cells["close#seed=0"], cells["far#seed=0"], cells["a_b&c%#seed=1"]
    assert close.sigma == pytest.approx(sigma) and close.delta == pytest.approx(0.03) and close.noise is True
    assert far.delta == pytest.approx(0.10) and far.noise is False  # 0.10 > 2 x 0.02
    assert other.delta == pytest.approx(-0.01) and other.noise is True  # against its own seed's baseline
    assert cells["baseline#seed=0"].noise is None and cells["baseline#seed=0"].delta is None
    latest = {r.name: r.cells[0] for r in report.ablation_table("seeds", reg.members("seeds")).rows}
    assert latest["far#seed=0"].step == 30 and latest["far#seed=0"].sigma is None  # no baseline seeds at 30
    md = report.render_markdown(table)
    assert "+0.0300 ↑ (noise)" in md and "+0.1000 ↑ |" in md and "-0.0100 ↓ (noise)" in md
    assert "a delta within ±2σ is marked (noise)" in md
    assert report.fmt_delta(-0.2) == "-0.2000 ↓" and report.fmt_delta(0.1, True) == "+0.1000 ↑ (noise)"
    records = report.to_records(table)
    assert records[3]["geneval/overall within noise"] is True and records[4][
        "geneval/overall sigma"
    ] == pytest.approx(sigma)


def test_single_seed_baseline_has_no_band(home: Path) -> None:
    reg = Registry()
    ids = reg.record_plan(
        "one",
        [
            PlannedMember(
                name=n,
                label=n,
                hash=h * 64,
                is_baseline=n == "baseline",
                baseline="baseline",
                varied={},
                spec={"n": n},
                total_steps=1,
            )
            for n, h in (("baseline", "a"), ("v", "b"))
        ],
    )
    reg.add_scores(
        [
            ScoreRecord(run_id=ids[n], step=1, benchmark="g", metric="m", judge="j", value=v)
            for n, v in (("baseline", 0.5), ("v", 0.5001))
        ]
    )
    table = report.ablation_table("one", reg.members("one"), all_metrics=True)
    cell = table.rows[1].cells[0]
    assert (cell.sigma, cell.noise) == (None, None) and report.noise_note(table) is None


def test_latex_is_escaped_and_marks_noise(reg: Registry) -> None:
    tex = report.render_latex(report.ablation_table("seeds", reg.members("seeds"), at_step=20))
    assert tex.startswith("\\begin{table}") and tex.endswith("\\end{table}")
    assert "a\\_b\\&c\\%\\#seed=1" in tex and "\\textbf{baseline\\#seed=0}" in tex
    assert "$+0.1000\\,\\uparrow$" in tex and "\\textcolor{gray}{$+0.0300\\,\\uparrow$}" in tex
    assert "geneval/overall [m2f]" in tex and "\\toprule" in tex and "--" in tex  # params unknown
    assert (
        report.latex_escape("x_{y}^~\\")
        == "x\\_\\{y\\}\\textasciicircum{}\\textasciitilde{}\\textbackslash{}"
    )


def test_curves_are_step_by_run_tables(reg: Registry) -> None:
    members = reg.members("seeds")
    (curve,) = report.curves(members)
    assert curve.column.title == "geneval/overall" and curve.steps == [10, 20, 30]
    assert curve.runs[:3] == ["baseline#seed=0", "baseline#seed=1", "baseline#seed=2"]
    far = curve.runs.index("far#seed=0")
    assert [row[far] for row in curve.values] == [0.30, 0.60, 0.70]
    assert [row[0] for row in curve.values] == [0.40, 0.50, None]
    (some,) = report.curves(members, runs=["far#seed=0", "close#seed=0"])
    assert some.runs == ["far#seed=0", "close#seed=0"] and some.values[2] == [0.70, None]
    with pytest.raises(I1labError, match="no run named 'nope' in the study"):
        report.curves(members, runs=["nope"])
    csv_lines = report.render_curves_csv([some]).splitlines()
    assert (
        csv_lines[0] == "benchmark,metric,judge,step,run,value"
        and "geneval,overall,m2f,30,close#seed=0," in csv_lines
    )
    assert "| 30 | 0.7000 | — |" in report.render_curves_markdown([some])


def test_cli_compare_formats_and_curves(reg: Registry, monkeypatch: pytest.MonkeyPatch) -> None:
    from i1lab.cli import main as cli

    monkeypatch.setattr(cli.out, "width", 250)
    runner = CliRunner()

    def compare(*args: str) -> str:
        res = runner.invoke(cli.app, ["compare", "seeds", *args])
        assert res.exit_code == 0, res.output
        return res.stdout

    table = compare("--at-step", "20")
    assert "+0.0300 ↑ (noise)" in table and "+0.1000 ↑" in table and "±2σ" in table and "[m2f]" in table
    assert compare("--format", "latex", "--at-step", "20").startswith("\\begin{table}")
    curves = compare("--curves", "--run", "far#seed=0", "--run", "baseline#seed=1")
    words = " ".join(curves.split())
    assert (
        "geneval/overall [m2f] over checkpoints" in words
        and "0.7000" in curves
        and "close#seed=0" not in curves
    )
    data = json.loads(compare("--curves", "--format", "json"))
    assert data[0]["steps"] == [10, 20, 30]
    bad = runner.invoke(cli.app, ["compare", "seeds", "--format", "html"])
    assert isinstance(bad.exception, I1labError) and "--format must be one of" in str(bad.exception)
    bad = runner.invoke(cli.app, ["compare", "seeds", "--run", "x"])
    assert isinstance(bad.exception, I1labError) and "--run selects the runs of --curves" in str(
        bad.exception
    )
