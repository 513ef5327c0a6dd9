"""TFRecord shards of ``tf.train.Example`` records, read without TensorFlow.

This is the format of the i1 record sets (TFDS builds, docs/design-space.md §11): each record is an Example
with the encoded image under ``image`` (PNG) and the captions under ``caption`` (a list of strings).
Also accepted: ``image/encoded``, ``png`` or ``jpg`` for the image; ``captions``, ``long_caption(s)``
for long captions and ``short_caption(s)`` for short ones.

A TFRecord file is a sequence of ``uint64 length, uint32 masked CRC32C(length), data, uint32 masked
CRC32C(data)``. The files are scanned once per process (headers only, length CRCs checked) into an
index of record offsets; ``source[i]`` reads record ``i`` and parses it with a ``tf.train.Example``
message class built at run time from its descriptor (the ``protobuf`` package; no generated code).
"""

from __future__ import annotations

import os
import struct
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from i1lab.data.images import decode_image
from i1lab.data.sources import SHARD_FILES, DataError, Example, shard_location
from i1lab.data.webdataset import shard_paths
from i1lab.errors import I1labError
from i1lab.spec.run import SourceSpec

IMAGE_KEYS = ("image", "image/encoded", "png", "jpg")
LONG_KEYS = ("caption", "captions", "long_caption", "long_captions")
SHORT_KEYS = ("short_caption", "short_captions")


def _crc_table() -> list[int]:
    table = []
    for n in range(256):
        c = n
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return table


_TABLE = _crc_table()


def crc32c(data: bytes) -> int:
    """CRC-32C (Castagnoli), as TFRecord uses. Pure Python: fine for headers and test shards."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc = _TABLE[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def masked_crc(data: bytes) -> int:
    crc = crc32c(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


@lru_cache(maxsize=1)
def example_class() -> Any:
    """The ``tf.train.Example`` message class (same field numbers as TensorFlow's example.proto)."""
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    fdp = descriptor_pb2.FileDescriptorProto(
        name="i1lab/tf_example.proto", package="i1lab.tfexample", syntax="proto3"
    )
    f = descriptor_pb2.FieldDescriptorProto
    pkg = ".i1lab.tfexample."

    def message(name: str, fields: Sequence[tuple[str, int, int, int, str]]) -> Any:
        m = fdp.message_type.add(name=name)
        for fname, number, ftype, label, type_name in fields:
            field = m.field.add(name=fname, number=number, type=ftype, label=label)
            if type_name:
                field.type_name = type_name
        return m

    rep, opt = f.LABEL_REPEATED, f.LABEL_OPTIONAL
    message("BytesList", [("value", 1, f.TYPE_BYTES, rep, "")])
    message("FloatList", [("value", 1, f.TYPE_FLOAT, rep, "")])
    message("Int64List", [("value", 1, f.TYPE_INT64, rep, "")])
    feature = message(
        "Feature",
        [
            ("bytes_list", 1, f.TYPE_MESSAGE, opt, pkg + "BytesList"),
            ("float_list", 2, f.TYPE_MESSAGE, opt, pkg + "FloatList"),
            ("int64_list", 3, f.TYPE_MESSAGE, opt, pkg + "Int64List"),
        ],
    )
    feature.oneof_decl.add(name="kind")
    for field in feature.field:
        field.oneof_index = 0
    features = message("Features", [("feature", 1, f.TYPE_MESSAGE, rep, pkg + "Features.FeatureEntry")])
    entry = features.nested_type.add(name="FeatureEntry")
    entry.field.add(name="key", number=1, type=f.TYPE_STRING, label=opt)
    entry.field.add(name="value", number=2, type=f.TYPE_MESSAGE, label=opt, type_name=pkg + "Feature")
    entry.options.map_entry = True
    message("Example", [("features", 1, f.TYPE_MESSAGE, opt, pkg + "Features")])
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fdp)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("i1lab.tfexample.Example"))


FeatureValue = Sequence[bytes] | Sequence[str] | Sequence[int] | Sequence[float] | bytes | str


def encode_example(features: Mapping[str, FeatureValue]) -> bytes:
    """A serialized ``tf.train.Example``: bytes/str values -> bytes_list, ints -> int64_list,
    floats -> float_list."""
    msg = example_class()()
    for key, value in features.items():
        values = [value] if isinstance(value, (bytes, str)) else list(value)
        feat = msg.features.feature[key]
        if all(isinstance(v, (bytes, str)) for v in values):
            feat.bytes_list.value.extend(v.encode() if isinstance(v, str) else v for v in values)
        elif all(isinstance(v, int) for v in values):
            feat.int64_list.value.extend(values)
        else:
            feat.float_list.value.extend(float(v) for v in values)  # type: ignore[arg-type]
    data: bytes = msg.SerializeToString(deterministic=True)
    return data


def decode_example(data: bytes) -> dict[str, list[Any]]:
    """Feature name -> list of values of a serialized ``tf.train.Example``."""
    msg = example_class()()
    msg.ParseFromString(data)
    out: dict[str, list[Any]] = {}
    for key, feat in msg.features.feature.items():
        kind = feat.WhichOneof("kind")
        out[key] = list(getattr(feat, kind).value) if kind else []
    return out


def write_tfrecord(path: str | Path, records: Iterable[bytes]) -> None:
    """Write ``records`` (serialized protos) as one TFRecord file."""
    with open(path, "wb") as f:
        for data in records:
            header = struct.pack("<Q", len(data))
            f.write(header + struct.pack("<I", masked_crc(header)))
            f.write(data + struct.pack("<I", masked_crc(data)))


@dataclass(frozen=True)
class RecordIndex:
    files: tuple[str, ...]
    file: npt.NDArray[np.int32]
    offset: npt.NDArray[np.int64]
    length: npt.NDArray[np.int64]

    def __len__(self) -> int:
        return len(self.offset)


_cache: dict[tuple[tuple[str, int, int], ...], RecordIndex] = {}
_cache_lock = threading.Lock()


def _scan(path: str, n: int, files: list[int], offsets: list[int], lengths: list[int]) -> None:
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        pos = 0
        while pos < size:
            header = f.read(12)
            if len(header) < 12:
                raise I1labError(f"{path}: truncated TFRecord header at byte {pos}")
            (length,) = struct.unpack("<Q", header[:8])
            if struct.unpack("<I", header[8:])[0] != masked_crc(header[:8]):
                raise I1labError(f"{path}: corrupt TFRecord length at byte {pos} (CRC mismatch)")
            if pos + 12 + length + 4 > size:
                raise I1labError(f"{path}: truncated TFRecord record at byte {pos}")
            files.append(n)
            offsets.append(pos + 12)
            lengths.append(length)
            pos += 12 + length + 4
            f.seek(pos)


def build_index(paths: list[str]) -> RecordIndex:
    stamp = tuple((p, os.stat(p).st_size, os.stat(p).st_mtime_ns) for p in paths)
    with _cache_lock:
        if stamp not in _cache:
            files: list[int] = []
            offsets: list[int] = []
            lengths: list[int] = []
            for n, path in enumerate(paths):
                try:
                    _scan(path, n, files, offsets, lengths)
                except OSError as exc:
                    raise I1labError(f"{path}: cannot read TFRecord file: {exc.strerror or exc}") from None
            _cache[stamp] = RecordIndex(
                tuple(paths),
                np.asarray(files, np.int32),
                np.asarray(offsets, np.int64),
                np.asarray(lengths, np.int64),
            )
        return _cache[stamp]


def _texts(values: list[Any]) -> list[str]:
    out = []
    for v in values:
        text = v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v)
        if text.strip():
            out.append(text)
    return list(dict.fromkeys(out))


class TFRecordSource:
    """The first ``spec.count`` records of the TFRecord files matching ``spec.path`` (a glob, or a TFDS
    folder: its ``*.tfrecord*`` files)."""

    def __init__(self, spec: SourceSpec, resolution: int) -> None:
        what = f"data source {spec.name}"
        location = shard_location(spec)
        self.index = build_index(shard_paths(location, what, in_folder=SHARD_FILES["tfrecord"]))
        if len(self.index) < spec.count:
            raise I1labError(
                f"{what}: count is {spec.count} but the files matching {location!r} hold "
                f"{len(self.index)} records"
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
        path = ix.files[int(ix.file[index])]
        where = f"data source {self.name}[{index}] ({Path(path).name} @ {int(ix.offset[index])})"
        with open(path, "rb") as f:
            f.seek(int(ix.offset[index]))
            data = f.read(int(ix.length[index]))
        try:
            features = decode_example(data)
        except Exception as exc:  # protobuf's DecodeError
            raise DataError(f"{where}: not a tf.train.Example ({exc})") from None
        key = next((k for k in IMAGE_KEYS if features.get(k)), None)
        if key is None:
            raise DataError(f"{where}: no image feature (looked for {', '.join(IMAGE_KEYS)})")
        try:
            image = decode_image(features[key][0], self.resolution)
        except (OSError, ValueError, SyntaxError) as exc:
            raise DataError(f"{where}: cannot decode the image: {exc}") from None
        longs = _texts([v for k in LONG_KEYS for v in features.get(k, [])])
        shorts = _texts([v for k in SHORT_KEYS for v in features.get(k, [])])
        return {"source": self.name, "index": index, "image": image, "long": longs, "short": shorts}
