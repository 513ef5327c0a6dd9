"""A benchmark's official judging environment, as pinned in the repository.

Each benchmark package may hold ``judge_environment.toml``: where the official code comes from (a
repository, a commit, a folder and the sha256 of every file used), and its *stages*, in the order the
official instructions run them. A stage is one command of the official pipeline (the judge model, the
summary), with the exact packages it needs, the GPUs it runs on and the judge weights it loads::

    benchmark = "longtext"
    python = "3.12"                       # the official instructions' interpreter

    [source]
    repository = "https://github.com/zlab-princeton/i1"
    commit = "<40 hex digits>"
    folder = "benchmark_eval/longtext"    # the working directory of every stage
    [source.files]
    "summary_scores.py" = "<sha256>"

    [stages.summary]
    command = "{python} summary_scores.py {out}/results.jsonl --mode en"
    requirements = ["tqdm==4.67.1"]
    inputs = ["results.jsonl"]            # copied from the judged folder into {out} first
    printed = 'Text Score: (?P<value>[0-9.]+)'  # the headline as printed, checked against i1lab's

Pure: this module parses and validates; building an environment, running a stage and fingerprints are
i1lab's (`i1lab.evaluation.environments`).
"""

from __future__ import annotations

import inspect
import re
import tomllib
from pathlib import Path
from typing import Annotated, Final

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

FILE: Final = "judge_environment.toml"
PIN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*(\[[A-Za-z0-9,._-]+\])?==[A-Za-z0-9.+!_-]+$")
SHA256 = re.compile(r"^[0-9a-f]{64}$")


class EnvironmentSpecError(ValueError):
    """A ``judge_environment.toml`` that cannot be used; the message is one line naming file and field."""


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Weights(Strict):
    """A judge model a stage loads: its Hugging Face id (what the official code names) and the folder,
    under ``$I1LAB_WEIGHTS_DIR/judges/``, where i1lab looks for it (default: the id's last part)."""

    hub_id: str
    folder: str = ""
    files: list[str] = Field(default_factory=lambda: ["config.json"], description="files that must exist")

    @property
    def local(self) -> str:
        return self.folder or self.hub_id.rsplit("/", 1)[-1]


class Stage(Strict):
    """One command of the official pipeline, run with the environment's interpreter in the source folder.

    Placeholders: ``{python}``, ``{images}`` (the image folder in the official layout), ``{out}`` (a
    fresh output folder), ``{weights}`` (the folder of the stage's first judge model), ``{gpus}``."""

    command: str
    requirements: list[str]
    gpus: Annotated[int, Field(ge=0)] = 0
    weights: list[Weights] = []
    inputs: list[str] = []  # files of the judged folder copied into {out} before the command runs
    printed: str | None = None  # regex with a ``value`` group: the headline the command prints

    @field_validator("requirements")
    @classmethod
    def _pinned(cls, value: list[str]) -> list[str]:
        for req in value:
            if not PIN.match(req):
                raise ValueError(f"requirement {req!r} is not pinned as name==version")
        return value

    @field_validator("printed")
    @classmethod
    def _pattern(cls, value: str | None) -> str | None:
        if value is not None and "(?P<value>" not in value:
            raise ValueError("printed must have a (?P<value>...) group")
        return value


class Source(Strict):
    repository: str
    commit: Annotated[str, Field(pattern=r"^[0-9a-f]{40}$")]
    folder: str
    files: dict[str, str]

    @field_validator("files")
    @classmethod
    def _hashes(cls, value: dict[str, str]) -> dict[str, str]:
        for name, digest in value.items():
            if not SHA256.match(digest):
                raise ValueError(f"files.{name}: not a sha256 hex digest")
            if Path(name).is_absolute() or ".." in Path(name).parts:
                raise ValueError(f"files.{name}: must be a path inside the source folder")
        return value

    @property
    def archive(self) -> str:
        """Where the source tree of ``commit`` is downloaded from (GitHub's tarball of the commit)."""
        repo = self.repository.removesuffix(".git").removeprefix("https://github.com/")
        return f"https://codeload.github.com/{repo}/tar.gz/{self.commit}"


class JudgeEnvironment(Strict):
    """A benchmark's official judging environment: its source and its stages in running order."""

    benchmark: str
    python: str
    source: Source
    stages: dict[str, Stage]
    notes: str = ""

    @field_validator("stages")
    @classmethod
    def _some(cls, value: dict[str, Stage]) -> dict[str, Stage]:
        if not value:
            raise ValueError("at least one stage is needed")
        return value

    def requirements(self, stages: list[str]) -> list[str]:
        """The pinned requirements of ``stages``, each once, sorted."""
        return sorted({r for name in stages for r in self.stages[name].requirements})


def environment_file(benchmark: object) -> Path:
    """The ``judge_environment.toml`` beside the package that defines ``benchmark`` (a `Benchmark`)."""
    return Path(inspect.getfile(type(benchmark))).with_name(FILE)


def load(path: Path) -> JudgeEnvironment:
    """Parse and validate one file; `EnvironmentSpecError` (one line: file and field) otherwise."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise EnvironmentSpecError(f"{path}: cannot read: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise EnvironmentSpecError(f"{path}: not valid TOML: {exc}") from None
    try:
        return JudgeEnvironment.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "(top)"
        raise EnvironmentSpecError(f"{path}: {where}: {first['msg']}") from None


def for_benchmark(benchmark: object) -> JudgeEnvironment | None:
    """The official environment of a `Benchmark`, None when its package pins none."""
    path = environment_file(benchmark)
    return load(path) if path.is_file() else None
