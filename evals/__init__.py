"""Benchmarks: prompt sets, judges and exact scoring (no dependency on i1lab or models)."""
