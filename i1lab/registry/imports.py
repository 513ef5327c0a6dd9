"""Results trained elsewhere (``i1lab import``): their runs, memberships and scores, in one transaction."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from i1lab.errors import I1labError
from i1lab.registry.base import CHUNK
from i1lab.registry.fields import flatten
from i1lab.registry.records import ScoreRecord, now
from i1lab.registry.schema import RunRow, StudyRunRow
from i1lab.registry.studies import StudiesMixin


class ImportConflict(I1labError):
    """An imported line that contradicts the registry (``line`` is the file's line number)."""

    def __init__(self, line: int, message: str) -> None:
        super().__init__(f"line {line}: {message}")
        self.line = line
        self.detail = message


class ImportedScore(BaseModel):
    benchmark: str
    metric: str
    judge: str
    step: int
    value: float


class ImportedRun(BaseModel):
    """A run trained elsewhere: its spec as given, its content hash, its study membership and scores."""

    line: int
    study: str
    name: str
    baseline: bool
    spec: dict[str, Any]
    hash: str
    params: int | None = None
    scores: list[ImportedScore] = []


class ImportsMixin(StudiesMixin):
    def record_imported(self, runs: list[ImportedRun]) -> dict[tuple[str, str], int]:
        """Record runs trained elsewhere, their memberships and scores, all in one transaction.

        A study gains the imported members beside the ones it has. Re-importing the same lines changes
        nothing. Refused (nothing written): a spec whose hash is a run trained here, or a study name
        already naming another run. Returns (study, name) -> run id."""
        t = now()
        with self.session(write=True) as s:
            hashes = sorted({r.hash for r in runs})
            for i in range(0, len(hashes), CHUNK):
                for digest, imported in s.execute(
                    select(RunRow.hash, RunRow.imported).where(RunRow.hash.in_(hashes[i : i + CHUNK]))
                ):
                    if not imported:
                        line = next(r.line for r in runs if r.hash == digest)
                        raise ImportConflict(
                            line,
                            f"the spec is that of run {digest[:12]} trained here; "
                            "imported results cannot be added to it",
                        )
            rows: dict[str, dict[str, Any]] = {}
            for r in runs:
                last = max((sc.step for sc in r.scores), default=0)
                row = rows.setdefault(
                    r.hash,
                    {
                        "hash": r.hash,
                        "spec": r.spec,
                        "status": "imported",
                        "step": last,
                        "total_steps": last,
                        "params": r.params,
                        "imported": True,
                        "attempts": 0,
                        "wall_seconds": 0.0,
                        "stage": 0,
                        "finished_at": t,
                    },
                )
                row["step"] = row["total_steps"] = max(row["step"], last)
            ids = self._insert_runs(s, list(rows.values()))
            for digest, row in rows.items():
                s.execute(
                    update(RunRow)
                    .where(RunRow.hash == digest, RunRow.step < row["step"])
                    .values(step=row["step"], total_steps=row["step"], updated_at=t)
                )
                if row["params"] is not None:
                    s.execute(update(RunRow).where(RunRow.hash == digest).values(params=row["params"]))
            by_study: dict[str, list[ImportedRun]] = {}
            for r in runs:
                by_study.setdefault(r.study, []).append(r)
            for study, items in sorted(by_study.items()):
                study_id = self._study_id(s, study, description="imported results", set_profile=False)
                self._link_imported(s, study_id, study, items, ids)
            self._add_scores(
                s,
                [ScoreRecord(run_id=ids[r.hash], **sc.model_dump()) for r in runs for sc in r.scores],
            )
            return {(r.study, r.name): ids[r.hash] for r in runs}

    def _link_imported(
        self, s: Session, study_id: int, study: str, items: list[ImportedRun], ids: dict[str, int]
    ) -> None:
        current = {m.name: m for m in s.scalars(select(StudyRunRow).where(StudyRunRow.study_id == study_id))}
        baselines = [m.name for m in current.values() if m.is_baseline]
        baselines += [r.name for r in items if r.baseline and r.name not in baselines]
        specs = {r.name: flatten(r.spec) for r in items}
        for m in current.values():
            if m.is_baseline and m.name not in specs:
                spec = s.scalar(select(RunRow.spec).where(RunRow.id == m.run_id))
                specs[m.name] = flatten(spec or {})

        def baseline_of(name: str) -> str | None:
            _, mark, seed = name.partition("#")
            same_seed = [b for b in baselines if mark and b.endswith(f"#{seed}")]
            found = same_seed or baselines
            return found[0] if found else None

        position = max((m.position for m in current.values()), default=-1) + 1
        for r in items:
            run_id = ids[r.hash]
            have = current.get(r.name)
            if have is not None:
                if have.run_id != run_id:
                    raise ImportConflict(
                        r.line, f"{study}/{r.name} already names another run (id {have.run_id})"
                    )
                continue
            base = r.name if r.baseline else baseline_of(r.name)
            own, ref = specs[r.name], specs.get(base or "", {})
            varied = {k: v for k, v in own.items() if k not in ref or ref[k] != v} if base else {}
            s.add(
                StudyRunRow(
                    study_id=study_id,
                    name=r.name,
                    run_id=run_id,
                    label=r.name,
                    is_baseline=r.baseline,
                    baseline=base,
                    varied={} if r.baseline else varied,
                    position=position,
                )
            )
            position += 1
