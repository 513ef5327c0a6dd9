"""What code produced a run: the git commit of the i1lab checkout, whether it had local changes, and the
versions of the packages that decide a result. Captured once per process (planning, and again by the
worker that trains), stored on the run."""

from __future__ import annotations

import platform
import subprocess
from functools import cache
from importlib import metadata
from pathlib import Path

from pydantic import BaseModel

PACKAGES = (
    "i1lab",
    "jax",
    "jaxlib",
    "flax",
    "optax",
    "orbax-checkpoint",
    "grain",
    "numpy",
    "ray",
    "sqlalchemy",
    "mlflow",
    "pydantic",
    "transformers",
)
SOURCE = Path(__file__).resolve().parents[2]


class Provenance(BaseModel):
    git_commit: str | None
    git_dirty: bool | None
    versions: dict[str, str]


def _git(*args: str, cwd: Path) -> str | None:
    try:
        done = subprocess.run(
            ["git", *args], cwd=cwd, capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout if done.returncode == 0 else None


def git_state(source: Path = SOURCE) -> tuple[str | None, bool | None]:
    """(commit, dirty) of the git checkout holding ``source``; (None, None) outside git.

    Dirty means tracked files differ from the commit; untracked files do not count."""
    head = _git("rev-parse", "HEAD", cwd=source)
    if head is None:
        return None, None
    status = _git("status", "--porcelain", "--untracked-files=no", cwd=source)
    return head.strip(), (bool(status.strip()) if status is not None else None)


def package_versions(names: tuple[str, ...] = PACKAGES) -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


@cache
def capture() -> Provenance:
    commit, dirty = git_state()
    return Provenance(git_commit=commit, git_dirty=dirty, versions=package_versions())
