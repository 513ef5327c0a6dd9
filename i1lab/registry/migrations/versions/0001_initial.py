"""Initial registry schema: studies, runs, study membership, checkpoints, scores, flattened fields.

Revision ID: 0001
Revises:
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "studies",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(200), nullable=False, unique=True),
        sa.Column("file", sa.Text),
        sa.Column("profile", sa.String(100)),
        sa.Column("description", sa.Text),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("updated_at", sa.DateTime, nullable=False),
    )
    op.create_table(
        "runs",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("hash", sa.String(64), nullable=False, unique=True),
        sa.Column("spec", sa.JSON, nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("reason", sa.Text),
        sa.Column("step", sa.Integer, nullable=False),
        sa.Column("total_steps", sa.Integer, nullable=False),
        sa.Column("params", sa.BigInteger),
        sa.Column("workdir", sa.Text),
        sa.Column("imported", sa.Boolean, nullable=False),
        sa.Column("git_commit", sa.String(64)),
        sa.Column("git_dirty", sa.Boolean),
        sa.Column("versions", sa.JSON),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("mlflow_run_id", sa.String(64)),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("started_at", sa.DateTime),
        sa.Column("finished_at", sa.DateTime),
        sa.Column("updated_at", sa.DateTime, nullable=False),
    )
    op.create_index("ix_runs_status", "runs", ["status"])
    op.create_table(
        "study_runs",
        sa.Column("study_id", sa.Integer, sa.ForeignKey("studies.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("name", sa.String(300), primary_key=True),
        sa.Column("run_id", sa.Integer, sa.ForeignKey("runs.id", ondelete="CASCADE"), nullable=False),
        sa.Column("label", sa.Text),
        sa.Column("is_baseline", sa.Boolean, nullable=False),
        sa.Column("baseline", sa.String(300)),
        sa.Column("varied", sa.JSON),
        sa.Column("position", sa.Integer, nullable=False),
    )
    op.create_index("ix_study_runs_run_id", "study_runs", ["run_id"])
    op.create_table(
        "checkpoints",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("run_id", sa.Integer, sa.ForeignKey("runs.id", ondelete="CASCADE"), nullable=False),
        sa.Column("step", sa.Integer, nullable=False),
        sa.Column("path", sa.Text),
        sa.Column("permanent", sa.Boolean, nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.UniqueConstraint("run_id", "step"),
    )
    op.create_table(
        "scores",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("run_id", sa.Integer, sa.ForeignKey("runs.id", ondelete="CASCADE"), nullable=False),
        sa.Column("step", sa.Integer, nullable=False),
        sa.Column("benchmark", sa.String(50), nullable=False),
        sa.Column("metric", sa.String(100), nullable=False),
        sa.Column("judge", sa.String(100), nullable=False),
        sa.Column("value", sa.Float, nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.UniqueConstraint("run_id", "step", "benchmark", "metric", "judge"),
    )
    op.create_index("ix_scores_bench_metric", "scores", ["benchmark", "metric", "step"])
    op.create_table(
        "run_fields",
        sa.Column("run_id", sa.Integer, sa.ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("key", sa.String(200), primary_key=True),
        sa.Column("value_text", sa.Text),
        sa.Column("value_num", sa.Float),
    )
    op.create_index("ix_run_fields_key_text", "run_fields", ["key", "value_text"])
    op.create_index("ix_run_fields_key_num", "run_fields", ["key", "value_num"])


def downgrade() -> None:
    for table in ("run_fields", "scores", "checkpoints", "study_runs", "runs", "studies"):
        op.drop_table(table)
