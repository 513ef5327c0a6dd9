"""Studies and their members: recording a plan (the study, its runs by hash with their fields, the
membership) and reading it back."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, cast

from sqlalchemy import Table, delete, insert, select, update
from sqlalchemy.orm import Session

from i1lab.errors import I1labError
from i1lab.registry.base import BATCH, CHUNK
from i1lab.registry.db import execute_many
from i1lab.registry.fields import FIELD_COLUMNS, field_values, flatten, run_facts
from i1lab.registry.records import (
    ExistingRun,
    MemberRecord,
    PlannedMember,
    RunRecord,
    ScoreRecord,
    StudyRecord,
    now,
)
from i1lab.registry.schema import FieldKeyRow, RunFieldRow, RunRow, StudyRow, StudyRunRow
from i1lab.registry.scores import ScoresMixin


def planned_run_rows(members: Sequence[PlannedMember], prov: Any, *, imported: bool) -> list[dict[str, Any]]:
    """The ``runs`` rows of planned members, one per hash: queued with this process's provenance
    ``prov`` (git commit, dirty flag, package versions), or ``imported`` (trained elsewhere: none)."""
    runs: dict[str, dict[str, Any]] = {}
    for m in members:
        runs.setdefault(
            m.hash,
            {
                "hash": m.hash,
                "spec": m.spec,
                "status": "imported" if imported else "queued",
                "step": 0,
                "total_steps": m.total_steps,
                "params": m.params,
                "workdir": m.workdir,
                "imported": imported,
                "attempts": 0,
                "git_commit": None if imported else prov.git_commit,
                "git_dirty": None if imported else prov.git_dirty,
                "versions": None if imported else prov.versions,
                "queued_at": None if imported else now(),
                "wall_seconds": 0.0,
                "stage": 0,
                "accelerator_hours_est": m.accelerator_hours_est,
            },
        )
    return list(runs.values())


class StudiesMixin(ScoresMixin):
    def existing(self, hashes: Iterable[str]) -> dict[str, RunRecord]:
        hashes = list(hashes)
        out: dict[str, RunRecord] = {}
        with self.session() as s:
            for i in range(0, len(hashes), CHUNK):
                chunk = hashes[i : i + CHUNK]
                for row in s.scalars(select(RunRow).where(RunRow.hash.in_(chunk))):
                    out[row.hash] = RunRecord.model_validate(row)
        return out

    def existing_runs(self, hashes: Iterable[str]) -> dict[str, ExistingRun]:
        """Runs already registered under these hashes, with the study/name of each membership."""
        found = self.existing(hashes)
        names: dict[int, list[str]] = {}
        with self.session() as s:
            ids = [r.id for r in found.values()]
            for i in range(0, len(ids), CHUNK):
                rows = s.execute(
                    select(StudyRunRow.run_id, StudyRow.name, StudyRunRow.name)
                    .join(StudyRow, StudyRow.id == StudyRunRow.study_id)
                    .where(StudyRunRow.run_id.in_(ids[i : i + CHUNK]))
                )
                for run_id, study, name in rows:
                    names.setdefault(run_id, []).append(f"{study}/{name}")
        return {
            h: ExistingRun(id=r.id, hash=h, status=r.status, step=r.step, names=sorted(names.get(r.id, [])))
            for h, r in found.items()
        }

    def _study_id(
        self,
        s: Session,
        study: str,
        *,
        file: str | None = None,
        profile: str | None = None,
        description: str | None = None,
        set_profile: bool = True,
    ) -> int:
        """Create the study if needed and lock its row until the transaction ends (one writer per study)."""
        t = now()
        self._insert(
            s,
            StudyRow,
            [
                {
                    "name": study,
                    "file": file,
                    "profile": profile,
                    "description": description,
                    "created_at": t,
                    "updated_at": t,
                }
            ],
            ["name"],
        )
        row = s.execute(select(StudyRow).where(StudyRow.name == study).with_for_update()).scalar_one()
        row.updated_at = t
        row.file = file or row.file
        row.profile = profile if set_profile else row.profile
        row.description = description or row.description
        return row.id

    def _insert_runs(self, s: Session, rows: list[dict[str, Any]]) -> dict[str, int]:
        """Insert runs missing by hash (with their flattened fields); returns hash -> id of all of them.

        Only the runs missing get fields: a run's fields are written with it, once (a study submitted
        again rewrites none)."""
        t = now()
        hashes = [r["hash"] for r in rows]
        before: set[str] = set()
        for i in range(0, len(hashes), CHUNK):
            before.update(s.scalars(select(RunRow.hash).where(RunRow.hash.in_(hashes[i : i + CHUNK]))))
        for row in rows:
            row.setdefault("created_at", t)
            row.setdefault("updated_at", t)
            row.update({k: v for k, v in run_facts(row["spec"]).items() if k not in row})
        staged = [r["hash"] for r in rows if r.get("resumed_from")]
        rows = [r for r in rows if r["hash"] not in before]
        self._insert(s, RunRow, sorted(rows, key=lambda r: r["hash"]), ["hash"])
        ids: dict[str, int] = {}
        for i in range(0, len(hashes), CHUNK):
            found = s.execute(select(RunRow.hash, RunRow.id).where(RunRow.hash.in_(hashes[i : i + CHUNK])))
            ids.update({digest: rid for digest, rid in found})
        fields: list[tuple[int, str, str, float | None]] = []
        keys: set[str] = set()
        for row in rows:
            flat = flatten(row["spec"])
            keys.update(flat)
            run_id = ids[row["hash"]]
            fields.extend(field_values(run_id, k, v) for k, v in flat.items())
        self._insert(s, FieldKeyRow, [{"key": k} for k in sorted(keys)], ["key"])
        fields.sort()  # by (run_id, key): a stable lock and page order
        stmt = self._insert_statement(cast(Table, RunFieldRow.__table__)).on_conflict_do_nothing(
            index_elements=["run_id", "key"]
        )
        for i in range(0, len(fields), BATCH):
            execute_many(s.connection(), stmt, FIELD_COLUMNS, fields[i : i + BATCH])
        self._set_stages(s, staged)  # also of runs recorded before their parent was
        return ids

    def _set_stages(self, s: Session, hashes: list[str]) -> None:
        """``stage`` = number of ancestors along ``resumed_from`` (0 for a run trained from scratch)."""
        if not hashes:
            return
        parent_of: dict[str, str | None] = {}
        todo = list(hashes)
        while todo:
            chunk, todo = todo[:CHUNK], todo[CHUNK:]
            for digest, parent in s.execute(
                select(RunRow.hash, RunRow.resumed_from).where(RunRow.hash.in_(chunk))
            ):
                parent_of[digest] = parent
                if parent and parent not in parent_of and len(parent_of) < 100_000:
                    todo.append(parent)

        def depth(digest: str, seen: frozenset[str] = frozenset()) -> int:
            parent = parent_of.get(digest)
            if parent is None or parent not in parent_of or digest in seen:
                return 0
            return depth(parent, seen | {digest}) + 1

        for digest in hashes:
            s.execute(update(RunRow).where(RunRow.hash == digest).values(stage=depth(digest)))

    def record_plan(
        self,
        study: str,
        members: list[PlannedMember],
        *,
        file: str | None = None,
        profile: str | None = None,
        description: str | None = None,
        imported: bool = False,
    ) -> dict[str, int]:
        """Create the study and any missing runs; link every member. Returns name -> run id.

        Idempotent: recording the same plan twice changes nothing (a run is keyed by its hash). New runs
        get the provenance of this process (git commit, dirty flag, package versions)."""
        from i1lab.registry.provenance import capture

        run_rows = planned_run_rows(members, capture(), imported=imported)
        with self.session(write=True) as s:
            study_id = self._study_id(s, study, file=file, profile=profile, description=description)
            ids = self._insert_runs(s, run_rows)
            s.execute(delete(StudyRunRow).where(StudyRunRow.study_id == study_id))
            memberships = [
                {
                    "study_id": study_id,
                    "name": m.name,
                    "run_id": ids[m.hash],
                    "label": m.label,
                    "is_baseline": m.is_baseline,
                    "baseline": m.baseline,
                    "varied": m.varied,
                    "position": pos,
                }
                for pos, m in enumerate(members)
            ]
            if memberships:  # a Core executemany: no ORM objects to build and flush
                s.execute(insert(cast(Table, StudyRunRow.__table__)), memberships)
            return {m.name: ids[m.hash] for m in members}

    def add_members(
        self,
        study: str,
        members: list[PlannedMember],
        *,
        file: str | None = None,
        profile: str | None = None,
        description: str | None = None,
    ) -> dict[str, int]:
        """Create the study and any missing runs (queued); add these members after the study's others,
        which are kept (a member of the same name is replaced in place). Returns name -> run id.

        Unlike :meth:`record_plan`, which sets a study's whole membership, this grows a study one
        member at a time (a search adds each trial as it is asked)."""
        from i1lab.registry.provenance import capture

        run_rows = planned_run_rows(members, capture(), imported=False)
        with self.session(write=True) as s:
            study_id = self._study_id(s, study, file=file, profile=profile, description=description)
            ids = self._insert_runs(s, run_rows)
            current = {
                name: pos
                for name, pos in s.execute(
                    select(StudyRunRow.name, StudyRunRow.position).where(StudyRunRow.study_id == study_id)
                )
            }
            position = max(current.values(), default=-1) + 1
            for m in members:
                if m.name in current:
                    s.execute(
                        delete(StudyRunRow).where(
                            StudyRunRow.study_id == study_id, StudyRunRow.name == m.name
                        )
                    )
                s.add(
                    StudyRunRow(
                        study_id=study_id,
                        name=m.name,
                        run_id=ids[m.hash],
                        label=m.label,
                        is_baseline=m.is_baseline,
                        baseline=m.baseline or None,
                        varied=m.varied,
                        position=current.get(m.name, position),
                    )
                )
                if m.name not in current:
                    position += 1
            return {m.name: ids[m.hash] for m in members}

    def studies(self) -> list[StudyRecord]:
        with self.session() as s:
            return [
                StudyRecord.model_validate(r) for r in s.scalars(select(StudyRow).order_by(StudyRow.name))
            ]

    def study(self, name: str) -> StudyRecord:
        with self.session() as s:
            row = s.scalar(select(StudyRow).where(StudyRow.name == name))
            if row is None:
                known = [r for (r,) in s.execute(select(StudyRow.name).order_by(StudyRow.name).limit(21))]
                listed = ", ".join(known[:20]) + (", ..." if len(known) > 20 else "") or "none"
                raise I1labError(f"no study named {name!r} in the registry (known: {listed})")
            return StudyRecord.model_validate(row)

    def members(self, study: str) -> list[MemberRecord]:
        rec = self.study(study)
        with self.session() as s:
            rows = s.execute(
                select(StudyRunRow, RunRow)
                .join(RunRow, RunRow.id == StudyRunRow.run_id)
                .where(StudyRunRow.study_id == rec.id)
                .order_by(StudyRunRow.position)
            ).all()
            members = [
                (m.name, m.label, m.is_baseline, m.baseline, m.varied or {}, RunRecord.model_validate(r))
                for m, r in rows
            ]
        scores = self.scores({r.id for *_, r in members})
        by_run: dict[int, list[ScoreRecord]] = {}
        for sc in scores:
            by_run.setdefault(sc.run_id, []).append(sc)
        return [
            MemberRecord(
                study=study,
                name=n,
                label=lb,
                is_baseline=b,
                baseline=bl,
                varied=v,
                run=r,
                scores=by_run.get(r.id, []),
            )
            for n, lb, b, bl, v, r in members
        ]
