"""Evaluation steps: a table of a run's evaluation steps by key, with a claim, so that each runs once.

Until now the steps a run had were named only by a tag ``[eval <keys>]`` at the end of the detail of its
``evaluated`` events; those keys are backfilled here as done steps (their checkpoint, benchmark and judge
were not recorded: left empty).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03
"""

from __future__ import annotations

import re

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

KEYS_RE = re.compile(r"\[eval ([0-9a-f ]+)\]")  # the tag ``evaluated`` events carried before 0008


def upgrade() -> None:
    steps = op.create_table(
        "evaluation_steps",
        sa.Column("key", sa.String(32), primary_key=True),
        sa.Column("run_id", sa.Integer, sa.ForeignKey("runs.id", ondelete="CASCADE"), nullable=False),
        sa.Column("step", sa.Integer),
        sa.Column("benchmark", sa.String(50)),
        sa.Column("judge", sa.String(100)),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("owner", sa.String(200)),
        sa.Column("claimed_at", sa.DateTime),
        sa.Column("expires_at", sa.DateTime),
        sa.Column("finished_at", sa.DateTime),
        sa.Column("reason", sa.Text),
    )
    assert steps is not None
    op.create_index("ix_evaluation_steps_run", "evaluation_steps", ["run_id", "status"])
    conn = op.get_bind()
    events = conn.execute(
        sa.text(
            "SELECT run_id, at, detail FROM run_events "
            "WHERE kind = 'evaluated' AND detail LIKE '%[eval %' ORDER BY id"
        ).columns(run_id=sa.Integer, at=sa.DateTime, detail=sa.Text)  # typed: SQLite returns text
    )
    done: dict[str, dict[str, object]] = {}
    for run_id, at, detail in events:
        found = KEYS_RE.search(detail or "")
        for key in found.group(1).split() if found else ():
            done.setdefault(key, {"key": key, "run_id": run_id, "status": "done", "finished_at": at})
    if done:
        conn.execute(steps.insert(), [done[k] for k in sorted(done)])


def downgrade() -> None:
    op.drop_index("ix_evaluation_steps_run", table_name="evaluation_steps")
    op.drop_table("evaluation_steps")
