"""Every knob of an i1 reference config, mapped onto the i1lab run spec.

Each knob the reference reads (`jax/training/main.py` and the model configs it builds) has one rule:

- **mapped**: it sets an i1lab spec field (``image_size`` -> ``data.resolution``, ...);
- **fixed**: i1lab implements one value of it (``optax_name = 'scale_by_adam'``, the ``pos_embed``-frozen
  schedule, ``rope_theta = 10000``, ...): that value is accepted, any other is an error;
- **runtime**: it changes how a run executes, not what it computes (rematerialisation, sharding,
  prefetching, logging to W&B, checkpoint time-outs): accepted and listed as not mapped;
- **no effect**: the reference itself ignores it in this configuration (``text_encoder_adapter_num_blocks``
  of the MLP adapter, ``transport.inference_timestep_shift`` in the JAX sampler).

A knob with no rule is an error naming it and its ``file:line``. `import_config` returns the run as
dotted keys (written into a single-run study file by :meth:`Imported.study_yaml`), the table of every
knob with what became of it, and the validated :class:`~i1lab.spec.run.RunSpec`.

Every mapped knob becomes an explicit key, except ``use_pooled_text`` / ``use_timestep`` = True of the
cross_attn backbone, which stay unset as in the study files (the spec tells "unset" from "true" apart), so
an imported config has the same training hash as the equivalent hand-written study
(``cross_attn.py`` ~ ``experiments/baseline.yaml``, ``256_resolution.py`` ~ ``experiments/i1.yaml``).
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Literal

import yaml
from pydantic import ValidationError

from i1lab.data.mixing import mixing_weights
from i1lab.errors import I1labError
from i1lab.i1import.pyconfig import Knob, ReferenceConfig, read_config
from i1lab.spec.catalog import SIZES, TEXT_ENCODERS, VAES
from i1lab.spec.run import DataSpec, MixingSpec, RunSpec
from models.hf_weights import unflatten

Status = Literal["mapped", "fixed", "runtime", "no effect"]

#: The reference input pipeline all shipped configs use; i1lab's loader does the same (decode, draw one
#: of the captions, scale pixels to [-1, 1]).
STANDARD_PREPROCESS = (
    '|decode_png()|sample_caption(key="caption")|value_range(-1, 1)|copy("caption", "labels")'
    '|keep("image", "labels")'
)
#: The reference's optimizer schedule that freezes the sinusoidal table and keeps the rest constant.
STANDARD_SCHEDULE = [("pos_embed", None), (".*", 1.0)]

#: Dataset folder names of the reference configs -> i1lab source names (experiments/baseline.yaml). A
#: ``<N>_resolution_`` prefix names the same dataset's high-resolution record set; i1lab selects records
#: by ``data.resolution``.
DATASET_ALIASES: dict[str, str] = {
    "yfcc": "yfcc",
    "imagenet22k": "imagenet22k",
    "rendered_text": "renderedtext",
    "renderedtext": "renderedtext",
    "megalith10m": "megalith10m",
    "places": "places365",
    "places365": "places365",
    "fluxreason": "flux_reason_6m",
    "flux_reason_6m": "flux_reason_6m",
    "textatlas": "textatlas5m",
    "textatlas5m": "textatlas5m",
    "redcaps": "redcaps",
    "inaturalist": "inaturalist2024",
    "inaturalist2024": "inaturalist2024",
    "pexels": "pexels",
    "gptedit": "gpt_edit",
    "gpt_edit": "gpt_edit",
    "midjourneyv6": "midjourney_v6",
    "midjourney_v6": "midjourney_v6",
}
_RES_PREFIX = re.compile(r"^\d+_resolution_")

#: Knobs of the reference model configs (`DiTConfig` and its three subclasses) by backbone.
_COMMON_MODEL_KWARGS = {
    "use_long_skip",
    "text_encoder_adapter_type",
    "text_encoder_adapter_num_blocks",
    "use_image_connector",
    "use_adaln",
    "repeat_text_emb",
    "position_embedding",
    "use_sandwich_norm",
    "wo_shift",
    "drop_text_prob",
    "in_channels",
}
BACKBONE_KWARGS: dict[str, set[str]] = {
    "cross_attn": _COMMON_MODEL_KWARGS | {"use_pooled_text", "use_timestep"},
    "single_stream": _COMMON_MODEL_KWARGS
    | {"refiner_layers", "rope_axes_dims", "rope_axes_lens", "rope_theta"},
    "dual_stream": _COMMON_MODEL_KWARGS
    | {"rope_axes_dims", "rope_axes_lens", "rope_theta", "use_separate_norms"},
}
#: Model-config fields the reference's model builder passes itself (a second value in model_kwargs is
#: a TypeError there).
_PASSED_BY_BUILDER = {
    "input_size": "image_size / the VAE",
    "image_resolution": "image_size",
    "patch_size": "patch_size",
    "text_embed_dim": "text_encoder_type",
    "text_num_tokens": "text_encoder_type / token_len",
    "use_qknorm": "use_qknorm",
    "use_swiglu": "use_swiglu",
    "use_rmsnorm": "use_rmsnorm",
    "use_grad_ckpt": "use_grad_ckpt",
    "hidden_size": "model_size",
    "depth": "model_size",
    "num_heads": "model_size",
    "mlp_ratio": "model_size",
}
#: Top-level knobs that only change how a run executes, with the reason.
RUNTIME: dict[str, str] = {
    "use_grad_ckpt": "rematerialisation: memory, not results",
    "shard_text_encoder_params": "sharding of the frozen text encoder",
    "tensor_parallel_size": "sharding (resources)",
    "fsdp_axis_size": "sharding (resources)",
    "prefetch_to_device": "input prefetching",
    "ckpt_timeout": "checkpoint write time-out",
    "input.shuffle_buffer_size": "data order of the reference's streaming loader (i1lab's is random-access)",
}
SECTION_ORDER = ("model", "diffusion", "data", "train", "sampling")


class KnobError(I1labError):
    """A knob i1lab does not know, or a value it cannot represent (one line: file:line: knob: why)."""


@dataclass
class Row:
    """What became of one reference knob."""

    knob: str
    value: Any
    line: int
    status: Status
    target: str = ""
    note: str = ""


@dataclass
class Imported:
    """An imported reference config."""

    config: ReferenceConfig
    run: dict[str, Any]
    sources: dict[str, list[Row]]
    rows: list[Row]
    spec: RunSpec
    notes: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        stem = re.sub(r"[^A-Za-z0-9_.\-]", "_", self.config.path.stem)
        return stem if stem[:1].isalnum() else f"i1_{stem}"

    def study_yaml(self) -> str:
        """A single-run study file (``i1lab plan`` accepts it) with each key's source knob as a comment."""
        path = self.config.path
        digest = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
        lines = [
            f"# Imported by `i1lab import-i1` from {path.name} (sha256 {digest}...).",
            "# Each key names the reference knob(s) it comes from; knobs with no i1lab counterpart that do",
            "# not change the trained model (logging, sharding, ...) are listed at the end.",
            f"study: {self.name}",
            f"description: {_flow(f'i1 reference config {path.name}, imported')}",
            "run:",
        ]
        keys = sorted(self.run, key=_key_order)
        width = max((len(k) + len(_flow(self.run[k])) for k in keys), default=0) + 4
        for key in keys:
            body = f"  {key}: {_flow(self.run[key])}"
            origin = ", ".join(f"{r.knob} (line {r.line})" for r in self.sources.get(key, []))
            origin = origin or "the reference default"
            lines.append(f"{body.ljust(width)}  # {origin}")
        defaults = [r for r in self.rows if r.status == "mapped" and r.target not in self.run]
        if defaults:
            lines.append("# Knobs equal to i1lab's default (key left unset):")
            for r in defaults:
                lines.append(f"#   {r.knob} = {r.value!r} (line {r.line}): {r.target}")
        rest = [r for r in self.rows if r.status != "mapped"]
        if rest:
            lines.append("# Knobs with no i1lab key:")
            for r in rest:
                lines.append(f"#   {r.knob} = {r.value!r} (line {r.line}): {r.status}, {r.note}")
        for note in self.notes:
            lines.append(f"# Note: {note}")
        return "\n".join(lines) + "\n"

    def summary(self) -> str:
        """Knob counts by status and the model's parameter count (closed form, no JAX)."""
        from collections import Counter

        from i1lab.i1import.layout import jax_layout
        from i1lab.spec.model import model_config
        from models.param_count import count_params_fast

        n = Counter(r.status for r in self.rows)
        knobs = (
            f"{len(self.rows)} knobs: {n['mapped']} mapped, {n['fixed']} fixed, {n['runtime']} runtime, "
            f"{n['no effect']} without effect"
        )
        try:
            config = model_config(self.spec)
        except NotImplementedError:
            return f"{knobs}; parameters: not counted (several text encoders)"
        tensors = len(jax_layout(config))
        return f"{knobs}; {count_params_fast(config):,} parameters in {tensors} tensors"

    def write(self, path: Path) -> None:
        """Write the study file atomically."""
        import os

        path = Path(path)
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_text(self.study_yaml(), encoding="utf-8")
            os.replace(tmp, path)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise I1labError(f"cannot write {path}: {exc.strerror or exc}") from None


def _key_order(key: str) -> tuple[int, str]:
    section = key.split(".")[0]
    return (SECTION_ORDER.index(section) if section in SECTION_ORDER else len(SECTION_ORDER), key)


def _flow(value: Any) -> str:
    text = yaml.safe_dump(value, default_flow_style=True, width=10**6, sort_keys=False).strip()
    return text.removesuffix("...").strip()


class _Mapper:
    def __init__(self, config: ReferenceConfig) -> None:
        self.config = config
        self.knobs = config.knobs
        self.run: dict[str, Any] = {}
        self.sources: dict[str, list[Row]] = {}
        self.rows: dict[str, Row] = {}
        self.notes: list[str] = []

    # ------------------------------------------------------------------ helpers
    def error(self, knob: str, message: str) -> KnobError:
        return KnobError(f"{self.config.where(knob)}: {knob}: {message}")

    def get(self, name: str, default: Any = None) -> Any:
        k = self.knobs.get(name)
        return default if k is None else k.value

    def row(self, name: str, status: Status, target: str = "", note: str = "") -> Row:
        k = self.knobs[name]
        r = Row(name, k.value, k.line, status, target, note)
        self.rows[name] = r
        return r

    def emit(self, target: str, value: Any, *knobs: str) -> None:
        self.run[target] = value
        for name in knobs:
            if name in self.knobs:
                r = self.rows.get(name) or self.row(name, "mapped", target)
                self.sources.setdefault(target, []).append(r)

    def consumed(self, *names: str, status: Status = "mapped", note: str = "", target: str = "") -> None:
        for name in names:
            if name in self.knobs and name not in self.rows:
                self.row(name, status, target, note)

    # typed readers -------------------------------------------------------
    def as_bool(self, name: str) -> bool:
        value = self.get(name)
        if not isinstance(value, bool):
            raise self.error(name, f"expected True or False, got {value!r}")
        return value

    def as_int(self, name: str, minimum: int | None = None) -> int:
        value = self.get(name)
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if not isinstance(value, int) or isinstance(value, bool):
            raise self.error(name, f"expected an integer, got {value!r}")
        if minimum is not None and value < minimum:
            raise self.error(name, f"must be >= {minimum}, got {value}")
        return value

    def as_float(self, name: str) -> float:
        value = self.get(name)
        if not isinstance(value, int | float) or isinstance(value, bool):
            raise self.error(name, f"expected a number, got {value!r}")
        return float(value)

    def as_str(self, name: str, choices: tuple[str, ...] | None = None) -> str:
        value = self.get(name)
        if not isinstance(value, str):
            raise self.error(name, f"expected a string, got {value!r}")
        if choices is not None and value not in choices:
            raise self.error(name, f"{value!r} is not one of {', '.join(choices)}")
        return value

    def fixed(self, name: str, ok: Callable[[Any], bool], what: str, note: str) -> None:
        if name not in self.knobs:
            return
        if not ok(self.get(name)):
            raise self.error(name, f"i1lab implements only {what} (got {self.get(name)!r})")
        self.row(name, "fixed", "", note)

    # ------------------------------------------------------------------ the table
    def map(self) -> None:
        self.model()
        self.transport()
        self.data()
        self.training()
        self.runtime()
        for name, knob in self.knobs.items():  # file order: the first unknown knob is reported
            if name not in self.rows:
                raise self.error(name, self.unknown_reason(name, knob))

    def unknown_reason(self, name: str, knob: Knob) -> str:
        if name.startswith("model_kwargs."):
            key = name.removeprefix("model_kwargs.")
            if key in _PASSED_BY_BUILDER:
                return (
                    f"set twice: the reference passes {key} from {_PASSED_BY_BUILDER[key]} "
                    "(its model builder would fail)"
                )
            backbone = self.get("backbone")
            if any(key in kw for kw in BACKBONE_KWARGS.values()):
                return f"not a knob of the {backbone} backbone"
        return "i1lab does not know this knob"

    def model(self) -> None:
        for required in ("backbone", "model_size"):
            if required not in self.knobs:
                raise KnobError(f"{self.config.path}: {required}: not set (the reference needs it)")
        backbone = self.as_str("backbone", tuple(BACKBONE_KWARGS))
        self.emit("model.backbone", backbone, "backbone")
        size = self.as_str("model_size")
        if size not in SIZES:
            raise self.error("model_size", f"unknown size preset {size!r}; known: {', '.join(SIZES)}")
        self.emit("model.size", size, "model_size")
        if "patch_size" in self.knobs:
            self.emit("model.patch_size", self.as_int("patch_size", 1), "patch_size")
        vae = self.as_str("vae_type", tuple(VAES)) if "vae_type" in self.knobs else "flux2"
        self.emit("model.vae", vae, "vae_type")
        for knob, target in (("use_qknorm", "qknorm"), ("use_swiglu", "swiglu"), ("use_rmsnorm", "rmsnorm")):
            if knob in self.knobs:
                self.emit(f"model.{target}", self.as_bool(knob), knob)
        self.fixed(
            "text_encoder_precision",
            lambda v: v in ("bf16", "bfloat16"),
            "a bf16 text encoder",
            "the frozen text encoder runs in bf16 (docs/design-space.md §4.1)",
        )

        allowed = BACKBONE_KWARGS[backbone]
        kw = {
            name.removeprefix("model_kwargs."): name
            for name in self.knobs
            if name.startswith("model_kwargs.") and name.removeprefix("model_kwargs.") in allowed
        }

        def flag(key: str, target: str, default: bool | None = None) -> None:
            if key in kw:
                value = self.as_bool(kw[key])
                if default is not None and value == default:
                    self.consumed(kw[key], note="i1lab default", target=target)
                else:
                    self.emit(target, value, kw[key])

        flag("use_long_skip", "model.long_skip")
        flag("use_image_connector", "model.image_connector")
        flag("use_adaln", "model.adaln")
        flag("repeat_text_emb", "model.repeat_text_emb")
        flag("use_sandwich_norm", "model.sandwich_norm")
        flag("wo_shift", "model.wo_shift")
        flag("use_pooled_text", "model.pooled_text", default=True)
        flag("use_timestep", "model.timestep", default=True)
        flag("use_separate_norms", "model.separate_norms")  # written explicitly, as experiments/i1.yaml does
        if "position_embedding" in kw:
            choices = ("sinusoidal_and_rope", "sinusoidal_only", "rope_only")
            self.emit(
                "model.position_embedding",
                self.as_str(kw["position_embedding"], choices),
                kw["position_embedding"],
            )
        if "refiner_layers" in kw:
            self.emit("model.refiner_layers", self.as_int(kw["refiner_layers"], 0), kw["refiner_layers"])

        # adapter: the MLP adapter has no blocks (num_blocks has no effect on it)
        type_knob = kw.get("text_encoder_adapter_type")
        adapter_type = self.as_str(type_knob, ("mlp", "transformer")) if type_knob else "mlp"
        adapter: dict[str, Any] = {"type": adapter_type}
        adapter_knobs = [type_knob] if type_knob else []
        blocks_knob = kw.get("text_encoder_adapter_num_blocks")
        if blocks_knob is not None:
            blocks = self.as_int(blocks_knob, 1 if adapter_type == "transformer" else 0)
            if adapter_type == "transformer":
                adapter["blocks"] = blocks
                adapter_knobs.append(blocks_knob)
            elif blocks == 1:
                adapter_knobs.append(blocks_knob)  # i1lab's value for the MLP adapter too
            else:
                self.row(blocks_knob, "no effect", "", "the MLP adapter has no blocks")
        self.emit("model.adapter", adapter, *adapter_knobs)

        # RoPE knobs i1lab's spec fixes
        if "rope_theta" in kw:
            self.fixed(kw["rope_theta"], lambda v: v == 10000.0, "rope_theta = 10000", "the RoPE base")
        for key in ("rope_axes_dims", "rope_axes_lens"):
            if key in kw:
                self.fixed(
                    kw[key], lambda v: v is None, f"{key} = None (the default split)", "default RoPE axes"
                )

        vae_channels = VAES[vae].channels
        if "in_channels" in kw:
            self.fixed(
                kw["in_channels"],
                lambda v: v == vae_channels,
                f"in_channels = {vae_channels} (the {vae} VAE's channels)",
                "latent channels come from the VAE",
            )
        self.text(backbone, kw.get("drop_text_prob"))

    def text(self, backbone: str, drop_knob: str | None) -> None:
        types = self.get("text_encoder_type", "T5Gemma")
        token_len = self.get("token_len")
        drop = self.get(drop_knob) if drop_knob else None
        names = types if isinstance(types, list | tuple) else [types]
        if not names or not all(isinstance(t, str) for t in names):
            raise self.error("text_encoder_type", f"expected a name or a list of names, got {types!r}")
        for t in names:
            if t not in TEXT_ENCODERS:
                known = ", ".join(sorted(TEXT_ENCODERS))
                raise self.error("text_encoder_type", f"unknown text encoder {t!r}; known: {known}")
        n = len(names)
        lens: list[int | None]
        if token_len is None:
            lens = [None] * n
        elif isinstance(token_len, list | tuple):
            if len(token_len) != n:
                raise self.error("token_len", f"{len(token_len)} values for {n} text encoders")
            lens = list(token_len)
        else:
            lens = [token_len] * n
        for value in lens:
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
                raise self.error("token_len", f"expected a positive integer, got {value!r}")
        drops: list[float | None] = [None] * n
        if isinstance(drop, list | tuple):
            assert drop_knob is not None
            if len(drop) != n:
                raise self.error(drop_knob, f"{len(drop)} probabilities for {n} text encoders")
            drops = [float(d) for d in drop]
        elif drop is not None:
            assert drop_knob is not None
            self.emit("train.caption_dropout", self.as_float(drop_knob), drop_knob)
        encoders: list[dict[str, Any]] = []
        for t, length, d in zip(names, lens, drops, strict=True):
            entry: dict[str, Any] = {"type": t}
            if length is not None and length != TEXT_ENCODERS[t].tokens:
                entry["token_len"] = length
            if d is not None:
                entry["drop_prob"] = d
            encoders.append(entry)
        knobs = ["text_encoder_type", "token_len"]
        if isinstance(drop, list | tuple) and drop_knob:
            knobs.append(drop_knob)
        self.emit("model.text_encoder", encoders[0] if n == 1 else encoders, *knobs)

    def transport(self) -> None:
        if "transport.prediction" in self.knobs:
            pred = self.as_str("transport.prediction")
            mapped = (
                "velocity"
                if pred.lower() == "velocity"
                else "x"
                if pred.lower() in ("x", "sample", "data")
                else None
            )
            if mapped is None:
                raise self.error("transport.prediction", f"{pred!r} is not velocity or x (sample, data)")
            self.emit("diffusion.prediction", mapped, "transport.prediction")
        if "transport.use_lognorm" in self.knobs:
            lognorm = self.as_bool("transport.use_lognorm")
            self.emit(
                "diffusion.timestep_sampling", "lognorm" if lognorm else "uniform", "transport.use_lognorm"
            )
        for knob, target in (
            ("transport.lognorm_mu", "diffusion.lognorm_mean"),
            ("transport.lognorm_sigma", "diffusion.lognorm_std"),
            ("transport.train_timestep_shift", "diffusion.train_shift"),
            ("transport.cfg_interval_start", "sampling.cfg_interval_start"),
        ):
            if knob in self.knobs:
                self.emit(target, self.as_float(knob), knob)
        if "transport.inference_timestep_shift" in self.knobs:
            self.row(
                "transport.inference_timestep_shift",
                "no effect",
                "",
                "the JAX sampler steps on a uniform grid whatever it says (docs/design-space.md §8); "
                "set sampling.time_grid for the shifted grid",
            )

    def data(self) -> None:
        if "image_size" in self.knobs:
            self.emit("data.resolution", self.as_int("image_size", 8), "image_size")
        name = "input.data"
        if name not in self.knobs:
            return
        entries = self.get(name)
        if not isinstance(entries, list | tuple) or not entries:
            raise self.error(name, "expected a non-empty list of (dict(split=..., data_dir=...), weight)")
        chosen: list[str] = []
        weights: list[float] = []
        for entry in entries:
            if not (isinstance(entry, list | tuple) and len(entry) == 2 and isinstance(entry[0], dict)):
                raise self.error(name, f"expected (dict(split=..., data_dir=...), weight), got {entry!r}")
            spec, weight = entry
            extra = sorted(set(spec) - {"split", "data_dir"})
            if extra:
                raise self.error(name, f"dataset option {extra[0]!r} is not known to i1lab")
            if spec.get("split", "train") != "train":
                raise self.error(name, f"split {spec.get('split')!r}: i1lab trains on the train split only")
            source = _dataset_name(spec.get("data_dir"))
            if source is None:
                raise self.error(name, f"data_dir {spec.get('data_dir')!r} names no dataset i1lab knows")
            if source in chosen:
                raise self.error(name, f"dataset {source} listed twice")
            if not isinstance(weight, int | float) or isinstance(weight, bool) or not weight > 0:
                raise self.error(name, f"weight {weight!r} of {source} must be a positive number")
            chosen.append(source)
            weights.append(float(weight))
        paper = [s.name for s in DataSpec().sources]
        removed = [s for s in paper if s not in chosen]
        selection: dict[str, Any] = {}
        if removed and len(removed) <= len(chosen):
            selection["data.remove"] = removed
        elif removed:
            selection["data.keep"] = chosen
        total = sum(weights)
        given = {s: w / total for s, w in zip(chosen, weights, strict=True)}
        for strategy in ("count_proportional", "equal"):
            candidate = DataSpec(
                mixing=MixingSpec(strategy=strategy),
                keep=selection.get("data.keep"),
                remove=selection.get("data.remove", []),
            )
            expected = mixing_weights(candidate)
            if set(expected) == set(given) and all(
                math.isclose(expected[s], given[s], rel_tol=1e-9, abs_tol=1e-12) for s in given
            ):
                self.emit("data.mixing", {"strategy": strategy}, name)
                for key, value in selection.items():
                    self.emit(key, value, name)
                if any(_RES_PREFIX.match(_dataset_folder(e[0].get("data_dir")) or "") for e in entries):
                    self.notes.append(
                        "the <N>_resolution_ record sets are the same datasets filtered for that resolution; "
                        "i1lab selects records by data.resolution"
                    )
                return
        raise self.error(
            name, "the weights are neither count-proportional nor equal over the listed datasets"
        )

    def training(self) -> None:
        for knob, target, minimum in (
            ("seed", "train.seed", None),
            ("total_steps", "train.steps", 1),
            ("input.batch_size", "train.batch_size", 1),
            ("grad_accum_steps", "train.grad_accum", 1),
            ("log_training_steps", "train.log_every", 1),
            ("ckpt_steps", "train.checkpoint_every", 1),
            ("keep_ckpt_steps", "train.keep_every", 1),
        ):
            if knob in self.knobs:
                self.emit(target, self.as_int(knob, minimum), knob)
        if "resume" in self.knobs and self.get("resume") not in ("", None):
            raise self.error(
                "resume",
                "i1lab starts a run from another run (data.resume_from); convert the checkpoint with "
                "`i1lab import-i1 CONFIG --checkpoint CKPT` and start from that run",
            )
        self.consumed("resume", status="no effect", note="empty: the run starts from scratch")
        if "lr" in self.knobs:
            self.emit("train.lr", self.as_float("lr"), "lr")
        if "grad_clip_norm" in self.knobs:
            clip = self.get("grad_clip_norm")
            self.emit(
                "train.grad_clip",
                0.0 if clip in (None, 0) else self.as_float("grad_clip_norm"),
                "grad_clip_norm",
            )
        self.fixed("optax_name", lambda v: v == "scale_by_adam", "optax_name = 'scale_by_adam'", "Adam")
        for key, target in (("b1", "train.b1"), ("b2", "train.b2"), ("eps", "train.eps")):
            if f"optax.{key}" in self.knobs:
                self.emit(target, self.as_float(f"optax.{key}"), f"optax.{key}")
        if "optax.mu_dtype" in self.knobs:
            mu = self.get("optax.mu_dtype")
            dtypes = {
                None: "float32",
                "float32": "float32",
                "fp32": "float32",
                "bfloat16": "bfloat16",
                "bf16": "bfloat16",
            }
            if mu not in dtypes:
                raise self.error("optax.mu_dtype", f"{mu!r} is not bfloat16 or float32")
            self.emit("train.mu_dtype", dtypes[mu], "optax.mu_dtype")
        if "optax" in self.knobs and self.get("optax") != {}:
            raise self.error("optax", "expected a dict of scale_by_adam options")
        self.consumed("optax", status="no effect", note="no Adam options")
        if "wd" in self.knobs:
            if self.get("wd") not in (None, 0, 0.0):
                raise self.error(
                    "wd",
                    "i1lab's weight decay acts on every parameter, the reference's on kernels only; "
                    "only None / 0 can be imported",
                )
            self.consumed("wd", note="no weight decay", target="train.weight_decay")
        self.fixed(
            "schedule",
            lambda v: _schedule(v) == STANDARD_SCHEDULE,
            "[('pos_embed', None), ('.*', 1.0)] (pos_embed frozen, constant lr)",
            "pos_embed frozen, constant learning rate",
        )
        self.fixed("use_ema", lambda v: v is True, "use_ema = True", "EMA weights are kept")
        if "ema_decay_rate" in self.knobs:
            self.emit("train.ema_decay", self.as_float("ema_decay_rate"), "ema_decay_rate")
        self.fixed("save_ckpt", lambda v: v is True, "save_ckpt = True", "checkpoints are saved")
        self.fixed(
            "input.preprocess",
            lambda v: isinstance(v, str) and v.replace(" ", "") == STANDARD_PREPROCESS.replace(" ", ""),
            "the standard preprocessing (decode, one random caption, pixels in [-1, 1])",
            "i1lab's loader does the same",
        )

    def runtime(self) -> None:
        for name in self.knobs:
            if name in RUNTIME:
                self.consumed(name, status="runtime", note=RUNTIME[name])
            elif name == "wandb" or name.startswith("wandb."):
                self.consumed(name, status="runtime", note="W&B logging")


def _schedule(value: Any) -> list[tuple[Any, Any]] | None:
    if not isinstance(value, list | tuple):
        return None
    out = []
    for item in value:
        if not (isinstance(item, list | tuple) and len(item) == 2):
            return None
        out.append((item[0], None if item[1] is None else float(item[1])))
    return out


def _dataset_folder(data_dir: Any) -> str | None:
    """The path component of ``data_dir`` that names the dataset (the one before ``tfrecord`` if any)."""
    if not isinstance(data_dir, str) or not data_dir:
        return None
    parts = [p for p in PurePosixPath(data_dir.split("://", 1)[-1]).parts if p not in ("/", "")]
    for part in reversed(parts):
        if _RES_PREFIX.sub("", part).lower() in DATASET_ALIASES:
            return part
    return None


def _dataset_name(data_dir: Any) -> str | None:
    folder = _dataset_folder(data_dir)
    return None if folder is None else DATASET_ALIASES[_RES_PREFIX.sub("", folder).lower()]


def map_config(config: ReferenceConfig) -> Imported:
    """Map a parsed reference config onto a run spec (raises :class:`KnobError` on the first problem)."""
    mapper = _Mapper(config)
    mapper.map()
    try:
        spec = RunSpec.model_validate({"name": "baseline", **unflatten(mapper.run, sep=".")})
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = ".".join(str(p) for p in first["loc"])
        raise KnobError(f"{config.path}: the imported spec is invalid: {loc}: {first['msg']}") from None
    order = list(config.knobs)
    rows = sorted(mapper.rows.values(), key=lambda r: order.index(r.knob))
    return Imported(config, mapper.run, mapper.sources, rows, spec, mapper.notes)


def import_config(path: Path) -> Imported:
    """Read (without running it) and map the reference config at ``path``."""
    return map_config(read_config(Path(path)))
