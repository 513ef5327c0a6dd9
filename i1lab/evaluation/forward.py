"""Loading a run's checkpoint, and one deterministic forward pass of its backbone (`i1lab forward`).

A CHECKPOINT is a run folder (``spec.json`` + ``checkpoints/``: what training and ``i1lab import-i1
--checkpoint`` write) or one of its checkpoint folders (``<run>/checkpoints/<step>``). The newest
checkpoint that restores and matches its digests is used for a run folder.

``i1lab forward`` applies the model once to given arrays, as the reference does (channels-first
latents): ``x`` (B, C, h, w), ``t`` (B,), ``text`` (B, L, D) text-encoder features and optionally
``mask`` (B, L) (default: all valid) — with several text encoders also ``text_1``/``mask_1`` … for the
second and later ones — and saves the predicted velocity ``v`` (B, C, h, w) float32 with
the step it came from. It is the tool for checking a conversion numerically against the reference.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from i1lab.errors import I1labError
from i1lab.i1import.sources import check_npz_headers
from i1lab.spec.run import RunSpec

Weights = Literal["ema", "params"]


@dataclass
class Loaded:
    """A restored checkpoint: the run's spec, the step and the train state."""

    spec: RunSpec
    step: int
    state: Any
    folder: Path
    meta: dict[str, Any]

    def weights(self, which: Weights) -> Any:
        if which not in ("ema", "params"):
            raise I1labError(f"--weights must be ema or params, not {which!r}")
        found = self.state.ema if which == "ema" else self.state.params
        if found is None:
            raise I1labError(f"the {which} weights were not restored (load_checkpoint(only=...))")
        return found


def _run_folder(path: Path) -> tuple[Path, int | None]:
    """(run folder, step) of a run folder or of one of its checkpoint folders."""
    if (path / "spec.json").is_file():
        return path, None
    if (
        path.name.isdigit()
        and path.parent.name == "checkpoints"
        and (path.parent.parent / "spec.json").is_file()
    ):
        return path.parent.parent, int(path.name)
    raise I1labError(f"{path}: not a run folder (spec.json + checkpoints/) or a checkpoint folder in one")


def load_checkpoint(path: Path, only: Weights | None = None) -> Loaded:
    """Restore the checkpoint at ``path`` (see the module docstring); read-only. ``only``: restore that
    group of weights alone (the rest of the state is None), in that group's memory."""
    from i1lab.train.checkpoint import CheckpointCorrupt
    from i1lab.train.runner import initial_state, run_checkpoints

    path = Path(path)
    if not path.exists():
        raise I1labError(f"{path}: no such checkpoint")
    folder, step = _run_folder(path)
    try:
        spec = RunSpec.model_validate_json((folder / "spec.json").read_text())
    except ValueError as exc:
        raise I1labError(
            f"{folder / 'spec.json'}: not a valid run spec ({str(exc).splitlines()[0]})"
        ) from None
    ckpts = run_checkpoints(spec, folder, read_only=True)
    try:
        abstract, _, _ = _abstract(spec, initial_state)
        if step is None:
            found, skipped = ckpts.restore_latest(abstract, quarantine=None, only=only)
            if found is None:
                detail = f" ({'; '.join(skipped)})" if skipped else ""
                raise I1labError(f"{folder}: no usable checkpoint{detail}")
            return Loaded(spec, found.step, found.state, folder, found.meta)
        if step not in ckpts.steps():
            raise I1labError(f"{path}: no checkpoint of step {step} in {folder / 'checkpoints'}")
        try:
            state, meta = ckpts.restore(step, abstract, only=only)
        except CheckpointCorrupt as exc:
            raise I1labError(f"{path}: {exc}") from None
        return Loaded(spec, step, state, folder, meta)
    finally:
        ckpts.close()


def _abstract(spec: RunSpec, initial_state: Any) -> Any:
    try:
        return initial_state(spec, abstract=True)
    except NotImplementedError as exc:
        raise I1labError(f"this run cannot be loaded here: {exc}") from None


@dataclass
class ForwardInputs:
    x: np.ndarray
    t: np.ndarray
    text: np.ndarray | tuple[np.ndarray, ...]  # a tuple, one per encoder, for several text encoders
    mask: np.ndarray | tuple[np.ndarray, ...]


def _names(n: int) -> list[tuple[str, str]]:
    """The (text, mask) array names of each encoder: ``text``/``mask``, then ``text_1``/``mask_1`` …"""
    return [("text", "mask")] + [(f"text_{i}", f"mask_{i}") for i in range(1, n)]


def read_inputs(path: Path, config: Any) -> ForwardInputs:
    """The arrays of ``path`` (.npz), checked against the model's shapes (one-line errors)."""
    encoders = config.encoder_specs
    names = _names(len(encoders))
    need = ["x", "t", *(t for t, _ in names)]
    check_npz_headers(path)
    try:
        archive = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise I1labError(f"{path}: not a readable .npz file ({exc})") from None
    if not hasattr(archive, "files"):
        raise I1labError(f"{path}: expected an .npz archive with {', '.join(need)} (and masks)")
    with archive:
        missing = [k for k in need if k not in archive.files]
        if missing:
            raise I1labError(
                f"{path}: missing array(s) {', '.join(missing)} (need {', '.join(need)}; masks optional)"
            )
        allowed = {*need, *(m for _, m in names)}
        unknown = sorted(set(archive.files) - allowed)
        if unknown:
            raise I1labError(
                f"{path}: unknown array(s) {', '.join(unknown)} (expected {', '.join(sorted(allowed))})"
            )
        x = np.asarray(archive["x"], np.float32)
        t = np.asarray(archive["t"], np.float32)
        texts = [np.asarray(archive[tn], np.float32) for tn, _ in names]
        masks = [
            np.asarray(archive[mn]) if mn in archive.files else np.ones(text.shape[:2], bool)
            for (_, mn), text in zip(names, texts, strict=True)
        ]
    c = config
    want_x = (c.in_channels, c.latent_size, c.latent_size)
    if x.ndim != 4 or tuple(x.shape[1:]) != want_x:
        raise I1labError(
            f"{path}: x has shape {x.shape}, expected (B, {want_x[0]}, {want_x[1]}, {want_x[2]})"
        )
    b = x.shape[0]
    if t.shape != (b,):
        raise I1labError(f"{path}: t has shape {t.shape}, expected ({b},)")
    for (tn, mn), text, mask, (dim, length) in zip(names, texts, masks, encoders, strict=True):
        if text.ndim != 3 or text.shape[0] != b or text.shape[2] != dim or text.shape[1] > length:
            raise I1labError(f"{path}: {tn} has shape {text.shape}, expected ({b}, L <= {length}, {dim})")
        if mask.shape != text.shape[:2]:
            raise I1labError(f"{path}: {mn} has shape {mask.shape}, expected {text.shape[:2]}")
        if mask.dtype.kind not in "biuf" or not np.all((mask == 0) | (mask == 1)):
            raise I1labError(f"{path}: {mn} must hold 0/1 or booleans")
    for name, a in (("x", x), ("t", t), *((tn, tx) for (tn, _), tx in zip(names, texts, strict=True))):
        if not np.all(np.isfinite(a)):
            raise I1labError(f"{path}: {name} holds NaN or Inf")
    bool_masks = [m.astype(bool) for m in masks]
    if len(encoders) == 1:
        return ForwardInputs(x, t, texts[0], bool_masks[0])
    return ForwardInputs(x, t, tuple(texts), tuple(bool_masks))


def apply_model(spec: RunSpec, params: Any, inputs: ForwardInputs) -> np.ndarray:
    """The model's velocity for ``inputs`` (no caption dropout; an x-prediction model's output mapped to a
    velocity, docs/design-space.md §7), float32 (B, C, h, w)."""
    import jax
    import jax.numpy as jnp

    from i1lab.spec.model import model_config
    from models.dit import DiT
    from models.rectified_flow import velocity_model

    apply = velocity_model(DiT(model_config(spec)).apply, spec.diffusion.prediction)
    text, mask = jax.tree_util.tree_map(jnp.asarray, (inputs.text, inputs.mask))
    v = apply({"params": params}, jnp.asarray(inputs.x), jnp.asarray(inputs.t), text, mask)
    return np.asarray(v, np.float32)


def write_npz(path: Path, **arrays: np.ndarray) -> None:
    """Write an .npz atomically (a temporary file renamed into place)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with tmp.open("wb") as f:
            np.savez(f, **arrays)  # type: ignore[arg-type]
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise I1labError(f"cannot write {path}: {exc.strerror or exc}") from None


def forward(
    checkpoint: Path, inputs: Path, out: Path, weights: Weights = "ema"
) -> tuple[int, tuple[int, ...]]:
    """Apply the checkpoint's model (EMA or raw weights) to the arrays of ``inputs``; save ``v`` to
    ``out``. Returns (step, shape of v)."""
    from i1lab.spec.model import model_config

    if weights not in ("ema", "params"):
        raise I1labError(f"--weights must be ema or params, not {weights!r}")
    loaded = load_checkpoint(checkpoint, only=weights)  # the weights alone, not the optimizer state
    params = loaded.weights(weights)
    arrays = read_inputs(Path(inputs), model_config(loaded.spec))
    v = apply_model(loaded.spec, params, arrays)
    write_npz(Path(out), v=v, step=np.asarray(loaded.step, np.int64))
    return loaded.step, tuple(v.shape)
