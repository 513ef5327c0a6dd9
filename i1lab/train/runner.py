"""The training loop of one run: resume, step, log, checkpoint, hand checkpoints to evaluation.

``train`` is the single-run entry point a scheduler worker calls (and ``i1lab train`` exposes). It is
deterministic: the batch of step ``s`` and the RNG of step ``s`` depend only on the spec and ``s``, and
the state is restored from the newest usable checkpoint, so a run killed at any moment and started
again ends with bitwise the same parameters, EMA and optimizer state as an uninterrupted run (on the
same machine type; XLA programs are also cached on disk, so both runs execute the same executable).

Guards:

- **Non-finite loss.** Every step returns a finite flag (loss and gradient norm). The loop reads the flag
  of step ``s`` right after dispatching step ``s+1`` (so the device never waits for the host), and before
  any checkpoint or evaluation: a NaN/Inf stops the run within one step with :class:`RunFailed`
  ("loss became nan at step N"), which the worker records as the run's failure reason. Nothing computed
  after the bad step is saved.
- **Corrupt checkpoints.** See :mod:`i1lab.train.checkpoint`: the newest checkpoint that restores and
  matches its digests is used; bad ones are moved to ``<workdir>/corrupt/``.
- **Hard stops.** SIGTERM (and, on a TPU VM, the metadata server's maintenance or preemption notice;
  :mod:`i1lab.train.preemption`) makes the loop finish the step it is in, write a checkpoint at that step,
  wait for it to be durable and raise :class:`~i1lab.train.preemption.Interrupted`: the run resumes from
  that step, not from its previous periodic checkpoint. (The hosts of a gang keep the default handling:
  they would have to agree on the step first.)
- **Storage.** An unwritable work directory or a full disk ends the run with one line naming the folder
  (:class:`I1labError`), whether it happens while writing the spec, metrics, events or a checkpoint.

Checkpoint events: when a checkpoint is durable (its asynchronous save has finished) the loop calls
``hooks.on_checkpoint`` and, for permanent checkpoints, writes ``events/<step:08d>.json`` (atomically)
into the work directory, for evaluators outside the process to pick up. The loop never waits for a save
to finish to emit these; it polls between steps. In-process evaluation (``hooks.on_eval``, called at
``plan.steps.eval_steps``) runs in a background thread on a host copy of the EMA parameters, so training
goes on while a checkpoint is scored; ``train`` waits for outstanding evaluations before it returns.
"""

from __future__ import annotations

import contextlib
import errno
import json
import math
import os
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from i1lab.errors import I1labError
from i1lab.plan.steps import eval_steps
from i1lab.spec.run import RunSpec
from i1lab.train.distributed import DataParallel, data_parallel, host_copy


class RunFailed(I1labError):
    """The run stopped for a reason of its own (NaN loss, bad data): retrying will not help."""


@dataclass
class Hooks:
    """Callbacks through which the caller observes a run (progress, checkpoints, evaluation)."""

    on_step: Callable[[int], None] = lambda step: None
    on_log: Callable[[dict[str, float]], None] = lambda metrics: None
    on_checkpoint: Callable[[int, bool, str], None] = lambda step, permanent, path: None
    on_eval: Callable[[int, Any], None] | None = None
    #: ``(start step, notes)`` once the state is ready: 0 for a fresh run, else the resumed step.
    on_start: Callable[[int, list[str]], None] = lambda step, notes: None
    #: ``(step, {"source": names, "index": indices})``: which examples batch ``step`` holds.
    on_batch: Callable[[int, dict[str, np.ndarray]], None] | None = None
    #: Whether to watch for notices to stop (SIGTERM, TPU metadata); False for a caller that handles
    #: signals itself.
    watch_stops: bool = True
    extra: dict[str, Any] = field(default_factory=dict)


def storage_error(exc: BaseException, what: str, where: Path) -> I1labError | None:
    """One clear line for a storage failure found anywhere in ``exc``'s chain, else None."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno is not None:
            reason = seen.strerror or os.strerror(seen.errno)
            if seen.errno == errno.ENOSPC:
                return I1labError(f"disk full while writing {what} in {where}: {reason}")
            if seen.errno == errno.EDQUOT:
                return I1labError(f"disk quota exceeded while writing {what} in {where}: {reason}")
            if seen.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
                return I1labError(f"work directory {where} is not writable ({what}): {reason}")
            return I1labError(f"cannot write {what} in {where}: {reason}")
        seen = seen.__cause__ or seen.__context__
    return None


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


#: Folded into the training seed for the VAE's posterior draws (apart from the step's own keys).
VAE_SALT = 0x7AE


def batch_stream(spec: RunSpec) -> Any:
    """The run's batches by step, with the stored VAE moments of its VAE where its sources have them."""
    from i1lab.data.pipeline import BatchStream
    from i1lab.train.build import latent_shape

    return BatchStream(spec.data, spec.train.batch_size, spec.train.seed, latent_shape(spec))


def step_batch(
    spec: RunSpec, stream: Any, encoder: Any, step: int, dp: DataParallel | None = None
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """The device batch of ``step`` and which examples it holds (with ``dp``: this process's rows of
    it, placed as the global batch's share)."""
    import jax

    from i1lab.train.build import batch_latents

    raw = stream[step]
    rows = dp.local_rows(spec.train.batch_size) if dp is not None else slice(None)
    text, mask = encoder([str(c) for c in raw["caption"][rows]])
    # the posterior is sampled (docs/design-space.md §7), from a key of the seed and step alone
    vae_rng = jax.random.fold_in(jax.random.fold_in(jax.random.PRNGKey(spec.train.seed), VAE_SALT), step)
    if dp is not None:
        vae_rng = jax.random.fold_in(vae_rng, dp.index)
    latents = batch_latents(
        spec, {k: v[rows] for k, v in raw.items() if k in ("image", "moments", "stored")}, vae_rng
    )
    host = {"latents": latents, "text": text, "mask": mask}
    ids = {"source": np.asarray(raw["source"])[rows], "index": np.asarray(raw["index"])[rows]}
    if dp is not None:
        return dp.batch(host), ids
    return jax.device_put(host), ids


class _Prefetcher:
    """Prepares batches ``depth`` steps ahead on ``workers`` threads."""

    def __init__(self, fn: Callable[[int], Any], start: int, stop: int, depth: int = 4, workers: int = 1):
        self.fn, self.stop, self.depth = fn, stop, depth
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="i1lab-data")
        self.futures: dict[int, Future[Any]] = {}
        self.next = start
        self._fill(start)

    def _fill(self, step: int) -> None:
        while self.next < min(self.stop, step + self.depth + 1):
            self.futures[self.next] = self.pool.submit(self.fn, self.next)
            self.next += 1

    def get(self, step: int) -> Any:
        self._fill(step)
        return self.futures.pop(step).result()

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)


class _Evaluator:
    """Runs ``on_eval`` calls one at a time in a background thread; ``drain`` re-raises failures."""

    def __init__(self) -> None:
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="i1lab-eval")
        self.futures: list[Future[None]] = []

    def submit(self, fn: Callable[[int, Any], None], step: int, ema: Any) -> None:
        self.futures.append(self.pool.submit(fn, step, ema))

    def drain(self) -> None:
        try:
            for f in self.futures:
                f.result()
        finally:
            self.pool.shutdown(wait=True)

    def abandon(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)


def enable_compilation_cache() -> None:
    """Persist compiled XLA programs (in ``$JAX_COMPILATION_CACHE_DIR``, else ``$I1LAB_HOME/cache/jax``)
    unless a cache is configured already: a resumed run skips recompilation and executes the very
    executable the first attempt ran."""
    import jax

    if getattr(jax.config, "jax_compilation_cache_dir", None):
        return
    from i1lab import paths

    env = os.environ.get("JAX_COMPILATION_CACHE_DIR")
    folder = Path(env) if env else paths.home() / "cache" / "jax"
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        return  # a cache is an optimisation only
    jax.config.update("jax_compilation_cache_dir", str(folder))


def initial_state(
    spec: RunSpec, abstract: bool = False, dp: DataParallel | None = None, jit: bool = True
) -> tuple[Any, Any, Any]:
    """``(TrainState, optimizer, frozen mask)`` at step 0; with ``abstract`` only shapes (no memory);
    with ``dp`` placed replicated on every process's devices; without ``jit`` built op by op (for
    one-off states whose compilation would cost more than the build).

    The state is built by one jitted program (one compilation, cached on disk, instead of hundreds of
    op-by-op ones)."""
    import jax
    import jax.numpy as jnp

    from i1lab.spec.model import model_config
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

    if abstract:
        state = jax.eval_shape(build)
        if dp is not None:
            state = dp.abstract(state)
    else:
        state = jax.jit(build, out_shardings=dp.replicated if dp is not None else None)() if jit else build()
    tx = make_optimizer(spec.train, state.params)
    return state, tx, frozen_mask(state.params)


def train_step(spec: RunSpec, model: Any, tx: Any, frozen: Any, jit: bool = True) -> Any:
    """The run's ``(state, batch, rng) -> (state, metrics)`` step, every training knob of ``spec`` bound."""
    from i1lab.train.build import caption_dropout
    from i1lab.train.step import make_train_step

    d = spec.diffusion
    return make_train_step(
        model,
        tx,
        frozen,
        ema_decay=spec.train.ema_decay,
        drop_prob=caption_dropout(spec),
        prediction=d.prediction,
        lognorm=d.timestep_sampling == "lognorm",
        lognorm_mean=d.lognorm_mean,
        lognorm_std=d.lognorm_std,
        train_shift=d.train_shift,
        grad_accum=spec.train.grad_accum,
        jit=jit,
    )


def step_key(spec: RunSpec, step: int) -> Any:
    """The RNG key of training step ``step`` (timesteps, noise, caption dropout), of the seed and step."""
    import jax

    return jax.random.fold_in(jax.random.split(jax.random.PRNGKey(spec.train.seed))[1], step)


def run_checkpoints(spec: RunSpec, workdir: Path, read_only: bool = False) -> Any:
    from i1lab.train.checkpoint import Checkpoints

    t = spec.train
    return Checkpoints(
        Path(workdir) / "checkpoints",
        every=t.checkpoint_every,
        keep_every=t.keep_every,
        total_steps=t.steps,
        read_only=read_only,
    )


def state_from_parent(spec: RunSpec, parent_dir: Path, dp: DataParallel | None = None) -> Any:
    """The train state to start a resolution stage from: the parent run's latest checkpoint, with the
    frozen sinusoidal table recomputed for this run's resolution (docs/design-space.md §3 "Frozen")."""
    import jax.numpy as jnp

    from i1lab.spec.model import model_config
    from i1lab.train.step import TrainState
    from models.posemb import pos_embed_table

    try:
        parent = RunSpec.model_validate_json((parent_dir / "spec.json").read_text())
    except OSError as exc:
        raise I1labError(f"resume_from: cannot read the parent run in {parent_dir}: {exc.strerror}") from None
    ckpts = run_checkpoints(parent, parent_dir)
    try:
        abstract, _, _ = initial_state(parent, abstract=True, dp=dp)
        found, skipped = ckpts.restore_latest(abstract, None, dp.agree if dp is not None else None)
        if found is None:
            detail = f" ({'; '.join(skipped)})" if skipped else ""
            raise I1labError(f"resume_from: the parent run in {parent_dir} has no usable checkpoint{detail}")
    finally:
        ckpts.close()
    if found.step >= spec.train.steps:
        raise I1labError(
            f"resume_from: the parent stops at step {found.step}, not before train.steps={spec.train.steps}"
        )
    table = pos_embed_table(model_config(spec))
    restored = found.state

    def fresh(tree: Any) -> Any:
        if "pos_embed" not in tree:
            return tree
        # a new array for each tree: the train step donates the state, and one buffer cannot be donated twice
        table_array = dp.place(np.asarray(table)) if dp is not None else jnp.array(table)
        return {**tree, "pos_embed": table_array}

    return TrainState(restored.step, fresh(restored.params), fresh(restored.ema), restored.opt_state)


def _truncate_metrics(path: Path, start: int) -> None:
    """Keep the complete metric lines up to ``start``: lines a killed attempt logged past its last
    checkpoint (and a line cut mid-write) are dropped, so the log reads as one uninterrupted run."""
    if not path.is_file():
        return
    kept = []
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            break
        if int(record.get("step", 0)) <= start:
            kept.append(line)
    _write_atomic(path, "".join(x + "\n" for x in kept))


def _last_logged_loss(path: Path) -> float:
    try:
        lines = path.read_text().splitlines()
        return float(json.loads(lines[-1])["loss"]) if lines else float("nan")
    except (OSError, ValueError, KeyError):
        return float("nan")


def _prune_events(folder: Path, keep: set[int]) -> None:
    """Remove events of checkpoints that no longer exist (quarantined as corrupt)."""
    if folder.is_dir():
        for f in folder.glob("*.json"):
            if f.stem.isdigit() and int(f.stem) not in keep:
                f.unlink()


def _check(done: int, metrics: Any) -> None:
    if not bool(metrics.finite):
        loss, grad_norm = float(metrics.loss), float(metrics.grad_norm)
        if not math.isfinite(loss):
            raise RunFailed(f"loss became {loss} at step {done}")
        raise RunFailed(f"gradient norm became {grad_norm} at step {done} (loss {loss:.4g})")


def train(
    spec: RunSpec, workdir: Path, hooks: Hooks | None = None, init_from: Path | None = None
) -> dict[str, Any]:
    """Train (or resume) the run described by ``spec`` in ``workdir``; returns a summary dict."""
    hooks = hooks or Hooks()
    workdir = Path(workdir)
    try:
        workdir.mkdir(parents=True, exist_ok=True)
        if _primary():  # the other processes of a gang read and write no run files
            _write_atomic(workdir / "spec.json", spec.model_dump_json(indent=2))
    except OSError as exc:
        raise storage_error(exc, "spec.json", workdir) or I1labError(str(exc)) from None
    try:
        return _train(spec, workdir, hooks, init_from)
    except I1labError:
        raise
    except Exception as exc:
        err = storage_error(exc, "training outputs", workdir)
        if err is None:
            raise
        raise err from None


def _primary() -> bool:
    import jax

    return jax.process_index() == 0


def _train(spec: RunSpec, workdir: Path, hooks: Hooks, init_from: Path | None) -> dict[str, Any]:

    from i1lab.data.pipeline import data_fingerprint
    from i1lab.spec.model import model_config
    from i1lab.spec.weights import run_weights
    from models.dit import DiT

    enable_compilation_cache()
    t = spec.train
    config = model_config(spec)
    model = DiT(config)
    fingerprint = data_fingerprint(spec.data, t.batch_size, t.seed)
    dp = data_parallel()
    if dp is not None and t.batch_size % dp.devices:
        raise I1labError(
            f"train.batch_size={t.batch_size} does not split over the {dp.devices} devices of "
            f"{dp.count} hosts; use a multiple of {dp.devices}"
        )
    primary = dp is None or dp.primary
    notes: list[str] = []
    # provenance: the frozen weights (folder, fingerprint) this run reads, beside its spec and in its
    # start event (the registry's record of each attempt)
    frozen_weights = run_weights(spec)
    if primary:
        _write_atomic(workdir / "weights.json", json.dumps(frozen_weights, indent=2))
    prints = [f"{name} {w['fingerprint']}" for name, w in frozen_weights.items() if w["fingerprint"]]
    if prints:
        notes.append("weights " + ", ".join(prints))
    ckpts = run_checkpoints(spec, workdir)
    try:
        abstract, tx, frozen = initial_state(spec, abstract=True, dp=dp)
        # only process 0 moves a corrupt checkpoint aside; the others skip it alike
        quarantine = workdir / "corrupt" if primary else None
        found, skipped = ckpts.restore_latest(abstract, quarantine, dp.agree if dp is not None else None)
        notes += [f"skipped corrupt checkpoint {s}" for s in skipped]
        if found is not None:
            recorded = found.meta.get("data", {}).get("fingerprint")
            if recorded is not None and recorded != fingerprint:
                raise I1labError(
                    f"{workdir}: its checkpoints come from a different data stream or batch size "
                    f"({recorded} != {fingerprint}); use a new work directory"
                )
            state = found.state
            notes.append(f"resumed from checkpoint {found.step}")
        elif spec.data.resume_from is not None:
            if init_from is None:
                raise I1labError(
                    f"data.resume_from={spec.data.resume_from[:12]}: the parent run's folder is not known"
                )
            state = state_from_parent(spec, init_from, dp)
            notes.append(f"started from the parent's step {int(state.step)}")
        else:
            state, _, _ = initial_state(spec, dp=dp)
        del abstract
        start = int(host_copy(state.step))
        metrics_path = workdir / "metrics.jsonl"
        events_dir = workdir / "events"
        if primary:
            _truncate_metrics(metrics_path, start)
            _prune_events(events_dir, set(ckpts.steps()))
        if dp is not None:
            notes.append(f"data parallel over {dp.devices} devices of {dp.count} hosts")
        hooks.on_start(start, notes)
        hooks.on_step(start)
        from i1lab.train.preemption import StopRequest, watch

        # a gang's hosts would have to agree on the step to stop at: they keep the default handling
        watching = watch() if hooks.watch_stops and dp is None else contextlib.nullcontext(StopRequest())
        with watching as stop:
            summary = _loop(
                spec, workdir, hooks, state, start, ckpts, tx, frozen, model, fingerprint, dp, stop
            )
    except BaseException:
        with contextlib.suppress(Exception):  # the first error is the one to report
            ckpts.close()
        raise
    ckpts.close()
    return summary


def _loop(
    spec: RunSpec,
    workdir: Path,
    hooks: Hooks,
    state: Any,
    start: int,
    ckpts: Any,
    tx: Any,
    frozen: Any,
    model: Any,
    fingerprint: str,
    dp: DataParallel | None = None,
    stop: Any = None,
) -> dict[str, Any]:

    from i1lab.train.build import TextEncoder
    from i1lab.train.digest import state_digests
    from i1lab.train.preemption import Interrupted

    t = spec.train
    step_fn = train_step(spec, model, tx, frozen)
    stream = batch_stream(spec)
    encoder = TextEncoder(spec)
    evals = eval_steps(spec)
    metrics_path = workdir / "metrics.jsonl"
    events_dir = workdir / "events"
    precision = spec.model.precision
    prefetch = _Prefetcher(lambda s: step_batch(spec, stream, encoder, s, dp), start, t.steps)
    primary = dp is None or dp.primary
    evaluator = _Evaluator()
    pending_saves: list[tuple[int, bool, dict[str, Any]]] = []

    def flush_events(block: bool) -> None:
        if not pending_saves or (not block and ckpts.saving()):
            return
        ckpts.wait()
        ckpts.check_for_errors()
        for step, permanent, meta in pending_saves:
            path = str(workdir / "checkpoints" / str(step))
            if not primary:
                continue
            if permanent:
                events_dir.mkdir(exist_ok=True)
                event = {"step": step, "path": path, "permanent": True, "time": time.time(), **meta}
                _write_atomic(events_dir / f"{step:08d}.json", json.dumps(event, indent=1))
            hooks.on_checkpoint(step, permanent, path)
        pending_saves.clear()

    window_start = time.perf_counter()
    window_wait = 0.0
    window_steps = 0
    last_loss = _last_logged_loss(metrics_path)
    unchecked: tuple[int, Any] | None = None  # the last step whose finite flag is not read yet
    ok = False

    def save(done: int) -> None:
        meta = {
            "step": done,
            "data": {
                "batches": done,
                "examples": done * t.batch_size,
                "batch_size": t.batch_size,
                "fingerprint": fingerprint,
            },
            "precision": precision,
            "digests": state_digests(state),
        }
        flush_events(block=True)  # Orbax would wait for the previous save here anyway
        ckpts.save(done, state, meta)
        pending_saves.append((done, ckpts.is_permanent(done), meta))

    try:
        if stop and start < t.steps:  # asked before the first step: nothing new to save
            raise Interrupted(stop.kind, start, stop.detail, saved=False)
        for step in range(start, t.steps):
            wait0 = time.perf_counter()
            batch, ids = prefetch.get(step)
            window_wait += time.perf_counter() - wait0
            if hooks.on_batch is not None:
                hooks.on_batch(step, ids)
            rng = step_key(spec, step)
            state, metrics = step_fn(state, batch, rng if dp is None else dp.place(rng))
            if unchecked is not None:
                _check(*unchecked)  # the previous step: done or nearly, the device stays busy
            done = step + 1
            unchecked = (done, metrics)
            window_steps += 1
            if done % t.log_every == 0 or done == t.steps or done <= 3:
                _check(done, metrics)
                unchecked = None
                m = {k: float(v) for k, v in metrics._asdict().items() if k != "finite"}
                last_loss = m["loss"]
                elapsed = time.perf_counter() - window_start
                record = {
                    "step": done,
                    **m,
                    "lr": t.lr,
                    "step_time": elapsed / window_steps,
                    "images_per_s": window_steps * t.batch_size / elapsed,
                    "data_wait": window_wait / window_steps,
                }
                if primary:
                    with metrics_path.open("a") as f:
                        f.write(json.dumps(record) + "\n")
                hooks.on_log(record)
                window_start, window_wait, window_steps = time.perf_counter(), 0.0, 0
            if (ckpts.due(done) or done in evals) and unchecked is not None:
                _check(*unchecked)  # nothing is saved or evaluated past a non-finite step
                unchecked = None
            if ckpts.due(done):
                save(done)
            flush_events(block=False)
            hooks.on_step(done)
            if done in evals and hooks.on_eval is not None:
                evaluator.submit(hooks.on_eval, done, host_copy(state.ema))
            if stop and done < t.steps:
                # a notice to stop arrived during this step: its state is saved (unless it was just now),
                # and the loop waits until the save is durable
                if not ckpts.due(done):
                    if unchecked is not None:  # a non-finite step is a failure, never checkpointed
                        _check(*unchecked)
                        unchecked = None
                    save(done)
                flush_events(block=True)
                raise Interrupted(stop.kind, done, stop.detail, saved=True)
        if unchecked is not None:
            _check(*unchecked)
        flush_events(block=True)
        evaluator.drain()
        ok = True
    finally:
        prefetch.close()
        if not ok:
            evaluator.abandon()
            with contextlib.suppress(Exception):  # checkpoints saved before the failure are good
                flush_events(block=True)
    return {
        "step": int(host_copy(state.step)),
        "loss": last_loss,
        "params": model.config,
        "precision": precision,
    }
