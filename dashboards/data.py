"""What the dashboard shows, read from the registry without ever writing to it.

The registry is opened read-only (:mod:`i1lab.registry.readonly`) and read through its read functions
(:mod:`i1lab.registry.overview` and the :class:`~i1lab.registry.Registry` methods). Everything here is a
pure read that returns Pydantic models; :class:`Source` caches them until the registry changes (a cheap
fingerprint query: row counts and latest timestamps), so a page of a 300-run study is built once per
change.

Sample images are read from each run's folder (``<workdir>/eval/<hash12>/<bench>/step_<N:07d>/``):
per-prompt images in the GenEval-style layout (``<idx:05d>/samples/<k:05d>.png``, used by the shapes,
GenEval and DPG benchmarks) with the prompt from ``<idx:05d>/metadata.jsonl`` or ``i1lab/prompts.jsonl``,
else the run's sample grid (``grid.png`` or ``i1lab/grid.png``).
"""

from __future__ import annotations

import base64
import json
import os
import re
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel

from i1lab import paths
from i1lab.errors import I1labError
from i1lab.registry import MemberRecord, Registry, StudyRecord
from i1lab.registry.overview import StudyRunCost, fingerprint, study_run_costs
from i1lab.registry.readonly import mlflow_experiment_id, open_registry
from i1lab.report.tables import HEADLINES, Column, Curve, Table, ablation_table, columns_of, curves

T = TypeVar("T")
Estimate = Callable[[str, dict[str, Any]], float | None]  # (run hash, resolved spec) -> accelerator-hours
DONE = ("finished", "imported")
DEFAULT_MLFLOW_UI = "http://127.0.0.1:5000"
SAFE_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}$")
SAMPLE_FILE = re.compile(r"^(\d{1,6})-(\d{1,6})\.png$")


# --- records ----------------------------------------------------------------------------------------
class StudySummary(BaseModel):
    name: str
    description: str | None
    profile: str | None
    updated_at: datetime
    runs: int
    done: int  # finished or imported
    by_status: dict[str, int]
    est_hours: float  # accelerator-hours planned (else as the source's ``estimate`` costs the spec)
    uncosted: int  # runs whose cost is unknown
    used_hours: float  # accelerator-hours measured so far

    @property
    def progress(self) -> float:
        return self.done / self.runs if self.runs else 0.0


class Variant(BaseModel):
    """One member of a study as the dashboard lists it."""

    name: str
    label: str | None
    is_baseline: bool
    baseline: str | None
    run_id: int
    hash: str
    status: str
    reason: str | None
    step: int
    total_steps: int
    params: int | None
    est_hours: float | None
    used_hours: float | None
    mlflow_run_id: str | None
    workdir: str | None


class StudyPage(BaseModel):
    study: StudyRecord
    summary: StudySummary
    members: list[MemberRecord]
    variants: list[Variant]
    steps: list[int]  # checkpoint steps that have scores
    columns: list[Column]  # every (benchmark, metric, judge) scored
    benchmarks: list[str]

    def column(self, key: str | None) -> Column | None:
        return next((c for c in self.columns if column_key(c) == key), None)

    def default_column(self) -> Column | None:
        heads = [c for c in self.columns if HEADLINES.get(c.benchmark) == c.metric]
        return next(iter(heads or self.columns), None)

    def default_runs(self, limit: int = 6) -> list[str]:
        base = [v.name for v in self.variants if v.is_baseline]
        rest = [v.name for v in self.variants if not v.is_baseline]
        return (base + rest)[: max(limit, len(base))]


class SamplePrompt(BaseModel):
    index: int
    prompt: str
    images: dict[str, list[int]]  # variant name -> sample numbers k that exist


class SampleGrid(BaseModel):
    """The same prompts across variants: ``prompts[i].images[variant]`` are that variant's samples."""

    benchmark: str
    step: int | None
    steps: list[int]  # steps with images of any chosen variant
    variants: list[str]
    run_ids: dict[str, int]
    prompts: list[SamplePrompt]
    grids: dict[str, bool]  # variant -> a sample grid exists at ``step``


def column_key(col: Column) -> str:
    return f"{col.benchmark}/{col.metric}@{col.judge}"


def summarize_runs(
    record: StudyRecord, runs: Sequence[StudyRunCost], estimate: Estimate | None = None
) -> StudySummary:
    """A study's progress and cost from its runs; a run without a planned cost is costed by ``estimate``
    (uncosted without one)."""
    by_status: dict[str, int] = {}
    est = used = 0.0
    uncosted = 0
    for run in runs:
        by_status[run.status] = by_status.get(run.status, 0) + 1
        hours = run.planned_hours
        if hours is None and estimate is not None:
            hours = estimate(run.hash, run.spec)
        if hours is None:
            uncosted += 1
        else:
            est += hours
        used += run.used_hours or 0.0
    return StudySummary(
        name=record.name,
        description=record.description,
        profile=record.profile,
        updated_at=record.updated_at,
        runs=len(runs),
        done=sum(by_status.get(s, 0) for s in DONE),
        by_status=by_status,
        est_hours=est,
        uncosted=uncosted,
        used_hours=used,
    )


# --- MLflow links -----------------------------------------------------------------------------------
class Mlflow:
    """Links into the MLflow UI that mirrors the registry (an experiment per study, a run per member).

    ``ui_url`` is where a browser reaches the UI: ``$I1LAB_MLFLOW_UI_URL``, else the tracking URI when it
    is an HTTP server, else ``http://127.0.0.1:5000`` (what ``i1lab mlflow-ui`` serves). A study's
    experiment id is looked up read-only: by the REST API of a tracking server, or in the store's
    database (SQLite / PostgreSQL) directly."""

    retry_s = 30.0  # how long "no experiment" is remembered before asking MLflow again

    def __init__(self, tracking_uri: str | None = None, ui_url: str | None = None) -> None:
        self.tracking_uri = tracking_uri or paths.mlflow_uri()
        default = self.tracking_uri if self.tracking_uri.startswith("http") else DEFAULT_MLFLOW_UI
        self.ui_url = (ui_url or os.environ.get("I1LAB_MLFLOW_UI_URL") or default).rstrip("/")
        self._experiments: dict[str, tuple[float, str | None]] = {}  # study -> (when, id)
        self._lock = threading.Lock()

    def run_url(self, run_id: str, experiment_id: str | None = None) -> str:
        if experiment_id is not None:
            return f"{self.ui_url}/#/experiments/{experiment_id}/runs/{run_id}"
        return f"{self.ui_url}/#/runs/{run_id}"

    def experiment_url(self, experiment_id: str) -> str:
        return f"{self.ui_url}/#/experiments/{experiment_id}"

    def compare_url(self, experiment_id: str, run_ids: Sequence[str]) -> str:
        runs = urllib.parse.quote(json.dumps(list(run_ids)), safe="")
        exps = urllib.parse.quote(json.dumps([experiment_id]), safe="")
        return f"{self.ui_url}/#/compare-runs?runs={runs}&experiments={exps}"

    def experiment_id(self, study: str) -> str | None:
        """The id of the study's experiment, or None when MLflow has none (or cannot be reached)."""
        now = time.monotonic()
        with self._lock:
            hit = self._experiments.get(study)
            if hit is not None and (hit[1] is not None or now - hit[0] < self.retry_s):
                return hit[1]
        try:
            found = self._lookup(study)
        except Exception:  # MLflow down or unreachable: no links, asked again after retry_s
            found = None
        with self._lock:
            self._experiments[study] = (now, found)
        return found

    def _lookup(self, study: str) -> str | None:
        uri = self.tracking_uri
        if uri.startswith(("http://", "https://")):
            query = urllib.parse.urlencode({"experiment_name": study})
            request = urllib.request.Request(
                f"{uri.rstrip('/')}/api/2.0/mlflow/experiments/get-by-name?{query}"
            )
            user, password = (
                os.environ.get("MLFLOW_TRACKING_USERNAME"),
                os.environ.get("MLFLOW_TRACKING_PASSWORD"),
            )
            if user and password:
                token = base64.b64encode(f"{user}:{password}".encode()).decode()
                request.add_header("Authorization", f"Basic {token}")
            with urllib.request.urlopen(request, timeout=2) as response:
                exp = json.load(response).get("experiment", {})
            return str(exp["experiment_id"]) if exp.get("lifecycle_stage", "active") == "active" else None
        return mlflow_experiment_id(uri, study)


# --- the source of every page -----------------------------------------------------------------------
class Source:
    """Everything the pages read, cached until the registry changes. Thread-safe."""

    def __init__(
        self, registry: Registry, mlflow: Mlflow | None = None, estimate: Estimate | None = None
    ) -> None:
        self.registry = registry
        self.mlflow = mlflow or Mlflow()
        self.estimate = estimate  # costs a run recorded without a planned cost (``i1lab dashboard``'s)
        self._cache: dict[tuple[Any, ...], tuple[tuple[Any, ...], Any]] = {}
        self._folders: dict[int, Path] = {}  # run id -> its eval folder (a run's hash and folder are fixed)
        self._lock = threading.Lock()

    @classmethod
    def open(
        cls, url: str | None = None, mlflow: Mlflow | None = None, estimate: Estimate | None = None
    ) -> Source:
        return cls(open_registry(url), mlflow, estimate)

    def _cached(self, key: tuple[Any, ...], build: Callable[[], T]) -> T:
        fp = fingerprint(self.registry)
        with self._lock:
            hit = self._cache.get(key)
            if hit is not None and hit[0] == fp:
                return hit[1]
        value = build()
        with self._lock:
            self._cache[key] = (fp, value)
            while len(self._cache) > 256:
                self._cache.pop(next(iter(self._cache)))
        return value

    # studies -------------------------------------------------------------------------------------
    def studies(self) -> list[StudySummary]:
        return self._cached(("studies",), self._studies)

    def _studies(self) -> list[StudySummary]:
        records = {r.id: r for r in self.registry.studies()}
        runs = study_run_costs(self.registry)
        return [
            summarize_runs(rec, runs.get(i, []), self.estimate)
            for i, rec in sorted(records.items(), key=lambda x: x[1].name)
        ]

    def study(self, name: str) -> StudyPage:
        return self._cached(("study", name), lambda: self._study(name))

    def _study(self, name: str) -> StudyPage:
        record = self.registry.study(name)
        members = self.registry.members(name)
        variants = [
            Variant(
                name=m.name,
                label=m.label,
                is_baseline=m.is_baseline,
                baseline=m.baseline,
                run_id=m.run.id,
                hash=m.run.hash,
                status=m.run.status,
                reason=m.run.reason,
                step=m.run.step,
                total_steps=m.run.total_steps,
                params=m.run.params,
                est_hours=m.run.accelerator_hours_est
                if m.run.accelerator_hours_est is not None or self.estimate is None
                else self.estimate(m.run.hash, m.run.spec),
                used_hours=m.run.accelerator_hours,
                mlflow_run_id=m.run.mlflow_run_id,
                workdir=m.run.workdir,
            )
            for m in members
        ]
        cols = columns_of(members, all_metrics=True)
        unique = {m.run.hash: m for m in members}.values()
        summary = summarize_runs(
            record,
            [
                StudyRunCost(
                    hash=m.run.hash,
                    status=m.run.status,
                    spec=m.run.spec,
                    planned_hours=m.run.accelerator_hours_est,
                    used_hours=m.run.accelerator_hours,
                )
                for m in unique
            ],
            self.estimate,
        )
        return StudyPage(
            study=record,
            summary=summary,
            members=members,
            variants=variants,
            steps=sorted({s.step for m in members for s in m.scores}),
            columns=cols,
            benchmarks=sorted({c.benchmark for c in cols}),
        )

    def experiment_id(self, name: str) -> str | None:
        return self.mlflow.experiment_id(name)

    # tables and curves -----------------------------------------------------------------------------
    def table(self, name: str, at_step: int | None = None, all_metrics: bool = False) -> Table:
        return self._cached(
            ("table", name, at_step, all_metrics),
            lambda: ablation_table(name, self.study(name).members, at_step=at_step, all_metrics=all_metrics),
        )

    def curve(self, name: str, key: str | None, runs: Sequence[str]) -> Curve | None:
        """One metric over checkpoint steps for the chosen runs (None if the study has no such metric)."""
        page = self.study(name)
        col = page.column(key)
        known = {v.name for v in page.variants}
        chosen = [r for r in runs if r in known]
        if col is None or not chosen:
            return None
        for c in curves(page.members, runs=chosen, all_metrics=True):
            if c.column == col:
                return c
        return Curve(column=col, steps=[], runs=chosen, values=[])

    def breakdown(self, name: str, benchmark: str, runs: Sequence[str], at_step: int | None = None) -> Table:
        """Every metric of one benchmark (its categories) for the chosen runs, at a step or the latest."""
        full = self.table(name, at_step, all_metrics=True)
        keep = [i for i, c in enumerate(full.columns) if c.benchmark == benchmark]
        chosen = set(runs)
        rows = [
            r.model_copy(update={"cells": [r.cells[i] for i in keep]}) for r in full.rows if r.name in chosen
        ]
        return Table(study=name, columns=[full.columns[i] for i in keep], rows=rows, at_step=full.at_step)

    # sample images -------------------------------------------------------------------------------
    @staticmethod
    def eval_root(workdir: str | None, run_hash: str) -> Path | None:
        return Path(workdir) / "eval" / run_hash[:12] if workdir else None

    def samples(
        self,
        name: str,
        benchmark: str,
        runs: Sequence[str],
        step: int | None = None,
        max_prompts: int = 8,
        per_prompt: int = 4,
    ) -> SampleGrid:
        page = self.study(name)
        by_name = {v.name: v for v in page.variants}
        chosen = [by_name[r] for r in runs if r in by_name]
        roots = {v.name: self.eval_root(v.workdir, v.hash) for v in chosen}
        bench_ok = bool(SAFE_NAME.match(benchmark))
        step_sets = [_steps_of(root / benchmark) if root and bench_ok else set() for root in roots.values()]
        union = sorted(set().union(*step_sets)) if step_sets else []
        common = set.intersection(*step_sets) if step_sets else set()
        if step is None or step not in union:
            step = max(common) if common else (union[-1] if union else None)
        prompts: dict[int, SamplePrompt] = {}
        grids: dict[str, bool] = {}
        for v in chosen:
            root = roots[v.name]
            folder = root / benchmark / f"step_{step:07d}" if root and step is not None and bench_ok else None
            grids[v.name] = folder is not None and _grid_file(folder) is not None
            if folder is None or not folder.is_dir():
                continue
            texts: dict[int, str] | None = None
            for idx, prompt_dir in _prompt_dirs(folder)[:max_prompts]:
                ks = sorted(int(p.stem) for p in (prompt_dir / "samples").glob("*.png") if p.stem.isdigit())
                if idx not in prompts:
                    text = _metadata_prompt(prompt_dir)
                    if text is None:
                        texts = texts if texts is not None else _prompt_list(folder)
                        text = texts.get(idx, f"prompt {idx}")
                    prompts[idx] = SamplePrompt(index=idx, prompt=text, images={})
                prompts[idx].images[v.name] = ks[:per_prompt]
        return SampleGrid(
            benchmark=benchmark,
            step=step,
            steps=union,
            variants=[v.name for v in chosen],
            run_ids={v.name: v.run_id for v in chosen},
            prompts=[prompts[i] for i in sorted(prompts)][:max_prompts],
            grids=grids,
        )

    def image_file(self, run_id: int, benchmark: str, step: int, filename: str) -> Path | None:
        """The file behind an image URL (``grid.png`` or ``<idx>-<k>.png``), or None; never outside the
        run's eval folder."""
        if not SAFE_NAME.match(benchmark):
            return None
        root = self._folders.get(run_id)
        if root is None:
            try:
                run = self.registry.run(run_id)
            except I1labError:
                return None
            root = self.eval_root(run.workdir, run.hash)
            if root is None:
                return None
            with self._lock:
                self._folders[run_id] = root
        folder = root / benchmark / f"step_{step:07d}"
        if filename == "grid.png":
            return _grid_file(folder)
        m = SAMPLE_FILE.match(filename)
        if m is None:
            return None
        path = folder / f"{int(m.group(1)):05d}" / "samples" / f"{int(m.group(2)):05d}.png"
        return path if path.is_file() else None


def _steps_of(bench_dir: Path) -> set[int]:
    if not bench_dir.is_dir():
        return set()
    out = set()
    for p in bench_dir.iterdir():
        if p.name.startswith("step_") and p.name[5:].isdigit() and p.is_dir():
            out.add(int(p.name[5:]))
    return out


def _grid_file(folder: Path) -> Path | None:
    for path in (folder / "grid.png", folder / "i1lab" / "grid.png"):
        if path.is_file():
            return path
    return None


def _prompt_dirs(folder: Path) -> list[tuple[int, Path]]:
    found = [(int(p.name), p) for p in folder.iterdir() if p.name.isdigit() and (p / "samples").is_dir()]
    return sorted(found)


def _metadata_prompt(prompt_dir: Path) -> str | None:
    meta = prompt_dir / "metadata.jsonl"
    if not meta.is_file():
        return None
    try:
        first = meta.read_text(encoding="utf-8").splitlines()[0]
        value = json.loads(first).get("prompt")
    except (IndexError, ValueError, AttributeError, OSError):
        return None
    return str(value) if value is not None else None


def _prompt_list(folder: Path) -> dict[int, str]:
    path = folder / "i1lab" / "prompts.jsonl"
    out: dict[int, str] = {}
    if not path.is_file():
        return out
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            rec = json.loads(line)
            out[int(rec["index"])] = str(rec["prompt"])
        except (ValueError, KeyError, TypeError):
            continue
    return out
