"""`i1lab score` as a user runs it, for the tests on the official outputs: a fresh process, so that what
reaches the terminal (one line on stderr, exit status 2, no traceback) is what is checked."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from evals.benchdir import benchmarks_dir


def i1lab_score(bench: str, path: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    """``i1lab score BENCH PATH --benchmarks-dir <the tests' fixture copies> EXTRA...``."""
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "i1lab",
            "score",
            bench,
            str(path),
            "--benchmarks-dir",
            str(benchmarks_dir()),
            *extra,
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "400"},
        timeout=120,
        check=False,
    )
