"""Scores: recording a checkpoint's scores and keeping their summaries (latest / best per key) and
packed vectors current, in the same transaction; and their per-prompt values (``prompt_scores``, see
``i1lab.registry.prompts``), written in that transaction too."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import select, tuple_, update
from sqlalchemy.orm import Session

from i1lab.registry import prompts as prompt_values
from i1lab.registry import vectors
from i1lab.registry.base import CHUNK, RegistryBase
from i1lab.registry.records import PromptScoreRecord, ScoreRecord, now
from i1lab.registry.schema import PromptScoreRow, ScoreKeyRow, ScoreRow, ScoreSummaryRow, ScoreVectorRow


def summarize(
    scores: Iterable[tuple[int, str, str, str, int, float]],
) -> dict[tuple[Any, ...], dict[str, Any]]:
    """Latest (highest step) and best (highest value, earliest step) per (run, benchmark, metric, judge)."""
    out: dict[tuple[Any, ...], dict[str, Any]] = {}
    for rid, bench, metric, judge, step, value in scores:
        key = (rid, bench, metric, judge)
        row = out.get(key)
        if row is None:
            out[key] = {
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
        if step > row["latest_step"]:
            row["latest_step"], row["latest_value"] = step, value
        if value > row["best_value"] or (value == row["best_value"] and step < row["best_step"]):
            row["best_step"], row["best_value"] = step, value
    return out


class ScoresMixin(RegistryBase):
    def add_scores(self, scores: list[ScoreRecord], prompts: Sequence[PromptScoreRecord] = ()) -> None:
        """Record scores (and per-prompt values); what is already present for the same key is replaced."""
        if not scores and not prompts:
            return
        with self.session(write=True) as s:
            self._add_scores(s, scores)
            self._add_prompt_scores(s, prompts)

    def _add_prompt_scores(self, s: Session, records: Sequence[PromptScoreRecord]) -> None:
        latest = {(r.run_id, r.step, r.benchmark, r.judge): r for r in records}  # the last one wins
        rows = [
            {
                "run_id": k[0],
                "step": k[1],
                "benchmark": k[2],
                "judge": k[3],
                "metric": latest[k].metric,
                "entries": prompt_values.pack(latest[k].values),
            }
            for k in sorted(latest)
        ]
        self._insert(s, PromptScoreRow, rows, ["run_id", "step", "benchmark", "judge"], ["metric", "entries"])

    def prompt_scores(self, run_ids: Iterable[int]) -> list[PromptScoreRecord]:
        """The per-prompt values recorded for these runs (by run, step, benchmark, judge)."""
        ids = sorted(set(run_ids))
        out: list[PromptScoreRecord] = []
        p = PromptScoreRow
        with self.session() as s:
            for i in range(0, len(ids), CHUNK):
                rows = s.execute(
                    select(p.run_id, p.step, p.benchmark, p.judge, p.metric, p.entries).where(
                        p.run_id.in_(ids[i : i + CHUNK])
                    )
                )
                out.extend(
                    PromptScoreRecord(
                        run_id=r[0],
                        step=r[1],
                        benchmark=r[2],
                        judge=r[3],
                        metric=r[4],
                        values=prompt_values.unpack(r[5]),
                    )
                    for r in rows
                )
        out.sort(key=lambda r: (r.run_id, r.step, r.benchmark, r.judge))
        return out

    def _add_scores(self, s: Session, scores: list[ScoreRecord]) -> None:
        if not scores:
            return
        t = now()
        latest: dict[tuple[Any, ...], ScoreRecord] = {}
        for sc in scores:  # the last of duplicates wins, as if recorded one after another
            latest[(sc.run_id, sc.step, sc.benchmark, sc.metric, sc.judge)] = sc
        rows = [{**latest[k].model_dump(), "created_at": t} for k in sorted(latest)]  # replaces any given
        self._insert(
            s, ScoreRow, rows, ["run_id", "step", "benchmark", "metric", "judge"], ["value", "created_at"]
        )
        keys = sorted({(sc.benchmark, sc.metric, sc.judge) for sc in latest.values()})
        self._insert(
            s,
            ScoreKeyRow,
            [{"benchmark": b, "metric": m, "judge": j} for b, m, j in keys],
            ["benchmark", "metric", "judge"],
        )
        self._refresh_summaries(s, sorted({(sc.run_id, sc.benchmark, sc.metric, sc.judge) for sc in scores}))
        self._refresh_vectors(s, sorted({(sc.run_id, sc.step) for sc in scores}))

    def _claim(
        self,
        s: Session,
        table: Any,
        cols: Sequence[Any],
        keys: Sequence[tuple[Any, ...]],
        filler: dict[str, Any],
    ) -> None:
        """Create the rows of ``table`` with these key values (``cols``) that are missing (``filler``
        for their other columns), then, on PostgreSQL, lock them all in key order: a concurrent writer
        of the same keys waits here until this transaction ends, and then reads what it wrote."""
        names = [c.key for c in cols]
        rows = [dict(zip(names, k, strict=True), **filler) for k in keys]
        self._insert(s, table, rows, names)
        if self.dialect == "postgresql":
            s.execute(select(cols[0]).where(tuple_(*cols).in_(keys)).order_by(*cols).with_for_update()).all()

    def _refresh_vectors(self, s: Session, checkpoints: list[tuple[int, int]]) -> None:
        """Recompute the score vectors of these (run, step) checkpoints from the scores themselves.

        As for the summaries: the vector rows are created if missing and locked (in key order) before
        the scores are read, so a concurrent writer of the same checkpoint waits, then sees these scores."""
        cols = (ScoreVectorRow.run_id, ScoreVectorRow.step)
        for i in range(0, len(checkpoints), 200):
            chunk = checkpoints[i : i + 200]
            self._claim(s, ScoreVectorRow, cols, chunk, {"entries": b""})
            found: dict[tuple[int, int], list[tuple[int, float]]] = {}
            sc = ScoreRow
            for run_id, step, bench, metric, judge, value in s.execute(
                select(sc.run_id, sc.step, sc.benchmark, sc.metric, sc.judge, sc.value).where(
                    tuple_(sc.run_id, sc.step).in_(chunk)
                )
            ):
                found.setdefault((run_id, step), []).append(
                    (vectors.key_id(bench, metric, judge), float(value))
                )
            packed = [vectors.pack(found.get(c, [])) for c in chunk]
            rows = [{"run_id": r, "step": st, "entries": p} for (r, st), p in zip(chunk, packed, strict=True)]
            s.execute(update(ScoreVectorRow), rows)

    def _refresh_summaries(self, s: Session, keys: list[tuple[int, str, str, str]]) -> None:
        """Recompute the latest / best summary of these score keys from the scores themselves.

        The summary rows are created if missing, then locked (in key order) before the scores are read,
        so a concurrent writer of the same key waits and then sees this transaction's scores."""
        cols = (
            ScoreSummaryRow.run_id,
            ScoreSummaryRow.benchmark,
            ScoreSummaryRow.metric,
            ScoreSummaryRow.judge,
        )
        score_cols = (ScoreRow.run_id, ScoreRow.benchmark, ScoreRow.metric, ScoreRow.judge)
        for i in range(0, len(keys), 200):
            chunk = keys[i : i + 200]
            placeholder = {"latest_step": -1, "latest_value": 0.0, "best_step": -1, "best_value": 0.0}
            self._claim(s, ScoreSummaryRow, cols, chunk, placeholder)
            found = s.execute(
                select(*score_cols, ScoreRow.step, ScoreRow.value).where(tuple_(*score_cols).in_(chunk))
            ).all()
            summary = summarize((r[0], r[1], r[2], r[3], r[4], r[5]) for r in found)
            if summary:
                s.execute(update(ScoreSummaryRow), [summary[k] for k in sorted(summary)])

    def scores(self, run_ids: Iterable[int]) -> list[ScoreRecord]:
        ids = list(run_ids)
        out: list[ScoreRecord] = []
        with self.session() as s:
            for i in range(0, len(ids), CHUNK):
                rows = s.execute(
                    select(
                        ScoreRow.run_id,
                        ScoreRow.step,
                        ScoreRow.benchmark,
                        ScoreRow.metric,
                        ScoreRow.judge,
                        ScoreRow.value,
                        ScoreRow.created_at,
                    ).where(ScoreRow.run_id.in_(ids[i : i + CHUNK]))
                )
                out.extend(
                    ScoreRecord(
                        run_id=r[0],
                        step=r[1],
                        benchmark=r[2],
                        metric=r[3],
                        judge=r[4],
                        value=r[5],
                        created_at=r[6],
                    )
                    for r in rows
                )
        out.sort(key=lambda sc: (sc.run_id, sc.step, sc.benchmark, sc.metric))
        return out

    def score_summaries(self, run_ids: Iterable[int]) -> list[dict[str, Any]]:
        """The latest / best summary rows of these runs (what score filters compare against)."""
        ids = list(run_ids)
        out: list[dict[str, Any]] = []
        with self.session() as s:
            for i in range(0, len(ids), CHUNK):
                out.extend(
                    dict(r._mapping)
                    for r in s.execute(
                        select(ScoreSummaryRow.__table__).where(
                            ScoreSummaryRow.run_id.in_(ids[i : i + CHUNK])
                        )
                    )
                )
        return out
