"""Searches with Optuna over a study's ``search:`` space (``i1lab search``).

- :mod:`i1lab.search.space`: the pure parts: distributions, grid points, trial names, objective values;
- :mod:`i1lab.search.setup`: loading and checking a search before anything runs;
- :mod:`i1lab.registry.search_storage`: Optuna's storage on the registry's database;
- :mod:`i1lab.search.run`: the driver (Optuna ask / tell) and the Ray task of an inference trial;
- :mod:`i1lab.report.search`: a search's trials and best configuration, and Optuna's figures.

Nothing here imports Optuna, Ray or JAX at module level.
"""
