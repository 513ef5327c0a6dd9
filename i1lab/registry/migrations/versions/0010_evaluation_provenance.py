"""Evaluation provenance: each evaluation step recorded done keeps how its scores were made (the judge,
its environment's and weights' fingerprints, the prompt set, sampling settings and seed), as canonical
JSON. Steps recorded before carry none.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("evaluation_steps") as batch:
        batch.add_column(sa.Column("provenance", sa.Text, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("evaluation_steps") as batch:
        batch.drop_column("provenance")
