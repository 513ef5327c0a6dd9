"""One interface for every benchmark, and the catalogue that finds them by name.

A benchmark is a package that exposes ``BENCHMARK``, an instance of `Benchmark`: each package under
``evals/`` and each sub-folder (a package) of the directories listed in ``$I1LAB_BENCHMARK_FOLDERS``
(``os.pathsep``-separated). Adding a benchmark is one folder: its prompts, its layout writer, its scorer
and its ``BENCHMARK``. Evaluation, judging, the spec's validation and the report read the catalogue.

The catalogue imports the packages on first use; a package keeps its heavy imports inside functions, so
listing the benchmarks stays cheap (spec validation and ``i1lab plan`` use it).
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import re
import sys
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Final, TypeAlias

if TYPE_CHECKING:
    import numpy as np

    from evals.scoring import ScoreReport

__all__ = ["ENV_VAR", "NONE", "OFFICIAL", "Benchmark", "Dir", "Images", "benchmarks", "canonical", "lookup"]

ENV_VAR: Final = "I1LAB_BENCHMARK_FOLDERS"
#: The judge that judges nothing (images are written, no score recorded); every benchmark accepts it.
NONE: Final = "none"
#: The judge that runs the benchmark's own command (`evals.judges.official`).
OFFICIAL: Final = "official"

Dir = str | os.PathLike[str] | None
#: ``images[i][k]``: sample k of prompt i, (H, W, 3) uint8.
Images: TypeAlias = "Sequence[Sequence[np.ndarray]]"


class Benchmark(ABC):
    """A benchmark: its prompts, the folder layout its tools read, the judges it accepts, its exact scorer.

    Images are sampled ``images_per_prompt`` per prompt (``eval.images_per_prompt`` overrides it unless
    ``one_per_prompt``), written by `write_images` in the official layout, judged by `judge` (or the
    official command) into a judge folder that `score` reads back.
    """

    name: ClassVar[str]
    #: The metric the tables show for this benchmark.
    headline: ClassVar[str]
    #: Images per prompt of the official protocol.
    images_per_prompt: ClassVar[int] = 1
    #: The official layout holds exactly one image per prompt (``eval.images_per_prompt`` is ignored).
    one_per_prompt: ClassVar[bool] = False
    #: Judge kinds it accepts besides ``none``, in the order error messages list them.
    judges: ClassVar[tuple[str, ...]] = (OFFICIAL,)
    #: The judge used when ``eval.judges`` names none.
    default_judge: ClassVar[str] = NONE
    #: Metrics only the official judge computes; an OCR or VLM stand-in leaves them out.
    official_only: ClassVar[tuple[str, ...]] = ()
    #: Where its official files come from (named when one is missing).
    upstream: ClassVar[str] = "its upstream repository"
    #: Other spellings ``i1lab score`` accepts.
    aliases: ClassVar[tuple[str, ...]] = ()
    #: Generation prompt variants: name -> file under ``prompt_variants/`` (see `evals.variants`).
    variant_files: ClassVar[Mapping[str, str]] = {}
    #: Its prompts are generated (``per_tag`` per tag, `load_prompts`), not read from official files.
    generated: ClassVar[bool] = False
    #: Where listings put it (the paper's benchmarks first, then by name).
    order: ClassVar[int] = 100
    #: Its recorded scores carry the prompt and image counts (``n_prompts``, ``n_images``).
    counted: ClassVar[bool] = True

    @abstractmethod
    def load_prompts(self, directory: Dir = None, *, per_tag: int = 8) -> tuple[list[Any], list[str]]:
        """``(originals, prompts)``: the ORIGINAL entries the layout and the scorer use, and their texts.
        ``per_tag`` sizes a generated prompt set."""

    def prompts(
        self, variant: str = "original", directory: Dir = None, *, per_tag: int = 8
    ) -> tuple[list[Any], list[str]]:
        """``(originals, generation prompts of variant)``, aligned."""
        originals, texts = self.load_prompts(directory, per_tag=per_tag)
        if variant != "original":
            from evals.variants import load_variant

            texts = load_variant(self.name, variant, directory)
        return originals, texts

    def variant_names(self) -> list[str]:
        """The shipped variant names (any ``repeated<N>`` also works)."""
        return list(self.variant_files)

    def variant_path(self, variant: str, base: Path) -> Path:
        """The file of a shipped variant under ``base`` (the ``prompt_variants/`` folder)."""
        if variant not in self.variant_files:
            raise ValueError(
                f"unknown variant {variant!r} for {self.name}; expected one of {self.variant_names()}"
            )
        return base / self.variant_files[variant]

    def read_variant(self, text: str, path: Path) -> tuple[list[Any], list[str]]:
        """``(keys, prompts)`` of a variant file's text (keys are checked against the original's)."""
        raise ValueError(f"{self.name}: no prompt variant files")

    @abstractmethod
    def write_images(self, root: Path, originals: list[Any], images: Images) -> list[Path]:
        """Write ``images[i][k]`` (prompt i, sample k) in the official layout under ``root``; the paths."""

    @abstractmethod
    def count(self, images: Path, directory: Dir = None) -> tuple[int, int]:
        """``(prompts, images)`` found under ``images`` by the official walk."""

    def judge(self, kind: str, reader: Any, images: Path, out: Path, directory: Dir = None) -> None:
        """Judge the images with a non-official judge (``reader``: an OCR engine, a VLM judge, or None
        for the benchmark's own judge), writing the files `score` reads into ``out``."""
        raise ValueError(f"{kind} cannot judge {self.name}")

    def after_official(self, out: Path) -> None:
        """Tidy the official command's outputs in ``out`` before scoring (e.g. join chunked files)."""
        return None

    @abstractmethod
    def score(self, path: Path, directory: Dir = None) -> ScoreReport:
        """Import the judge's per-sample files at ``path`` and aggregate them exactly."""

    def prompt_key(self, original: Any) -> str:
        """The identity of one ORIGINAL prompt entry: a string that is the same whatever subset, order or
        batch the prompt is sampled in (its initial noise and its per-prompt values are keyed by it).
        Default: the entry as canonical JSON (``repr`` for what JSON cannot hold)."""
        import json

        return json.dumps(original, sort_keys=True, default=repr, ensure_ascii=False)

    def prompt_values(self, path: Path, directory: Dir = None) -> list[tuple[str, float, float]] | None:
        """Per-prompt ``(prompt key, value, weight)`` of the judge's per-sample files at ``path`` (the
        folder `score` reads), such that the headline is exactly ``sum(w * v) / sum(w)``; what paired
        confidence intervals resample. None (the default): this benchmark gives none."""
        return None

    def kept_metrics(self, metrics: dict[str, float], judge: str, images: Path) -> dict[str, float]:
        """The metrics worth recording for images judged by ``judge`` (stand-ins drop `official_only`)."""
        if judge == OFFICIAL or not self.official_only:
            return metrics
        return {k: v for k, v in metrics.items() if k not in self.official_only}


_BUILTIN: Final = Path(__file__).resolve().parent
_found: dict[str, dict[str, Benchmark]] = {}


def _folders(directory: Path) -> list[Path]:
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.iterdir() if (p / "__init__.py").is_file())


def _extra_module(folder: Path) -> Any:
    """Import a benchmark folder from ``$I1LAB_BENCHMARK_FOLDERS`` as package ``i1lab_benchmark_<name>``."""
    name = "i1lab_benchmark_" + re.sub(r"\W", "_", folder.name)
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(
        name, folder / "__init__.py", submodule_search_locations=[str(folder)]
    )
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import benchmark folder {folder}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


def benchmarks() -> dict[str, Benchmark]:
    """Every benchmark by name, in listing order: ``evals/``'s packages, then those of the folders in
    ``$I1LAB_BENCHMARK_FOLDERS``."""
    extra = os.environ.get(ENV_VAR, "")
    if extra in _found:
        return _found[extra]
    modules = [importlib.import_module(f"evals.{p.name}") for p in _folders(_BUILTIN)]
    for entry in filter(None, extra.split(os.pathsep)):
        modules += [_extra_module(p) for p in _folders(Path(entry))]
    found: dict[str, Benchmark] = {}
    for module in modules:
        bench = getattr(module, "BENCHMARK", None)
        if not isinstance(bench, Benchmark):
            continue
        if bench.name in found:
            raise ValueError(f"benchmark {bench.name!r} is defined twice ({module.__name__})")
        found[bench.name] = bench
    ordered = dict(sorted(found.items(), key=lambda kv: (kv[1].order, kv[0])))
    _found[extra] = ordered
    return ordered


def lookup(name: str) -> Benchmark:
    """The benchmark called ``name``; ValueError naming the known ones otherwise."""
    found = benchmarks()
    if name not in found:
        raise ValueError(f"unknown benchmark {name!r}; expected one of {', '.join(found)}")
    return found[name]


def canonical(name: str) -> str:
    """The catalogue name of ``name`` or one of its aliases (case, spaces and ``_`` ignored)."""
    key = re.sub(r"[\s_]+", "-", name.strip().lower())
    for bench in benchmarks().values():
        if key == bench.name or key in bench.aliases:
            return bench.name
    raise ValueError(f"unknown benchmark {name!r}; expected one of {', '.join(benchmarks())}")
