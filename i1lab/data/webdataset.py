"""Image-caption shards in WebDataset format, read by random access.

A shard is an uncompressed ``.tar`` whose members are grouped into samples by key: the member path up
to the first dot of its file name (``0001.jpg`` and ``0001.json`` are one sample). A sample needs one
image (``jpg``, ``jpeg``, ``png``, ``webp``, ``bmp``, ``ppm``) and its captions in a ``json`` member
(see :func:`i1lab.data.sources.captions_from_json`: one caption, a list, or long and short ones)
and/or a ``txt`` member (one long caption). Samples without an image are skipped. A sample may also
carry precomputed VAE moments, ``KEY.latents.<vae>.<resolution>.npy`` (the raw posterior mean and
log-variance stacked on the channel axis, (2C, h, w)): a run with that VAE at that resolution reads them
instead of encoding the image (:func:`i1lab.train.build.batch_latents`).

Random access: the shards' tar headers are scanned once per process (a header read and a seek per
member, no image data is read) into an index of byte offsets; ``source[i]`` then reads exactly the
members of sample ``i``. Sample order is shard order (sorted paths), then member order in the shard.
"""

from __future__ import annotations

import glob
import io
import json
import os
import tarfile
import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt

from i1lab.data.images import decode_image
from i1lab.data.sources import SHARD_FILES, DataError, Example, captions_from_json, shard_location
from i1lab.errors import I1labError
from i1lab.spec.run import SourceSpec

IMAGE_EXTS = ("jpg", "jpeg", "png", "webp", "bmp", "ppm")
LATENTS_PREFIX = "latents."


@dataclass(frozen=True)
class ShardIndex:
    """Byte ranges of every sample's members: arrays of one row per sample; -1 where absent."""

    shards: tuple[str, ...]
    shard: npt.NDArray[np.int32]
    keys: tuple[str, ...]
    image: npt.NDArray[np.int64]  # (n, 2): offset, size
    json: npt.NDArray[np.int64]
    txt: npt.NDArray[np.int64]
    latents: dict[str, npt.NDArray[np.int64]]  # by "<vae>.<resolution>"

    def __len__(self) -> int:
        return len(self.keys)


_cache: dict[tuple[tuple[str, int, int], ...], ShardIndex] = {}
_cache_lock = threading.Lock()
#: Number of index builds in this process (tests check that an index is built once).
builds = 0


def shard_paths(pattern: str, what: str, in_folder: str = "*.tar") -> list[str]:
    """The files matching ``pattern`` (sorted); a folder means its files matching ``in_folder``."""
    pattern = os.path.expanduser(pattern)
    if os.path.isdir(pattern):
        pattern = os.path.join(pattern, in_folder)
    paths = sorted(p for p in glob.glob(pattern) if os.path.isfile(p))
    if not paths:
        raise I1labError(f"{what}: no shard matches {pattern!r}")
    return paths


def _split(name: str) -> tuple[str, str]:
    folder, base = os.path.split(name)
    stem, _, ext = base.partition(".")
    return os.path.join(folder, stem), ext.lower()


@dataclass
class _Row:
    shard: int
    key: str
    image: tuple[int, int] | None = None
    json: tuple[int, int] | None = None
    txt: tuple[int, int] | None = None
    latents: dict[str, tuple[int, int]] = field(default_factory=dict)


def _scan(path: str, shard: int, rows: dict[tuple[int, str], _Row]) -> None:
    try:
        with tarfile.open(path, mode="r:") as tar:
            for member in tar:
                if not member.isfile():
                    continue
                key, ext = _split(member.name)
                row = rows.setdefault((shard, key), _Row(shard, key))
                span = (member.offset_data, member.size)
                if ext in IMAGE_EXTS and row.image is None:
                    row.image = span
                elif ext == "json":
                    row.json = span
                elif ext == "txt":
                    row.txt = span
                elif ext.startswith(LATENTS_PREFIX) and ext.endswith(".npy"):
                    row.latents[ext[len(LATENTS_PREFIX) : -len(".npy")]] = span
    except tarfile.ReadError as exc:
        raise I1labError(f"{path}: not a readable uncompressed tar shard ({exc})") from None
    except OSError as exc:
        raise I1labError(f"{path}: cannot read shard: {exc.strerror or exc}") from None


def _spans(rows: list[_Row], name: str, tag: str | None = None) -> npt.NDArray[np.int64]:
    out = np.full((len(rows), 2), -1, np.int64)
    for n, row in enumerate(rows):
        span = getattr(row, name) if tag is None else row.latents.get(tag)
        if span is not None:
            out[n] = span
    return out


def build_index(paths: list[str]) -> ShardIndex:
    """The index of ``paths`` (cached per process by path, size and modification time)."""
    global builds
    stamp = tuple((p, os.stat(p).st_size, os.stat(p).st_mtime_ns) for p in paths)
    with _cache_lock:
        if stamp in _cache:
            return _cache[stamp]
        rows: dict[tuple[int, str], _Row] = {}  # insertion order: shard order, then member order
        for i, path in enumerate(paths):
            _scan(path, i, rows)
        kept = [r for r in rows.values() if r.image is not None]
        index = ShardIndex(
            shards=tuple(paths),
            shard=np.asarray([r.shard for r in kept], np.int32),
            keys=tuple(r.key for r in kept),
            image=_spans(kept, "image"),
            json=_spans(kept, "json"),
            txt=_spans(kept, "txt"),
            latents={
                tag: _spans(kept, "latents", tag) for tag in sorted({t for r in kept for t in r.latents})
            },
        )
        _cache[stamp] = index
        builds += 1
        return index


def _read(path: str, span: npt.NDArray[np.int64]) -> bytes:
    with open(path, "rb") as f:
        f.seek(int(span[0]))
        return f.read(int(span[1]))


class WebDatasetSource:
    """The first ``spec.count`` samples of the shards matching ``spec.path``."""

    def __init__(self, spec: SourceSpec, resolution: int) -> None:
        what = f"data source {spec.name}"
        location = shard_location(spec)
        paths = shard_paths(location, what, in_folder=SHARD_FILES["webdataset"])
        for p in paths:
            if not p.endswith(".tar"):
                raise I1labError(f"{what}: {p} is not an uncompressed .tar shard (needed for random access)")
        self.index = build_index(paths)
        if len(self.index) < spec.count:
            raise I1labError(
                f"{what}: count is {spec.count} but the shards matching {spec.path!r} hold "
                f"{len(self.index)} samples with an image"
            )
        self.name = spec.name
        self.count = spec.count
        self.resolution = resolution

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index: int) -> Example:
        index = int(index)
        if not 0 <= index < self.count:
            raise IndexError(f"{self.name}: index {index} out of range [0, {self.count})")
        ix = self.index
        path = ix.shards[int(ix.shard[index])]
        where = f"{self.name}[{index}] ({Path(path).name}:{ix.keys[index]})"
        try:
            image = decode_image(_read(path, ix.image[index]), self.resolution)
        except (OSError, ValueError, SyntaxError) as exc:
            raise DataError(f"data source {where}: cannot decode the image: {exc}") from None
        longs: list[str] = []
        shorts: list[str] = []
        if ix.json[index][0] >= 0:
            try:
                longs, shorts = captions_from_json(json.loads(_read(path, ix.json[index])))
            except ValueError as exc:
                raise DataError(f"data source {where}: caption JSON is invalid: {exc}") from None
        if ix.txt[index][0] >= 0:
            text = _read(path, ix.txt[index]).decode("utf-8", "replace").strip()
            if text and text not in longs:
                longs.append(text)
        example: Example = {
            "source": self.name,
            "index": index,
            "image": image,
            "long": longs,
            "short": shorts,
        }
        stored = {tag: spans[index] for tag, spans in ix.latents.items() if spans[index][0] >= 0}
        if stored:
            try:
                example["latents"] = {
                    tag: np.load(io.BytesIO(_read(path, span)), allow_pickle=False).astype(np.float32)
                    for tag, span in stored.items()
                }
            except (OSError, ValueError) as exc:
                raise DataError(f"data source {where}: stored latents are not a .npy array: {exc}") from None
        return example
