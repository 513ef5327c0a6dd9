"""Score vectors: one packed value per checkpoint (run, step) holding all its scores.

A table of thousands of runs with several metric columns at a step then reads one value per run (see
``i1lab.registry.vectors``). The vectors are derived from the scores, backfilled here in run order.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from i1lab.registry.vectors import key_id, pack

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

BATCH = 5000


def upgrade() -> None:
    vectors = op.create_table(
        "score_vectors",
        sa.Column("run_id", sa.Integer, sa.ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("step", sa.Integer, primary_key=True),
        sa.Column("entries", sa.LargeBinary, nullable=False),
        sqlite_with_rowid=False,
    )
    assert vectors is not None
    conn = op.get_bind()
    scores = conn.execute(
        sa.text(
            "SELECT run_id, step, benchmark, metric, judge, value FROM scores ORDER BY run_id, step"
        ).execution_options(yield_per=BATCH)
    )
    pending: list[dict[str, object]] = []
    current: tuple[int, int] | None = None
    entries: list[tuple[int, float]] = []
    for run_id, step, benchmark, metric, judge, value in scores:
        if (run_id, step) != current:
            if current is not None:
                pending.append({"run_id": current[0], "step": current[1], "entries": pack(entries)})
            current, entries = (run_id, step), []
            if len(pending) >= BATCH:
                conn.execute(vectors.insert(), pending)
                pending = []
        entries.append((key_id(benchmark, metric, judge), float(value)))
    if current is not None:
        pending.append({"run_id": current[0], "step": current[1], "entries": pack(entries)})
    if pending:
        conn.execute(vectors.insert(), pending)


def downgrade() -> None:
    op.drop_table("score_vectors")
