"""Where the official benchmark files live (docs/benchmarks.md, `shared/benchmarks/README.md`).

The directory is, in order: an explicit argument, the environment variable ``I1LAB_BENCHMARKS_DIR``,
or ``../shared/benchmarks`` next to the repository when it exists. Each benchmark has a fixed
sub-layout (the one of `shared/benchmarks/`); a missing file raises `BenchmarkFileMissing`, whose
message names the expected path and where the file comes from upstream.
"""

from __future__ import annotations

import gzip
import os
from pathlib import Path
from typing import Final

ENV_VAR: Final = "I1LAB_BENCHMARKS_DIR"
REPO_ROOT: Final = Path(__file__).resolve().parents[1]
DEFAULT_RELATIVE: Final = Path("..") / "shared" / "benchmarks"

#: Where the prompt variants come from (each benchmark's own files: its `Benchmark.upstream`).
VARIANTS_UPSTREAM: Final = "github.com/zlab-princeton/i1 (jax/inference/prompts/)"


class BenchmarkFileMissing(FileNotFoundError):
    """An official benchmark file is not where i1lab looks for it."""

    def __init__(self, path: Path, bench: str, what: str = "") -> None:
        source = upstream(bench)
        detail = f" ({what})" if what else ""
        super().__init__(
            f"{bench}: expected file {path}{detail} is missing. Download it from {source} and put it at "
            f"that path, or point {ENV_VAR} at a directory laid out like shared/benchmarks/."
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


def benchmarks_dir(directory: str | os.PathLike[str] | None = None) -> Path:
    """The benchmarks directory: `directory`, else ``$I1LAB_BENCHMARKS_DIR``, else the repository's
    ``../shared/benchmarks``. Raises FileNotFoundError naming every place tried when none exists."""
    if directory is not None:
        return Path(directory)
    env = os.environ.get(ENV_VAR)
    if env:
        return Path(env)
    default = (REPO_ROOT / DEFAULT_RELATIVE).resolve()
    if default.is_dir():
        return default
    raise FileNotFoundError(
        f"no benchmarks directory: pass one, set {ENV_VAR}, or create {default} "
        "(laid out like shared/benchmarks/: geneval/, dpg/, prism/captions/en/, cvtg-2k/prompts/, longtext/)"
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
    return path.read_text(encoding="utf-8")
