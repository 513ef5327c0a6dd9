"""An Orbax checkpoint written tensor by tensor, and a reference ``.npz`` written member by member.

**Import.** :func:`save_streaming` writes a train state whose leaves are :class:`~.sources.Tensor` (shape
and dtype known, values read on demand) as the checkpoint training writes (``<step>/state``: Orbax's
PyTree format, OCDBT + zarr, the same ``jax.Array`` type handler; ``<step>/meta``: JSON). Orbax hands
every leaf to one type handler (:class:`_StreamingHandler`), which reads the tensors in the tree's
order, at most ``buffer_bytes`` at a time (at least one tensor), hands each batch to Orbax's own
``ArrayHandler`` and waits until it is on disk before reading the next one. Peak memory is thus bounded
by the batch (or the largest tensor), whatever the checkpoint's size. While the tensors go by, the
SHA-256 digests that the checkpoint's ``meta`` carries (:mod:`i1lab.train.digest`: params, EMA,
optimizer state, each over its leaves in tree order) are computed; ``meta`` is written with the state
and its ``digests`` filled in once the last tensor is written (the whole run folder is published only
afterwards, see :func:`i1lab.i1import.convert.convert_checkpoint`).

**Export.** :func:`write_npz` writes a reference ``.npz`` member by member (``zipfile`` +
``np.lib.format.write_array``), stored uncompressed as ``np.savez`` does; :func:`read_leaves` restores a
checkpoint's arrays a batch at a time.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import sys
import time
import zipfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from i1lab.i1import.sources import ConversionError, Tensor

#: Default bound on the tensors read and not yet written (bytes).
DEFAULT_BUFFER_BYTES = 256 << 20
DIGESTED = ("params", "ema", "opt_state")

#: ``progress(tensors_done, bytes_done)``
ProgressFn = Callable[[int, int], None]


def _group(keypath: Any) -> str:
    first = keypath[0]
    return str(getattr(first, "name", getattr(first, "key", first)))


def digest_update(h: Any, a: np.ndarray) -> None:
    """Add one array to a digest exactly as :func:`i1lab.train.digest.tree_digest` does."""
    a = np.ascontiguousarray(a)  # as tree_digest does (a 0-d array becomes shape (1,))
    h.update(f"{a.dtype.str}|{a.dtype.name}|{a.shape};".encode())
    h.update(a.reshape(-1).view(np.uint8).data if a.size else b"")


def _trim() -> None:
    """Give freed heap memory back to the system (glibc keeps it in per-thread arenas otherwise, and
    the resident size would creep up with the number of batches)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _handler_class() -> Any:
    from orbax.checkpoint import type_handlers
    from orbax.checkpoint._src.metadata import array_metadata_store

    class StreamingHandler(type_handlers.ArrayHandler):
        """Orbax's jax.Array handler, fed a batch of tensors at a time (read when their turn comes)."""

        def __init__(self, order: dict[str, int], buffer_bytes: int, progress: ProgressFn | None) -> None:
            # the array metadata store of Orbax's default jax.Array handler (write shapes, as training's)
            super().__init__(array_metadata_store=array_metadata_store.Store())
            self.order = order
            self.buffer_bytes = buffer_bytes
            self.progress = progress
            self.hashers = {g: hashlib.sha256() for g in DIGESTED}
            self.hashed: dict[str, int] = dict.fromkeys(DIGESTED, 0)
            self.tensors = 0
            self.bytes = 0
            self.error: BaseException | None = None

        def typestr(self) -> str:
            return "jax.Array"  # restored by the standard handler, as a training checkpoint

        async def _flush(self, batch: list[tuple[Any, Any, Any, int]]) -> None:
            futures = await type_handlers.ArrayHandler.serialize(
                self, [b[0] for b in batch], [b[1] for b in batch], [b[2] for b in batch]
            )
            for f in futures:
                await asyncio.to_thread(f.result)
            self.tensors += len(batch)
            self.bytes += sum(b[3] for b in batch)
            batch.clear()
            _trim()
            if self.progress is not None:
                self.progress(self.tensors, self.bytes)

        async def serialize(self, values: Any, infos: Any, args: Any = None) -> list[Any]:
            import jax
            from jax.tree_util import keystr
            from orbax.checkpoint import SaveArgs

            args = list(args or [SaveArgs()] * len(values))
            items = sorted(
                zip(values, infos, args, strict=True),
                key=lambda t: self.order.get(keystr(t[1].keypath), len(self.order)),
            )
            batch: list[tuple[Any, Any, Any, int]] = []
            pending = 0
            try:
                for value, info, arg in items:
                    if isinstance(value, Tensor):
                        a = value.read()
                        if tuple(a.shape) != tuple(value.shape) or a.dtype != value.dtype:
                            raise ConversionError(
                                f"{value.name or info.name}: read {a.dtype}{tuple(a.shape)}, "
                                f"expected {value.dtype}{tuple(value.shape)}"
                            )
                        a = np.require(a, requirements="C")  # (ascontiguousarray makes 0-d arrays 1-d)
                        group = _group(info.keypath)
                        if group in self.hashers:
                            digest_update(self.hashers[group], a)
                            self.hashed[group] += 1
                        array = jax.device_put(a)
                        nbytes = a.nbytes
                        del a
                    else:
                        array, nbytes = value, int(value.nbytes)
                    batch.append((array, info, arg, nbytes))
                    pending += nbytes
                    if pending >= self.buffer_bytes:
                        await self._flush(batch)
                        batch, pending = [], 0
                if batch:
                    await self._flush(batch)
            except BaseException as exc:
                self.error = exc
                raise
            return []

    return StreamingHandler


def save_streaming(
    directory: Path,
    step: int,
    state: Any,
    meta: dict[str, Any],
    *,
    buffer_bytes: int = DEFAULT_BUFFER_BYTES,
    progress: ProgressFn | None = None,
) -> dict[str, str | None]:
    """Write checkpoint ``directory/<step>`` (items ``state`` and ``meta``) from a train state whose leaves
    are :class:`Tensor`; returns the digests written into ``meta``."""
    import jax
    import orbax.checkpoint as ocp
    from jax.tree_util import keystr
    from orbax.checkpoint import type_handlers

    leaves = jax.tree_util.tree_flatten_with_path(state)[0]
    order = {keystr(p): i for i, (p, _) in enumerate(leaves)}
    expected = {g: sum(1 for p, _ in leaves if _group(p) == g) for g in DIGESTED}
    handler = _handler_class()(order, max(int(buffer_bytes), 1), progress)
    registry = type_handlers.create_type_handler_registry((Tensor, handler), (jax.Array, handler))
    manager = ocp.CheckpointManager(
        Path(directory).resolve(),
        item_handlers={
            "state": ocp.PyTreeCheckpointHandler(type_handler_registry=registry),
            "meta": ocp.JsonCheckpointHandler(),
        },
        options=ocp.CheckpointManagerOptions(create=True, enable_async_checkpointing=False),
    )
    try:
        args = ocp.args.Composite(
            state=ocp.args.PyTreeSave(state), meta=ocp.args.JsonSave({**meta, "digests": None})
        )
        try:
            manager.save(step, args=args, force=True)
            manager.wait_until_finished()
        except BaseException:
            if isinstance(handler.error, ConversionError):
                raise handler.error from None
            raise
    finally:
        manager.close()
    if handler.hashed != expected:
        raise RuntimeError(f"streamed {handler.hashed} leaves, expected {expected}")
    digests: dict[str, str | None] = {g: h.hexdigest() for g, h in handler.hashers.items()}
    meta_file = Path(directory) / str(step) / "meta" / "metadata"
    if not meta_file.is_file():
        raise RuntimeError(f"{meta_file}: Orbax's JSON item is not where it was expected")
    meta_file.write_text(json.dumps({**meta, "digests": digests}))
    return digests


# ---------------------------------------------------------------------------- progress
class TerminalProgress:
    """Tensors done, bytes and rate on a terminal: one line rewritten in place on a TTY, else a line
    every ``every`` seconds and one at the end."""

    def __init__(
        self,
        label: str,
        total_tensors: int,
        total_bytes: int,
        stream: TextIO | None = None,
        every: float = 10.0,
    ) -> None:
        self.label = label
        self.total_tensors = total_tensors
        self.total_bytes = total_bytes
        self.stream = stream or sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.every = every
        self.start = time.monotonic()
        self.last = self.start

    def line(self, tensors: int, nbytes: int) -> str:
        elapsed = max(time.monotonic() - self.start, 1e-9)
        return (
            f"{self.label}: {tensors:,}/{self.total_tensors:,} tensors, "
            f"{nbytes / 1e9:.2f}/{self.total_bytes / 1e9:.2f} GB, {nbytes / 1e6 / elapsed:.0f} MB/s, "
            f"{elapsed:.0f} s"
        )

    def __call__(self, tensors: int, nbytes: int) -> None:
        now = time.monotonic()
        final = tensors >= self.total_tensors
        if self.tty:
            if final or now - self.last >= 0.2:
                end = "\n" if final else ""
                self.stream.write("\r" + self.line(tensors, nbytes) + end)
                self.stream.flush()
                self.last = now
        elif final or now - self.last >= self.every:
            self.stream.write(self.line(tensors, nbytes) + "\n")
            self.stream.flush()
            self.last = now


# ---------------------------------------------------------------------------- export
def write_npz(path: Path, members: Iterable[tuple[str, np.ndarray]]) -> int:
    """Write an ``.npz`` member by member (stored, as ``np.savez``), each array dropped once written;
    bfloat16 is stored as 2-byte void as the reference's ``np.savez`` stores it. Returns the members."""
    n = 0
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as z:
        for name, array in members:
            a = np.asarray(array)
            if a.dtype.name == "bfloat16":
                a = a.view(np.dtype("V2"))
            with z.open(f"{name}.npy", "w", force_zip64=True) as f:
                np.lib.format.write_array(f, a, allow_pickle=False)
            n += 1
            del a, array
    return n


def read_leaves(
    directory: Path,
    step: int,
    abstract_state: Any,
    buffer_bytes: int = DEFAULT_BUFFER_BYTES,
) -> Iterator[tuple[Any, np.ndarray]]:
    """The arrays of checkpoint ``directory/<step>``'s state, ``(key path, array)`` in tree order,
    restored a batch of at most ``buffer_bytes`` (at least one array) at a time."""
    import jax
    import orbax.checkpoint as ocp

    from i1lab.train.checkpoint import placed

    target = placed(abstract_state)
    flat = jax.tree_util.tree_flatten_with_path(target)[0]
    handler = ocp.PyTreeCheckpointHandler()
    where = Path(directory).resolve() / str(step) / "state"
    batch: list[int] = []
    pending = 0

    def restore(indices: list[int]) -> list[np.ndarray]:
        keep = set(indices)
        leaves = [leaf if i in keep else None for i, (_, leaf) in enumerate(flat)]
        sub = jax.tree_util.tree_unflatten(jax.tree_util.tree_structure(target), leaves)
        restore_args = jax.tree_util.tree_map(
            lambda x: ocp.ArrayRestoreArgs(sharding=x.sharding, global_shape=x.shape, dtype=x.dtype),
            sub,
        )
        got = handler.restore(
            where, args=ocp.args.PyTreeRestore(item=sub, restore_args=restore_args, partial_restore=True)
        )
        return [np.asarray(x) for x in jax.tree_util.tree_leaves(got)]

    for i, (_, leaf) in enumerate(flat):
        batch.append(i)
        pending += int(np.prod(leaf.shape, dtype=np.int64)) * np.dtype(leaf.dtype).itemsize
        if pending >= buffer_bytes or i == len(flat) - 1:
            for j, a in zip(batch, restore(batch), strict=True):
                yield flat[j][0], a
            batch, pending = [], 0
