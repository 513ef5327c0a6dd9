"""The registry's records: what callers read and write, as Pydantic models (never ORM objects, so no
session leaks across process boundaries)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

RunStatus = Literal["queued", "running", "finished", "failed", "cancelled", "imported"]
STATUSES: tuple[str, ...] = ("queued", "running", "finished", "failed", "cancelled", "imported")
ACTIVE = ("queued", "running")
TERMINAL = ("finished", "failed", "cancelled")


def now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


class RunRecord(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    hash: str
    spec: dict[str, Any]
    status: str
    reason: str | None
    step: int
    total_steps: int
    params: int | None
    workdir: str | None
    imported: bool
    attempts: int
    mlflow_run_id: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    updated_at: datetime
    resumed_from: str | None = None
    stage: int = 0
    resolution: int | None = None
    git_commit: str | None = None
    git_dirty: bool | None = None
    versions: dict[str, Any] | None = None
    queued_at: datetime | None = None
    wall_seconds: float = 0.0
    accelerator: str | None = None
    chips: int | None = None
    accelerator_hours: float | None = None
    accelerator_hours_est: float | None = None
    # scheduling: the lease of the worker that owns the run (lease_token is its fencing token), where it
    # runs, how often it was interrupted, and its training / evaluation time and throughput
    lease_owner: str | None = None
    lease_token: int = 0
    lease_expires_at: datetime | None = None
    heartbeat_at: datetime | None = None
    interruptions: int = 0
    node: str | None = None
    train_seconds: float = 0.0
    eval_seconds: float = 0.0
    steps_per_second: float | None = None


class ScoreRecord(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    run_id: int
    step: int
    benchmark: str
    metric: str
    judge: str
    value: float
    created_at: datetime | None = None  # when recorded (set by the registry; ignored when adding)


class PromptScoreRecord(BaseModel):
    """One checkpoint's headline ``metric`` on one benchmark by one judge, prompt by prompt: ``values``
    are ``(prompt id, value, weight)`` with ``metric == sum(w * v) / sum(w)`` (see
    ``i1lab.registry.prompts``)."""

    run_id: int
    step: int
    benchmark: str
    judge: str
    metric: str
    values: list[tuple[int, float, float]]


class ArtifactRecord(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    run_id: int
    step: int
    kind: str
    uri: str


class MemberRecord(BaseModel):
    """A run as a member of a study, with its scores."""

    study: str
    name: str
    label: str | None
    is_baseline: bool
    baseline: str | None
    varied: dict[str, Any]
    run: RunRecord
    scores: list[ScoreRecord]


class StudyRecord(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    name: str
    file: str | None
    profile: str | None
    description: str | None
    created_at: datetime
    updated_at: datetime
    priority: int = 0
    max_concurrent: int | None = None


class RunEventRecord(BaseModel):
    """One scheduling event of a run (``run_events``)."""

    model_config = ConfigDict(from_attributes=True)
    id: int
    run_id: int
    at: datetime
    kind: str
    node: str | None
    detail: str | None
    cause: str | None = None  # of an ``interrupted`` event: what interrupted the attempt


class PlannedMember(BaseModel):
    """What ``record_plan`` needs of each planned run (planning converts its planned runs to these)."""

    name: str
    label: str
    hash: str
    is_baseline: bool
    baseline: str
    varied: dict[str, Any]
    spec: dict[str, Any]
    total_steps: int
    params: int | None = None
    workdir: str | None = None
    accelerator_hours_est: float | None = None


class ExistingRun(BaseModel):
    """A run already in the registry, as planning sees it (:meth:`Registry.existing_runs`)."""

    id: int
    hash: str
    status: str
    step: int = 0
    names: list[str] = []  # study/name of the run in every study that has it


class EvaluationRef(BaseModel):
    """An evaluation step as the registry knows it: its key (the planner's ``EvalStep.key``), its run,
    checkpoint step, benchmark and judge (as configured)."""

    key: str
    run_id: int
    step: int
    benchmark: str
    judge: str
    provenance: str | None = None  # how its scores were made (canonical JSON), set when recorded done


class EvaluationRecord(BaseModel):
    """One row of ``evaluation_steps``: an evaluation step, its claim and its outcome."""

    model_config = ConfigDict(from_attributes=True)
    key: str
    run_id: int
    step: int | None  # None: recorded before the table, by key alone
    benchmark: str | None
    judge: str | None
    status: Literal["claimed", "done", "failed"]
    owner: str | None
    claimed_at: datetime | None
    expires_at: datetime | None
    finished_at: datetime | None
    reason: str | None = None
    provenance: str | None = None
