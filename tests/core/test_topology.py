"""The multi-machine topology of docker-compose.yml, without Docker: a real PostgreSQL server (registry and
MLflow backend), a real ``mlflow server`` and a real two-node Ray cluster, all on loopback, and a tiny
study submitted through them. Each service's start-up is bounded and its log is shown if it fails."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from i1lab.registry import Registry

EXPERIMENTS = Path(__file__).resolve().parents[2] / "experiments"
STUDY = """\
study: topology_micro
extends: {adapter}
axes:
  model.adapter:
    - {{type: transformer, blocks: 1}}
profiles:
  tiny:
    train.steps: 12
    train.checkpoint_every: 6
    train.keep_every: 12
    train.log_every: 4
    sampling.steps: 3
    eval.prompts_per_tag: 1
    eval.images_per_prompt: 1
"""


def rest(url: str, path: str, body: dict[str, Any] | None = None, **query: str) -> Any:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(
        f"{url}{path}" + (f"?{urllib.parse.urlencode(query)}" if query else ""),
        data=data,
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.loads(resp.read())


def new_database(server: str, name: str) -> str:
    import psycopg

    with psycopg.connect(server.replace("postgresql+psycopg://", "postgresql://"), autocommit=True) as c:
        c.execute(f'CREATE DATABASE "{name}"')  # a fixed identifier, not user input
    return server.rsplit("/", 1)[0] + f"/{name}"


@pytest.mark.slow
def test_a_tiny_study_runs_through_postgres_an_mlflow_server_and_a_two_node_ray_cluster(
    postgres_server: str,
    postgres_url: str,
    start_mlflow: Callable[[str], str],
    start_ray: Callable[..., tuple[str, dict[str, str]]],
    home: Path,
    tmp_path: Path,
) -> None:
    started: dict[str, float] = {}
    t = time.monotonic()
    mlflow_url = start_mlflow(new_database(postgres_server, f"mlflow_{os.getpid()}_{int(t)}"))
    started["mlflow server (PostgreSQL backend)"] = time.monotonic() - t
    t = time.monotonic()
    address, env = start_ray(["{}", "{}"])
    started["Ray head + worker"] = time.monotonic() - t
    print("service start-up:", ", ".join(f"{k} {v:.1f} s" for k, v in started.items()))

    study = tmp_path / "topology.yaml"
    study.write_text(STUDY.format(adapter=EXPERIMENTS / "adapter_size.yaml"))
    done = subprocess.run(
        [sys.executable, "-m", "i1lab", "submit", str(study), "--profile", "tiny", "--address", address],
        env={
            **env,
            "I1LAB_HOME": str(home),
            "I1LAB_DATABASE_URL": postgres_url,
            "MLFLOW_TRACKING_URI": mlflow_url,
            "COLUMNS": "200",
        },
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr

    # the registry on PostgreSQL holds both runs, finished, with scores at their last checkpoint
    registry = Registry(postgres_url)
    assert registry.dialect == "postgresql"
    members = registry.members("topology_micro")
    assert len(members) == 2 and all(m.run.status == "finished" for m in members)
    scores = registry.scores([m.run.id for m in members])
    for m in members:
        mine = [s for s in scores if s.run_id == m.run.id]
        assert mine and {s.step for s in mine} == {12}, m.name
        assert all(s.benchmark == "shapes" and 0.0 <= s.value <= 1.0 for s in mine)

    # the MLflow server (its own database on the same PostgreSQL) mirrors the study: a child per run
    exp = rest(mlflow_url, "/api/2.0/mlflow/experiments/get-by-name", experiment_name="topology_micro")
    found = rest(
        mlflow_url,
        "/api/2.0/mlflow/runs/search",
        {"experiment_ids": [exp["experiment"]["experiment_id"]], "max_results": 100},
    )["runs"]
    children = [r for r in found if any(t["key"] == "mlflow.parentRunId" for t in r["data"].get("tags", []))]
    assert len(children) == 2
    for child in children:
        metrics = {m["key"] for m in child["data"].get("metrics", [])}
        assert any(k.startswith("shapes/") for k in metrics), metrics
        params = {p["key"]: p["value"] for p in child["data"].get("params", [])}
        assert params.get("model.adapter.type") in {"mlp", "transformer"}

    # both runs were Ray tasks on the cluster's nodes: each records where it ran (host/IP/Ray node id)
    nodes = {m.run.node for m in registry.members("topology_micro")}
    assert all(n and len(n.split("/")) == 3 and len(n.split("/")[2]) >= 40 for n in nodes), nodes
