"""Long-skip wiring shared by the three backbones (docs/design-space.md §5.1).

Depth d splits into d//2 in blocks, 1 mid block and d//2 out blocks, named `blocks_0 … blocks_{d−1}`.
In-block outputs are pushed on a stack and each out block pops one (LIFO ⚑); an out block starts
with its skip linear over `concat(x, skip)`. Without long skips the d blocks run plainly.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

from models.config import ModelConfig

State = TypeVar("State")
Block = TypeVar("Block")


def num_in_blocks(config: ModelConfig) -> int:
    """Number of in blocks (= out blocks) under long skips, d//2; 0 without them (§5.1)."""
    return config.depth // 2 if config.use_long_skip else 0


def is_out_block(config: ModelConfig, index: int) -> bool:
    """Whether `blocks_{index}` is an out block (starts with a skip linear)."""
    return config.use_long_skip and index >= config.depth - num_in_blocks(config)


def run_long_skips(
    blocks: Sequence[Block],
    x: State,
    call: Callable[[Block, State, State | None], State],
    *,
    use_long_skip: bool,
) -> State:
    """Run `blocks` on `x` (any pytree state) with `call(block, x, skip)`; skip is None except in
    out blocks, which get in-block outputs popped LIFO ⚑."""
    if not use_long_skip:
        for block in blocks:
            x = call(block, x, None)
        return x
    n_in = len(blocks) // 2
    stack: list[State] = []
    for block in blocks[:n_in]:
        x = call(block, x, None)
        stack.append(x)
    x = call(blocks[n_in], x, None)
    for block in blocks[n_in + 1 :]:
        x = call(block, x, stack.pop())
    return x
