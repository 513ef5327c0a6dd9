"""Experiment specs: Pydantic models of runs and studies, loaded from YAML with locations."""

from i1lab.spec.run import RunSpec
from i1lab.spec.study import Study, load_study

__all__ = ["RunSpec", "Study", "load_study"]
