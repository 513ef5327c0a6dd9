"""SQLAlchemy 2 models of the registry: studies, runs, their membership, checkpoints, scores, fields.

The schema is owned by Alembic (``migrations/``); these classes describe it for the ORM and must match
the latest migration (a test compares them).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


class Base(DeclarativeBase):
    pass


class StudyRow(Base):
    __tablename__ = "studies"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    file: Mapped[str | None] = mapped_column(Text)
    profile: Mapped[str | None] = mapped_column(String(100))
    description: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime)
    updated_at: Mapped[datetime] = mapped_column(DateTime)
    # scheduling policy between studies: higher priority first; at most max_concurrent runs at once
    priority: Mapped[int] = mapped_column(Integer, default=0)
    max_concurrent: Mapped[int | None] = mapped_column(Integer)
    members: Mapped[list[StudyRunRow]] = relationship(back_populates="study", cascade="all, delete-orphan")


class RunRow(Base):
    __tablename__ = "runs"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    hash: Mapped[str] = mapped_column(String(64), unique=True)
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(20), index=True)
    reason: Mapped[str | None] = mapped_column(Text)
    step: Mapped[int] = mapped_column(Integer, default=0)
    total_steps: Mapped[int] = mapped_column(Integer)
    params: Mapped[int | None] = mapped_column(BigInteger)
    workdir: Mapped[str | None] = mapped_column(Text, index=True)
    imported: Mapped[bool] = mapped_column(Boolean, default=False)
    git_commit: Mapped[str | None] = mapped_column(String(64))
    git_dirty: Mapped[bool | None] = mapped_column(Boolean)
    versions: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    mlflow_run_id: Mapped[str | None] = mapped_column(String(64))
    # lineage: the run whose checkpoint this resolution stage starts from, and the stage's place
    resumed_from: Mapped[str | None] = mapped_column(String(64), index=True)
    stage: Mapped[int] = mapped_column(Integer, default=0)
    resolution: Mapped[int | None] = mapped_column(Integer)
    # timings and cost: wall seconds summed over attempts; accelerator-hours = wall hours x chips
    queued_at: Mapped[datetime | None] = mapped_column(DateTime)
    wall_seconds: Mapped[float] = mapped_column(Float, default=0.0)
    accelerator: Mapped[str | None] = mapped_column(String(50))
    chips: Mapped[int | None] = mapped_column(Integer)
    accelerator_hours: Mapped[float | None] = mapped_column(Float)
    accelerator_hours_est: Mapped[float | None] = mapped_column(Float)
    # wall seconds split between training and checkpoint evaluation (summed over attempts); throughput
    train_seconds: Mapped[float] = mapped_column(Float, default=0.0)
    eval_seconds: Mapped[float] = mapped_column(Float, default=0.0)
    steps_per_second: Mapped[float | None] = mapped_column(Float)
    # exactly-once: the lease of the worker that owns the run; lease_token is the fencing token
    lease_owner: Mapped[str | None] = mapped_column(String(200))
    lease_token: Mapped[int] = mapped_column(BigInteger, default=0)
    lease_expires_at: Mapped[datetime | None] = mapped_column(DateTime)
    heartbeat_at: Mapped[datetime | None] = mapped_column(DateTime)
    interruptions: Mapped[int] = mapped_column(Integer, default=0)
    node: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(DateTime)
    started_at: Mapped[datetime | None] = mapped_column(DateTime)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime)
    updated_at: Mapped[datetime] = mapped_column(DateTime)
    members: Mapped[list[StudyRunRow]] = relationship(back_populates="run")
    checkpoints: Mapped[list[CheckpointRow]] = relationship(
        back_populates="run", cascade="all, delete-orphan"
    )
    scores: Mapped[list[ScoreRow]] = relationship(back_populates="run", cascade="all, delete-orphan")


class StudyRunRow(Base):
    """Membership of a run in a study, under the study's own name for it. A run may be in many studies."""

    __tablename__ = "study_runs"
    __table_args__ = (Index("ix_study_runs_name", "name"),)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id", ondelete="CASCADE"), primary_key=True)
    name: Mapped[str] = mapped_column(String(300), primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    label: Mapped[str | None] = mapped_column(Text)
    is_baseline: Mapped[bool] = mapped_column(Boolean, default=False)
    baseline: Mapped[str | None] = mapped_column(String(300))
    varied: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    position: Mapped[int] = mapped_column(Integer, default=0)
    study: Mapped[StudyRow] = relationship(back_populates="members")
    run: Mapped[RunRow] = relationship(back_populates="members")


class CheckpointRow(Base):
    __tablename__ = "checkpoints"
    __table_args__ = (UniqueConstraint("run_id", "step"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    step: Mapped[int] = mapped_column(Integer)
    path: Mapped[str | None] = mapped_column(Text)
    permanent: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(DateTime)
    run: Mapped[RunRow] = relationship(back_populates="checkpoints")


class ScoreRow(Base):
    """One number: a metric of a benchmark for a run's checkpoint, as given by one judge."""

    __tablename__ = "scores"
    __table_args__ = (
        UniqueConstraint("run_id", "step", "benchmark", "metric", "judge"),
        Index("ix_scores_bench_metric_step_value", "benchmark", "metric", "step", "value", "run_id"),
        Index("ix_scores_run_step_cover", "run_id", "step", "benchmark", "metric", "judge", "value"),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    step: Mapped[int] = mapped_column(Integer)
    benchmark: Mapped[str] = mapped_column(String(50))
    metric: Mapped[str] = mapped_column(String(100))
    judge: Mapped[str] = mapped_column(String(100))
    value: Mapped[float] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(DateTime)
    run: Mapped[RunRow] = relationship(back_populates="scores")


class RunFieldRow(Base):
    """The flattened resolved spec of a run, one row per leaf, indexed for filtering."""

    __tablename__ = "run_fields"
    __table_args__ = (
        Index("ix_run_fields_text", "key", "value_text", "run_id"),
        Index("ix_run_fields_num", "key", "value_num", "run_id"),
        {"sqlite_with_rowid": False},  # clustered by (run_id, key): one lookup per run and key
    )
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    value_text: Mapped[str | None] = mapped_column(Text)
    value_num: Mapped[float | None] = mapped_column(Float)


class ScoreSummaryRow(Base):
    """Per (run, benchmark, metric, judge): the score at the latest step and the best score over steps.

    Maintained by ``Registry.add_scores`` in the same transaction as the scores, so filters on a run's
    latest or best score are an index range scan instead of a max-per-group over every score."""

    __tablename__ = "score_summary"
    __table_args__ = (
        Index("ix_score_summary_latest", "benchmark", "metric", "latest_value", "judge", "run_id"),
        Index("ix_score_summary_best", "benchmark", "metric", "best_value", "judge", "run_id"),
        {"sqlite_with_rowid": False},  # clustered by its key: one lookup per run
    )
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    benchmark: Mapped[str] = mapped_column(String(50), primary_key=True)
    metric: Mapped[str] = mapped_column(String(100), primary_key=True)
    judge: Mapped[str] = mapped_column(String(100), primary_key=True)
    latest_step: Mapped[int] = mapped_column(Integer)
    latest_value: Mapped[float] = mapped_column(Float)
    best_step: Mapped[int] = mapped_column(Integer)
    best_value: Mapped[float] = mapped_column(Float)


class FieldKeyRow(Base):
    """Every flattened spec key ever recorded: lets ``i1lab query`` reject unknown fields with a hint."""

    __tablename__ = "field_keys"
    __table_args__ = ({"sqlite_with_rowid": False},)
    key: Mapped[str] = mapped_column(String(200), primary_key=True)


class ScoreVectorRow(Base):
    """Per checkpoint (run, step): all its scores packed into one value (see ``i1lab.registry.vectors``).

    Derived from the scores and recomputed with them in the same transaction, so a table of thousands of
    runs at a step reads one value per run instead of one index entry per (run, metric)."""

    __tablename__ = "score_vectors"
    __table_args__ = ({"sqlite_with_rowid": False},)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    step: Mapped[int] = mapped_column(Integer, primary_key=True)
    entries: Mapped[bytes] = mapped_column(LargeBinary)


class PromptScoreRow(Base):
    """Per (run, step, benchmark, judge): the headline ``metric``'s per-prompt values and weights, packed
    (see ``i1lab.registry.prompts``); written with the scores, read by paired confidence intervals."""

    __tablename__ = "prompt_scores"
    __table_args__ = ({"sqlite_with_rowid": False},)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    step: Mapped[int] = mapped_column(Integer, primary_key=True)
    benchmark: Mapped[str] = mapped_column(String(50), primary_key=True)
    judge: Mapped[str] = mapped_column(String(100), primary_key=True)
    metric: Mapped[str] = mapped_column(String(100))
    entries: Mapped[bytes] = mapped_column(LargeBinary)


class ScoreKeyRow(Base):
    """Every (benchmark, metric, judge) ever scored: which judges a metric has, known without a scan."""

    __tablename__ = "score_keys"
    __table_args__ = ({"sqlite_with_rowid": False},)
    benchmark: Mapped[str] = mapped_column(String(50), primary_key=True)
    metric: Mapped[str] = mapped_column(String(100), primary_key=True)
    judge: Mapped[str] = mapped_column(String(100), primary_key=True)


class ArtifactRow(Base):
    """A file a run produced at a step (a sample grid, a checkpoint, a log), by kind and location."""

    __tablename__ = "artifacts"
    __table_args__ = (UniqueConstraint("run_id", "step", "kind"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    step: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(100))
    uri: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime)


class RunEventRow(Base):
    """A scheduling event of a run: queued, leased, started, interrupted, retried, finished, failed..."""

    __tablename__ = "run_events"
    __table_args__ = (Index("ix_run_events_run", "run_id", "at"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    at: Mapped[datetime] = mapped_column(DateTime)
    kind: Mapped[str] = mapped_column(String(30))
    node: Mapped[str | None] = mapped_column(String(200))
    detail: Mapped[str | None] = mapped_column(Text)
    #: of an ``interrupted`` event: what interrupted the attempt (``sigterm``, ``maintenance``,
    #: ``preempted``, ``lost-device``, ``lost-host``, ``dead-worker``, ...); None for other events
    cause: Mapped[str | None] = mapped_column(String(30), nullable=True)


class EvaluationStepRow(Base):
    """An evaluation step of a run (one checkpoint on one benchmark by one judge), by its key: who
    claimed it and until when, and whether it is done. A step is evaluated by the owner of its claim
    only, and recorded done in the transaction that records its scores (see
    ``i1lab.registry.evaluations``)."""

    __tablename__ = "evaluation_steps"
    __table_args__ = (Index("ix_evaluation_steps_run", "run_id", "status"),)
    key: Mapped[str] = mapped_column(String(32), primary_key=True)  # the planner's EvalStep.key
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    # None only for steps recorded before this table (named by key alone in an ``evaluated`` event)
    step: Mapped[int | None] = mapped_column(Integer)
    benchmark: Mapped[str | None] = mapped_column(String(50))
    judge: Mapped[str | None] = mapped_column(String(100))
    status: Mapped[str] = mapped_column(String(20))  # claimed, done or failed
    owner: Mapped[str | None] = mapped_column(String(200))
    claimed_at: Mapped[datetime | None] = mapped_column(DateTime)
    expires_at: Mapped[datetime | None] = mapped_column(DateTime)  # a claim past it may be taken over
    finished_at: Mapped[datetime | None] = mapped_column(DateTime)
    reason: Mapped[str | None] = mapped_column(Text)  # failed: why
    #: done: how its scores were made (canonical JSON: judge, environment and weights fingerprints,
    #: prompt set, sampling settings, seed; ``i1lab.evaluation.judging.BenchmarkScore.provenance``)
    provenance: Mapped[str | None] = mapped_column(Text)
