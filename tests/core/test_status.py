"""``i1lab status`` and ``i1lab logs RUN`` over a real registry, without Ray: columns, ETA, retries, speed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from i1lab.execution.submit import planned_members
from i1lab.plan.planner import expand, make_plan
from i1lab.registry import Registry
from i1lab.registry.logs import format_metrics, stream_run
from i1lab.registry.records import now
from i1lab.registry.status import eta_seconds, fmt_duration, short_node, throughput_from_metrics
from i1lab.spec import load_study

EXPERIMENTS = Path(__file__).resolve().parents[2] / "experiments"


def i1lab(*args: str, home: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "I1LAB_HOME": str(home), "COLUMNS": "250"}
    return subprocess.run(
        [sys.executable, "-m", "i1lab", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )


def record_adapter_study() -> tuple[Registry, dict[str, int]]:
    study = load_study(EXPERIMENTS / "adapter_size.yaml")
    plan = make_plan(study, expand(study, "tiny"), {}, "tiny")
    members = planned_members(plan)
    registry = Registry()
    return registry, registry.record_plan(
        "adapter_size", members, file=str(EXPERIMENTS / "adapter_size.yaml")
    )


def test_pure_helpers() -> None:
    assert eta_seconds("running", 250, 1000, 5.0) == 150.0
    assert eta_seconds("queued", 0, 1000, 5.0) is None and eta_seconds("running", 10, 100, None) is None
    assert [fmt_duration(s) for s in (None, 42, 95, 7384, 90000)] == ["—", "42s", "1m35s", "2h03m", "1d01h"]
    line = format_metrics('{"step": 20, "loss": 0.123456, "lr": 0.001}')
    assert line == "step 20  loss 0.1235  lr 0.001"
    assert format_metrics("not json") is None and format_metrics('{"loss": 1}') is None
    assert short_node("vm/192.0.2.2/" + "ab12" * 14) == "vm/192.0.2.2/ab12ab12"
    assert short_node("10.0.0.7") == "10.0.0.7" and short_node(None) == "—"


def test_throughput_from_the_last_complete_metrics_line(tmp_path: Path) -> None:
    (tmp_path / "metrics.jsonl").write_text(
        '{"step": 5, "step_time": 0.5}\n{"step": 10, "step_time": 0.25}\n{"step": 15, "ste'
    )
    assert throughput_from_metrics(str(tmp_path)) == 4.0
    assert throughput_from_metrics(str(tmp_path / "missing")) is None


def test_status_json_and_table_show_progress_speed_eta_retries_node(home: Path) -> None:
    registry, ids = record_adapter_study()
    base, t1, t2 = ids["baseline"], ids["adapter=transformer-1"], ids["adapter=transformer-2"]
    registry.set_status(base, "running")
    registry.set_status(base, "running")  # a second attempt: one retry
    registry.set_fields(
        base, step=400, steps_per_second=4.0, interruptions=1, node="10.0.0.7", heartbeat_at=now()
    )
    registry.set_status(t1, "running")
    registry.set_fields(t1, step=100)  # no throughput recorded: read from its metrics.jsonl
    wd = Path(registry.run(t1).workdir or "")
    wd.mkdir(parents=True)
    (wd / "metrics.jsonl").write_text('{"step": 100, "loss": 0.5, "step_time": 0.1}\n')
    registry.set_status(t2, "failed", "RunFailed: loss is NaN at step 7")

    res = i1lab("status", "adapter_size", "--json", home=home)
    assert res.returncode == 0, res.stderr
    data = json.loads(res.stdout)
    assert data["job"] is None and data["counts"] == {"queued": 1, "running": 2, "failed": 1}
    rows = {r["name"]: r for r in data["runs"]}
    b = rows["baseline"]
    assert (b["status"], b["step"], b["total_steps"]) == ("running", 400, 1000)
    assert b["steps_per_second"] == 4.0 and b["eta_seconds"] == 150.0
    assert (b["attempts"], b["retries"], b["interruptions"], b["node"]) == (2, 1, 1, "10.0.0.7")
    assert 0 <= b["heartbeat_age_seconds"] < 60
    r1 = rows["adapter=transformer-1"]
    assert r1["steps_per_second"] == pytest.approx(10.0) and r1["eta_seconds"] == pytest.approx(90.0)
    assert r1["retries"] == 0 and r1["node"] is None
    assert rows["adapter=transformer-2"]["reason"] == "RunFailed: loss is NaN at step 7"
    assert rows["adapter=transformer-3"]["eta_seconds"] is None

    res = i1lab("status", "adapter_size", home=home)
    assert res.returncode == 0, res.stderr
    for header in ("steps/s", "ETA", "retries", "interrupts", "node"):
        assert header in res.stdout
    line = next(ln for ln in res.stdout.splitlines() if "│ baseline" in ln)
    for cell in ("400/1000", "4.00", "2m30s", "10.0.0.7"):
        assert cell in line, line

    res = i1lab("status", home=home)  # every study's runs, named study/name
    assert res.returncode == 0 and "adapter_size/baseline" in res.stdout


def test_status_of_unknown_study_is_one_line(home: Path) -> None:
    record_adapter_study()
    res = i1lab("status", "nope", home=home)
    assert res.returncode == 2 and "no study named 'nope'" in res.stderr and "Traceback" not in res.stderr


def test_status_imports_neither_ray_nor_jax(home: Path) -> None:
    record_adapter_study()
    code = (
        "import sys; sys.argv=['i1lab', 'status', 'adapter_size', '--json']\n"
        "from i1lab.cli.main import main\n"
        "try:\n  main()\nexcept SystemExit:\n  pass\n"
        "print('HEAVY', [m for m in ('jax', 'ray', 'mlflow', 'flax') if m in sys.modules])"
    )
    env = {**os.environ, "I1LAB_HOME": str(home)}
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert "HEAVY []" in res.stdout, res.stdout[-500:] + res.stderr


def test_logs_of_a_run_stream_events_metrics_and_errors(home: Path) -> None:
    registry, ids = record_adapter_study()
    run = registry.run(ids["baseline"])
    wd = Path(run.workdir or "")
    wd.mkdir(parents=True)
    (wd / "metrics.jsonl").write_text('{"step": 5, "loss": 0.75}\n{"step": 10, "loss": 0.5}\n')
    registry.add_event(run.id, "started", "10.0.0.7", "attempt 1")
    registry.set_status(run.id, "running")
    lines: list[str] = []
    stream_run(registry, registry.run(run.id), follow=False, write=lines.append)
    assert lines[0].endswith("started on 10.0.0.7: attempt 1")
    assert lines[1:] == ["step 5  loss 0.75", "step 10  loss 0.5"]

    # --follow: new lines as they come, until the run ends
    with (wd / "metrics.jsonl").open("a") as f:
        f.write('{"step": 15, "loss": 0.25}\n')
    (wd / "error.log").write_text("Traceback (most recent call last):\nValueError: boom\n")
    registry.set_status(run.id, "failed", "ValueError: boom")
    more: list[str] = []
    assert stream_run(registry, registry.run(run.id), follow=True, write=more.append) == "failed"
    assert "step 15  loss 0.25" in more and more[-1] == "ValueError: boom"

    res = i1lab("logs", "adapter_size/baseline", home=home)
    assert res.returncode == 0 and "step 10  loss 0.5" in res.stdout, res.stderr
    res = i1lab("logs", "adapter_size", home=home)  # a study without a detached job
    assert res.returncode == 2 and "not submitted with --detach" in res.stderr
