"""Evaluation steps: which a run has had, and claims so that each runs exactly once.

An evaluation step (one checkpoint of a run on one benchmark by one judge, with the settings that change
the score) is named by a key the planner computes (``i1lab.plan.steps.EvalStep.key``; the registry takes
plain :class:`~i1lab.registry.records.EvaluationRef` values). Its row in ``evaluation_steps`` says:

- ``claimed``: ``owner`` is evaluating it until ``expires_at`` (renewed while it works); a claim past its
  expiry, or a ``failed`` step, may be claimed by another owner;
- ``done``: its scores are recorded. A step becomes done only in the transaction that records its scores
  (:meth:`EvaluationsMixin.record_evaluation`), fenced either by the training lease's token (the training
  worker's own evaluations, which need no claim: the lease makes them exclusive) or by the claim.

A claim is atomic on SQLite (one immediate write transaction) and on PostgreSQL (missing rows inserted,
then every row locked in key order and re-read before it is taken): of racing owners exactly one gets a
step.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from i1lab.registry.base import CHUNK
from i1lab.registry.leases import LeasesMixin
from i1lab.registry.records import EvaluationRecord, EvaluationRef, PromptScoreRecord, ScoreRecord, now
from i1lab.registry.schema import EvaluationStepRow, RunRow

E = EvaluationStepRow


def _chunks(keys: Sequence[str]) -> Iterable[list[str]]:
    for i in range(0, len(keys), CHUNK):
        yield list(keys[i : i + CHUNK])


class EvaluationsMixin(LeasesMixin):
    def _lock_steps(self, s: Session, keys: Sequence[str]) -> dict[str, Any]:
        """The rows of these keys, locked in key order (PostgreSQL; SQLite's write lock covers them)."""
        out: dict[str, Any] = {}
        for chunk in _chunks(sorted(set(keys))):
            for row in s.execute(
                select(E.key, E.status, E.owner, E.expires_at)
                .where(E.key.in_(chunk))
                .order_by(E.key)
                .with_for_update()
            ):
                out[row.key] = row
        return out

    def claim_evaluations(self, steps: Sequence[EvaluationRef], owner: str, seconds: float) -> set[str]:
        """Claim evaluation steps for ``owner`` for ``seconds``; the keys it got, in one transaction.

        A step nobody has is created claimed; one claimed by ``owner`` already is renewed; one whose
        claim expired, or that failed, is taken over. A step done, or claimed by another owner whose
        claim is live, is not given."""
        if not steps:
            return set()
        t = now()
        until = t + timedelta(seconds=seconds)
        refs = {s.key: s for s in steps}
        keys = sorted(refs)
        claim = {"status": "claimed", "owner": owner, "claimed_at": t, "expires_at": until}
        with self.session(write=True) as s:
            self._insert(s, E, [{**refs[k].model_dump(), **claim} for k in keys], ["key"])
            rows = self._lock_steps(s, keys)
            take = [
                k
                for k, r in rows.items()
                if (r.status == "claimed" and r.owner == owner)
                or r.status == "failed"
                or (r.status == "claimed" and (r.expires_at is None or r.expires_at <= t))
            ]
            for chunk in _chunks(sorted(take)):
                s.execute(
                    update(E)
                    .where(E.key.in_(chunk))
                    .values(finished_at=None, reason=None, **claim)
                    .execution_options(synchronize_session=False)
                )
        return set(take)

    def renew_evaluations(self, keys: Sequence[str], owner: str, seconds: float) -> set[str]:
        """Extend ``owner``'s claims on these keys by ``seconds``; the keys it still holds."""
        if not keys:
            return set()
        until = now() + timedelta(seconds=seconds)
        held: set[str] = set()
        with self.session(write=True) as s:
            rows = self._lock_steps(s, keys)
            held = {k for k, r in rows.items() if r.status == "claimed" and r.owner == owner}
            for chunk in _chunks(sorted(held)):
                s.execute(
                    update(E)
                    .where(E.key.in_(chunk))
                    .values(expires_at=until)
                    .execution_options(synchronize_session=False)
                )
        return held

    def release_evaluations(self, keys: Sequence[str], owner: str, reason: str | None = None) -> set[str]:
        """Give up ``owner``'s claims on these keys (``failed``, with ``reason``): another owner may claim
        them at once. The keys released (those ``owner`` still held)."""
        if not keys:
            return set()
        t = now()
        with self.session(write=True) as s:
            rows = self._lock_steps(s, keys)
            held = {k for k, r in rows.items() if r.status == "claimed" and r.owner == owner}
            for chunk in _chunks(sorted(held)):
                s.execute(
                    update(E)
                    .where(E.key.in_(chunk))
                    .values(
                        status="failed",
                        expires_at=None,
                        finished_at=t,
                        reason=reason or "released by its owner",
                    )
                    .execution_options(synchronize_session=False)
                )
        return held

    def record_evaluation(
        self,
        run_id: int,
        scores: list[ScoreRecord],
        steps: Sequence[EvaluationRef] = (),
        *,
        token: int | None = None,
        owner: str | None = None,
        eval_seconds: float = 0.0,
        node: str | None = None,
        detail: str | None = None,
        prompts: Sequence[PromptScoreRecord] = (),
    ) -> bool:
        """Record an evaluation in one transaction: its scores (and their per-prompt values ``prompts``),
        its ``steps`` marked done, the time it
        took (added to the run's ``eval_seconds``) and an ``evaluated`` event (when fenced, or when there
        are steps or a ``detail``).

        Fenced by ``token`` (the training lease's fencing token must be current) or by ``owner`` (it must
        still hold the claim of every step); False, nothing written, when the fence fails. Neither: as
        they are (``i1lab score``, a search's inference trial)."""
        t = now()
        keys = sorted({s.key for s in steps})
        with self.session(write=True) as s:
            # lock order: the run, then its evaluation steps, then the score rows
            if token is not None and not self._holds(s, run_id, token):
                return False
            if owner is not None and keys:
                rows = self._lock_steps(s, keys)
                if any(k not in rows or rows[k].status != "claimed" or rows[k].owner != owner for k in keys):
                    return False
            refs = {st.key: st for st in steps}
            done = {"status": "done", "owner": owner, "expires_at": None, "finished_at": t, "reason": None}
            self._insert(
                s,
                E,
                [{**refs[k].model_dump(), "claimed_at": None, **done} for k in keys],
                ["key"],
                [
                    "step",
                    "benchmark",
                    "judge",
                    "status",
                    "owner",
                    "expires_at",
                    "finished_at",
                    "reason",
                    "provenance",
                ],
            )
            self._add_scores(s, scores)
            self._add_prompt_scores(s, prompts)
            if eval_seconds:
                s.connection().execute(
                    update(RunRow)
                    .where(RunRow.id == run_id)
                    .values(eval_seconds=RunRow.eval_seconds + eval_seconds, updated_at=t)
                )
            if token is not None or owner is not None or keys or detail:
                self._event(s, run_id, "evaluated", node, detail, t)
        return True

    def fenced_scores(
        self,
        run_id: int,
        token: int,
        scores: list[ScoreRecord],
        *,
        steps: Sequence[EvaluationRef] = (),
        eval_seconds: float = 0.0,
        node: str | None = None,
        detail: str | None = None,
        prompts: Sequence[PromptScoreRecord] = (),
    ) -> bool:
        """Record a checkpoint's scores (its evaluation ``steps`` done, its per-prompt values) and the time
        its evaluation took, only if ``token`` is the run's current fencing token; adds an ``evaluated``
        event."""
        return self.record_evaluation(
            run_id,
            scores,
            steps,
            token=token,
            eval_seconds=eval_seconds,
            node=node,
            detail=detail,
            prompts=prompts,
        )

    def evaluation_steps(self, run_ids: Iterable[int]) -> list[EvaluationRecord]:
        """Every evaluation step of these runs, claimed, done or failed (by run, then key)."""
        ids = sorted(set(run_ids))
        out: list[EvaluationRecord] = []
        with self.session() as s:
            for i in range(0, len(ids), CHUNK):
                rows = s.execute(select(E.__table__).where(E.run_id.in_(ids[i : i + CHUNK])))
                out.extend(EvaluationRecord.model_validate(dict(r._mapping)) for r in rows)
        out.sort(key=lambda e: (e.run_id, e.key))
        return out

    def done_evaluations(self, run_ids: Iterable[int]) -> dict[int, set[str]]:
        """Run id -> the keys of its evaluation steps that are done (one read per chunk of runs)."""
        ids = sorted(set(run_ids))
        out: dict[int, set[str]] = {r: set() for r in ids}
        with self.session() as s:
            for i in range(0, len(ids), CHUNK):
                for run_id, key in s.execute(
                    select(E.run_id, E.key).where(E.run_id.in_(ids[i : i + CHUNK]), E.status == "done")
                ):
                    out[run_id].add(key)
        return out
