"""The MLflow mirror of the registry: an experiment per study, a parent run per study, a child per run.

The registry is the source of truth; this module copies its facts into MLflow so the MLflow UI can
compare runs:

* params = the flattened spec (``model.adapter.type`` ...; non-strings as JSON);
* metrics = training curves from ``metrics.jsonl`` and every score as ``<benchmark>/<metric>`` at its
  step (``<benchmark>/<metric>:<judge>`` when a run has that metric from several judges), time-stamped
  with the moment the registry recorded it, so a re-scored checkpoint shows its newest value;
* tags = ``i1lab.registry_id`` and ``i1lab.content_hash`` (the registry run), ``i1lab.baseline``,
  ``i1lab.imported``, ``i1lab.registry.status``, ``i1lab.study`` / ``i1lab.name``; the registry stores the
  MLflow run id in ``runs.mlflow_run_id``;
* artifacts = the sample grids (``eval/<hash>/<benchmark>/step_N/grid.png``, recorded in the registry's
  ``artifacts`` table) under ``grids/<benchmark>/step_N.png``.

``sync_study`` is idempotent: it finds earlier mirrors by tag and only adds what is new (metric and
artifact uploads that repeat are no-ops), so it can run after every run, or later with
``i1lab sync mlflow`` when MLflow was unreachable.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import tempfile
import time
from collections.abc import Iterable
from datetime import UTC
from pathlib import Path
from typing import Any

from i1lab import paths
from i1lab.registry import MemberRecord, Registry, ScoreRecord
from i1lab.registry.fields import flatten
from i1lab.registry.records import ArtifactRecord, RunRecord

TAG_REGISTRY_ID = "i1lab.registry_id"
TAG_HASH = "i1lab.content_hash"
TAG_BASELINE = "i1lab.baseline"
TAG_PARENT = "i1lab.study_parent"
TAG_LINES = "i1lab.synced_metric_lines"
TAG_SCORES = "i1lab.synced_scores"
TAG_STATUS = "i1lab.registry.status"
TAG_IMPORTED = "i1lab.imported"
TAG_ARTIFACTS = "i1lab.synced_artifacts"
GRID = re.compile(r"step_(\d+)$")
METRIC_UNSAFE = re.compile(r"[^\w\-. :/]")
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


def score_key(score: ScoreRecord, judged_by_several: bool) -> str:
    """The MLflow metric name of a score: ``benchmark/metric``, or ``benchmark/metric:judge`` when the
    run has that metric from several judges (MLflow names allow letters, digits and ``_-. :/`` only;
    anything else becomes ``_``)."""
    key = f"{score.benchmark}/{score.metric}" + (f":{score.judge}" if judged_by_several else "")
    return METRIC_UNSAFE.sub("_", key)


def score_metrics(scores: Iterable[ScoreRecord]) -> dict[tuple[str, int], ScoreRecord]:
    """(metric name, step) -> score, for every score of one run."""
    scores = list(scores)
    judges: dict[tuple[str, str], set[str]] = {}
    for sc in scores:
        judges.setdefault((sc.benchmark, sc.metric), set()).add(sc.judge)
    return {(score_key(sc, len(judges[(sc.benchmark, sc.metric)]) > 1), sc.step): sc for sc in scores}


def _millis(score: ScoreRecord) -> int:
    if score.created_at is None:
        return 0
    return int(score.created_at.replace(tzinfo=UTC).timestamp() * 1000)


def discover_artifacts(registry: Registry, run: RunRecord) -> list[ArtifactRecord]:
    """Record the sample grids found in a run's folder (``eval/<hash12>/<benchmark>/step_N/grid.png``)
    as artifacts of kind ``grid/<benchmark>``; returns every artifact the registry has for the run."""
    found = []
    if run.workdir:
        root = Path(run.workdir) / "eval" / run.hash[:12]
        for grid in sorted(root.glob("*/step_*/grid.png")) if root.is_dir() else []:
            m = GRID.match(grid.parent.name)
            if m:
                found.append(
                    ArtifactRecord(
                        run_id=run.id,
                        step=int(m.group(1)),
                        kind=f"grid/{grid.parent.parent.name}",
                        uri=str(grid),
                    )
                )
    registry.add_artifacts(found)
    return registry.artifacts([run.id])


def _upload(client: Any, mlflow_id: str, artifacts: list[ArtifactRecord]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        for a in artifacts:
            src = Path(a.uri.removeprefix("file://"))
            if not src.is_file():
                continue
            folder = Path(tmp) / a.kind / str(a.step)
            folder.mkdir(parents=True, exist_ok=True)
            dst = folder / f"step_{a.step:07d}{src.suffix}"
            shutil.copyfile(src, dst)
            client.log_artifact(mlflow_id, str(dst), artifact_path=f"{a.kind.replace('grid/', 'grids/', 1)}")


def _exists(client: Any, mlflow_id: str) -> bool:
    try:
        client.get_run(mlflow_id)
    except Exception:
        return False
    return True


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
            TAG_IMPORTED: str(run.imported).lower(),
            "i1lab.study": member.study,
            "i1lab.name": member.name,
            TAG_LINES: "0",
            TAG_SCORES: "",
            TAG_ARTIFACTS: "",
        }
        created = client.create_run(exp_id, tags=tags, run_name=member.name)
        mlflow_id = str(created.info.run_id)
        params = [Param(k, v) for k, v in _params(run.spec).items()]
        for i in range(0, len(params), 90):
            client.log_batch(mlflow_id, params=params[i : i + 90])
        synced_lines, synced_scores, synced_artifacts = 0, "", ""
    else:
        mlflow_id = str(found.info.run_id)
        synced_lines = int(found.data.tags.get(TAG_LINES, "0"))
        synced_scores = found.data.tags.get(TAG_SCORES, "")
        synced_artifacts = found.data.tags.get(TAG_ARTIFACTS, "")
    now_ms = int(time.time() * 1000)
    lines = _metric_lines(run.workdir)
    metrics = [
        Metric(k, float(line[k]), now_ms, int(line["step"]))
        for line in lines[synced_lines:]
        for k in CURVE_KEYS
        if k in line
    ]
    by_key = score_metrics(member.scores)
    digest = hashlib.sha256(
        json.dumps(sorted((k, st, sc.value, _millis(sc)) for (k, st), sc in by_key.items())).encode()
    ).hexdigest()[:16]
    if member.scores and digest != synced_scores:
        # the same (name, time, step, value) logged again is ignored by MLflow: re-sending is harmless
        metrics += [Metric(k, sc.value, _millis(sc), st) for (k, st), sc in sorted(by_key.items())]
    _log_batch(client, mlflow_id, metrics)
    artifacts = discover_artifacts(registry, run)
    art_digest = hashlib.sha256(
        json.dumps([(a.step, a.kind, a.uri) for a in artifacts]).encode()
    ).hexdigest()[:16]
    if artifacts and art_digest != synced_artifacts:
        _upload(client, mlflow_id, artifacts)
    judges = sorted({f"{s.benchmark}={s.judge}" for s in member.scores})
    client.log_batch(
        mlflow_id,
        tags=[
            RunTag(TAG_LINES, str(len(lines))),
            RunTag(TAG_SCORES, digest if member.scores else ""),
            RunTag(TAG_ARTIFACTS, art_digest if artifacts else ""),
            RunTag(TAG_STATUS, run.status),
            RunTag("i1lab.judges", ",".join(judges)),
        ],
    )
    terminal = {"finished": "FINISHED", "imported": "FINISHED", "failed": "FAILED", "cancelled": "KILLED"}
    if run.status in terminal:
        client.set_terminated(mlflow_id, status=terminal[run.status])
    if run.mlflow_run_id != mlflow_id and (
        run.mlflow_run_id is None or not _exists(client, run.mlflow_run_id)
    ):
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
