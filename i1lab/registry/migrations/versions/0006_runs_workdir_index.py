"""An index on runs.workdir: taking a run's lease locks every run that shares its work folder.

Without it each lease grant scans the whole runs table (100,000 rows at campaign scale).

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-26
"""

from __future__ import annotations

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_runs_workdir", "runs", ["workdir"])


def downgrade() -> None:
    op.drop_index("ix_runs_workdir", table_name="runs")
