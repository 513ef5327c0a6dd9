"""Planning: a study file -> the concrete runs it asks for, each hashed, new or reused.

``expand`` is pure: it turns a :class:`~i1lab.spec.study.Study` (and an optional profile) into validated
:class:`RunSpec` objects. ``make_plan`` is pure too: given which hashes already exist in the registry it
marks every run new, reused or to-resume. Both are called by ``i1lab plan`` and ``i1lab submit``.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from i1lab.cost import RunCost, run_cost
from i1lab.errors import Location, SpecError
from i1lab.hashing import content_hash
from i1lab.spec.fields import located_error
from i1lab.spec.layers import Layer, merge, set_path, split_dotted, sub_where
from i1lab.spec.run import RunSpec
from i1lab.spec.study import Study


class Variant(BaseModel):
    """One run of a study before registry lookup."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)
    name: str
    label: str
    hash: str
    spec: RunSpec
    baseline: str  # name of the run this one is compared against
    is_baseline: bool
    varied: dict[str, Any]
    aliases: tuple[str, ...] = ()


class ExistingRun(BaseModel):
    """What the planner needs to know about a run already in the registry."""

    id: int
    hash: str
    status: str
    step: int = 0
    names: list[str] = []  # study/name of the run in every study that has it


class PlannedRun(BaseModel):
    name: str
    label: str
    hash: str
    status: Literal["new", "reused", "resume"]
    reused_run_id: int | None
    is_baseline: bool
    baseline: str
    varied: dict[str, Any]
    aliases: list[str]
    reused_from: list[str] = []
    cost: RunCost | None = None
    spec: RunSpec


class Plan(BaseModel):
    study: str
    file: str
    profile: str | None
    runs: list[PlannedRun]
    budget_hours: float | None = None

    def totals(self) -> dict[str, float]:
        """Accelerator-hours and FLOPs of all runs, and of the runs that still have to run."""
        todo = [r for r in self.runs if r.status != "reused" and r.cost is not None]
        every = [r for r in self.runs if r.cost is not None]
        return {
            "accelerator_hours": sum(r.cost.accelerator_hours for r in every if r.cost),
            "accelerator_hours_to_run": sum(r.cost.accelerator_hours for r in todo if r.cost),
            "total_flops": sum(r.cost.total_flops for r in every if r.cost),
        }

    def check_budget(self, budget_hours: float | None = None) -> None:
        """Refuse a plan whose new runs cost more accelerator-hours than the budget."""
        budget = budget_hours if budget_hours is not None else self.budget_hours
        if budget is None:
            return
        need = self.totals()["accelerator_hours_to_run"]
        if need > budget:
            raise SpecError(
                f"the new runs need {need:,.1f} accelerator-hours, over the budget of {budget:,.1f}",
                key="budget_hours",
            )

    @property
    def new(self) -> list[PlannedRun]:
        return [r for r in self.runs if r.status != "reused"]

    def summary(self) -> dict[str, int]:
        out = {"runs": len(self.runs), "new": 0, "reused": 0, "resume": 0}
        for run in self.runs:
            out[run.status] += 1
        return out


def _value_name(value: Any) -> str:
    if isinstance(value, dict):
        return "-".join(_value_name(v) for v in value.values())
    if isinstance(value, list):
        return "+".join(_value_name(v) for v in value)
    if isinstance(value, bool):
        return "on" if value else "off"
    return str(value)


def _axis_name(path: str, value: Any) -> str:
    return f"{path.split('.')[-1]}={_value_name(value)}"


def _overlay(study: Study, profile: str | None) -> tuple[Layer, dict[str, list[Any]], dict[str, Location]]:
    """The profile's overlay layer, and the axes in force under it (a profile may replace axis values)."""
    axes = dict(study.doc.axes)
    axis_where = {p: study.locate(("axes", p)) or Location(study.file, 1, 1) for p in axes}
    if profile is None:
        return Layer(), axes, axis_where
    if profile not in study.doc.profiles:
        known = ", ".join(study.doc.profiles) or "none defined"
        raise SpecError(f"unknown profile {profile!r}; known: {known}", key="profiles")
    raw = dict(study.doc.profiles[profile])
    replaced = raw.pop("axes", None) or {}
    for path, values in replaced.items():
        if path not in axes:
            raise SpecError(
                "profile replaces an axis the study does not have",
                key=path,
                where=study.locate(("profiles", profile, "axes", path)),
            )
        if not isinstance(values, list) or len(values) != len(axes[path]):
            raise SpecError(
                f"must be a list of {len(axes[path])} values, one per axis value",
                key=path,
                where=study.locate(("profiles", profile, "axes", path)),
            )
        axes[path] = values
        axis_where[path] = study.locate(("profiles", profile, "axes", path)) or axis_where[path]
    where = sub_where(study.where, ("profiles", profile))
    where = {k: v for k, v in where.items() if k and k[0] != "axes"}
    data = split_dotted(raw, where)
    return Layer(data, where), axes, axis_where


def _validate(layer: Layer, name: str, label: str | None, varied: Mapping[str, Any]) -> RunSpec:
    data = dict(layer.data)
    data["name"] = name
    if label is not None:
        data["label"] = label
    try:
        return RunSpec.model_validate(data)
    except ValidationError as exc:
        err = located_error(exc, RunSpec, layer.locate)
        # A cross-field rule fails on a whole section; blame the varied key inside it, if any.
        section = tuple(str(p) for p in exc.errors()[0]["loc"])
        for dotted in varied:
            path = tuple(dotted.split("."))
            if path[: len(section)] == section and path != section:
                where = layer.locate(path)
                raise SpecError(f"{err.message} (in variant {name})", key=dotted, where=where) from None
        raise err from None


def expand(study: Study, profile: str | None = None) -> list[Variant]:
    """All runs of a study, baseline first, duplicates (same hash) folded into aliases."""
    overlay, axes, axis_where = _overlay(study, profile)
    base = merge(study.base, overlay)
    doc = study.doc
    grid_paths = list(doc.grid)
    cells = list(itertools.product(*(doc.grid[p] for p in grid_paths))) or [()]
    seeds: list[int | None] = list(doc.seeds) or [None]

    raw: list[tuple[str, str | None, Layer, dict[str, Any], bool, str]] = []
    for cell in cells:
        cell_layer = base.copy()
        prefix_parts = []
        for path, value in zip(grid_paths, cell, strict=True):
            loc = study.locate(("grid", path, doc.grid[path].index(value)))
            set_path(cell_layer, tuple(path.split(".")), value, loc)
            prefix_parts.append(_axis_name(path, value))
        prefix = ",".join(prefix_parts)
        cell_varied = dict(zip(grid_paths, cell, strict=True))

        def full(name: str, _prefix: str = prefix) -> str:
            return f"{_prefix},{name}" if _prefix else name

        base_name = full("baseline")
        entries: list[tuple[str, str | None, Layer, dict[str, Any], bool]] = []
        if doc.baseline or grid_paths:
            entries.append((base_name, None, cell_layer, dict(cell_varied), True))
        for path, values in axes.items():
            for idx, value in enumerate(values):
                layer = cell_layer.copy()
                loc = (
                    study.locate(("axes", path, idx))
                    if axes[path] is doc.axes.get(path)
                    else axis_where[path]
                )
                set_path(layer, tuple(path.split(".")), value, loc)
                entries.append(
                    (full(_axis_name(path, value)), None, layer, {**cell_varied, path: value}, False)
                )
        for i, variant in enumerate(doc.variants):
            layer = cell_layer.copy()
            for path, value in variant.set.items():
                set_path(layer, tuple(path.split(".")), value, study.locate(("variants", i, "set", path)))
            entries.append((full(variant.name), variant.label, layer, {**cell_varied, **variant.set}, False))
        for seed in seeds:
            for name, label, layer, varied, is_base in entries:
                if seed is not None:
                    layer = layer.copy()
                    set_path(layer, ("train", "seed"), seed, study.locate(("seeds",)))
                    name = f"{name}#seed={seed}"
                    varied = {**varied, "train.seed": seed}
                raw.append(
                    (
                        name,
                        label,
                        layer,
                        varied,
                        is_base,
                        base_name if seed is None else f"{base_name}#seed={seed}",
                    )
                )

    if len(raw) > doc.max_runs:
        raise SpecError(
            f"the study expands to {len(raw)} runs, more than max_runs={doc.max_runs}",
            key="max_runs",
            where=study.locate(("max_runs",)) or study.locate(("grid",)),
        )

    by_hash: dict[str, Variant] = {}
    order: list[str] = []
    for name, label, layer, varied, is_base, baseline in raw:
        spec = _validate(layer, name, label, varied)
        digest = content_hash(spec)
        if digest in by_hash:
            prev = by_hash[digest]
            by_hash[digest] = prev.model_copy(update={"aliases": (*prev.aliases, name)})
            continue
        by_hash[digest] = Variant(
            name=name,
            label=label or _label(varied),
            hash=digest,
            spec=spec,
            baseline=baseline,
            is_baseline=is_base,
            varied=varied,
        )
        order.append(digest)
    return [by_hash[h] for h in order]


def _label(varied: Mapping[str, Any]) -> str:
    if not varied:
        return "baseline"
    return ", ".join(f"{k}={json.dumps(v, sort_keys=True)}" for k, v in varied.items())


def make_plan(
    study: Study, variants: list[Variant], existing: Mapping[str, ExistingRun], profile: str | None
) -> Plan:
    """Mark each variant new, reused (finished in the registry) or resume (in the registry, unfinished)."""
    runs = []
    for v in variants:
        prior = existing.get(v.hash)
        status: Literal["new", "reused", "resume"]
        if prior is None:
            status = "new"
        elif prior.status in ("finished", "imported"):
            status = "reused"
        else:
            status = "resume"
        runs.append(
            PlannedRun(
                reused_from=prior.names if prior else [],
                cost=_cost(v.spec),
                name=v.name,
                label=v.label,
                hash=v.hash,
                status=status,
                reused_run_id=prior.id if prior else None,
                is_baseline=v.is_baseline,
                baseline=v.baseline,
                varied=v.varied,
                aliases=list(v.aliases),
                spec=v.spec,
            )
        )
    return Plan(
        study=study.name, file=study.file, profile=profile, runs=runs, budget_hours=study.doc.budget_hours
    )


def _cost(spec: RunSpec) -> RunCost | None:
    from i1lab.train.build import model_config

    try:
        return run_cost(spec, model_config(spec))
    except NotImplementedError:
        return None


class UniqueRun(BaseModel):
    """One run across several planned studies (the same hash planned once)."""

    members: list[str]  # study/name
    run: PlannedRun


def combine(plans: list[Plan]) -> list[UniqueRun]:
    """The distinct runs of several plans, in first-seen order, each with every study/name that has it."""
    seen: dict[str, UniqueRun] = {}
    for plan in plans:
        for r in plan.runs:
            names = [f"{plan.study}/{n}" for n in (r.name, *r.aliases)]
            if r.hash in seen:
                seen[r.hash].members.extend(names)
            else:
                seen[r.hash] = UniqueRun(members=names, run=r)
    return list(seen.values())


def report(plans: list[Plan]) -> dict[str, Any]:
    """The machine-readable plan of one or several studies (what ``i1lab plan --json`` prints)."""
    unique = combine(plans)
    summary = {"runs": len(unique), "new": 0, "reused": 0, "resume": 0}
    totals = {"params_max": 0, "total_flops": 0.0, "accelerator_hours": 0.0, "accelerator_hours_to_run": 0.0}
    runs = []
    for u in unique:
        r = u.run
        summary[r.status] += 1
        cost = r.cost.model_dump() if r.cost else None
        if r.cost:
            totals["params_max"] = max(totals["params_max"], r.cost.params)
            totals["total_flops"] += r.cost.total_flops
            totals["accelerator_hours"] += r.cost.accelerator_hours
            if r.status != "reused":
                totals["accelerator_hours_to_run"] += r.cost.accelerator_hours
        runs.append(
            {
                "name": r.name,
                "members": u.members,
                "label": r.label,
                "hash": r.hash,
                "status": r.status,
                "reused_run_id": r.reused_run_id,
                "reused_from": r.reused_from,
                "baseline": r.is_baseline,
                "compared_to": r.baseline,
                "varied": r.varied,
                "cost": cost,
                "spec": r.spec.model_dump(mode="json"),
            }
        )
    return {
        "studies": [
            {
                "study": p.study,
                "file": p.file,
                "profile": p.profile,
                "runs": len(p.runs),
                "budget_hours": p.budget_hours,
            }
            for p in plans
        ],
        "summary": summary,
        "totals": totals,
        "runs": runs,
    }
