"""Per-prompt values: one packed value per (run, step, benchmark, judge) holding the headline's values and
weights prompt by prompt (see ``i1lab.registry.prompts``), for paired confidence intervals. Nothing to
backfill: scores recorded before carry none.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-10
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "prompt_scores",
        sa.Column("run_id", sa.Integer, sa.ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("step", sa.Integer, primary_key=True),
        sa.Column("benchmark", sa.String(50), primary_key=True),
        sa.Column("judge", sa.String(100), primary_key=True),
        sa.Column("metric", sa.String(100), nullable=False),
        sa.Column("entries", sa.LargeBinary, nullable=False),
        sqlite_with_rowid=False,
    )


def downgrade() -> None:
    op.drop_table("prompt_scores")
