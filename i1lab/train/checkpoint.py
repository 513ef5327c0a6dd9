"""Orbax checkpoints of a run: a rolling latest one and permanent ones (DESIGN_SPACE.md §9).

A checkpoint holds the whole train state (step, params, EMA, optimizer state); the data position is the
step itself (the pipeline is random-access by step). Saves are asynchronous and atomic (Orbax writes to
a temporary folder and renames it when complete), so a killed process never leaves a checkpoint that
looks valid but is not.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orbax.checkpoint as ocp

from i1lab.errors import I1labError


class Checkpoints:
    def __init__(self, directory: Path, *, every: int, keep_every: int, total_steps: int) -> None:
        self.directory = directory
        self.every = every
        self.keep_every = keep_every
        self.total_steps = total_steps
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise I1labError(f"cannot create checkpoint folder {directory}: {exc.strerror}") from None
        options = ocp.CheckpointManagerOptions(
            max_to_keep=1,
            keep_period=keep_every,
            save_interval_steps=1,
            enable_async_checkpointing=True,
            create=True,
        )
        self.manager = ocp.CheckpointManager(directory.resolve(), options=options)

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

    def save(self, step: int, state: Any) -> None:
        self.manager.save(step, args=ocp.args.StandardSave(state), force=True)

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def restore(self, step: int, abstract_state: Any) -> Any:
        return self.manager.restore(step, args=ocp.args.StandardRestore(abstract_state))

    def wait(self) -> None:
        self.manager.wait_until_finished()

    def close(self) -> None:
        self.manager.wait_until_finished()
        self.manager.close()
