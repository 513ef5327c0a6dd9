"""The dashboard's data layer: read-only access, study summaries, tables, curves, samples, MLflow links."""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from dashboards.data import Mlflow, Source
from i1lab.errors import I1labError
from i1lab.plan.recorded_cost import estimate_hours
from i1lab.registry import Registry
from i1lab.registry.readonly import open_registry, readonly_engine
from tests.dashboard.synthetic import Built, file_state

PLAIN, SEEDED = "adapter_size", "adapter_seeds"


def test_the_registry_is_opened_read_only(dash_home: Path) -> None:
    db = dash_home / "registry.db"
    before = file_state(db)
    registry = open_registry()
    run_id = registry.members(PLAIN)[0].run.id
    with pytest.raises(Exception, match=r"readonly|read-only"):
        registry.set_fields(run_id, status="failed")
    with pytest.raises(Exception, match=r"readonly|read-only"):
        registry.record_plan("intruder", [])
    source = Source(registry)
    for summary in source.studies():
        page = source.study(summary.name)
        source.table(summary.name, all_metrics=True)
        source.samples(summary.name, "shapes", [v.name for v in page.variants])
    assert file_state(db) == before
    assert Registry().run(run_id).status == "finished"


def test_a_missing_registry_is_reported_and_not_created(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("I1LAB_HOME", str(tmp_path / "nowhere"))
    monkeypatch.delenv("I1LAB_DATABASE_URL", raising=False)
    with pytest.raises(I1labError, match=r"no registry at .*registry\.db"):
        open_registry()
    assert not (tmp_path / "nowhere").exists()
    with pytest.raises(I1labError, match="no registry"):
        readonly_engine("sqlite:///:memory:")


def test_study_summaries_count_progress_and_cost(dash_home: Path, built: Built) -> None:
    source = Source.open(estimate=estimate_hours)  # what ``i1lab dashboard`` opens
    by_name = {s.name: s for s in source.studies()}
    assert sorted(by_name) == [SEEDED, PLAIN]
    plain = by_name[PLAIN]
    assert (plain.runs, plain.done, plain.by_status, plain.profile) == (4, 4, {"finished": 4}, "tiny")
    assert by_name[SEEDED].runs == 8

    writer = Registry()
    members = writer.members(PLAIN)
    planned = sum(m.run.accelerator_hours_est or 0.0 for m in members)
    assert planned > 0 and plain.est_hours == pytest.approx(planned)
    assert plain.used_hours == pytest.approx(sum(m.run.accelerator_hours or 0.0 for m in members))

    # A run still going, and runs recorded without a planned cost: costed from their specs (i1lab.plan.cost).
    writer.set_fields(members[1].run.id, status="running", step=7)
    for m in members:
        writer.set_fields(m.run.id, accelerator_hours_est=None)
    again = {s.name: s for s in source.studies()}[PLAIN]
    assert (again.done, again.by_status) == (3, {"finished": 3, "running": 1})
    assert again.est_hours == pytest.approx(planned, rel=1e-9) and again.uncosted == 0
    page = source.study(PLAIN)
    assert [(v.status, v.step) for v in page.variants][1] == ("running", 7)


def test_estimates_come_from_the_cost_model(built: Built) -> None:
    from i1lab.plan.cost import run_cost
    from i1lab.spec.model import model_config
    from i1lab.spec.run import RunSpec

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("I1LAB_HOME", str(built.home))
        member = Registry().members(PLAIN)[2]
    spec = RunSpec.model_validate(member.run.spec)
    assert (
        estimate_hours(member.run.hash, member.run.spec)
        == run_cost(spec, model_config(spec)).accelerator_hours
    )
    assert estimate_hours("not-a-run", {"model": {"backbone": "nonsense"}}) is None


def test_the_ablation_table_has_the_recorded_values_and_deltas(dash_home: Path, built: Built) -> None:
    source = Source.open()
    values = built.studies[PLAIN].values
    table = source.table(PLAIN)
    assert [c.title for c in table.columns] == ["shapes/overall"]
    assert [r.name for r in table.rows] == built.studies[PLAIN].names
    base = values["baseline"][20]["overall"]
    for row in table.rows:
        cell = row.cells[0]
        assert (cell.value, cell.step) == (values[row.name][20]["overall"], 20)
        expected = None if row.is_baseline else pytest.approx((cell.value or 0.0) - base)
        assert cell.delta == expected
    at10 = source.table(PLAIN, at_step=10, all_metrics=True)
    assert len(at10.columns) == 8 and at10.at_step == 10
    assert at10.rows[1].cells[0].value == values["adapter=transformer-1"][10]["overall"]


def test_the_seed_noise_band_is_carried(dash_home: Path) -> None:
    table = Source.open().table(SEEDED)
    cells = {r.name: r.cells[0] for r in table.rows}
    # baselines differ by 0.03 between seeds: sigma = 0.03 / sqrt(2); a delta of 0.03 is within 2 sigma
    assert cells["adapter=transformer-1#seed=0"].sigma == pytest.approx(0.03 / 2**0.5)
    assert cells["adapter=transformer-1#seed=0"].noise is True
    assert cells["adapter=transformer-2#seed=1"].noise is False
    assert cells["baseline#seed=0"].sigma is None


def test_curves_and_breakdowns_of_chosen_runs(dash_home: Path, built: Built) -> None:
    source = Source.open()
    values = built.studies[PLAIN].values
    page = source.study(PLAIN)
    assert page.steps == [10, 20] and page.benchmarks == ["shapes"]
    key = "shapes/overall@exact-pixel"
    curve = source.curve(PLAIN, key, ["baseline", "adapter=transformer-3", "no-such-run"])
    assert curve is not None and curve.runs == ["baseline", "adapter=transformer-3"]
    assert curve.steps == [10, 20]
    assert curve.values == [[values[r][s]["overall"] for r in curve.runs] for s in (10, 20)]
    assert source.curve(PLAIN, "shapes/nothing@x", ["baseline"]) is None

    parts = source.breakdown(PLAIN, "shapes", ["adapter=transformer-2"], at_step=10)
    assert [r.name for r in parts.rows] == ["adapter=transformer-2"]
    got = {c.metric: cell.value for c, cell in zip(parts.columns, parts.rows[0].cells, strict=True)}
    assert got == values["adapter=transformer-2"][10]
    assert source.breakdown(PLAIN, "geneval", ["baseline"]).columns == []


def test_samples_line_up_the_same_prompts_across_variants(dash_home: Path, built: Built) -> None:
    source = Source.open()
    plain = built.studies[PLAIN]
    grid = source.samples(PLAIN, "shapes", ["baseline", "adapter=transformer-1"])
    assert (grid.step, grid.steps) == (20, [10, 20])
    assert [p.prompt for p in grid.prompts] == plain.prompts
    assert all(p.images == {"baseline": [0, 1], "adapter=transformer-1": [0, 1]} for p in grid.prompts)
    run = grid.run_ids["adapter=transformer-1"]
    path = source.image_file(run, "shapes", 20, "2-1.png")
    assert path is not None and path.parts[-3:] == ("00002", "samples", "00001.png")
    assert source.image_file(run, "shapes", 20, "grid.png") == path.parents[2] / "grid.png"
    assert source.samples(PLAIN, "shapes", ["baseline"], step=10, max_prompts=1).prompts[0].index == 0
    # nothing outside a run's eval folder, nothing that is not there
    for bench, step, name in [
        ("shapes", 20, "../../../registry.db"),
        ("..", 20, "0-0.png"),
        ("shapes", 20, "9-9.png"),
        ("shapes", 30, "0-0.png"),
        ("shapes/..", 20, "grid.png"),
    ]:
        assert source.image_file(run, bench, step, name) is None
    assert source.image_file(999_999, "shapes", 20, "0-0.png") is None
    assert source.samples(PLAIN, "dpg", ["baseline"]).step is None


def test_the_cache_follows_the_registry(dash_home: Path) -> None:
    source = Source.open()
    first = source.table(PLAIN)
    assert source.table(PLAIN) is first  # unchanged registry: served from the cache
    writer = Registry()
    from i1lab.registry import ScoreRecord

    run_id = writer.members(PLAIN)[1].run.id
    writer.add_scores(
        [
            ScoreRecord(
                run_id=run_id, step=20, benchmark="shapes", metric="overall", judge="exact-pixel", value=0.1
            )
        ]
    )
    assert source.table(PLAIN).rows[1].cells[0].value == 0.1


# --- MLflow links -----------------------------------------------------------------------------------
def test_mlflow_urls() -> None:
    ml = Mlflow(tracking_uri="sqlite:////nowhere/mlflow.db", ui_url="http://127.0.0.1:5999/")
    assert ml.ui_url == "http://127.0.0.1:5999"
    assert ml.run_url("abc", "7") == "http://127.0.0.1:5999/#/experiments/7/runs/abc"
    assert ml.run_url("abc") == "http://127.0.0.1:5999/#/runs/abc"
    assert ml.compare_url("7", ["a", "b"]) == (
        "http://127.0.0.1:5999/#/compare-runs?runs=%5B%22a%22%2C%20%22b%22%5D&experiments=%5B%227%22%5D"
    )
    assert ml.experiment_id("adapter_size") is None  # no store there
    assert Mlflow(tracking_uri="http://mlflow:5000").ui_url == "http://mlflow:5000"


def test_experiment_ids_from_a_sqlite_store(tmp_path: Path) -> None:
    db = tmp_path / "mlflow.db"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE experiments (experiment_id INTEGER, name TEXT, lifecycle_stage TEXT)")
        conn.executemany(
            "INSERT INTO experiments VALUES (?, ?, ?)",
            [(3, "adapter_size", "active"), (4, "gone", "deleted")],
        )
    before = file_state(db)
    ml = Mlflow(tracking_uri=f"sqlite:///{db}")
    assert (ml.experiment_id("adapter_size"), ml.experiment_id("gone"), ml.experiment_id("x")) == (
        "3",
        None,
        None,
    )
    assert file_state(db) == before


@pytest.fixture
def tracking_server() -> Iterator[str]:
    """A stand-in tracking server on loopback answering get-by-name for one experiment."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path == "/api/2.0/mlflow/experiments/get-by-name?experiment_name=adapter_size":
                body = json.dumps({"experiment": {"experiment_id": "12", "lifecycle_stage": "active"}})
                self.send_response(200)
            else:
                body = json.dumps({"error_code": "RESOURCE_DOES_NOT_EXIST"})
                self.send_response(404)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body.encode())

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_experiment_ids_from_a_tracking_server(tracking_server: str) -> None:
    ml = Mlflow(tracking_uri=tracking_server)
    assert ml.experiment_id("adapter_size") == "12"
    assert ml.experiment_id("other") is None
    assert ml.compare_url("12", ["r"]).startswith(f"{tracking_server}/#/compare-runs?")
