"""SQLite: cluster the filtering tables by their keys (WITHOUT ROWID).

``run_fields`` (by run, key), ``score_summary`` (by run, benchmark, metric, judge) and ``field_keys`` are
rebuilt as WITHOUT ROWID tables, so that checking one field or one score of one run — what the query
planner does for every candidate run of a filter — is a single b-tree lookup, and their secondary
indexes carry the key columns for free. Rows and indexes are copied as they are. PostgreSQL: nothing
to do (its tables are heaps; the indexes of 0002 serve the same lookups).

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def _rebuild(name: str, columns: list[sa.Column[Any]], indexes: dict[str, list[str]], rowid: bool) -> None:
    """Copy table ``name`` into a new one with the same columns (WITHOUT ROWID unless ``rowid``)."""
    conn = op.get_bind()
    op.create_table(f"{name}_rebuilt", *columns, sqlite_with_rowid=rowid)
    meta = sa.MetaData()
    old = sa.Table(name, meta, autoload_with=conn)
    new = sa.Table(f"{name}_rebuilt", meta, autoload_with=conn)
    cols = [c.name for c in new.columns]
    conn.execute(sa.insert(new).from_select(cols, sa.select(*(old.c[c] for c in cols))))
    op.drop_table(name)  # its indexes go with it; nothing references these tables
    op.rename_table(f"{name}_rebuilt", name)
    for index, on in indexes.items():
        op.create_index(index, name, on)


def _tables() -> list[tuple[str, list[sa.Column[Any]], dict[str, list[str]]]]:
    runs_fk = sa.ForeignKey("runs.id", ondelete="CASCADE")
    return [
        (
            "run_fields",
            [
                sa.Column("run_id", sa.Integer, runs_fk, primary_key=True),
                sa.Column("key", sa.String(200), primary_key=True),
                sa.Column("value_text", sa.Text),
                sa.Column("value_num", sa.Float),
            ],
            {
                "ix_run_fields_text": ["key", "value_text", "run_id"],
                "ix_run_fields_num": ["key", "value_num", "run_id"],
            },
        ),
        (
            "score_summary",
            [
                sa.Column(
                    "run_id", sa.Integer, sa.ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True
                ),
                sa.Column("benchmark", sa.String(50), primary_key=True),
                sa.Column("metric", sa.String(100), primary_key=True),
                sa.Column("judge", sa.String(100), primary_key=True),
                sa.Column("latest_step", sa.Integer, nullable=False),
                sa.Column("latest_value", sa.Float, nullable=False),
                sa.Column("best_step", sa.Integer, nullable=False),
                sa.Column("best_value", sa.Float, nullable=False),
            ],
            {
                "ix_score_summary_latest": ["benchmark", "metric", "latest_value", "judge", "run_id"],
                "ix_score_summary_best": ["benchmark", "metric", "best_value", "judge", "run_id"],
            },
        ),
        ("field_keys", [sa.Column("key", sa.String(200), primary_key=True)], {}),
    ]


def upgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    for name, columns, indexes in _tables():
        _rebuild(name, columns, indexes, rowid=False)


def downgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    for name, columns, indexes in _tables():
        _rebuild(name, columns, indexes, rowid=True)
