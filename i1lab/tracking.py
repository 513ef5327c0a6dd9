"""The MLflow mirror of the registry: an experiment per study, a parent run per study, a child per run.

The registry is the source of truth; this module copies its facts into MLflow so the MLflow UI can
compare runs (params = the flattened spec, metrics = training curves and ``<benchmark>/<metric>``
scores per step). ``sync_study`` is idempotent: it finds earlier mirrors by tag and only adds what is
new, so it can run after every run, or later with ``i1lab sync mlflow`` when MLflow was unreachable.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any

from i1lab import paths
from i1lab.registry import MemberRecord, Registry
from i1lab.registry.store import flatten

TAG_REGISTRY_ID = "i1lab.registry_id"
TAG_HASH = "i1lab.content_hash"
TAG_BASELINE = "i1lab.baseline"
TAG_PARENT = "i1lab.study_parent"
TAG_LINES = "i1lab.synced_metric_lines"
TAG_SCORES = "i1lab.synced_scores"
TAG_STATUS = "i1lab.status"
CURVE_KEYS = (
    "loss",
    "grad_norm",
    "param_norm",
    "update_norm",
    "lr",
    "step_time",
    "images_per_s",
    "data_wait",
)


def _client() -> Any:
    import mlflow
    from mlflow.tracking import MlflowClient

    mlflow.set_tracking_uri(paths.mlflow_uri())
    return MlflowClient(paths.mlflow_uri())


def _experiment(client: Any, study: str) -> str:
    exp = client.get_experiment_by_name(study)
    if exp is not None:
        return str(exp.experiment_id)
    location = None
    if not paths.mlflow_uri().startswith("http"):
        paths.mlflow_artifacts().mkdir(parents=True, exist_ok=True)
        location = (paths.mlflow_artifacts() / study).as_uri()
    return str(client.create_experiment(study, artifact_location=location))


def _find(client: Any, exp_id: str, filter_string: str) -> Any | None:
    runs = client.search_runs([exp_id], filter_string=filter_string, max_results=1)
    return runs[0] if runs else None


def _params(spec: dict[str, Any]) -> dict[str, str]:
    out = {}
    for key, value in flatten(spec).items():
        text = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
        out[key] = text[:6000]
    return out


def _metric_lines(workdir: str | None) -> list[dict[str, Any]]:
    if not workdir:
        return []
    path = Path(workdir) / "metrics.jsonl"
    if not path.is_file():
        return []
    lines = []
    for line in path.read_text().splitlines():
        try:
            lines.append(json.loads(line))
        except json.JSONDecodeError:
            break  # a line cut by a crash ends the usable log
    return lines


def _log_batch(client: Any, run_id: str, metrics: list[Any]) -> None:
    for i in range(0, len(metrics), 900):
        client.log_batch(run_id, metrics=metrics[i : i + 900])


def sync_member(client: Any, exp_id: str, parent_id: str, member: MemberRecord, registry: Registry) -> str:
    """Mirror one study member; returns its MLflow run id."""
    from mlflow.entities import Metric, Param, RunTag

    run = member.run
    found = _find(client, exp_id, f"tags.`{TAG_REGISTRY_ID}` = '{run.id}'")
    if found is None:
        tags = {
            "mlflow.parentRunId": parent_id,
            "mlflow.runName": member.name,
            TAG_REGISTRY_ID: str(run.id),
            TAG_HASH: run.hash,
            TAG_BASELINE: str(member.is_baseline).lower(),
            TAG_LINES: "0",
            TAG_SCORES: "",
        }
        created = client.create_run(exp_id, tags=tags, run_name=member.name)
        mlflow_id = str(created.info.run_id)
        params = [Param(k, v) for k, v in _params(run.spec).items()]
        for i in range(0, len(params), 90):
            client.log_batch(mlflow_id, params=params[i : i + 90])
        synced_lines, synced_scores = 0, ""
    else:
        mlflow_id = str(found.info.run_id)
        synced_lines = int(found.data.tags.get(TAG_LINES, "0"))
        synced_scores = found.data.tags.get(TAG_SCORES, "")
    now_ms = int(time.time() * 1000)
    lines = _metric_lines(run.workdir)
    metrics = [
        Metric(k, float(line[k]), now_ms, int(line["step"]))
        for line in lines[synced_lines:]
        for k in CURVE_KEYS
        if k in line
    ]
    digest = hashlib.sha256(
        json.dumps(sorted((s.step, s.benchmark, s.metric, s.judge, s.value) for s in member.scores)).encode()
    ).hexdigest()[:16]
    if member.scores and digest != synced_scores:
        metrics += [Metric(f"{s.benchmark}/{s.metric}", s.value, now_ms, s.step) for s in member.scores]
    _log_batch(client, mlflow_id, metrics)
    judges = sorted({f"{s.benchmark}={s.judge}" for s in member.scores})
    client.log_batch(
        mlflow_id,
        tags=[
            RunTag(TAG_LINES, str(len(lines))),
            RunTag(TAG_SCORES, digest if member.scores else ""),
            RunTag(TAG_STATUS, run.status),
            RunTag("i1lab.judges", ",".join(judges)),
        ],
    )
    terminal = {"finished": "FINISHED", "imported": "FINISHED", "failed": "FAILED", "cancelled": "KILLED"}
    if run.status in terminal:
        client.set_terminated(mlflow_id, status=terminal[run.status])
    if run.mlflow_run_id is None:
        registry.set_fields(run.id, mlflow_run_id=mlflow_id)
    return mlflow_id


def sync_study(registry: Registry, study: str) -> dict[str, str]:
    """Bring MLflow up to date with one study; returns member name -> MLflow run id."""
    client = _client()
    exp_id = _experiment(client, study)
    parent = _find(client, exp_id, f"tags.`{TAG_PARENT}` = 'true'")
    if parent is None:
        parent = client.create_run(exp_id, tags={TAG_PARENT: "true", "mlflow.runName": study}, run_name=study)
    parent_id = str(parent.info.run_id)
    return {m.name: sync_member(client, exp_id, parent_id, m, registry) for m in registry.members(study)}


def sync_all(registry: Registry) -> dict[str, int]:
    return {s.name: len(sync_study(registry, s.name)) for s in registry.studies()}
