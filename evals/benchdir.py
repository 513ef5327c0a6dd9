"""Where the official benchmark files live (docs/benchmarks.md, `shared/benchmarks/README.md`).

The directory is, in order: an explicit argument, the environment variable ``I1LAB_BENCHMARKS_DIR``,
or the user-level folder that ``i1lab evals fetch`` fills, versioned by the upstream commit the files
are pinned to: ``$XDG_CACHE_HOME/i1lab/benchmarks/<commit>`` (``~/.cache/...``). Nothing is looked
for next to the repository. Each benchmark has a fixed sub-layout (docs/benchmarks.md); a missing file
raises `BenchmarkFileMissing`, whose message names the expected path and where the file comes from.
"""

from __future__ import annotations

import gzip
import os
from pathlib import Path
from typing import Final

ENV_VAR: Final = "I1LAB_BENCHMARKS_DIR"
#: The commit of github.com/zlab-princeton/i1 whose benchmark files the scorers are written against (and
#: that ``i1lab evals fetch`` checks every download against): the version of the default folder.
PINNED_COMMIT: Final = "b58a62f4a301370f35c5873bcb453bf7eea9f0e4"

#: Where the prompt variants come from (each benchmark's own files: its `Benchmark.upstream`).
VARIANTS_UPSTREAM: Final = "github.com/zlab-princeton/i1 (jax/inference/prompts/)"


class BenchmarkFileMissing(FileNotFoundError):
    """An official benchmark file is not where i1lab looks for it."""

    def __init__(self, path: Path, bench: str, what: str = "") -> None:
        source = upstream(bench)
        detail = f" ({what})" if what else ""
        super().__init__(
            f"{bench}: expected file {path}{detail} is missing. Download it from {source} and put it at "
            f"that path (`i1lab evals fetch` does), or point {ENV_VAR} at a directory laid out like it."
        )
        self.path = path
        self.bench = bench


def upstream(bench: str) -> str:
    """Where ``bench``'s official files come from (``prompt_variants``: i1's packaging)."""
    if bench == "prompt_variants":
        return VARIANTS_UPSTREAM
    from evals.benchmark import benchmarks

    found = benchmarks().get(bench)
    return found.upstream if found is not None else "its upstream repository"


def default_dir() -> Path:
    """The user-level benchmarks folder: ``$XDG_CACHE_HOME/i1lab/benchmarks/<pinned commit[:12]>``."""
    cache_home = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache_home).expanduser() / "i1lab" / "benchmarks" / PINNED_COMMIT[:12]


def benchmarks_dir(directory: str | os.PathLike[str] | None = None) -> Path:
    """The benchmarks directory: `directory`, else ``$I1LAB_BENCHMARKS_DIR``, else `default_dir`.
    Raises FileNotFoundError naming every place tried when none exists."""
    if directory is not None:
        return Path(directory)
    env = os.environ.get(ENV_VAR)
    if env:
        return Path(env)
    default = default_dir()
    if default.is_dir():
        return default
    raise FileNotFoundError(
        f"no benchmarks directory: run `i1lab evals fetch` (it fills {default}), pass one, or set {ENV_VAR} "
        "(laid out as docs/benchmarks.md says: geneval/, dpg/, prism/captions/en/, cvtg-2k/prompts/, "
        "longtext/)"
    )


def require(path: Path, bench: str, what: str = "") -> Path:
    """`path` if it is a file, else `BenchmarkFileMissing`."""
    if not path.is_file():
        raise BenchmarkFileMissing(path, bench, what)
    return path


def read_text(path: Path) -> str:
    """UTF-8 text of a file, transparently gunzipped when the name ends in ``.gz``."""
    if path.suffix == ".gz":
        with gzip.open(path, "rt", encoding="utf-8") as f:
            return f.read()
    from evals.jsonio import read_text as read_bounded

    return read_bounded(path)
