"""Benchmarks: prompt sets, judges and exact scoring (no dependency on i1lab or models).

Every benchmark is one package behind one interface, `Benchmark`, found by name (`lookup`, `benchmarks`).
"""

from evals.benchmark import Benchmark, benchmarks, canonical, lookup

__all__ = ["Benchmark", "benchmarks", "canonical", "lookup"]
