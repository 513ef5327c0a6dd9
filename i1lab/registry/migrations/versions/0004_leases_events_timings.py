"""Scheduling state on runs: leases with fencing tokens, interruptions, placement, split timings; run events.

* ``runs`` gains the lease of the worker that owns it — ``lease_owner`` (who), ``lease_token`` (the fencing
  token: a counter bumped on every grant, so a worker whose lease was taken over can tell and stop),
  ``lease_expires_at`` and ``heartbeat_at``; ``interruptions`` (how often the run was cut off by a dead worker
  or node and rescheduled); ``node`` (where it runs or ran last); ``train_seconds`` and ``eval_seconds``
  (wall seconds split between training and checkpoint evaluation, summed over attempts) and
  ``steps_per_second`` (the latest measured training throughput, for ETAs).
* ``studies`` gains ``priority`` (higher first when studies compete) and ``max_concurrent`` (per-study cap).
* ``run_events`` (run, at, kind, node, detail): the run's scheduling history — queued, leased, started,
  interrupted, retried, finished, failed, cancelled — one row per event.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def run_columns() -> list[sa.Column[Any]]:
    return [
        sa.Column("lease_owner", sa.String(200)),
        sa.Column("lease_token", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("lease_expires_at", sa.DateTime),
        sa.Column("heartbeat_at", sa.DateTime),
        sa.Column("interruptions", sa.Integer, nullable=False, server_default="0"),
        sa.Column("node", sa.String(200)),
        sa.Column("train_seconds", sa.Float, nullable=False, server_default="0"),
        sa.Column("eval_seconds", sa.Float, nullable=False, server_default="0"),
        sa.Column("steps_per_second", sa.Float),
    ]


def study_columns() -> list[sa.Column[Any]]:
    return [
        sa.Column("priority", sa.Integer, nullable=False, server_default="0"),
        sa.Column("max_concurrent", sa.Integer),
    ]


def upgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        for column in run_columns():
            batch.add_column(column)
    with op.batch_alter_table("studies") as batch:
        for column in study_columns():
            batch.add_column(column)
    op.create_table(
        "run_events",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("run_id", sa.Integer, sa.ForeignKey("runs.id", ondelete="CASCADE"), nullable=False),
        sa.Column("at", sa.DateTime, nullable=False),
        sa.Column("kind", sa.String(30), nullable=False),
        sa.Column("node", sa.String(200)),
        sa.Column("detail", sa.Text),
    )
    op.create_index("ix_run_events_run", "run_events", ["run_id", "at"])


def downgrade() -> None:
    op.drop_index("ix_run_events_run", table_name="run_events")
    op.drop_table("run_events")
    with op.batch_alter_table("studies") as batch:
        for column in reversed(study_columns()):
            batch.drop_column(column.name)
    with op.batch_alter_table("runs") as batch:
        for column in reversed(run_columns()):
            batch.drop_column(column.name)
