"""Where i1lab keeps its state: ``$I1LAB_HOME`` or ``./.i1lab``."""

from __future__ import annotations

import os
from pathlib import Path


def home() -> Path:
    """The i1lab home folder (registry, MLflow store, run directories)."""
    env = os.environ.get("I1LAB_HOME")
    return Path(env).expanduser().resolve() if env else (Path.cwd() / ".i1lab").resolve()


def database_url() -> str:
    """``$I1LAB_DATABASE_URL`` or a SQLite file under the home folder."""
    env = os.environ.get("I1LAB_DATABASE_URL")
    if env:
        return env
    return f"sqlite:///{home() / 'registry.db'}"


def registry_exists() -> bool:
    """Whether the registry can hold anything yet: its SQLite file exists (a server database always may)."""
    url = database_url()
    if url.startswith("sqlite:///"):
        return Path(url.removeprefix("sqlite:///")).is_file()
    return True


def data_dir() -> Path:
    """``$I1LAB_DATA_DIR`` or ``<home>/data``: where a data source without a ``path`` is looked for, in a
    folder of its name (the paper's datasets are named, not located, in the study files)."""
    env = os.environ.get("I1LAB_DATA_DIR")
    return Path(env).expanduser().resolve() if env else home() / "data"


def mlflow_uri() -> str:
    """``$MLFLOW_TRACKING_URI`` or a local SQLite-backed MLflow store under the home folder."""
    env = os.environ.get("MLFLOW_TRACKING_URI")
    if env:
        return env
    return f"sqlite:///{home() / 'mlflow.db'}"


def mlflow_artifacts() -> Path:
    return home() / "mlartifacts"


def runs_dir() -> Path:
    return home() / "runs"


def run_dir(training_hash: str) -> Path:
    """The working directory (checkpoints, metrics, samples) of a training, named by its training hash.

    Runs that differ only in sampling settings share it: the weights are trained once."""
    return runs_dir() / training_hash[:16]


def judges_dir() -> Path:
    """``$I1LAB_JUDGES_DIR`` or ``$XDG_CACHE_HOME/i1lab/judges`` (``~/.cache/i1lab/judges``): the
    benchmarks' official judging environments (`i1lab.evaluation.environments`), shared by projects."""
    env = os.environ.get("I1LAB_JUDGES_DIR")
    if env:
        return Path(env).expanduser().resolve()
    cache_home = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache_home).expanduser().resolve() / "i1lab" / "judges"
