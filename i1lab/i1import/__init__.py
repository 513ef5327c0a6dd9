"""Bringing the published i1 models into i1lab (`i1lab import-i1`, docs/import-i1.md).

- `i1lab.i1import.pyconfig` — reads a reference config (`jax/configs/**.py`) without running it;
- `i1lab.i1import.knobs` — maps every knob onto the run spec and writes the single-run study;
- `i1lab.i1import.layout` — the reference models' parameter names and shapes, and our names for them;
- `i1lab.i1import.convert` — reference `.npz` / `.pt` checkpoints -> run folders (and back, for checks).

Only `knobs` and `pyconfig` are needed to import a config; they do not import JAX.
"""
