"""Planning: a study file -> the concrete runs it asks for, each hashed, new or reused.

``expand`` is pure: it turns a :class:`~i1lab.spec.study.Study` (and an optional profile) into validated
:class:`RunSpec` objects. ``make_plan`` is pure too: given which hashes already exist in the registry it
marks every run new, reused or to-resume. Both are called by ``i1lab plan`` and ``i1lab submit``.
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from i1lab.errors import I1labError, Location, SpecError
from i1lab.hashing import content_hash, run_hashes
from i1lab.plan.cost import RunCost, run_cost
from i1lab.spec.fields import located_error
from i1lab.spec.layers import Layer, merge, set_path, split_dotted, sub_where
from i1lab.spec.run import RunSpec
from i1lab.spec.study import Study

if TYPE_CHECKING:
    from i1lab.registry import ExistingRun


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
    training_hash: str = Field("", exclude=True)  # of its work directory (computed with ``hash``)


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
    training_hash: str = Field("", exclude=True)  # "" when not computed yet
    #: why the run cannot run here (see :func:`run_problems`); empty: it can
    missing: list[str] = []

    @property
    def runnable(self) -> bool:
        return self.status == "reused" or not self.missing


class Plan(BaseModel):
    study: str
    file: str
    profile: str | None
    runs: list[PlannedRun]
    budget_hours: float | None = None

    def totals(self) -> dict[str, float]:
        """Accelerator-hours and FLOPs of all runs, and of the runs that still have to run (and can)."""
        new = [r for r in self.runs if r.status != "reused" and r.cost is not None]
        every = [r for r in self.runs if r.cost is not None]
        return {
            "accelerator_hours": sum(r.cost.accelerator_hours for r in every if r.cost),
            "accelerator_hours_new": sum(r.cost.accelerator_hours for r in new if r.cost),
            "accelerator_hours_to_run": sum(r.cost.accelerator_hours for r in new if r.cost and r.runnable),
            "total_flops": sum(r.cost.total_flops for r in every if r.cost),
        }

    def check_budget(self, budget_hours: float | None = None) -> None:
        """Refuse a plan whose new runs cost more accelerator-hours than the budget (runs that cannot run
        here count too: the budget is what the plan costs wherever its weights are)."""
        budget = budget_hours if budget_hours is not None else self.budget_hours
        if budget is None:
            return
        need = self.totals()["accelerator_hours_new"]
        if need > budget:
            raise SpecError(
                f"the new runs need {need:,.1f} accelerator-hours, over the budget of {budget:,.1f}",
                key="budget_hours",
            )

    def check_runnable(self) -> None:
        """Refuse, in one line, a plan with a run that cannot run here (its weights or data are missing)."""
        blocked = [r for r in self.runs if not r.runnable]
        if blocked:
            first = blocked[0]
            more = f" (and {len(blocked) - 1} more runs; `i1lab plan` lists them)" if len(blocked) > 1 else ""
            raise I1labError(f"run {self.study}/{first.name} cannot run here: {first.missing[0]}{more}")

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


Located = list[tuple[Any, Location | None]]  # values, each with where it was written

RESERVED_PROFILE_KEYS = ("axes", "grid", "variants")


@dataclass
class Scaled:
    """A study as a profile sees it: the overlay layer and the axes, grid and variant values in force."""

    overlay: Layer
    axes: dict[str, Located]
    grid: dict[str, Located]
    variants: list[tuple[str, str | None, dict[str, tuple[Any, Location | None]]]]


def _located(study: Study, prefix: tuple[Any, ...], values: list[Any]) -> Located:
    return [(v, study.locate((*prefix, i))) for i, v in enumerate(values)]


def scale(study: Study, profile: str | None) -> Scaled:
    """Apply a profile: its dotted keys overlay the base; its ``axes`` replace an axis's values (the values
    that make sense at that scale, e.g. the encoders a CPU can run), its ``grid`` the whole grid; its
    ``variants`` entries override keys of named variants."""
    doc = study.doc
    axes = {p: _located(study, ("axes", p), vs) for p, vs in doc.axes.items()}
    grid = {p: _located(study, ("grid", p), vs) for p, vs in doc.grid.items()}
    variants = [
        (v.name, v.label, {p: (x, study.locate(("variants", i, "set", p))) for p, x in v.set.items()})
        for i, v in enumerate(doc.variants)
    ]
    if profile is None:
        return Scaled(Layer(), axes, grid, variants)
    if profile not in doc.profiles:
        known = ", ".join(doc.profiles) or "none defined"
        raise SpecError(f"unknown profile {profile!r}; known: {known}", key="profiles")
    raw = dict(doc.profiles[profile])
    at = ("profiles", profile)
    for path, values in (raw.pop("axes", None) or {}).items():
        where = study.locate((*at, "axes", path))
        if path not in axes:
            raise SpecError("profile replaces an axis the study does not have", key=path, where=where)
        if not isinstance(values, list) or not values:
            raise SpecError("a profile's axis must be a non-empty list of values", key=path, where=where)
        axes[path] = _located(study, (*at, "axes", path), values)
    if "grid" in raw:
        new_grid = raw.pop("grid") or {}
        if not isinstance(new_grid, dict) or not all(isinstance(v, list) and v for v in new_grid.values()):
            raise SpecError(
                "profile grid must map paths to non-empty lists",
                key="grid",
                where=study.locate((*at, "grid")),
            )
        grid = {p: _located(study, (*at, "grid", p), vs) for p, vs in new_grid.items()}
    names = [v[0] for v in variants]
    for name, overrides in (raw.pop("variants", None) or {}).items():
        where = study.locate((*at, "variants", name))
        if name not in names or not isinstance(overrides, dict):
            raise SpecError(f"profile overrides variant {name!r}, which the study does not have", where=where)
        vname, label, sets = variants[names.index(name)]
        sets = {**sets, **{p: (x, study.locate((*at, "variants", name, p))) for p, x in overrides.items()}}
        variants[names.index(name)] = (vname, label, sets)
    where_map = {
        k: v for k, v in sub_where(study.where, at).items() if k and k[0] not in RESERVED_PROFILE_KEYS
    }
    return Scaled(Layer(split_dotted(raw, where_map), where_map), axes, grid, variants)


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
    scaled = scale(study, profile)
    base = merge(study.base, scaled.overlay)
    doc = study.doc
    grid_paths = list(scaled.grid)
    seeds: list[int | None] = list(doc.seeds) or [None]
    # Count before building: a grid multiplies, and a few short lines can name billions of runs.
    per_cell = (
        int(bool(doc.baseline or grid_paths)) + sum(map(len, scaled.axes.values())) + len(scaled.variants)
    )
    count = math.prod(len(vs) for vs in scaled.grid.values()) * per_cell * len(seeds)
    if count > doc.max_runs:
        raise SpecError(
            f"the study expands to {count} runs, more than max_runs={doc.max_runs}",
            key="max_runs",
            where=study.locate(("max_runs",)) or study.locate(("grid",)),
        )
    cells = list(itertools.product(*(scaled.grid[p] for p in grid_paths))) or [()]

    raw: list[tuple[str, str | None, Layer, dict[str, Any], bool, str]] = []
    for cell in cells:
        cell_layer = base.copy()
        for path, (value, loc) in zip(grid_paths, cell, strict=True):
            set_path(cell_layer, tuple(path.split(".")), value, loc)
        cell_varied = {path: value for path, (value, _) in zip(grid_paths, cell, strict=True)}
        prefix = ",".join(_axis_name(p, v) for p, v in cell_varied.items())

        def full(name: str, _prefix: str = prefix) -> str:
            return f"{_prefix},{name}" if _prefix else name

        base_name = full("baseline")
        entries: list[tuple[str, str | None, Layer, dict[str, Any], bool]] = []
        if doc.baseline or grid_paths:
            entries.append((base_name, None, cell_layer, dict(cell_varied), True))
        for path, values in scaled.axes.items():
            for value, loc in values:
                layer = cell_layer.copy()
                set_path(layer, tuple(path.split(".")), value, loc)
                entries.append(
                    (full(_axis_name(path, value)), None, layer, {**cell_varied, path: value}, False)
                )
        for name, label, sets in scaled.variants:
            layer = cell_layer.copy()
            for path, (value, loc) in sets.items():
                set_path(layer, tuple(path.split(".")), value, loc)
            varied = {**cell_varied, **{p: v for p, (v, _) in sets.items()}}
            entries.append((full(name), label, layer, varied, False))
        for seed in seeds:
            for name, label, layer, varied, is_base in entries:
                baseline = base_name
                if seed is not None:
                    layer = layer.copy()
                    set_path(layer, ("train", "seed"), seed, study.locate(("seeds",)))
                    name, baseline = f"{name}#seed={seed}", f"{base_name}#seed={seed}"
                    varied = {**varied, "train.seed": seed}
                raw.append((name, label, layer, varied, is_base, baseline))

    if len(raw) > doc.max_runs:
        raise SpecError(
            f"the study expands to {len(raw)} runs, more than max_runs={doc.max_runs}",
            key="max_runs",
            where=study.locate(("max_runs",)) or study.locate(("grid",)),
        )

    specs = {name: _validate(layer, name, label, varied) for name, label, layer, varied, _, _ in raw}
    specs = _resolve_resume(specs, {name: layer for name, _, layer, *_ in raw})
    by_hash: dict[str, Variant] = {}
    order: list[str] = []
    for name, label, _, varied, is_base, baseline in raw:
        spec = specs[name]
        digest, training = run_hashes(spec)
        if digest in by_hash:
            prev = by_hash[digest]
            by_hash[digest] = prev.model_copy(update={"aliases": (*prev.aliases, name)})
            continue
        by_hash[digest] = Variant(
            training_hash=training,
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


HEX64 = frozenset("0123456789abcdef")


def _resolve_resume(specs: dict[str, RunSpec], layers: Mapping[str, Layer]) -> dict[str, RunSpec]:
    """Replace ``data.resume_from: <run name>`` by that run's content hash, so lineage is content-based.

    A resolution stage resumes from another run of the same study (by name) or from any run by its
    64-character hash. Chains resolve parents first; a cycle or an unknown name is a located error.
    """
    resolved: dict[str, RunSpec] = {}

    def resolve(name: str, stack: tuple[str, ...]) -> RunSpec:
        if name in resolved:
            return resolved[name]
        spec = specs[name]
        ref = spec.data.resume_from
        if ref is not None and not (len(ref) == 64 and set(ref) <= HEX64):
            where = layers[name].locate(("data", "resume_from"))
            ref = _sibling(name, ref, specs)
            if ref not in specs:
                raise SpecError(
                    f"resumes from {ref!r}, which is neither a run of this study nor a 64-hex run hash",
                    key="data.resume_from",
                    where=where,
                )
            if ref in stack or ref == name:
                raise SpecError(
                    f"resume_from cycle: {' -> '.join((*stack, name, ref))}",
                    key="data.resume_from",
                    where=where,
                )
            parent = resolve(ref, (*stack, name))
            spec = spec.model_copy(
                update={"data": spec.data.model_copy(update={"resume_from": content_hash(parent)})}
            )
        resolved[name] = spec
        return spec

    return {name: resolve(name, ()) for name in specs}


def _sibling(name: str, ref: str, specs: Mapping[str, RunSpec]) -> str:
    """The run ``ref`` names from run ``name``: in the same grid cell and with the same seed."""
    if ref in specs:
        return ref
    stem, hash_mark, seed = name.partition("#")
    cell = stem.rsplit(",", 1)[0] if "," in stem else ""
    candidate = (f"{cell}," if cell else "") + ref + (f"#{seed}" if hash_mark else "")
    return candidate if candidate in specs else ref


def _label(varied: Mapping[str, Any]) -> str:
    if not varied:
        return "baseline"
    return ", ".join(f"{k}={json.dumps(v, sort_keys=True)}" for k, v in varied.items())


def make_plan(
    study: Study,
    variants: list[Variant],
    existing: Mapping[str, ExistingRun],
    profile: str | None,
    problems: Callable[[RunSpec], list[str]] | None = None,
) -> Plan:
    """Mark each variant new, reused (finished in the registry) or resume (in the registry, unfinished),
    and, for those that still have to run, what stops them running here (``problems``: by default
    :func:`run_problems`)."""
    if problems is None:
        problems = run_problems
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
                training_hash=v.training_hash,
                missing=problems(v.spec) if status != "reused" else [],
            )
        )
    return Plan(
        study=study.name, file=study.file, profile=profile, runs=runs, budget_hours=study.doc.budget_hours
    )


def run_problems(spec: RunSpec) -> list[str]:
    """What stops ``spec`` running here, one line each: frozen models whose weights are missing or
    mismatched (:mod:`i1lab.spec.weights`), data sources whose shards are not found. Reads configs and
    globs."""
    from i1lab.data.sources import source_problem
    from i1lab.spec.weights import weight_problems

    data = [p for s in spec.data.kept_sources() if (p := source_problem(s)) is not None]
    return weight_problems(spec) + [f"data.sources: {p}" for p in data]


def _cost(spec: RunSpec) -> RunCost | None:
    from i1lab.spec.model import model_config

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
    summary = {"runs": len(unique), "new": 0, "reused": 0, "resume": 0, "not_runnable": 0}
    totals = {"params_max": 0, "total_flops": 0.0, "accelerator_hours": 0.0, "accelerator_hours_to_run": 0.0}
    runs = []
    for u in unique:
        r = u.run
        summary[r.status] += 1
        summary["not_runnable"] += not r.runnable
        cost = r.cost.model_dump() if r.cost else None
        if r.cost:
            totals["params_max"] = max(totals["params_max"], r.cost.params)
            totals["total_flops"] += r.cost.total_flops
            totals["accelerator_hours"] += r.cost.accelerator_hours
            if r.status != "reused" and r.runnable:
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
                "runnable": r.runnable,
                "missing": r.missing,
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
