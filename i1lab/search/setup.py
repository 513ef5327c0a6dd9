"""What a search needs before anything runs: its study, base spec, checkpoint and validated space.

:func:`prepare` reads the study file, applies the profile, resolves ``--checkpoint RUN@STEP`` and checks
every dimension at its bounds, the objective and the flags, so that a bad search fails with one located
line before the registry or Optuna is written. :meth:`Setup.trial_spec` is the pure map from a
trial's params to its run spec.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from i1lab.errors import I1labError, Location, SpecError
from i1lab.hashing import content_hash
from i1lab.registry import Registry
from i1lab.search.space import extremes, grid_points, show
from i1lab.spec.fields import located_error
from i1lab.spec.layers import Layer, merge
from i1lab.spec.run import RunSpec
from i1lab.spec.search import SearchSpec

#: Top-level sections an inference search takes from the study file (the rest from the checkpoint's run).
STUDY_SECTIONS = ("sampling", "eval", "resources")


class Checkpoint(BaseModel):
    """The existing checkpoint an inference search samples from."""

    run_id: int
    hash: str
    step: int
    workdir: str
    params: int | None = None

    def ref(self) -> str:
        return f"{self.hash[:12]}@{self.step}"


class Setup(BaseModel):
    """A validated search: what every trial starts from and where its errors point."""

    model_config = ConfigDict(frozen=True)
    name: str
    study_file: str
    profile: str | None
    description: str | None
    search: SearchSpec
    base: RunSpec
    checkpoint: Checkpoint | None
    where: dict[str, Location | None]  # searched path -> where the study file declares it
    block: Location | None = None  # where the study file's search: block starts

    @property
    def kind(self) -> str:
        return "inference" if self.checkpoint is not None else "training"

    @property
    def step(self) -> int:
        """The checkpoint step every trial is scored at (the objective's step)."""
        return self.checkpoint.step if self.checkpoint is not None else self.base.train.steps

    @property
    def judges(self) -> dict[str, str]:
        """Benchmark -> the judge label (prefix) its scores carry."""
        ev = self.base.eval
        return {b: ev.judge_for(b).split(":")[0] for b in ev.benchmarks}

    def trial_spec(self, params: dict[str, Any], name: str = "trial") -> RunSpec:
        """The base spec with ``params`` (dotted path -> spec value) set, validated. Pure."""
        data = self.base.model_dump(mode="json")
        data["name"] = name
        data.pop("label", None)
        for path, value in params.items():
            node = data
            parts = path.split(".")
            for part in parts[:-1]:
                child = node.get(part)
                if not isinstance(child, dict):
                    child = {}
                    node[part] = child
                node = child
            node[parts[-1]] = copy.deepcopy(value)
        try:
            return RunSpec.model_validate(data)
        except ValidationError as exc:
            err = located_error(exc, RunSpec, lambda _path: None)
            inside = [p for p in params if err.key == p or err.key.startswith(p + ".")]
            around = [p for p in params if p.startswith(err.key + ".")]
            path = (inside or around or list(params) or [""])[0]
            shown = ", ".join(f"{p}={show(v)}" for p, v in params.items())
            raise SpecError(
                f"{err.message} (with {shown})", key=err.key, where=self.where.get(path)
            ) from None

    def grid_size(self) -> int | None:
        return len(grid_points(self.search)) if self.search.sampler == "grid" else None


def parse_checkpoint(ref: str) -> tuple[str, int | None]:
    """``RUN@STEP`` -> (RUN, STEP); ``RUN`` alone -> (RUN, None): its last checkpoint. Pure."""
    run, at, step = ref.rpartition("@")
    if not at:
        return ref, None
    if not run or not step.isdigit():
        raise I1labError(f"--checkpoint {ref!r}: expected RUN@STEP, e.g. cfg_tiny/baseline@1000")
    return run, int(step)


def resolve_checkpoint(registry: Registry, ref: str) -> tuple[Checkpoint, RunSpec]:
    """The registry run and kept checkpoint ``RUN@STEP`` names, with the run's spec."""
    run_ref, step = parse_checkpoint(ref)
    run = registry.find_run(run_ref)
    if not run.workdir:
        raise I1labError(f"--checkpoint {ref}: run {run.hash[:12]} has no work directory")
    folder = Path(run.workdir) / "checkpoints"
    kept = sorted(int(p.name) for p in folder.iterdir() if p.name.isdigit()) if folder.is_dir() else []
    if step is None:
        if not kept:
            raise I1labError(f"--checkpoint {ref}: run {run.hash[:12]} has no checkpoint in {folder}")
        step = kept[-1]
    if step not in kept:
        listed = ", ".join(map(str, kept)) or "none"
        raise I1labError(
            f"--checkpoint {ref}: no checkpoint at step {step} in {folder} (kept steps: {listed})"
        )
    try:
        spec = RunSpec.model_validate(run.spec)
    except ValidationError as exc:
        raise I1labError(f"--checkpoint {ref}: the run's recorded spec no longer validates: {exc}") from None
    checkpoint = Checkpoint(run_id=run.id, hash=run.hash, step=step, workdir=run.workdir, params=run.params)
    return checkpoint, spec


def _study_base(layer: Layer, name: str) -> RunSpec:
    data = dict(layer.data)
    data["name"] = name
    try:
        return RunSpec.model_validate(data)
    except ValidationError as exc:
        raise located_error(exc, RunSpec, layer.locate) from None


def prepare(
    study_file: Path,
    profile: str | None,
    *,
    checkpoint: str | None = None,
    trials: int | None = None,
    parallel: int | None = None,
    registry: Registry | None = None,
) -> Setup:
    """Load and check a search (see the module doc). Reads the registry only to resolve ``checkpoint``."""
    from i1lab.plan.planner import scale
    from i1lab.spec import load_study

    study = load_study(study_file)
    search = study.doc.search
    if search is None:
        raise SpecError("the study file has no search: block", where=study.locate(()))
    updates: dict[str, int] = {}
    for flag, value in (("trials", trials), ("parallel", parallel)):
        if value is not None:
            if value < 1:
                raise I1labError(f"--{flag} must be at least 1 (got {value})")
            updates[flag] = value
    search = search.model_copy(update=updates)
    name = search.name or study.name
    where = {p: study.locate(("search", "space", p)) for p in search.space}
    layer = merge(study.base, scale(study, profile).overlay)
    base = _study_base(layer, name)
    ckpt: Checkpoint | None = None
    if checkpoint is not None:
        training = [p for p in search.space if not p.startswith("sampling.")]
        if training:
            raise SpecError(
                "--checkpoint scores an existing checkpoint, so the space may only hold sampling.* paths",
                key=training[0],
                where=where[training[0]],
            )
        ckpt, ckpt_spec = resolve_checkpoint(registry or Registry(), checkpoint)
        data = ckpt_spec.model_dump(mode="json")
        own = base.model_dump(mode="json")
        data.update({k: own[k] for k in STUDY_SECTIONS})
        data["name"] = name
        data.pop("label", None)
        base = RunSpec.model_validate(data)
    elif search.inference_only:
        raise SpecError(
            "every searched path is a sampling setting: give the checkpoint to sample from with "
            "--checkpoint RUN@STEP (RUN: a run id, hash prefix or study/name)",
            key="search.space",
            where=study.locate(("search", "space")),
        )
    setup = Setup(
        name=name,
        study_file=str(study_file),
        profile=profile,
        description=study.doc.description,
        search=search,
        base=base,
        checkpoint=ckpt,
        where=where,
        block=study.locate(("search",)),
    )
    _check_objective(setup, study.locate(("search", "objective")))
    _check_space(setup)
    return setup


def _check_objective(setup: Setup, where: Location | None) -> None:
    benches = setup.base.eval.benchmarks
    for key in setup.search.objective:
        bench = key.partition("/")[0]
        if bench not in benches:
            raise SpecError(
                f"benchmark {bench!r} is not scored by the trials (eval.benchmarks: {', '.join(benches)})",
                key=f"search.objective.{key}",
                where=where,
            )
        if setup.base.eval.judge_for(bench) == "none":
            raise SpecError(
                f"{bench} is judged 'none' (images only), so it has no score to optimise; "
                f"set eval.judges.{bench}",
                key=f"search.objective.{key}",
                where=where,
            )


def _check_space(setup: Setup) -> None:
    """Every dimension gives a valid spec at its bounds and changes the run (not a cosmetic field)."""
    for path, dim in setup.search.space.items():
        hashes = {content_hash(setup.trial_spec({path: value})) for value in extremes(dim)}
        if len(hashes) == 1:
            raise SpecError(
                "every value gives the same run (a field that does not change a run's identity, such "
                "as names, eval bookkeeping or resources), so there is nothing to search",
                key=path,
                where=setup.where.get(path),
            )
