"""Study files: a base run spec, what varies, profiles, and ``extends:`` chains.

A study file is YAML with these top-level keys (all optional except where noted)::

    study: adapter_size              # name; defaults to the file name
    description: ...
    extends: baseline.yaml           # another study file, relative to this one
    run: {model: {...}, train: {...}}   # the base run spec; dotted keys allowed; deep-merged over extends
    profiles: {tiny: {model.size: tiny, ...}}   # named overlays (dotted keys), merged over extends
    axes: {model.adapter: [v1, v2]}  # one-factor-at-a-time variants of the base
    variants: [{name, label, set: {dotted: value}}]   # named multi-key variants
    grid: {model.backbone: [a, b]}   # every combination becomes a base of its own
    seeds: [0, 1, 2]                 # repeat every run with train.seed = each
    search: {space, objective, ...}  # a search handed to Optuna (i1lab.spec.search)
    budget_hours: 5000               # refuse to submit new runs costing more accelerator-hours
    max_concurrent: 4                # at most this many of its runs at once (all submitters together)
    priority: 10                     # studies of higher priority go first when they compete for slices
    evals: [dpg, prism]              # shorthand for run.eval.benchmarks
    baseline: true                   # plan the unmodified base as the "baseline" run
    max_runs: 1000                   # refuse to plan more runs than this

``extends`` inherits every key; the child's ``run`` and ``profiles`` are deep-merged, other keys replace.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from i1lab.errors import Location, SpecError
from i1lab.spec import yamlpos
from i1lab.spec.fields import located_error, resolve
from i1lab.spec.layers import Layer, merge, split_dotted, sub_where
from i1lab.spec.run import RunSpec
from i1lab.spec.search import SearchSpec

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$"
MAX_RUNS = 100_000
"""The highest ``max_runs`` a study file may set: a plan of more runs is refused before it is built."""


class VariantDecl(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(..., pattern=NAME_PATTERN)
    label: str | None = None
    set: dict[str, Any] = Field(..., min_length=1)


class StudyFile(BaseModel):
    """Schema of the top level of a study file (after ``extends`` is merged)."""

    model_config = ConfigDict(extra="forbid")
    study: str | None = Field(None, pattern=NAME_PATTERN)
    description: str | None = None
    extends: str | None = None
    run: dict[str, Any] = Field(default_factory=dict)
    profiles: dict[str, dict[str, Any]] = Field(default_factory=dict)
    axes: dict[str, Annotated[list[Any], Field(min_length=1)]] = Field(default_factory=dict)
    variants: list[VariantDecl] = Field(default_factory=list)
    grid: dict[str, Annotated[list[Any], Field(min_length=1)]] = Field(default_factory=dict)
    seeds: list[int] = Field(default_factory=list)
    evals: list[str] | None = None
    baseline: bool = True
    max_runs: Annotated[int, Field(ge=1, le=MAX_RUNS)] = 1000
    budget_hours: Annotated[float, Field(gt=0)] | None = None
    max_concurrent: Annotated[int, Field(ge=1)] | None = None
    priority: int = 0
    search: SearchSpec | None = None

    @field_validator("seeds")
    @classmethod
    def _unique_seeds(cls, value: list[int]) -> list[int]:
        if len(set(value)) != len(value):
            raise ValueError("seeds listed twice")
        return value


@dataclass
class Study:
    """A loaded study: validated top level plus the located base layer and variation declarations."""

    name: str
    file: str
    doc: StudyFile
    base: Layer
    where: dict[yamlpos.PathKey, Location] = field(default_factory=dict)

    def locate(self, path: yamlpos.PathKey) -> Location | None:
        return yamlpos.locate(self.where, path)


def _load_merged(
    path: Path, stack: tuple[Path, ...], budget: yamlpos.Budget, by: Location | None = None
) -> yamlpos.Doc:
    resolved = path.resolve()
    if resolved in stack:
        chain = " -> ".join(p.name for p in (*stack, resolved))
        raise SpecError(f"extends cycle: {chain}", key="extends", where=by or Location(str(path), 1, 1))
    if len(stack) > yamlpos.MAX_EXTENDS_DEPTH:
        raise SpecError(
            f"extends chain longer than {yamlpos.MAX_EXTENDS_DEPTH} files", key="extends", where=by
        )
    doc = yamlpos.load(path, budget)
    if not isinstance(doc.data, dict):
        raise SpecError("a study file must be a mapping of keys", where=doc.locate(()))
    parent_ref = doc.data.get("extends")
    if parent_ref is None:
        return doc
    if not isinstance(parent_ref, str):
        raise SpecError("extends must be a file path", key="extends", where=doc.where.get(("extends",)))
    by = doc.where.get(("extends",))
    try:
        parent_path = path.parent / parent_ref
        found = parent_path.is_file()
    except (OSError, ValueError) as exc:  # a name too long, a NUL byte
        raise SpecError(f"cannot read {parent_ref!r}: {exc}", key="extends", where=by) from None
    if not found:
        raise SpecError(f"file not found: {parent_path}", key="extends", where=by)
    parent = _load_merged(parent_path, (*stack, resolved), budget, by)
    return _merge_docs(parent, doc)


def _merge_docs(parent: yamlpos.Doc, child: yamlpos.Doc) -> yamlpos.Doc:
    data = {k: v for k, v in parent.data.items() if k not in ("study", "extends")}
    where = {k: v for k, v in parent.where.items() if k and k[0] not in ("study", "extends")}
    for key, value in child.data.items():
        if key in ("run", "profiles") and isinstance(value, dict) and isinstance(data.get(key), dict):
            if key == "run":
                p = Layer(data[key], sub_where(where, (key,)))
                c = Layer(value, sub_where(child.where, (key,)))
                merged = merge(_dotted_layer(p), _dotted_layer(c))
            else:
                merged = Layer(dict(data[key]), sub_where(where, (key,)))
                for name, overlay in value.items():
                    if isinstance(overlay, dict) and isinstance(merged.data.get(name), dict):
                        merged.data[name] = {**merged.data[name], **overlay}
                    else:
                        merged.data[name] = overlay
                merged.where.update(sub_where(child.where, (key,)))
            data[key] = merged.data
            where = {k: v for k, v in where.items() if k[0] != key}
            where.update({(key, *k): v for k, v in merged.where.items()})
        else:
            data[key] = value
            where = {k: v for k, v in where.items() if not k or k[0] != key}
            where.update({k: v for k, v in child.where.items() if k and k[0] == key})
    where[()] = child.where.get((), Location(child.file, 1, 1))
    return yamlpos.Doc(data, where, child.file)


def _dotted_layer(layer: Layer) -> Layer:
    where = dict(layer.where)
    data = split_dotted(layer.data, where)
    return Layer(data, where)


def load_study(path: str | Path) -> Study:
    """Load a study file with its ``extends`` chain; top-level and path errors are raised here."""
    path = Path(path)
    try:
        found = path.is_file()
    except (OSError, ValueError) as exc:  # a name too long, a NUL byte
        raise SpecError(f"cannot read {path}: {exc}") from None
    if not found:
        raise SpecError(f"study file not found: {path}")
    doc = _load_merged(path, (), yamlpos.Budget())
    try:
        top = StudyFile.model_validate(doc.data)
    except ValidationError as exc:
        raise located_error(exc, StudyFile, doc.locate) from None
    name = top.study or path.stem
    base = _dotted_layer(Layer(dict(top.run), sub_where(doc.where, ("run",))))
    if top.evals is not None:
        base.data.setdefault("eval", {})
        if isinstance(base.data["eval"], dict):
            base.data["eval"]["benchmarks"] = top.evals
            base.where[("eval", "benchmarks")] = doc.where.get(("evals",), Location(str(path), 1, 1))
    study = Study(name=name, file=str(path), doc=top, base=base, where=doc.where)
    _check_paths(study)
    return study


def _check_paths(study: Study) -> None:
    """Every dotted path used by axes, grid, variants and profiles must name a RunSpec field."""
    doc = study.doc
    checks: list[tuple[str, yamlpos.PathKey]] = []
    checks += [(p, ("axes", p)) for p in doc.axes]
    checks += [(p, ("grid", p)) for p in doc.grid]
    if doc.search is not None:
        checks += [(p, ("search", "space", p)) for p in doc.search.space]
    for i, variant in enumerate(doc.variants):
        checks += [(p, ("variants", i, "set", p)) for p in variant.set]
    for name, overlay in doc.profiles.items():
        checks += [(p, ("profiles", name, p)) for p in overlay if p not in ("axes", "grid", "variants")]
        for reserved in ("axes", "grid", "variants"):
            block = overlay.get(reserved)
            if block is None:
                continue
            if not isinstance(block, dict):
                raise SpecError(
                    f"profile {reserved} must be a mapping", where=study.locate(("profiles", name, reserved))
                )
            if reserved == "variants":
                for vname, sets in block.items():
                    if isinstance(sets, dict):
                        checks += [(p, ("profiles", name, reserved, vname, p)) for p in sets]
            else:
                checks += [(p, ("profiles", name, reserved, p)) for p in block]
    for dotted, where in checks:
        if dotted in ("name", "label"):
            raise SpecError("names and labels cannot vary", key=dotted, where=study.locate(where))
        try:
            resolve(RunSpec, dotted)
        except KeyError as exc:
            raise SpecError(str(exc.args[0]), key=dotted, where=study.locate(where)) from None
    names = [v.name for v in doc.variants]
    for i, name in enumerate(names):
        if name in names[:i] or name == "baseline":
            raise SpecError(
                "duplicate variant name" if name != "baseline" else "the name 'baseline' is reserved",
                key=f"variants.{i}.name",
                where=study.locate(("variants", i, "name")),
            )
