"""Scores read by run in one index seek, and the catalogue of scored (benchmark, metric, judge) keys.

* ``ix_scores_run_step_cover`` on scores (run, step, benchmark, metric, judge, value): a run's scores at a
  step lie together with their values in the index, so a table of many runs x several metrics at a step
  reads one index range per run and never the table itself (the unique key of 0001 stays: it is what
  upserts conflict on).
* ``score_keys`` (benchmark, metric, judge): every key that has ever been scored, maintained with the
  scores. A query knows from it which judges scored a metric and builds its result columns up front.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

COVER = ["run_id", "step", "benchmark", "metric", "judge", "value"]


def upgrade() -> None:
    op.create_index("ix_scores_run_step_cover", "scores", COVER)
    op.create_table(
        "score_keys",
        sa.Column("benchmark", sa.String(50), primary_key=True),
        sa.Column("metric", sa.String(100), primary_key=True),
        sa.Column("judge", sa.String(100), primary_key=True),
        sqlite_with_rowid=False,
    )
    op.execute(
        "INSERT INTO score_keys (benchmark, metric, judge) "
        "SELECT DISTINCT benchmark, metric, judge FROM score_summary"
    )


def downgrade() -> None:
    op.drop_table("score_keys")
    op.drop_index("ix_scores_run_step_cover", table_name="scores")
