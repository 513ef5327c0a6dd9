"""Reference checkpoints -> i1lab run folders (spec.json + an Orbax checkpoint), and back.

**JAX `.npz`** (`jax/utils/common.py` `save_checkpoint`): one `np.savez` of the tree
``{"params", "params_ema", "opt", "chrono"}`` flattened with big_vision's naming (dict keys sorted,
tuple / NamedTuple fields by index, joined by ``/``); bfloat16 arrays are stored as 2-byte void
(``V2``). The permanent copies carry a ``-<step>`` suffix (``checkpoint.npz-000050000``). The optimizer
is the chain of `jax/training/optim.py` for the shipped configs (no weight decay, one schedule):

====  ======================================  =================================================
 idx   transformation                          arrays (``opt/<idx>/...``)
====  ======================================  =================================================
 0     masked(clip_by_global_norm)             none
 1     masked(scale_by_adam(mu_dtype, b1, b2)) ``1/0/0`` count, ``1/0/1/<param>`` mu, ``1/0/2/<param>`` nu
 2     scale(lr)                               none
 3     masked(scale_by_schedule(constant))     ``3/0/0`` count (the step)
 4     masked(set_to_zero) on pos_embed        none
 5     scale(-1)                               none
====  ======================================  =================================================

Moments exist for every parameter except the frozen ``pos_embed``. ``chrono/*`` are wall-clock
counters; they are kept in the checkpoint's metadata (and written back by the export).

**PyTorch `.pt`** (`torch_inference/generate.py`, `torch_train/training/checkpoint.py`): ``{"config",
"model"}`` (EMA weights) and, from training, ``train_state: {"step", "opt": {"count", "mu", "nu"},
"model_raw"}``; read with ``torch.load(weights_only=True)`` (no pickled code runs).

Every tensor of the file must map onto our model (see :mod:`i1lab.i1import.layout`), none may be left
over, and every shape must be equal; otherwise :class:`ConversionError` lists what is wrong and nothing
is written. These checks read the file's headers only (:mod:`i1lab.i1import.sources`); the tensors are
then read and written a batch at a time (:mod:`i1lab.i1import.write`), so a conversion's memory does
not grow with the checkpoint. The free disk space is checked first. The output folder is written under
a temporary name and renamed when complete; a killed conversion's temporary folder is removed by the
next conversion into the same folder.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from i1lab.errors import I1labError
from i1lab.i1import.layout import jax_layout, rope_table_values, torch_layout, torch_rope_tables
from i1lab.i1import.sources import (
    ConversionError,
    NpzArchive,
    Tensor,
    bfloat16,
    load_pt,
    recover_dtype,
    stored_dtype,
)
from i1lab.spec.run import RunSpec
from models.config import ModelConfig

ADAM_COUNT = "opt/1/0/0"
MU_PREFIX = "opt/1/0/1/"
NU_PREFIX = "opt/1/0/2/"
SCHEDULE_COUNT = "opt/3/0/0"
FROZEN = ("pos_embed",)
STEP_SUFFIX = re.compile(r"-(\d+)$")
#: How many names an error lists per kind.
SHOWN = 8


__all__ = ["ConversionError", "convert_checkpoint", "export_npz", "recover_dtype", "values_equal"]


@dataclass
class Flat:
    """A checkpoint in our names, before it becomes a train state."""

    step: int
    params: dict[str, Tensor]
    ema: dict[str, Tensor]
    mu: dict[str, Tensor] | None
    nu: dict[str, Tensor] | None
    adam_count: int
    counters: dict[str, dict[str, Any]] = field(default_factory=dict)
    derived: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    groups: dict[str, tuple[int, int]] = field(default_factory=dict)  # name -> (tensors, values)


class _Check:
    """Collects leftovers, missing names and shape mismatches of one file."""

    def __init__(self, source: Path) -> None:
        self.source = source
        self.leftover: list[str] = []
        self.missing: list[str] = []
        self.mismatched: list[str] = []

    def shape(self, name: str, got: tuple[int, ...], want: tuple[int, ...]) -> bool:
        if tuple(got) != tuple(want):
            self.mismatched.append(f"{name} {tuple(got)} != {tuple(want)}")
            return False
        return True

    def raise_if_any(self) -> None:
        parts = []
        for label, names in (
            ("left over", self.leftover),
            ("missing", self.missing),
            ("shape mismatch", self.mismatched),
        ):
            if names:
                shown = ", ".join(names[:SHOWN]) + (
                    f", ... ({len(names) - SHOWN} more)" if len(names) > SHOWN else ""
                )
                parts.append(f"{len(names)} {label}: {shown}")
        if parts:
            raise ConversionError(f"{self.source}: does not match the model: " + "; ".join(parts))


def step_of(path: Path) -> int | None:
    """The ``-<step>`` suffix of a permanent reference checkpoint, if any."""
    m = STEP_SUFFIX.search(path.name)
    return int(m.group(1)) if m else None


def _values(d: dict[str, Tensor]) -> int:
    return sum(t.size for t in d.values())


def _float_ok(name: str, dtype: np.dtype[Any], check: _Check) -> bool:
    """Whether a stored float dtype converts exactly to float32 (checked before any data is read)."""
    if dtype in (np.float32, np.float16, bfloat16()):
        return True
    check.mismatched.append(f"{name} has dtype {dtype}, expected float32")
    return False


def _as(read: Callable[[], np.ndarray], dtype: np.dtype[Any]) -> Callable[[], np.ndarray]:
    def get() -> np.ndarray:
        a = read()
        return a if a.dtype == dtype else a.astype(dtype)

    return get


def _member(archive: NpzArchive, key: str) -> Callable[[], np.ndarray]:
    return lambda: archive.read(key)


def read_npz(path: Path, config: ModelConfig, mu_dtype: str, archive: NpzArchive | None = None) -> Flat:
    """A reference ``.npz`` checkpoint in our names, every tensor still in the file (read when written).
    Names, shapes and dtypes are checked from the members' headers (ConversionError on any mismatch)."""
    if archive is None:
        archive = NpzArchive(path)
    entries = {e.reference: e for e in jax_layout(config)}
    check = _Check(path)
    params: dict[str, Tensor] = {}
    ema: dict[str, Tensor] = {}
    mu: dict[str, Tensor] = {}
    nu: dict[str, Tensor] = {}
    counts: dict[str, int] = {}
    counters: dict[str, dict[str, Any]] = {}
    mu_type = bfloat16() if mu_dtype == "bfloat16" else np.dtype(np.float32)
    for key, member in archive.members.items():
        group, _, rest = key.partition("/")
        if key in (ADAM_COUNT, SCHEDULE_COUNT):
            if member.shape != () or member.dtype.kind not in "iu":
                check.mismatched.append(f"{key} {member.shape} {member.dtype}: expected an integer scalar")
            else:
                counts[key] = int(archive.read(key))
            continue
        if group == "chrono" and rest:
            if member.shape == () and member.dtype.kind in "iuf":
                a = archive.read(key)
                counters[rest] = {"dtype": a.dtype.str, "value": a.item()}
            else:
                check.leftover.append(key)
            continue
        target: dict[str, Tensor] | None = None
        name = rest
        if group == "params":
            target = params
        elif group == "params_ema":
            target = ema
        elif key.startswith(MU_PREFIX):
            target, name = mu, key.removeprefix(MU_PREFIX)
        elif key.startswith(NU_PREFIX):
            target, name = nu, key.removeprefix(NU_PREFIX)
        entry = entries.get(name)
        frozen_moment = target is mu or target is nu
        if target is None or entry is None or (frozen_moment and entry.ours in FROZEN):
            check.leftover.append(key)
            continue
        if not check.shape(key, member.shape, entry.reference_shape):
            continue
        dtype = stored_dtype(member.dtype)
        if not _float_ok(key, dtype, check):
            continue
        out_type = mu_type if target is mu else np.dtype(np.float32)
        target[entry.ours] = Tensor(entry.shape, out_type, _as(_member(archive, key), out_type), name=key)
    ours_names = [e.ours for e in entries.values()]
    by_ours = {e.ours: e.reference for e in entries.values()}
    has_opt = bool(mu or nu or counts)
    for group_name, got in (("params", params), ("params_ema", ema)):
        check.missing += [f"{group_name}/{by_ours[n]}" for n in ours_names if n not in got]
    if has_opt:
        trainable = [n for n in ours_names if n not in FROZEN]
        check.missing += [MU_PREFIX + by_ours[n] for n in trainable if n not in mu]
        check.missing += [NU_PREFIX + by_ours[n] for n in trainable if n not in nu]
        check.missing += [k for k in (ADAM_COUNT, SCHEDULE_COUNT) if k not in counts]
    check.raise_if_any()
    notes = []
    suffix = step_of(path)
    step = counts.get(SCHEDULE_COUNT, suffix if suffix is not None else 0)
    if suffix is not None and suffix != step:
        notes.append(f"the file name says step {suffix}, the optimizer state {step}")
    if not has_opt:
        notes.append("no optimizer state in the file: Adam moments start at zero")
    flat = Flat(
        step=step,
        params=params,
        ema=ema,
        mu=mu if has_opt else None,
        nu=nu if has_opt else None,
        adam_count=counts.get(ADAM_COUNT, step),
        counters=counters,
        notes=notes,
    )
    flat.groups = {"params": (len(params), _values(params)), "params_ema": (len(ema), _values(ema))}
    if has_opt:
        flat.groups["opt mu"] = (len(mu), _values(mu))
        flat.groups["opt nu"] = (len(nu), _values(nu))
    return flat


def _torch_array(t: Any) -> np.ndarray:
    import torch

    return t.detach().cpu().to(torch.float32).numpy()


def _torch_config_check(path: Path, saved: Any, c: ModelConfig) -> None:
    if not isinstance(saved, dict):
        return
    expected = {
        "hidden_size": c.hidden,
        "depth": c.depth,
        "num_heads": c.heads,
        "patch_size": c.patch_size,
        "in_channels": c.in_channels,
        "input_size": c.latent_size,
        "image_resolution": c.resolution,
        "text_embed_dim": c.text_dim,
        "text_num_tokens": c.text_len,
    }
    wrong = [
        f"{k}={str(saved[k])[:40]} (the config gives {v})"
        for k, v in expected.items()
        if k in saved and (type(saved[k]) is not int or saved[k] != v)
    ]
    if wrong:
        raise ConversionError(f"{path}: the checkpoint's own config disagrees: {', '.join(wrong)}")


def read_pt(path: Path, config: ModelConfig, mu_dtype: str) -> Flat:
    """A PyTorch reference checkpoint in our names, its tensors memory-mapped (read when written); names
    and shapes are checked first (ConversionError on any mismatch)."""
    import torch

    ckpt = load_pt(path)
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("model"), dict):
        raise ConversionError(f"{path}: expected a dict with a 'model' state dict")
    try:
        entries = {e.reference: e for e in torch_layout(config)}
    except ValueError as exc:
        raise ConversionError(f"{path}: {exc}") from None
    _torch_config_check(path, ckpt.get("config"), config)
    check = _Check(path)
    rope = torch_rope_tables(config)
    derived: list[str] = []
    mu_type = bfloat16() if mu_dtype == "bfloat16" else np.dtype(np.float32)
    floats = (torch.float32, torch.float16, torch.bfloat16)

    def reader(tensor: Any, transform: str, dtype: np.dtype[Any]) -> Callable[[], np.ndarray]:
        def get() -> np.ndarray:
            a = _torch_array(tensor)
            if transform == "linear":
                a = np.ascontiguousarray(a.T)
            elif transform == "conv":
                a = np.ascontiguousarray(a.transpose(2, 3, 1, 0))
            return a if a.dtype == dtype else a.astype(dtype)

        return get

    def convert(group: str, state: dict[str, Any], out: dict[str, Tensor], *, moments: bool = False) -> None:
        for name, tensor in state.items():
            key = f"{group}.{name}"
            if not isinstance(tensor, torch.Tensor):
                check.leftover.append(key)
                continue
            if name in rope and not moments:
                if check.shape(key, tuple(tensor.shape), rope[name]):
                    a = _torch_array(tensor)  # a small table, checked now
                    axis = int(name.rsplit(".", 1)[1])
                    cos, sin = rope_table_values(config, axis)
                    want = np.asarray(cos if ".cos_" in name else sin, np.float64)
                    err = float(np.max(np.abs(a - want))) if a.size else 0.0
                    if err > 1e-3:
                        check.mismatched.append(f"{key} differs from the RoPE table by {err:.3g}")
                    elif group == "model":
                        derived.append(name)
                continue
            entry = entries.get(name)
            if entry is None or (moments and entry.ours in FROZEN):
                check.leftover.append(key)
                continue
            if not check.shape(key, tuple(tensor.shape), entry.reference_shape):
                continue
            if tensor.dtype not in floats:
                check.mismatched.append(f"{key} has dtype {tensor.dtype}, expected float32")
                continue
            dtype = mu_type if moments and group.endswith("mu") else np.dtype(np.float32)
            out[entry.ours] = Tensor(entry.shape, dtype, reader(tensor, entry.transform, dtype), name=key)

    ema: dict[str, Tensor] = {}
    params: dict[str, Tensor] = {}
    convert("model", ckpt["model"], ema)
    train_state = ckpt.get("train_state") or {}
    if not isinstance(train_state, dict):
        raise ConversionError(f"{path}: train_state: expected a dict, got {type(train_state).__name__}")
    for key in ("step",):
        if key in train_state and type(train_state[key]) is not int:
            raise ConversionError(f"{path}: train_state.{key}: expected an integer")
    notes = []
    if isinstance(train_state.get("model_raw"), dict):
        convert("train_state.model_raw", train_state["model_raw"], params)
    else:
        params = dict(ema)
        notes.append("no raw weights in the file (an inference checkpoint): params = the EMA weights")
    opt = train_state.get("opt") if isinstance(train_state.get("opt"), dict) else None
    mu: dict[str, Tensor] | None = None
    nu: dict[str, Tensor] | None = None
    if opt is not None:
        for key in ("mu", "nu"):
            if not isinstance(opt.get(key) or {}, dict):
                raise ConversionError(f"{path}: train_state.opt.{key}: expected a dict of tensors")
        if "count" in opt and type(opt["count"]) is not int:
            raise ConversionError(f"{path}: train_state.opt.count: expected an integer")
        mu, nu = {}, {}
        convert("train_state.opt.mu", opt.get("mu") or {}, mu, moments=True)
        convert("train_state.opt.nu", opt.get("nu") or {}, nu, moments=True)
    else:
        notes.append("no optimizer state in the file: Adam moments start at zero")
    ours_names = [e.ours for e in entries.values()]
    by_ours = {e.ours: e.reference for e in entries.values()}
    check.missing += [f"model.{by_ours[n]}" for n in ours_names if n not in ema]
    check.missing += [f"train_state.model_raw.{by_ours[n]}" for n in ours_names if n not in params]
    if mu is not None and nu is not None:
        trainable = [n for n in ours_names if n not in FROZEN]
        check.missing += [f"train_state.opt.mu.{by_ours[n]}" for n in trainable if n not in mu]
        check.missing += [f"train_state.opt.nu.{by_ours[n]}" for n in trainable if n not in nu]
    if rope:
        check.missing += [f"model.{n}" for n in rope if n not in derived]
    check.raise_if_any()
    step = int(train_state.get("step", 0) or 0)
    count = int(opt.get("count", step)) if opt is not None else step
    flat = Flat(step, params, ema, mu, nu, count, derived=derived, notes=notes)
    flat.groups = {"params": (len(params), _values(params)), "params_ema": (len(ema), _values(ema))}
    if mu is not None and nu is not None:
        flat.groups["opt mu"] = (len(mu), _values(mu))
        flat.groups["opt nu"] = (len(nu), _values(nu))
    return flat


# ---------------------------------------------------------------------------- train state
def _path_name(path: Any) -> str:
    return "/".join(str(getattr(k, "key", getattr(k, "name", k))) for k in path)


def _constant(value: Any, shape: tuple[int, ...], dtype: Any, name: str) -> Tensor:
    dt = np.dtype(dtype)
    return Tensor(tuple(shape), dt, lambda: np.full(shape, value, dt), name=name)


def build_state(spec: RunSpec, flat: Flat) -> Any:
    """Our TrainState (step, params, EMA, optimizer state) whose leaves are the :class:`Tensor` of
    ``flat`` (read when written), in the model's dtypes; zeros where the file has no optimizer state."""
    import jax
    import optax

    from i1lab.train.runner import initial_state
    from i1lab.train.step import TrainState

    abstract, _, _ = initial_state(spec, abstract=True)
    want = {_path_name(p): leaf for p, leaf in jax.tree_util.tree_flatten_with_path(abstract.params)[0]}
    for group in (flat.params, flat.ema):
        if set(want) != set(group):
            diff = sorted(set(want) ^ set(group))[:SHOWN]
            raise ConversionError(f"mapped names differ from the model's tree: {diff}")
        wrong = [
            f"{t.name or n} {t.shape} != {tuple(want[n].shape)}"
            for n, t in group.items()
            if tuple(t.shape) != tuple(want[n].shape)
        ]
        if wrong:
            raise ConversionError(f"shapes differ from the model's tree: {', '.join(wrong[:SHOWN])}")

    def tensors(tree: Any, source: dict[str, Tensor] | None) -> Any:
        def leaf(path: Any, x: Any) -> Any:
            name = _path_name(path)
            if source is None:
                return _constant(0, x.shape, x.dtype, name)
            t = source[name]
            dtype = np.dtype(x.dtype)
            return Tensor(tuple(x.shape), dtype, _as(t.read, dtype), name=t.name or name)

        return jax.tree_util.tree_map_with_path(leaf, tree)

    def fill(node: Any) -> Any:
        if isinstance(node, optax.ScaleByAdamState):
            count = _constant(flat.adam_count, (), node.count.dtype, "adam count")
            return optax.ScaleByAdamState(count, tensors(node.mu, flat.mu), tensors(node.nu, flat.nu))
        return _constant(0, node.shape, node.dtype, "optimizer")  # none in the shipped chain

    opt_state = jax.tree_util.tree_map(
        fill, abstract.opt_state, is_leaf=lambda n: isinstance(n, optax.ScaleByAdamState)
    )
    step: Any = _constant(flat.step, (), abstract.step.dtype, "step")
    return TrainState(step, tensors(abstract.params, flat.params), tensors(abstract.ema, flat.ema), opt_state)


# ---------------------------------------------------------------------------- report and output
@dataclass
class Report:
    """What a conversion did (printed by the CLI, saved as ``import.json``)."""

    source: str
    kind: str
    step: int
    out: str
    groups: dict[str, tuple[int, int]]
    counters: dict[str, dict[str, Any]]
    derived: list[str]
    notes: list[str]

    def text(self) -> str:
        lines = [f"checkpoint {self.source} ({self.kind}), step {self.step}"]
        for name, (tensors, values) in self.groups.items():
            lines.append(
                f"  {name:<11} {tensors:>5} tensors mapped, 0 left over, 0 missing, every shape equal "
                f"({values:,} values)"
            )
        if self.derived:
            lines.append(f"  derived     {len(self.derived):>5} RoPE tables checked against our computation")
        if self.counters:
            lines.append(f"  counters    {', '.join(sorted(self.counters))} (kept in the checkpoint's meta)")
        lines += [f"  note: {n}" for n in self.notes]
        lines.append(f"wrote {self.out}")
        return "\n".join(lines)

    def to_json(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "kind": self.kind,
            "step": self.step,
            "out": self.out,
            "groups": {k: {"tensors": t, "values": v} for k, (t, v) in self.groups.items()},
            "left_over": 0,
            "missing": 0,
            "shape_mismatches": 0,
            "counters": self.counters,
            "derived": self.derived,
            "notes": self.notes,
        }


def free_bytes(path: Path) -> int:
    """Free disk space where ``path`` is (the probe the tests replace)."""
    return shutil.disk_usage(path).free


def _remove_stale(out: Path) -> list[Path]:
    """Remove the temporary folders of conversions into ``out`` whose process is gone (killed)."""
    removed = []
    for tmp in out.parent.glob(f".{out.name}.tmp-*"):
        pid = tmp.name.rsplit("-", 1)[1]
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            os.kill(int(pid), 0)
            continue  # still running
        except ProcessLookupError:
            pass
        except PermissionError:
            continue  # someone else's live process
        shutil.rmtree(tmp, ignore_errors=True)
        removed.append(tmp)
    return removed


def _gb(n: int) -> str:
    return f"{n / 1e9:.1f} GB" if n >= 1e8 else f"{n / 1e6:.0f} MB"


#: Space the conversion needs besides the tensors (metadata, Orbax's files).
DISK_MARGIN = 64 << 20


def convert_checkpoint(
    spec: RunSpec,
    checkpoint: Path,
    out: Path,
    *,
    study_yaml: str | None = None,
    buffer_bytes: int | None = None,
    progress: Callable[[int, int], Callable[[int, int], None]] | None = None,
) -> Report:
    """Convert a reference checkpoint (``.npz`` or ``.pt``) of ``spec``'s model into the run folder ``out``
    (``spec.json``, ``checkpoints/<step>/``, ``import.json`` and the imported ``study.yaml``).

    Streams: names, shapes and dtypes are checked from the file's headers, then the tensors are read and
    written one batch of at most ``buffer_bytes`` (at least one tensor) at a time, so memory does not
    grow with the checkpoint. ``progress(total_tensors, total_bytes)`` makes the callback that is called
    with ``(tensors_done, bytes_done)`` after each batch. The folder is written under a temporary name
    and renamed when complete (a killed conversion leaves no ``out``; the next one removes its
    temporary folder)."""
    from i1lab.i1import.write import DEFAULT_BUFFER_BYTES, save_streaming
    from i1lab.spec.model import model_config

    checkpoint, out = Path(checkpoint), Path(out)
    if not checkpoint.is_file():
        raise I1labError(f"{checkpoint}: no such checkpoint file")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise I1labError(f"{out}: already exists; choose another --out")
    try:
        config = model_config(spec)
    except NotImplementedError as exc:
        raise I1labError(f"{checkpoint}: cannot convert: {exc}") from None
    is_pt = checkpoint.suffix in (".pt", ".pth") or ".pt-" in checkpoint.name
    archive: NpzArchive | None = None
    if is_pt:
        flat = read_pt(checkpoint, config, spec.train.mu_dtype)
    else:
        archive = NpzArchive(checkpoint)
    try:
        if archive is not None:
            flat = read_npz(checkpoint, config, spec.train.mu_dtype, archive)
        return _write_run(
            spec,
            checkpoint,
            out,
            flat,
            kind="pt" if is_pt else "npz",
            study_yaml=study_yaml,
            buffer_bytes=DEFAULT_BUFFER_BYTES if buffer_bytes is None else buffer_bytes,
            progress=progress,
            save=save_streaming,
        )
    finally:
        if archive is not None:
            archive.close()


def _write_run(
    spec: RunSpec,
    checkpoint: Path,
    out: Path,
    flat: Flat,
    *,
    kind: str,
    study_yaml: str | None,
    buffer_bytes: int,
    progress: Callable[[int, int], Callable[[int, int], None]] | None,
    save: Callable[..., Any],
) -> Report:
    import jax

    state = build_state(spec, flat)
    leaves: list[Tensor] = jax.tree_util.tree_leaves(state)
    total = sum(t.nbytes for t in leaves)
    stored = [*flat.params.values(), *flat.ema.values(), *(flat.mu or {}).values(), *(flat.nu or {}).values()]
    need = sum(t.nbytes for t in stored) + DISK_MARGIN
    if flat.step > spec.train.steps:
        flat.notes.append(f"step {flat.step} is past train.steps={spec.train.steps}")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise I1labError(f"cannot write {out}: {exc.strerror or exc}") from None
    _remove_stale(out)
    free = free_bytes(out.parent)
    if free < need:
        raise I1labError(
            f"{out.parent}: not enough free disk space: converting {checkpoint.name} writes about "
            f"{_gb(need)}, {_gb(free)} free"
        )
    meta = {
        "step": flat.step,
        "data": {
            "batches": flat.step,
            "examples": flat.step * spec.train.batch_size,
            "batch_size": spec.train.batch_size,
            "fingerprint": None,
        },
        "precision": spec.model.precision,
        "imported": {
            "source": str(checkpoint),
            "kind": kind,
            "adam_count": flat.adam_count,
            "counters": flat.counters,
        },
    }
    report = Report(
        source=str(checkpoint),
        kind="PyTorch .pt" if kind == "pt" else "JAX .npz",
        step=flat.step,
        out=str(out),
        groups=flat.groups,
        counters=flat.counters,
        derived=flat.derived,
        notes=flat.notes,
    )
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tmp.mkdir()
        (tmp / "spec.json").write_text(spec.model_dump_json(indent=2))
        if study_yaml is not None:
            (tmp / "study.yaml").write_text(study_yaml)
        (tmp / "import.json").write_text(json.dumps(report.to_json(), indent=2) + "\n")
        save(
            tmp / "checkpoints",
            flat.step,
            state,
            meta,
            buffer_bytes=buffer_bytes,
            progress=progress(len(leaves), total) if progress is not None else None,
        )
        if out.exists():
            out.rmdir()
        os.replace(tmp, out)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise I1labError(f"cannot write {out}: {exc.strerror or exc}") from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return report


def export_npz(state: Any, meta: dict[str, Any], config: ModelConfig) -> dict[str, np.ndarray]:
    """The reference ``.npz`` arrays (names and dtypes as `read_npz` reads them) of one of our states:
    the inverse of the import, used to check that a conversion round-trips exactly."""
    import jax
    import optax

    entries = jax_layout(config)
    out: dict[str, np.ndarray] = {}

    def flat(tree: Any) -> dict[str, np.ndarray]:
        return {_path_name(p): np.asarray(x) for p, x in jax.tree_util.tree_flatten_with_path(tree)[0]}

    params, ema = flat(state.params), flat(state.ema)
    adam = [
        n
        for n in jax.tree_util.tree_leaves(
            state.opt_state, is_leaf=lambda n: isinstance(n, optax.ScaleByAdamState)
        )
        if isinstance(n, optax.ScaleByAdamState)
    ]
    if len(adam) != 1:
        raise ValueError(f"expected one Adam state, found {len(adam)}")
    mu, nu = flat(adam[0].mu), flat(adam[0].nu)
    for e in entries:
        out[f"params/{e.reference}"] = params[e.ours]
        out[f"params_ema/{e.reference}"] = ema[e.ours]
        if e.ours not in FROZEN:
            out[MU_PREFIX + e.reference] = mu[e.ours]
            out[NU_PREFIX + e.reference] = nu[e.ours]
    out[ADAM_COUNT] = np.asarray(adam[0].count, np.int32)
    out[SCHEDULE_COUNT] = np.asarray(state.step, np.int32)
    for name, c in (meta.get("imported") or {}).get("counters", {}).items():
        out[f"chrono/{name}"] = np.asarray(c["value"], np.dtype(c["dtype"]))
    return out


def values_equal(a: np.ndarray, b: np.ndarray) -> bool:
    """Bitwise equality of two arrays (dtype, shape and bytes; bfloat16 and its V2 form compare equal)."""
    a, b = recover_dtype(np.asarray(a)), recover_dtype(np.asarray(b))
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


def _key_name(k: Any) -> str:
    return str(getattr(k, "key", getattr(k, "name", getattr(k, "idx", k))))


def export_run(
    run: Path,
    npz: Path,
    *,
    step: int | None = None,
    buffer_bytes: int | None = None,
    progress: Callable[[int, int], Callable[[int, int], None]] | None = None,
) -> int:
    """Write checkpoint ``step`` (default: the newest) of the run folder ``run`` as a reference ``.npz``
    (the names and dtypes :func:`read_npz` reads), streaming: the arrays are restored a batch of at most
    ``buffer_bytes`` at a time and written member by member. The file is written under a temporary name
    and renamed when complete. Returns the number of members."""
    import jax

    from i1lab.i1import.write import DEFAULT_BUFFER_BYTES, read_leaves, write_npz
    from i1lab.spec.model import model_config
    from i1lab.train.runner import initial_state

    run, npz = Path(run), Path(npz)
    try:
        spec = RunSpec.model_validate_json((run / "spec.json").read_text())
    except (OSError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise I1labError(f"{run}: not a run folder ({first[:200]})") from None
    folder = run / "checkpoints"
    steps = sorted(int(p.name) for p in folder.iterdir() if p.name.isdigit()) if folder.is_dir() else []
    if not steps:
        raise I1labError(f"{run}: no checkpoint")
    step = steps[-1] if step is None else step
    if step not in steps:
        raise I1labError(f"{run}: no checkpoint of step {step} (there are {steps})")
    if npz.exists():
        raise I1labError(f"{npz}: already exists; choose another --out")
    meta = json.loads((folder / str(step) / "meta" / "metadata").read_text())
    by_ours = {e.ours: e.reference for e in jax_layout(model_config(spec))}
    abstract, _, _ = initial_state(spec, abstract=True)
    leaves = jax.tree_util.tree_leaves(abstract)
    total = sum(int(np.prod(x.shape)) * np.dtype(x.dtype).itemsize for x in leaves)
    report = progress(len(leaves), total) if progress is not None else None

    def members() -> Any:
        nbytes = 0
        size = DEFAULT_BUFFER_BYTES if buffer_bytes is None else buffer_bytes
        for done, (path, a) in enumerate(read_leaves(folder, step, abstract, size), start=1):
            names = [_key_name(k) for k in path]
            if names[0] == "step":
                yield SCHEDULE_COUNT, np.asarray(a, np.int32)
            elif names[0] in ("params", "ema"):
                group = "params" if names[0] == "params" else "params_ema"
                yield f"{group}/{by_ours['/'.join(names[1:])]}", a
            elif names[-1] == "count":
                yield ADAM_COUNT, np.asarray(a, np.int32)
            elif "mu" in names or "nu" in names:
                i = names.index("mu") if "mu" in names else names.index("nu")
                prefix = MU_PREFIX if names[i] == "mu" else NU_PREFIX
                yield prefix + by_ours["/".join(names[i + 1 :])], a
            else:
                raise I1labError(f"{run}: optimizer state {'/'.join(names)} has no reference name")
            nbytes += a.nbytes
            if report is not None:
                report(done, nbytes)
        for name, c in (meta.get("imported") or {}).get("counters", {}).items():
            yield f"chrono/{name}", np.asarray(c["value"], np.dtype(c["dtype"]))

    tmp = npz.parent / f".{npz.name}.tmp-{os.getpid()}"
    try:
        n = write_npz(tmp, members())
        os.replace(tmp, npz)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise I1labError(f"cannot write {npz}: {exc.strerror or exc}") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return n
