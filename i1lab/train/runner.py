"""The training loop of one run: resume, step, log, checkpoint, hand checkpoints to evaluation.

``train`` is the single-run entry point a scheduler worker calls (and ``i1lab train`` exposes). It is
deterministic: the batch of step ``s`` and the RNG of step ``s`` depend only on the spec and ``s``, and
the state is restored from the latest checkpoint, so a run killed at any moment and started again ends
with the same parameters as an uninterrupted run.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from i1lab.errors import I1labError
from i1lab.spec.run import RunSpec


class RunFailed(I1labError):
    """The run stopped for a reason of its own (NaN loss, bad data): retrying will not help."""


@dataclass
class Hooks:
    """Callbacks through which the caller observes a run (progress, checkpoints, evaluation)."""

    on_step: Callable[[int], None] = lambda step: None
    on_log: Callable[[dict[str, float]], None] = lambda metrics: None
    on_checkpoint: Callable[[int, bool, str], None] = lambda step, permanent, path: None
    on_eval: Callable[[int, Any], None] | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def eval_steps(spec: RunSpec) -> set[int]:
    every = spec.eval.every or spec.train.keep_every
    steps = set(range(every, spec.train.steps + 1, every))
    steps.add(spec.train.steps)
    return steps


def _batch(spec: RunSpec, stream: Any, encoder: Any, step: int) -> dict[str, np.ndarray]:
    from i1lab.train.build import encode_images

    raw = stream[step]
    text, mask = encoder([str(c) for c in raw["caption"]])
    return {"latents": encode_images(spec, raw["image"]), "text": text, "mask": mask}


def initial_state(spec: RunSpec, abstract: bool = False) -> tuple[Any, Any, Any]:
    """``(TrainState, optimizer, frozen mask)`` at step 0; with ``abstract`` only shapes (no memory)."""
    import jax
    import jax.numpy as jnp

    from i1lab.train.build import model_config
    from i1lab.train.optim import frozen_mask, make_optimizer
    from i1lab.train.step import TrainState
    from models.dit import init_variables

    config = model_config(spec)
    init_rng = jax.random.split(jax.random.PRNGKey(spec.train.seed))[0]

    def build() -> Any:
        params = init_variables(config, init_rng)["params"]
        tx = make_optimizer(spec.train, params)
        ema = jax.tree_util.tree_map(jnp.copy, params)
        return TrainState(jnp.zeros((), jnp.int32), params, ema, tx.init(params))

    state = jax.eval_shape(build) if abstract else build()
    tx = make_optimizer(spec.train, state.params)
    return state, tx, frozen_mask(state.params)


def restore_ema(spec: RunSpec, workdir: Path, step: int) -> Any | None:
    """The EMA parameters saved at ``step`` in ``workdir``, or None if that checkpoint is not kept."""
    from i1lab.train.checkpoint import Checkpoints
    from i1lab.train.step import TrainState

    t = spec.train
    ckpts = Checkpoints(
        Path(workdir) / "checkpoints", every=t.checkpoint_every, keep_every=t.keep_every, total_steps=t.steps
    )
    try:
        if step not in ckpts.manager.all_steps():
            return None
        abstract, _, _ = initial_state(spec, abstract=True)
        return TrainState(*ckpts.restore(step, abstract)).ema
    finally:
        ckpts.close()


def state_from_parent(spec: RunSpec, parent_dir: Path) -> Any:
    """The train state to start a resolution stage from: the parent run's latest checkpoint, with the
    frozen sinusoidal table recomputed for this run's resolution (DESIGN_SPACE.md §3 "Frozen")."""
    import jax.numpy as jnp

    from i1lab.train.build import model_config
    from i1lab.train.checkpoint import Checkpoints
    from i1lab.train.step import TrainState
    from models.posemb import pos_embed_table

    try:
        parent = RunSpec.model_validate_json((parent_dir / "spec.json").read_text())
    except OSError as exc:
        raise I1labError(f"resume_from: cannot read the parent run in {parent_dir}: {exc.strerror}") from None
    p = parent.train
    ckpts = Checkpoints(
        parent_dir / "checkpoints", every=p.checkpoint_every, keep_every=p.keep_every, total_steps=p.steps
    )
    try:
        step = ckpts.latest_step()
        if step is None:
            raise I1labError(f"resume_from: the parent run in {parent_dir} has no checkpoint")
        abstract, _, _ = initial_state(parent, abstract=True)
        restored = TrainState(*ckpts.restore(step, abstract))
    finally:
        ckpts.close()
    if step >= spec.train.steps:
        raise I1labError(
            f"resume_from: the parent stops at step {step}, not before train.steps={spec.train.steps}"
        )
    table = pos_embed_table(model_config(spec))

    def fresh(tree: Any) -> Any:
        return {**tree, "pos_embed": jnp.asarray(table)} if "pos_embed" in tree else tree

    return TrainState(restored.step, fresh(restored.params), fresh(restored.ema), restored.opt_state)


def train(
    spec: RunSpec, workdir: Path, hooks: Hooks | None = None, init_from: Path | None = None
) -> dict[str, Any]:
    """Train (or resume) the run described by ``spec`` in ``workdir``; returns a summary dict."""
    import jax
    import jax.numpy as jnp

    from i1lab.data.pipeline import BatchStream
    from i1lab.train.build import TextEncoder, model_config
    from i1lab.train.checkpoint import Checkpoints
    from i1lab.train.step import TrainState, make_train_step
    from models.dit import DiT

    hooks = hooks or Hooks()
    t = spec.train
    workdir = Path(workdir)
    try:
        workdir.mkdir(parents=True, exist_ok=True)
        (workdir / "spec.json").write_text(spec.model_dump_json(indent=2))
    except OSError as exc:
        raise I1labError(f"work directory {workdir} is not writable: {exc.strerror}") from None

    config = model_config(spec)
    model = DiT(config)
    step_root = jax.random.split(jax.random.PRNGKey(t.seed))[1]
    state, tx, frozen = initial_state(spec)

    ckpts = Checkpoints(
        workdir / "checkpoints", every=t.checkpoint_every, keep_every=t.keep_every, total_steps=t.steps
    )
    start = 0
    latest = ckpts.latest_step()
    if latest is not None:
        abstract = jax.tree_util.tree_map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), state)
        state = TrainState(*ckpts.restore(latest, abstract))
        del abstract
        start = int(state.step)
    elif spec.data.resume_from is not None:
        if init_from is None:
            raise I1labError(
                f"data.resume_from={spec.data.resume_from[:12]}: the parent run's folder is not known"
            )
        state = state_from_parent(spec, init_from)
        start = int(state.step)
    hooks.on_step(start)

    step_fn = make_train_step(
        model,
        tx,
        frozen,
        ema_decay=t.ema_decay,
        drop_prob=t.caption_dropout,
        lognorm=spec.diffusion.timestep_sampling == "lognorm",
        lognorm_mean=spec.diffusion.lognorm_mean,
        lognorm_std=spec.diffusion.lognorm_std,
        train_shift=spec.diffusion.train_shift,
        grad_accum=t.grad_accum,
    )
    stream = BatchStream(spec.data, t.batch_size, t.seed)
    encoder = TextEncoder(spec)
    evals = eval_steps(spec)
    metrics_path = workdir / "metrics.jsonl"
    pool = ThreadPoolExecutor(max_workers=1)  # prefetch the next batch while the step runs
    pending = pool.submit(_batch, spec, stream, encoder, start) if start < t.steps else None
    window_start = time.perf_counter()
    window_wait = 0.0
    window_steps = 0
    last_loss = float("nan")
    try:
        for step in range(start, t.steps):
            wait0 = time.perf_counter()
            assert pending is not None
            batch = pending.result()
            window_wait += time.perf_counter() - wait0
            if step + 1 < t.steps:
                pending = pool.submit(_batch, spec, stream, encoder, step + 1)
            rng = jax.random.fold_in(step_root, step)
            state, metrics = step_fn(state, {k: jnp.asarray(v) for k, v in batch.items()}, rng)
            window_steps += 1
            done = step + 1
            if done % t.log_every == 0 or done == t.steps or done <= 3:
                m = {k: float(v) for k, v in metrics._asdict().items()}
                last_loss = m["loss"]
                if not math.isfinite(m["loss"]):
                    raise RunFailed(f"loss became {m['loss']} at step {done}")
                elapsed = time.perf_counter() - window_start
                record = {
                    "step": done,
                    **m,
                    "lr": t.lr,
                    "step_time": elapsed / window_steps,
                    "images_per_s": window_steps * t.batch_size / elapsed,
                    "data_wait": window_wait / window_steps,
                }
                with metrics_path.open("a") as f:
                    f.write(json.dumps(record) + "\n")
                hooks.on_log(record)
                window_start, window_wait, window_steps = time.perf_counter(), 0.0, 0
            if ckpts.due(done):
                ckpts.save(done, state)
                hooks.on_checkpoint(done, ckpts.is_permanent(done), str(workdir / "checkpoints" / str(done)))
            hooks.on_step(done)
            if done in evals and hooks.on_eval is not None:
                ckpts.wait()
                hooks.on_eval(done, state.ema)
        ckpts.wait()
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
        ckpts.close()
    return {"step": int(state.step), "loss": last_loss, "params": config}
