"""Lineage, provenance timings and cost on runs; artifacts; score summaries; field keys; query indexes.

* ``runs`` gains ``resumed_from`` (the parent's content hash), ``stage`` (0 for a root, parent + 1) and
  ``resolution``; ``queued_at``, ``wall_seconds`` (summed over attempts), ``accelerator``, ``chips``,
  ``accelerator_hours`` (measured) and ``accelerator_hours_est`` (planned).
* ``artifacts`` (run, step, kind, uri): sample grids and other files of a run.
* ``score_summary``: the latest and the best score per (run, benchmark, metric, judge), so that a filter on
  scores is an index range scan.
* ``field_keys``: every flattened spec key, for unknown-field errors with a suggestion.
* Covering indexes for the query language (spec fields, scores at a step, membership names).

Existing rows are backfilled (lineage from the stored spec, summaries from the scores, keys from fields).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def run_columns() -> list[sa.Column[Any]]:
    return [
        sa.Column("resumed_from", sa.String(64)),
        sa.Column("stage", sa.Integer, nullable=False, server_default="0"),
        sa.Column("resolution", sa.Integer),
        sa.Column("queued_at", sa.DateTime),
        sa.Column("wall_seconds", sa.Float, nullable=False, server_default="0"),
        sa.Column("accelerator", sa.String(50)),
        sa.Column("chips", sa.Integer),
        sa.Column("accelerator_hours", sa.Float),
        sa.Column("accelerator_hours_est", sa.Float),
    ]


def upgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        for column in run_columns():
            batch.add_column(column)
    op.create_index("ix_runs_resumed_from", "runs", ["resumed_from"])

    op.create_table(
        "artifacts",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("run_id", sa.Integer, sa.ForeignKey("runs.id", ondelete="CASCADE"), nullable=False),
        sa.Column("step", sa.Integer, nullable=False),
        sa.Column("kind", sa.String(100), nullable=False),
        sa.Column("uri", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.UniqueConstraint("run_id", "step", "kind"),
    )
    op.create_table(
        "score_summary",
        sa.Column("run_id", sa.Integer, sa.ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("benchmark", sa.String(50), primary_key=True),
        sa.Column("metric", sa.String(100), primary_key=True),
        sa.Column("judge", sa.String(100), primary_key=True),
        sa.Column("latest_step", sa.Integer, nullable=False),
        sa.Column("latest_value", sa.Float, nullable=False),
        sa.Column("best_step", sa.Integer, nullable=False),
        sa.Column("best_value", sa.Float, nullable=False),
    )
    op.create_index(
        "ix_score_summary_latest", "score_summary", ["benchmark", "metric", "latest_value", "judge", "run_id"]
    )
    op.create_index(
        "ix_score_summary_best", "score_summary", ["benchmark", "metric", "best_value", "judge", "run_id"]
    )
    op.create_table("field_keys", sa.Column("key", sa.String(200), primary_key=True))

    op.drop_index("ix_run_fields_key_text", table_name="run_fields")
    op.drop_index("ix_run_fields_key_num", table_name="run_fields")
    op.create_index("ix_run_fields_text", "run_fields", ["key", "value_text", "run_id"])
    op.create_index("ix_run_fields_num", "run_fields", ["key", "value_num", "run_id"])
    op.drop_index("ix_scores_bench_metric", table_name="scores")
    op.create_index(
        "ix_scores_bench_metric_step_value", "scores", ["benchmark", "metric", "step", "value", "run_id"]
    )
    op.create_index("ix_study_runs_name", "study_runs", ["name"])
    _backfill()


def _backfill() -> None:
    conn = op.get_bind()
    meta = sa.MetaData()
    runs = sa.Table("runs", meta, autoload_with=conn)
    scores = sa.Table("scores", meta, autoload_with=conn)
    summary = sa.Table("score_summary", meta, autoload_with=conn)
    fields = sa.Table("run_fields", meta, autoload_with=conn)
    keys = sa.Table("field_keys", meta, autoload_with=conn)

    # lineage from the stored specs
    parent: dict[int, tuple[str | None, int | None]] = {}
    by_hash: dict[str, int] = {}
    for rid, digest, spec in conn.execute(sa.select(runs.c.id, runs.c.hash, runs.c.spec)):
        data = (spec or {}).get("data") or {}
        resolution = data.get("resolution")
        parent[rid] = (data.get("resume_from"), resolution if isinstance(resolution, int) else None)
        by_hash[digest] = rid

    def stage(rid: int, seen: frozenset[int] = frozenset()) -> int:
        ref = parent[rid][0]
        if ref is None or ref not in by_hash or rid in seen:
            return 0
        return stage(by_hash[ref], seen | {rid}) + 1

    for rid, (ref, resolution) in parent.items():
        if ref is not None or resolution is not None:
            conn.execute(
                sa.update(runs)
                .where(runs.c.id == rid)
                .values(resumed_from=ref, resolution=resolution, stage=stage(rid))
            )

    # summaries from the scores
    rows: dict[tuple[Any, ...], dict[str, Any]] = {}
    ordered = sa.select(
        scores.c.run_id, scores.c.benchmark, scores.c.metric, scores.c.judge, scores.c.step, scores.c.value
    ).order_by(scores.c.run_id, scores.c.benchmark, scores.c.metric, scores.c.judge, scores.c.step)
    for rid, bench, metric, judge, step, value in conn.execute(ordered):
        key = (rid, bench, metric, judge)
        row = rows.get(key)
        if row is None:
            rows[key] = {
                "run_id": rid,
                "benchmark": bench,
                "metric": metric,
                "judge": judge,
                "latest_step": step,
                "latest_value": value,
                "best_step": step,
                "best_value": value,
            }
            continue
        row["latest_step"], row["latest_value"] = step, value
        if value > row["best_value"]:
            row["best_step"], row["best_value"] = step, value
    if rows:
        conn.execute(sa.insert(summary), list(rows.values()))

    found = [{"key": k} for (k,) in conn.execute(sa.select(fields.c.key).distinct())]
    if found:
        conn.execute(sa.insert(keys), found)


def downgrade() -> None:
    op.drop_index("ix_study_runs_name", table_name="study_runs")
    op.drop_index("ix_scores_bench_metric_step_value", table_name="scores")
    op.create_index("ix_scores_bench_metric", "scores", ["benchmark", "metric", "step"])
    op.drop_index("ix_run_fields_text", table_name="run_fields")
    op.drop_index("ix_run_fields_num", table_name="run_fields")
    op.create_index("ix_run_fields_key_text", "run_fields", ["key", "value_text"])
    op.create_index("ix_run_fields_key_num", "run_fields", ["key", "value_num"])
    op.drop_table("field_keys")
    op.drop_table("score_summary")
    op.drop_table("artifacts")
    op.drop_index("ix_runs_resumed_from", table_name="runs")
    with op.batch_alter_table("runs") as batch:
        for column in reversed(run_columns()):
            batch.drop_column(column.name)
