"""``i1lab sync mlflow`` against a real MLflow tracking server: its REST API returns every registry run
with the same params (the flattened spec), the same scores per step, the linking tags and the grids."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from i1lab.cli.main import app
from i1lab.registry import PlannedMember, Registry, ScoreRecord
from i1lab.registry.importer import import_results
from i1lab.registry.tracking import (
    TAG_BASELINE,
    TAG_HASH,
    TAG_IMPORTED,
    TAG_REGISTRY_ID,
    _params,
    score_metrics,
)

PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360000002000001e221bc330000000049454e44ae426082"
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def mlflow_server(tmp_path: Path) -> Iterator[str]:
    """A real ``mlflow server`` on a loopback port, backed by a temporary SQLite file."""
    port = free_port()
    log = (tmp_path / "mlflow-server.log").open("w")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mlflow",
            "server",
            "--backend-store-uri",
            f"sqlite:///{tmp_path / 'mlflow-server.db'}",
            "--artifacts-destination",
            str(tmp_path / "mlflow-artifacts"),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "MLFLOW_TRACKING_URI": ""},
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as resp:
                    if resp.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                tail = (tmp_path / "mlflow-server.log").read_text()[-2000:]
                pytest.fail(f"mlflow server did not start: {tail}")
            time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def get(url: str, endpoint: str, **params: str) -> Any:
    with urllib.request.urlopen(f"{url}{endpoint}?{urllib.parse.urlencode(params)}", timeout=30) as resp:
        return json.loads(resp.read())


def post(url: str, path: str, body: dict[str, Any]) -> Any:
    req = urllib.request.Request(
        f"{url}{path}", data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.loads(resp.read())


def make_registry(home: Path, tmp_path: Path) -> Registry:
    reg = Registry()
    members = []
    for i, (name, adapter) in enumerate(
        (("baseline", "mlp"), ("tf1", "transformer"), ("tf2", "transformer"))
    ):
        digest = f"{i + 1}" * 64
        workdir = home / "runs" / name
        grid = workdir / "eval" / digest[:12] / "shapes" / "step_0000020" / "grid.png"
        grid.parent.mkdir(parents=True)
        grid.write_bytes(PNG)
        lines = [{"step": s, "loss": 1.0 / s, "lr": 1e-4} for s in (5, 10, 20)]
        (workdir / "metrics.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
        members.append(
            PlannedMember(
                name=name,
                label=name,
                hash=digest,
                is_baseline=i == 0,
                baseline="baseline",
                varied={} if i == 0 else {"model.adapter.type": adapter},
                spec={
                    "name": name,
                    "model": {"adapter": {"type": adapter, "blocks": i + 1}, "hidden": None, "adaln": True},
                    "train": {"lr": 1e-4 * (i + 1)},
                    "data": {"remove": ["laion"]},
                },
                total_steps=20,
                workdir=str(workdir),
            )
        )
    ids = reg.record_plan("adapters", members)
    scores = []
    for i, rid in enumerate(ids.values()):
        for step in (10, 20):
            scores.append(
                ScoreRecord(
                    run_id=rid,
                    step=step,
                    benchmark="shapes",
                    metric="overall",
                    judge="exact-pixel",
                    value=0.1 * i + step / 100,
                )
            )
            scores.append(
                ScoreRecord(
                    run_id=rid,
                    step=step,
                    benchmark="shapes",
                    metric="tag/colors",
                    judge="exact-pixel",
                    value=0.5,
                )
            )
    # a second judge of the same metric on one run
    scores.append(
        ScoreRecord(run_id=ids["tf2"], step=20, benchmark="shapes", metric="overall", judge="vlm", value=0.33)
    )
    reg.add_scores(scores)
    for rid in ids.values():
        reg.set_status(rid, "running")
        reg.set_status(rid, "finished")
    results = tmp_path / "ext.jsonl"
    results.write_text(
        json.dumps(
            {
                "study": "external",
                "name": "theirs",
                "baseline": True,
                "spec": {"model.size": "XL"},
                "scores": [
                    {"benchmark": "geneval", "metric": "overall", "value": 0.7, "step": 100, "judge": "m2f"}
                ],
            }
        )
        + "\n"
    )
    import_results(results, reg)
    return reg


def mirrored(url: str, study: str) -> dict[str, dict[str, Any]]:
    exp = get(url, "/api/2.0/mlflow/experiments/get-by-name", experiment_name=study)["experiment"]
    runs = post(
        url, "/api/2.0/mlflow/runs/search", {"experiment_ids": [exp["experiment_id"]], "max_results": 1000}
    )
    out = {}
    for run in runs.get("runs", []):
        tags = {t["key"]: t["value"] for t in run["data"].get("tags", [])}
        if "mlflow.parentRunId" not in tags:
            continue
        out[tags[TAG_REGISTRY_ID]] = {
            "id": run["info"]["run_id"],
            "status": run["info"]["status"],
            "tags": tags,
            "params": {p["key"]: p["value"] for p in run["data"].get("params", [])},
            "metrics": {m["key"]: (m["step"], m["value"]) for m in run["data"].get("metrics", [])},
        }
    return out


def history(url: str, run_id: str, key: str) -> set[tuple[int, float]]:
    found = get(url, "/api/2.0/mlflow/metrics/get-history", run_id=run_id, metric_key=key)
    return {(int(m["step"]), float(m["value"])) for m in found.get("metrics", [])}


def test_sync_mirrors_every_run_with_params_scores_tags_and_grids(
    home: Path, tmp_path: Path, mlflow_server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    reg = make_registry(home, tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server)
    runner = CliRunner()
    for _ in range(2):  # the second sync must change nothing
        res = runner.invoke(app, ["sync", "mlflow"])
        assert res.exit_code == 0, res.output
        assert "adapters: 3 runs mirrored" in res.output and "external: 1 runs mirrored" in res.output

    for study in ("adapters", "external"):
        members = reg.members(study)
        found = mirrored(mlflow_server, study)
        assert set(found) == {str(m.run.id) for m in members}
        for m in members:
            got = found[str(m.run.id)]
            assert got["params"] == _params(m.run.spec)
            assert got["tags"][TAG_HASH] == m.run.hash
            assert got["tags"][TAG_BASELINE] == str(m.is_baseline).lower()
            assert got["tags"][TAG_IMPORTED] == str(m.run.imported).lower()
            assert got["tags"]["mlflow.runName"] == m.name and got["status"] == "FINISHED"
            assert reg.run(m.run.id).mlflow_run_id == got["id"]
            want = score_metrics(m.scores)
            keys = {k for k, _ in want}
            latest = {k: max((st, sc.value) for (kk, st), sc in want.items() if kk == k) for k in keys}
            assert {k: v for k, v in got["metrics"].items() if k in keys} == latest
            assert set(got["metrics"]) - keys <= {"loss", "lr"}
            for key in keys:  # every step, once: the second sync logged nothing again
                steps = {(st, sc.value) for (kk, st), sc in want.items() if kk == key}
                assert history(mlflow_server, got["id"], key) == steps
            if study == "adapters":
                assert len(history(mlflow_server, got["id"], "loss")) == 3
                listed = get(
                    mlflow_server, "/api/2.0/mlflow/artifacts/list", run_id=got["id"], path="grids/shapes"
                )
                assert [f["path"] for f in listed.get("files", [])] == ["grids/shapes/step_0000020.png"]
    tf2 = mirrored(mlflow_server, "adapters")[str(reg.find_run("adapters/tf2").id)]
    assert {"shapes/overall:exact-pixel", "shapes/overall:vlm", "shapes/tag/colors"} <= set(tf2["metrics"])
    assert [a.kind for a in reg.artifacts([reg.find_run("adapters/tf1").id])] == ["grid/shapes"]
