"""Orbax checkpoints of a run: rolling latest ones and permanent ones (docs/design-space.md §9).

A checkpoint ``checkpoints/<step>/`` holds two Orbax items:

- ``state``: the whole train state (step, params, EMA, optimizer state);
- ``meta``: JSON with the data position (the step: the pipeline is random-access by step, so the
  position is the number of batches consumed, plus a fingerprint of the batch stream), the compute
  precision and SHA-256 digests of params, EMA and optimizer state.

Saves are asynchronous and atomic: Orbax writes into a temporary folder and renames it when complete,
so a killed process leaves no folder that looks like a checkpoint; leftover temporary folders are
removed at the next start. The two newest checkpoints are kept (``max_to_keep=2``) besides the
permanent ones (every ``keep_every`` steps and the last step), so that when the newest is corrupt or
incomplete (restoring fails or its arrays no longer match their digests) the run resumes from the one
before; the bad folder is moved to ``<workdir>/corrupt/``.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orbax.checkpoint as ocp

from i1lab.errors import I1labError


class CheckpointCorrupt(Exception):
    """A checkpoint cannot be restored, or its arrays do not match the digests saved with it."""


@dataclass
class Restored:
    step: int
    state: Any
    meta: dict[str, Any]


def placed(abstract_state: Any) -> Any:
    """The restore target: leaves without a placement go to this process's first device. Orbax needs
    one to read a checkpoint saved by several processes (a multi-host run's) into one process."""
    import jax

    device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])

    def place(leaf: Any) -> Any:
        if isinstance(leaf, jax.ShapeDtypeStruct) and leaf.sharding is None:
            return jax.ShapeDtypeStruct(leaf.shape, leaf.dtype, sharding=device)
        return leaf

    return jax.tree_util.tree_map(place, abstract_state)


class Checkpoints:
    def __init__(
        self,
        directory: Path,
        *,
        every: int,
        keep_every: int,
        total_steps: int,
        read_only: bool = False,
    ) -> None:
        self.directory = Path(directory)
        self.every = every
        self.keep_every = keep_every
        self.total_steps = total_steps
        if not read_only:
            try:
                self.directory.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise I1labError(
                    f"cannot create checkpoint folder {self.directory}: {exc.strerror or exc}"
                ) from None
        elif not self.directory.is_dir():
            raise I1labError(f"{self.directory}: no checkpoint folder")
        # read_only: open an existing folder without creating, cleaning or deleting anything (Orbax's
        # own read_only mode warns about every option it ignores)
        options = ocp.CheckpointManagerOptions(
            max_to_keep=2,
            keep_period=keep_every,
            save_interval_steps=1,
            enable_async_checkpointing=not read_only,
            create=not read_only,
            cleanup_tmp_directories=not read_only,
        )
        self.manager = ocp.CheckpointManager(self.directory.resolve(), options=options)

    def is_permanent(self, step: int) -> bool:
        return step % self.keep_every == 0 or step == self.total_steps

    def due(self, step: int) -> bool:
        """Whether ``step`` (number of completed steps) gets a checkpoint."""
        if step == self.total_steps or step % self.keep_every == 0:
            return True
        if step % self.every:
            return False
        # A periodic save that falls within a quarter interval of the last step is skipped (§9).
        return self.total_steps - step >= self.every // 4

    def save(self, step: int, state: Any, meta: dict[str, Any]) -> None:
        """Start an asynchronous save (returns once the arrays are copied off the device)."""
        args = ocp.args.Composite(state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta))
        self.manager.save(step, args=args, force=True)

    def steps(self) -> list[int]:
        return sorted(self.manager.all_steps())

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def saving(self) -> bool:
        return bool(self.manager.is_saving_in_progress())

    def restore(
        self, step: int, abstract_state: Any, *, verify: bool = True, only: str | None = None
    ) -> tuple[Any, dict[str, Any]]:
        """``(state, meta)`` of checkpoint ``step``; CheckpointCorrupt when it cannot be trusted.

        ``only="ema"`` or ``"params"``: read that group of weights (and the step) and nothing else — the
        other fields of the state are None; memory is that group's (an imported 3 B model's whole train
        state would not fit a workstation)."""
        from i1lab.train.digest import state_digests, tree_digest
        from i1lab.train.step import TrainState

        target = placed(abstract_state)
        if only is None:
            state_args: Any = ocp.args.StandardRestore(target)
        else:
            import jax

            if only not in ("ema", "params"):
                raise ValueError(f"only must be ema or params, not {only!r}")
            target = TrainState(
                target.step,
                target.params if only == "params" else None,
                target.ema if only == "ema" else None,
                None,
            )
            restore_args = jax.tree_util.tree_map(
                lambda x: ocp.ArrayRestoreArgs(sharding=x.sharding, global_shape=x.shape, dtype=x.dtype),
                target,
            )
            state_args = ocp.args.PyTreeRestore(item=target, restore_args=restore_args, partial_restore=True)
        try:
            if only is None:
                args = ocp.args.Composite(state=state_args, meta=ocp.args.JsonRestore())
                restored = self.manager.restore(step, args=args)
            else:  # the manager's state handler (Standard) restores whole trees only
                restored = self.manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))
                handler = ocp.PyTreeCheckpointHandler()
                try:
                    path = self.directory.resolve() / str(step) / "state"
                    restored = {"state": handler.restore(path, args=state_args), "meta": restored["meta"]}
                finally:
                    handler.close()
            state = TrainState(*restored["state"])
            meta = dict(restored["meta"] or {})
        except Exception as exc:  # Orbax/TensorStore raise many types for missing or damaged files
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            raise CheckpointCorrupt(
                f"step {step}: cannot restore ({type(exc).__name__}: {first[:200]})"
            ) from exc
        if only is not None:
            expected = (meta.get("digests") or {}).get(only)
            if verify and expected is not None and tree_digest(getattr(state, only)) != expected:
                raise CheckpointCorrupt(f"step {step}: {only} do not match the digest saved with them")
            return state, meta
        if verify and meta.get("digests"):
            actual = state_digests(state)
            for name, expected in meta["digests"].items():
                if expected is not None and actual.get(name) is not None and actual[name] != expected:
                    raise CheckpointCorrupt(f"step {step}: {name} do not match the digest saved with them")
        return state, meta

    def restore_latest(
        self,
        abstract_state: Any,
        quarantine: Path | None,
        agree: Callable[[bool], bool] | None = None,
        only: str | None = None,
    ) -> tuple[Restored | None, list[str]]:
        """The newest checkpoint that restores and verifies (None if none does), and one line per newer
        checkpoint found corrupt. Corrupt ones are moved to ``quarantine`` (only skipped when None).

        ``agree``: for the processes of one run (every one restores each checkpoint it tries, together),
        takes this process's verdict on a checkpoint and returns the one all go by (process 0's), so that
        all resume from the same step; a process that cannot read the checkpoint the others use stops.
        ``only``: as for :meth:`restore`."""
        skipped: list[str] = []
        for step in reversed(self.steps()):
            error: CheckpointCorrupt | None = None
            try:
                state, meta = self.restore(step, abstract_state, only=only)
            except CheckpointCorrupt as exc:
                error = exc
            ok = error is None if agree is None else agree(error is None)
            if ok and error is not None:
                raise I1labError(f"{self.directory}: this host cannot read checkpoint {error}") from None
            if not ok:
                skipped.append(str(error or f"step {step}: corrupt on another host"))
                if quarantine is not None:
                    self._quarantine(step, quarantine)
                if agree is not None:  # once it is moved aside, every process forgets it
                    agree(True)
                    self.manager.reload()
                continue
            return Restored(step, state, meta), skipped
        return None, skipped

    def _quarantine(self, step: int, quarantine: Path) -> None:
        quarantine.mkdir(parents=True, exist_ok=True)
        shutil.move(str(self.directory / str(step)), str(quarantine / f"{step}-{int(time.time())}"))
        self.manager.reload()

    def wait(self) -> None:
        self.manager.wait_until_finished()

    def check_for_errors(self) -> None:
        """Raise the error of a failed background save, if any."""
        self.manager.check_for_errors()

    def close(self) -> None:
        try:
            self.manager.wait_until_finished()
        finally:
            self.manager.close()
