"""Ablation tables: values, signed deltas against the right baseline, step selection."""

from __future__ import annotations

from datetime import datetime

from i1lab.registry import MemberRecord, RunRecord, ScoreRecord
from i1lab.report.tables import ablation_table, fmt_delta, render_csv, render_markdown


def run(rid: int) -> RunRecord:
    t = datetime(2026, 1, 1)
    return RunRecord(
        id=rid,
        hash=f"{rid:064d}",
        spec={},
        status="finished",
        reason=None,
        step=10,
        total_steps=10,
        params=None,
        workdir=None,
        imported=False,
        attempts=1,
        mlflow_run_id=None,
        created_at=t,
        started_at=t,
        finished_at=t,
        updated_at=t,
    )


def score(rid: int, step: int, value: float, bench: str = "shapes", metric: str = "overall") -> ScoreRecord:
    return ScoreRecord(
        run_id=rid, step=step, benchmark=bench, metric=metric, judge="exact-pixel", value=value
    )


def members() -> list[MemberRecord]:
    def m(name: str, rid: int, scores: list[ScoreRecord], is_base: bool = False) -> MemberRecord:
        return MemberRecord(
            study="s",
            name=name,
            label=None,
            is_baseline=is_base,
            baseline="baseline",
            varied={},
            run=run(rid),
            scores=scores,
        )

    return [
        m("v1", 2, [score(2, 5, 0.30), score(2, 10, 0.50), score(2, 10, 0.9, metric="tag/colors")]),
        m("baseline", 1, [score(1, 5, 0.20), score(1, 10, 0.40)], is_base=True),
        m("v2", 3, [score(3, 10, 0.25)]),
    ]


def test_baseline_first_and_deltas_at_latest_step() -> None:
    table = ablation_table("s", members())
    assert [r.name for r in table.rows] == ["baseline", "v1", "v2"]
    assert [c.title for c in table.columns] == ["shapes/overall"]
    base, v1, v2 = (r.cells[0] for r in table.rows)
    assert base.value == 0.40 and base.delta is None
    assert abs(v1.delta - 0.10) < 1e-12 and abs(v2.delta + 0.15) < 1e-12  # type: ignore[operator]


def test_at_step_picks_that_checkpoint() -> None:
    table = ablation_table("s", members(), at_step=5)
    cells = {r.name: r.cells[0] for r in table.rows}
    assert cells["v1"].value == 0.30 and abs(cells["v1"].delta - 0.10) < 1e-12  # type: ignore[operator]
    assert cells["v2"].value is None


def test_all_metrics_and_renderers() -> None:
    table = ablation_table("s", members(), all_metrics=True)
    assert [c.title for c in table.columns] == ["shapes/overall", "shapes/tag/colors"]
    md = render_markdown(table)
    assert "| **baseline** |" in md and "+0.1000 ↑" in md and "-0.1500 ↓" in md
    assert render_csv(table).splitlines()[0].startswith("name,baseline,status,step,params,shapes/overall")
    assert fmt_delta(0.0) == "+0.0000 =" and fmt_delta(None) == ""
