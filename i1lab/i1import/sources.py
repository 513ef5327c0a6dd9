"""Reference checkpoint files read one tensor at a time (the converter never holds a whole checkpoint).

**`.npz`** — a zip of ``.npy`` members. :class:`NpzArchive` indexes the members from the zip's central
directory, reads each member's ``.npy`` header alone (shape and dtype, no data) so that a checkpoint can
be checked against the model before any tensor is read, and then reads one tensor at a time: a member
stored uncompressed (``np.savez``, as the reference writes) is memory-mapped at its data's offset in the
file (``np.load(mmap_mode=...)`` does not memory-map inside a zip); a compressed one
(``np.savez_compressed``) is decompressed alone. Arrays of Python objects (pickles) are refused. Before
any data is read, each member's header is checked against the zip's own record of the member: a
header that claims more (or fewer) bytes than the member holds, a negative dimension, a name given
twice, or more than `MAX_MEMBERS` members is refused, naming the file and the member, so a header
claiming a terabyte allocates nothing. A corrupt member is one line naming the file and the member.

**`.pt`** — :func:`load_pt` is ``torch.load(mmap=True, weights_only=True)``: tensors stay in the file
(memory-mapped) until each is converted, and no pickled code runs.

:class:`Tensor` is one array of the output: its shape and dtype known up front, its values produced
when it is written (:mod:`i1lab.i1import.write`).
"""

from __future__ import annotations

import math
import struct
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from i1lab.errors import I1labError

#: Members smaller than this are read, larger ones memory-mapped (when stored uncompressed).
MMAP_MIN_BYTES = 1 << 20
#: More members than any checkpoint of the model family has (a 3B model's params, EMA and moments).
MAX_MEMBERS = 200_000
#: Bytes of the zip directory per member, at most (its fixed part and a name of up to 1 KiB).
MAX_DIRECTORY_ENTRY = 46 + 1024 + 64
#: What reading a member may raise for a damaged file (zlib.error and friends are not OSErrors).
_READ_ERRORS = (
    OSError,
    ValueError,
    zipfile.BadZipFile,
    EOFError,
    zlib.error,
    NotImplementedError,
    RuntimeError,
)
_LOCAL_HEADER = struct.Struct("<4s5H3L2H")  # the zip local file header (30 bytes)


class ConversionError(I1labError):
    """A checkpoint that cannot be read safely or does not match the model (one line)."""


@dataclass
class Tensor:
    """One output array: shape and dtype known before its values are read by ``read()``."""

    shape: tuple[int, ...]
    dtype: np.dtype[Any]
    read: Callable[[], np.ndarray]
    name: str = ""  # where it comes from (for messages)

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))

    @property
    def nbytes(self) -> int:
        return self.size * self.dtype.itemsize

    @property
    def ndim(self) -> int:
        return len(self.shape)


def bfloat16() -> np.dtype[Any]:
    import ml_dtypes

    return np.dtype(ml_dtypes.bfloat16)


def recover_dtype(a: np.ndarray) -> np.ndarray:
    """bfloat16 arrays come back from ``np.savez`` as 2-byte void; view them as bfloat16 again."""
    if a.dtype.kind == "V" and a.dtype.itemsize == 2:
        return a.view(bfloat16())
    return a


def stored_dtype(dtype: np.dtype[Any]) -> np.dtype[Any]:
    """The dtype an array of ``dtype`` has once read (2-byte void is bfloat16)."""
    return bfloat16() if dtype.kind == "V" and dtype.itemsize == 2 else dtype


def _read_header(f: BinaryIO) -> tuple[tuple[int, ...], bool, np.dtype[Any]]:
    version = np.lib.format.read_magic(f)
    if version == (1, 0):
        return np.lib.format.read_array_header_1_0(f)
    if version == (2, 0):
        return np.lib.format.read_array_header_2_0(f)
    reader = getattr(np.lib.format, "_read_array_header", None)
    if reader is None:
        raise ValueError(f".npy format version {version} is not supported")
    return reader(f, version)


@dataclass
class Member:
    info: zipfile.ZipInfo
    shape: tuple[int, ...]
    fortran: bool
    dtype: np.dtype[Any]  # as stored (bfloat16 is 2-byte void)
    data_offset: int  # of the array data within the member

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) * self.dtype.itemsize


def _directory_size(path: Path) -> tuple[int, int] | None:
    """``(entries, bytes)`` of a zip's central directory as its end record states them (zip64 too), read
    from the file's tail before `zipfile` parses the directory; None when there is no end record."""
    with path.open("rb") as f:
        f.seek(0, 2)
        size = f.tell()
        tail_at = max(0, size - (1 << 16) - 22)
        f.seek(tail_at)
        tail = f.read()
        at = tail.rfind(b"PK\x05\x06")
        if at < 0 or len(tail) - at < 22:
            return None
        entries, cd_bytes = struct.unpack_from("<HL", tail, at + 10)
        if entries != 0xFFFF and cd_bytes != 0xFFFFFFFF:
            return entries, cd_bytes
        locator = at - 20
        if locator < 0 or tail[locator : locator + 4] != b"PK\x06\x07":
            return entries, cd_bytes
        (record_at,) = struct.unpack_from("<Q", tail, locator + 8)
        f.seek(record_at)
        record = f.read(56)
        if len(record) < 56 or record[:4] != b"PK\x06\x06":
            return entries, cd_bytes
        entries64, cd_bytes64 = struct.unpack_from("<QQ", record, 32)
        return entries64, cd_bytes64


class NpzArchive:
    """An ``.npz`` read member by member (see the module docstring)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        try:
            directory = _directory_size(self.path)
        except OSError as exc:
            raise ConversionError(f"{path}: cannot read ({exc.strerror or exc})") from None
        if directory is not None and (
            directory[0] > MAX_MEMBERS or directory[1] > MAX_MEMBERS * MAX_DIRECTORY_ENTRY
        ):
            raise ConversionError(
                f"{path}: its zip directory lists {directory[0]} members in {directory[1]} bytes "
                f"(at most {MAX_MEMBERS} members); not read"
            )
        try:
            self.zip = zipfile.ZipFile(self.path)
        except (OSError, zipfile.BadZipFile, ValueError, EOFError, NotImplementedError) as exc:
            raise ConversionError(f"{path}: not a readable .npz archive ({exc})") from None
        self.members: dict[str, Member] = {}
        key = ""
        try:
            infos = self.zip.infolist()
            if len(infos) > MAX_MEMBERS:
                raise ConversionError(f"{path}: {len(infos)} members (at most {MAX_MEMBERS})")
            for info in infos:
                if info.is_dir():
                    continue
                key = info.filename.removesuffix(".npy")
                if key in self.members:
                    raise ConversionError(f"{path}: member {key} appears twice")
                with self.zip.open(info) as f:
                    shape, fortran, dtype = _read_header(f)  # type: ignore[arg-type]
                    offset = f.tell()
                if dtype.hasobject:
                    raise ConversionError(
                        f"{path}: {key} holds Python objects (a pickle); refused (allow_pickle=False)"
                    )
                if any(d < 0 for d in shape):
                    raise ConversionError(f"{path}: {key}: its header has a negative dimension {shape}")
                claimed = math.prod(shape) * dtype.itemsize
                if offset + claimed != info.file_size:
                    raise ConversionError(
                        f"{path}: {key}: its header claims {claimed} bytes of data (shape {tuple(shape)}, "
                        f"{dtype}), the member holds {info.file_size - offset}"
                    )
                self.members[key] = Member(info, tuple(shape), fortran, dtype, offset)
        except ConversionError:
            self.zip.close()
            raise
        except (*_READ_ERRORS, TypeError) as exc:
            self.zip.close()
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            member = f" (member {key})" if key else ""
            raise ConversionError(f"{path}: not a readable .npz archive{member}: {first[:200]}") from None

    @property
    def files(self) -> list[str]:
        return list(self.members)

    def _file_offset(self, info: zipfile.ZipInfo) -> int:
        """Where a stored member's bytes start in the file (after its local header)."""
        with self.path.open("rb") as f:
            f.seek(info.header_offset)
            fields = _LOCAL_HEADER.unpack(f.read(_LOCAL_HEADER.size))
        if fields[0] != b"PK\x03\x04":
            raise ConversionError(f"{self.path}: damaged zip entry {info.filename}")
        name_len, extra_len = fields[-2], fields[-1]
        return info.header_offset + _LOCAL_HEADER.size + name_len + extra_len

    def read(self, key: str) -> np.ndarray:
        """The array of member ``key`` (bfloat16 restored): memory-mapped where the member is stored
        uncompressed and large, else read alone."""
        m = self.members[key]
        try:
            if (
                m.info.compress_type == zipfile.ZIP_STORED
                and not m.info.flag_bits & 0x1  # not encrypted
                and m.nbytes >= MMAP_MIN_BYTES
            ):
                offset = self._file_offset(m.info) + m.data_offset
                a: np.ndarray = np.memmap(
                    self.path,
                    dtype=m.dtype,
                    mode="r",
                    offset=offset,
                    shape=m.shape,
                    order="F" if m.fortran else "C",
                )
            else:
                with self.zip.open(m.info) as f:
                    a = np.lib.format.read_array(f, allow_pickle=False)
        except _READ_ERRORS as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ConversionError(f"{self.path}: cannot read {key} ({first[:200]})") from None
        if a.shape != m.shape:
            raise ConversionError(f"{self.path}: {key} has shape {a.shape}, its header says {m.shape}")
        return recover_dtype(a)

    def close(self) -> None:
        self.zip.close()

    def __enter__(self) -> NpzArchive:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def check_npz_headers(path: Path) -> None:
    """For a reader that loads an ``.npz`` with ``np.load``: its members' headers checked against the zip
    (see :class:`NpzArchive`) before any array is read, so a header claiming a terabyte is one line, not
    an allocation. A file that is not a zip is left to the reader."""
    try:
        is_zip = zipfile.is_zipfile(path)
    except OSError:
        return
    if is_zip:
        NpzArchive(path).close()


def load_pt(path: Path) -> Any:
    """A ``.pt`` checkpoint with its tensors memory-mapped, unpickled with ``weights_only`` (no code runs);
    ConversionError when it cannot be read safely."""
    try:
        import torch
    except ImportError:
        raise I1labError(f"{path}: reading .pt checkpoints needs torch (pip install 'i1lab[vlm]')") from None
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as exc:  # torch raises many types for unreadable or unsafe files
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConversionError(f"{path}: cannot read the checkpoint safely ({first[:200]})") from None
