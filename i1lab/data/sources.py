"""Random-access data sources, selected by ``SourceSpec.kind`` (and ``family`` for procedural ones).

Every source is a sequence: ``len(source)`` unique examples, and ``source[i]`` is an :class:`Example`,
a pure function of the source's spec and ``i`` (never of the training seed: a dataset is fixed, seeds
only change the order it is read in). An example carries *every* caption of its image; the pipeline
draws one per visit (:func:`i1lab.data.pipeline.choose_caption`).

| kind | family | what ``source[i]`` is |
|---|---|---|
| ``shapes`` | ``shapes`` (default) | a coloured-shapes scene of the benchmark domain (:mod:`evals.shapes`) |
| ``shapes`` | ``textured`` | the same scenes on striped, checked, dotted, gradient or mottled backgrounds |
| ``shapes`` | ``words`` | one to three words rendered with a DejaVu font |
| ``webdataset`` | — | member ``i`` of the ``.tar`` shards matching ``path`` (:mod:`i1lab.data.webdataset`) |
| ``tfrecord`` | — | record ``i`` of the TFRecord files matching ``path`` (:mod:`i1lab.data.tfrecord`) |
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from typing import Any, NotRequired, Protocol, TypedDict

import numpy as np
import numpy.typing as npt

from i1lab.errors import I1labError
from i1lab.spec.run import SourceSpec


class DataError(I1labError):
    """A stored example cannot be read (undecodable image, invalid caption record)."""


class Example(TypedDict):
    """One image and all its captions. ``index`` is the example's position in its source."""

    source: str
    index: int
    image: npt.NDArray[np.uint8]
    long: list[str]
    short: list[str]
    #: stored VAE posterior moments by ``<vae>.<resolution>`` (e.g. ``flux2.256``): (2C, h, w), the raw
    #: mean then log-variance, as ``i1lab vae moments`` computes them
    latents: NotRequired[dict[str, npt.NDArray[np.float32]]]


class Source(Protocol):
    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> Example: ...


#: ``generate(rng, resolution) -> (image, long captions, short captions)`` for one procedural example.
Generator = Callable[[np.random.Generator, int], tuple[npt.NDArray[np.uint8], list[str], list[str]]]


def _shapes(rng: np.random.Generator, resolution: int) -> tuple[npt.NDArray[np.uint8], list[str], list[str]]:
    from evals.shapes import caption, render, sample_scene

    scene = sample_scene(rng)
    short = caption(scene, "short", rng)
    longs = [caption(scene, "long", rng) for _ in range(2)]
    return render(scene, resolution), list(dict.fromkeys(longs)), [short]


def _textured(
    rng: np.random.Generator, resolution: int
) -> tuple[npt.NDArray[np.uint8], list[str], list[str]]:
    from i1lab.data.textured import generate

    return generate(rng, resolution)


def _words(rng: np.random.Generator, resolution: int) -> tuple[npt.NDArray[np.uint8], list[str], list[str]]:
    from i1lab.data.words import generate

    return generate(rng, resolution)


MIN_SHAPES_RESOLUTION = 16
FAMILIES: dict[str, Generator] = {"shapes": _shapes, "textured": _textured, "words": _words}


class ProceduralSource:
    """A synthetic family: example ``i`` is a pure function of (source name, ``i``)."""

    def __init__(self, spec: SourceSpec, resolution: int) -> None:
        family = spec.family or "shapes"
        if family not in FAMILIES:
            raise I1labError(
                f"data source {spec.name}: unknown family {family!r}; known: {', '.join(FAMILIES)}"
            )
        if family != "words" and resolution < MIN_SHAPES_RESOLUTION:
            # below 16 px some scenes' objects touch and cannot be rendered (evals.shapes.raster)
            raise I1labError(
                f"data source {spec.name}: family {family} needs data.resolution >= "
                f"{MIN_SHAPES_RESOLUTION} (got {resolution})"
            )
        self.name = spec.name
        self.family = family
        self.resolution = resolution
        self.count = spec.count
        self._generate = FAMILIES[family]
        self._key = zlib.crc32(spec.name.encode())

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index: int) -> Example:
        index = int(index)
        if not 0 <= index < self.count:
            raise IndexError(f"{self.name}: index {index} out of range [0, {self.count})")
        rng = np.random.default_rng([self._key, index])
        image, longs, shorts = self._generate(rng, self.resolution)
        return {"source": self.name, "index": index, "image": image, "long": longs, "short": shorts}


#: Where each shard-backed kind looks inside a folder given as ``path``.
SHARD_FILES = {"webdataset": "*.tar", "tfrecord": "*.tfrecord*"}


def shard_location(spec: SourceSpec) -> str:
    """Where a shard-backed source's files are: its ``path``, else the folder of its name in the data
    directory (:func:`i1lab.paths.data_dir`)."""
    if spec.path:
        return spec.path
    from i1lab import paths

    return str(paths.data_dir() / spec.name)


def source_problem(spec: SourceSpec) -> str | None:
    """Why ``spec``'s examples cannot be read here (one line), else None. Cheap: globs for the shards,
    reads none of them."""
    if spec.kind not in SHARD_FILES:
        return None
    from i1lab.data.webdataset import shard_paths

    what = f"data source {spec.name}"
    try:
        shard_paths(shard_location(spec), what, in_folder=SHARD_FILES[spec.kind])
    except I1labError as exc:
        hint = (
            ""
            if spec.path
            else " (no path given: the data directory's folder of its name; see $I1LAB_DATA_DIR)"
        )
        return f"{exc}{hint}"
    return None


def open_source(spec: SourceSpec, resolution: int) -> Source:
    """The readable source of ``spec`` at ``resolution``; I1labError when it cannot be read."""
    if spec.kind == "shapes":
        return ProceduralSource(spec, resolution)
    if spec.kind == "webdataset":
        from i1lab.data.webdataset import WebDatasetSource

        return WebDatasetSource(spec, resolution)
    if spec.kind == "tfrecord":
        from i1lab.data.tfrecord import TFRecordSource

        return TFRecordSource(spec, resolution)
    raise I1labError(f"data source {spec.name}: unknown kind {spec.kind!r}")


def captions_from_json(record: Any) -> tuple[list[str], list[str]]:
    """``(long, short)`` captions of a caption record (a WebDataset ``.json`` member).

    Long captions come from ``long_captions`` / ``long_caption`` / ``long`` / ``captions`` / ``caption``,
    short ones from ``short_captions`` / ``short_caption`` / ``short``; each may be a string or a list.
    A bare string or list is long captions.
    """
    if isinstance(record, str):
        return [record], []
    if isinstance(record, list):
        return _strings(record), []
    if not isinstance(record, dict):
        return [], []
    longs: list[str] = []
    shorts: list[str] = []
    for key in ("long_captions", "long_caption", "long", "captions", "caption"):
        longs += _strings(record.get(key))
    for key in ("short_captions", "short_caption", "short"):
        shorts += _strings(record.get(key))
    return list(dict.fromkeys(longs)), list(dict.fromkeys(shorts))


def _strings(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, (str, bytes)):
        value = [value]
    if not isinstance(value, list):
        return []
    out = []
    for v in value:
        text = v.decode("utf-8", "replace") if isinstance(v, bytes) else v
        if isinstance(text, str) and text.strip():
            out.append(text)
    return out
