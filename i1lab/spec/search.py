"""The ``search:`` block of a study file: a space handed to Optuna (see ``i1lab search``).

```yaml
search:
  name: cfg_search                         # registry / Optuna study of the trials (default: study name)
  space:
    sampling.cfg_scale: {type: float, low: 1.0, high: 15.0}
    sampling.steps: {type: int, low: 10, high: 100, step: 10}
    sampling.time_grid: {type: categorical, choices: [uniform, shifted]}
    train.lr: {type: float, low: 1.0e-5, high: 1.0e-3, log: true}
  objective: {shapes/overall: 1.0}        # weighted sum of benchmark/metric headlines
  direction: maximize
  sampler: tpe                             # tpe, random or grid
  trials: 20
  parallel: 4
  budget_hours: 100                        # optional cap on accelerator-hours of training trials
  pruner: median                           # training searches: prune on intermediate checkpoint scores
```

Param names are the dotted spec paths. A categorical choice may be any YAML value (a mapping such as
``{type: transformer, blocks: 2}`` too); Optuna stores such choices as canonical JSON strings.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class Dimension(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    type: Literal["float", "int", "categorical"]
    low: float | None = None
    high: float | None = None
    step: float | None = None
    log: bool = False
    choices: list[Any] | None = None

    @model_validator(mode="after")
    def _shape(self) -> Dimension:
        if self.type == "categorical":
            if not self.choices:
                raise ValueError("a categorical dimension needs non-empty choices")
            if self.low is not None or self.high is not None:
                raise ValueError("a categorical dimension takes choices, not low/high")
            return self
        if self.low is None or self.high is None:
            raise ValueError(f"a {self.type} dimension needs low and high")
        if self.low >= self.high:
            raise ValueError(f"low ({self.low}) must be below high ({self.high})")
        if self.log and self.low <= 0:
            raise ValueError("a log-scaled dimension needs low > 0")
        if self.choices is not None:
            raise ValueError(f"a {self.type} dimension takes low/high, not choices")
        if self.step is not None:
            if self.step <= 0:
                raise ValueError(f"step must be positive (got {self.step})")
            if self.log:
                raise ValueError("a dimension is either log-scaled or stepped, not both")
        if self.type == "int":
            for what, value in (("low", self.low), ("high", self.high), ("step", self.step)):
                if value is not None and not float(value).is_integer():
                    raise ValueError(f"an int dimension needs an integer {what} (got {value})")
        return self

    def grid(self) -> list[Any]:
        """Every value of a categorical or stepped dimension (``high`` included when on the step). Pure."""
        if self.type == "categorical":
            return list(self.choices or [])
        assert self.low is not None and self.high is not None and self.step is not None
        n = int((self.high - self.low) / self.step + 1e-9) + 1
        if self.type == "int":
            return [int(self.low) + i * int(self.step) for i in range(n)]
        return [round(self.low + i * self.step, 12) for i in range(n)]


class SearchSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str | None = Field(
        None,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$",
        description="registry study (and Optuna study) the trials are recorded under; default: the study's",
    )
    space: dict[str, Dimension] = Field(..., min_length=1)
    objective: dict[str, float] = Field(..., min_length=1, description="benchmark/metric -> weight")
    direction: Literal["maximize", "minimize"] = "maximize"
    sampler: Literal["tpe", "random", "grid"] = "tpe"
    trials: Annotated[int, Field(ge=1, le=100_000)] = 20
    parallel: Annotated[int, Field(ge=1, le=1024)] = 1
    budget_hours: Annotated[float, Field(gt=0)] | None = None
    pruner: Literal["none", "median", "hyperband"] = "none"
    seed: int = 0

    @model_validator(mode="after")
    def _objective(self) -> SearchSpec:
        for key in self.objective:
            bench, _, metric = key.partition("/")
            if not bench or not metric:
                raise ValueError(f"objective key {key!r} must be benchmark/metric, e.g. shapes/overall")
            if self.objective[key] == 0:
                raise ValueError(f"objective weight of {key} is 0; leave the key out instead")
        if self.sampler == "grid":
            for path, dim in self.space.items():
                if dim.type != "categorical" and dim.step is None:
                    raise ValueError(f"grid sampling needs choices or a step for {path}")
        return self

    @property
    def inference_only(self) -> bool:
        """True when every searched path is a sampling setting (no training needed)."""
        return all(path.startswith("sampling.") for path in self.space)
