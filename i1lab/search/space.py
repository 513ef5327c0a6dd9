"""The pure parts of a search: Optuna distributions of a ``search:`` space, choice encoding, grid points,
trial names and the objective's value from recorded scores. Optuna is imported inside functions only."""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from i1lab.hashing import canonical_json
from i1lab.report.search import show
from i1lab.spec.search import Dimension, SearchSpec

if TYPE_CHECKING:
    from optuna.distributions import BaseDistribution

    from i1lab.registry import ScoreRecord

PRIMITIVE = (str, int, float, bool, type(None))


def encode_choice(value: Any) -> Any:
    """A categorical choice as Optuna can store it: primitives as they are, anything else (a mapping,
    a list) as canonical JSON text."""
    return value if isinstance(value, PRIMITIVE) else canonical_json(value)


def decode_choice(dim: Dimension, value: Any) -> Any:
    """The spec value of a stored choice (the inverse of :func:`encode_choice` for this dimension)."""
    if dim.type != "categorical":
        return value
    for choice in dim.choices or []:
        if encode_choice(choice) == value and type(encode_choice(choice)) is type(value):
            return choice
    raise KeyError(f"{value!r} is not a choice of this dimension")


def decode_params(search: SearchSpec, params: Mapping[str, Any]) -> dict[str, Any]:
    """Optuna's params of a trial -> ``{dotted path: spec value}``, in the space's order."""
    return {path: decode_choice(dim, params[path]) for path, dim in search.space.items()}


def distributions(search: SearchSpec) -> dict[str, BaseDistribution]:
    """One Optuna distribution per searched path (the param name is the dotted path)."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    out: dict[str, BaseDistribution] = {}
    for path, dim in search.space.items():
        if dim.type == "categorical":
            out[path] = CategoricalDistribution([encode_choice(c) for c in dim.choices or []])
            continue
        assert dim.low is not None and dim.high is not None
        if dim.type == "int":
            out[path] = IntDistribution(int(dim.low), int(dim.high), log=dim.log, step=int(dim.step or 1))
        else:
            out[path] = FloatDistribution(dim.low, dim.high, log=dim.log, step=dim.step)
    return out


def grid_points(search: SearchSpec) -> list[dict[str, Any]]:
    """Every combination of the grid (Optuna-encoded values), first path varying slowest."""
    paths = list(search.space)
    axes = [[encode_choice(v) for v in search.space[p].grid()] for p in paths]
    return [dict(zip(paths, combo, strict=True)) for combo in itertools.product(*axes)]


def extremes(dim: Dimension) -> list[Any]:
    """The values that bound a dimension (every choice or grid value, else low and high): checking the
    spec at each finds a range the run spec refuses before any trial runs."""
    if dim.type == "categorical" or dim.step is not None:
        return dim.grid()
    assert dim.low is not None and dim.high is not None
    if dim.type == "int":
        return [int(dim.low), int(dim.high)]
    return [dim.low, dim.high]


def member_name(number: int) -> str:
    """The registry member name of Optuna trial ``number``."""
    return f"trial-{number:04d}"


def trial_label(number: int, params: Mapping[str, Any]) -> str:
    return f"trial {number}: " + ", ".join(f"{p.rsplit('.', 1)[-1]}={show(v)}" for p, v in params.items())


def objective_parts(search: SearchSpec) -> list[tuple[str, str, str, float]]:
    """``(key, benchmark, metric, weight)`` of each objective term (metric may contain '/')."""
    out = []
    for key, weight in search.objective.items():
        bench, _, metric = key.partition("/")
        out.append((key, bench, metric, weight))
    return out


def scores_at(
    search: SearchSpec, scores: Iterable[ScoreRecord], step: int, judges: Mapping[str, str] | None = None
) -> dict[str, float] | None:
    """The objective's terms at ``step`` (key -> value), or None while one is missing.

    ``judges`` (benchmark -> judge label prefix) picks among several judges of one benchmark; otherwise
    the alphabetically first judge is used, so the choice never depends on recording order."""
    found: dict[tuple[str, str], dict[str, float]] = {}
    for sc in scores:
        if sc.step == step:
            found.setdefault((sc.benchmark, sc.metric), {})[sc.judge] = sc.value
    out: dict[str, float] = {}
    for key, bench, metric, _ in objective_parts(search):
        by_judge = found.get((bench, metric))
        if not by_judge:
            return None
        wanted = (judges or {}).get(bench)
        preferred = sorted(j for j in by_judge if wanted and j.startswith(wanted)) or sorted(by_judge)
        out[key] = by_judge[preferred[0]]
    return out


def objective_value(search: SearchSpec, terms: Mapping[str, float]) -> float:
    """The weighted sum of the objective's terms."""
    return float(sum(weight * terms[key] for key, _, _, weight in objective_parts(search)))


def fingerprint(search: SearchSpec, base_hash: str, step: int) -> str:
    """What decides a search's trials: the space, objective, direction, sampler, seed, pruner, the base
    spec and the scored step. The trial count, parallelism and budget may change between invocations."""
    payload = {
        "space": {p: d.model_dump(mode="json") for p, d in search.space.items()},
        "objective": search.objective,
        "direction": search.direction,
        "sampler": search.sampler,
        "seed": search.seed,
        "pruner": search.pruner,
        "base": base_hash,
        "step": step,
    }
    return hashlib.sha256(canonical_json(payload).encode()).hexdigest()
