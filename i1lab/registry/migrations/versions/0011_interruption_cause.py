"""Interruption causes: an ``interrupted`` event says what interrupted the attempt (``sigterm``,
``maintenance``, ``preempted``, ``lost-device``, ``lost-host``, ``dead-worker``, ...). Events recorded
before carry none.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("run_events") as batch:
        batch.add_column(sa.Column("cause", sa.String(30), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("run_events") as batch:
        batch.drop_column("cause")
