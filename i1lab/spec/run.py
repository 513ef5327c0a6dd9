"""Pydantic models of one run: model, diffusion, data, training, sampling, evaluation, resources.

Every default is the paper's controlled-experiment baseline (docs/design-space.md §13, "Base"); a study file
only writes what differs. Fields marked ``semantic=False`` in their ``json_schema_extra`` do not take part
in the run's content hash (see :mod:`i1lab.hashing`).
"""

from __future__ import annotations

import re
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator
from pydantic.config import JsonDict

from evals.benchmark import NONE, OFFICIAL, benchmarks
from i1lab.spec.catalog import SIZES, TEXT_ENCODERS, VAES

COSMETIC: JsonDict = {"semantic": False}
#: A knob added after runs were recorded: left out of the content hash while at its default, so the
#: runs that never set it keep their identity (see :mod:`i1lab.hashing`).
LATER_KNOB: JsonDict = {"omit_default": True}


class Strict(BaseModel):
    """Base for every spec model: unknown keys are errors, instances are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)


class TextEncoderSpec(Strict):
    type: str = Field("T5Gemma", description="text encoder name (docs/design-space.md §4.1)")
    token_len: Annotated[int, Field(ge=1, le=4096)] | None = Field(
        None, description="override the token count"
    )
    drop_prob: Annotated[float, Field(ge=0.0, le=1.0)] | None = Field(
        None,
        description="this encoder's own caption-dropout probability (an independent draw); default: "
        "train.caption_dropout, one decision shared by every encoder that sets none",
    )
    dtype: Literal["bfloat16", "float32"] = Field(
        "bfloat16",
        description="compute dtype of the frozen encoder (§4.1: bf16)",
        json_schema_extra=LATER_KNOB,
    )

    @field_validator("type")
    @classmethod
    def _known(cls, value: str) -> str:
        if value not in TEXT_ENCODERS:
            raise ValueError(f"unknown text encoder {value!r}; known: {', '.join(sorted(TEXT_ENCODERS))}")
        return value

    @property
    def dim(self) -> int:
        return TEXT_ENCODERS[self.type].dim

    @property
    def tokens(self) -> int:
        return self.token_len or TEXT_ENCODERS[self.type].tokens


class AdapterSpec(Strict):
    type: Literal["mlp", "transformer"] = Field("mlp", description="text adapter kind (§4.2)")
    blocks: Annotated[int, Field(ge=1, le=12)] = Field(1, description="transformer adapter blocks")


class ModelSpec(Strict):
    backbone: Literal["cross_attn", "single_stream", "dual_stream"] = "cross_attn"
    size: str = Field("DiT-XL", description="width preset (§6) or tiny/small for CPU")
    hidden: Annotated[int, Field(ge=8)] | None = Field(None, description="override the preset's width")
    depth: Annotated[int, Field(ge=1)] | None = None
    heads: Annotated[int, Field(ge=1)] | None = None
    mlp_ratio: Annotated[float, Field(gt=0)] = 4.0
    patch_size: Annotated[int, Field(ge=1, le=16)] = 2
    long_skip: bool = True
    text_encoder: TextEncoderSpec | list[TextEncoderSpec] = TextEncoderSpec()
    adapter: AdapterSpec = AdapterSpec()
    repeat_text_emb: bool = False
    adaln: bool = True
    pooled_text: bool | None = Field(None, description="cross_attn only; default true")
    timestep: bool | None = Field(None, description="cross_attn only; default true")
    position_embedding: Literal["sinusoidal_and_rope", "sinusoidal_only", "rope_only"] = "sinusoidal_and_rope"
    sandwich_norm: bool = False
    separate_norms: bool | None = Field(None, description="dual_stream only; default false")
    image_connector: bool = False
    qknorm: bool = True
    swiglu: bool = True
    rmsnorm: bool = True
    wo_shift: bool = False
    refiner_layers: Annotated[int, Field(ge=0)] | None = Field(
        None, description="single_stream only; default 2"
    )
    vae: Literal["flux2", "flux", "qwenimage", "identity"] = "flux2"
    precision: Literal["float32", "bfloat16"] = "float32"

    @field_validator("size")
    @classmethod
    def _size(cls, value: str) -> str:
        if value not in SIZES:
            raise ValueError(f"unknown size preset {value!r}; known: {', '.join(SIZES)}")
        return value

    @model_validator(mode="after")
    def _cross_field(self) -> ModelSpec:
        if self.backbone != "cross_attn":
            for name in ("pooled_text", "timestep"):
                if getattr(self, name) is not None:
                    raise ValueError(f"{name} exists only for backbone cross_attn (got {self.backbone})")
        elif self.pooled_text is False and self.timestep is False:
            raise ValueError("pooled_text and timestep cannot both be false: nothing would condition AdaLN")
        if self.separate_norms is not None and self.backbone != "dual_stream":
            raise ValueError(f"separate_norms exists only for backbone dual_stream (got {self.backbone})")
        if self.refiner_layers is not None and self.backbone != "single_stream":
            raise ValueError(f"refiner_layers exists only for backbone single_stream (got {self.backbone})")
        hidden, heads = self.resolved_hidden, self.resolved_heads
        if hidden % heads:
            raise ValueError(f"hidden {hidden} is not divisible by heads {heads}")
        if self.position_embedding != "sinusoidal_only" and (hidden // heads) % 4:
            raise ValueError(f"RoPE needs a head dim divisible by 4, got {hidden // heads}")
        return self

    @property
    def resolved_hidden(self) -> int:
        return self.hidden or SIZES[self.size].hidden

    @property
    def resolved_depth(self) -> int:
        return self.depth or SIZES[self.size].depth

    @property
    def resolved_heads(self) -> int:
        """Explicit heads, else the preset's head dimension kept when the width is overridden."""
        if self.heads:
            return self.heads
        preset = SIZES[self.size]
        if self.hidden:
            return max(1, self.hidden // (preset.hidden // preset.heads))
        return preset.heads

    @property
    def encoders(self) -> list[TextEncoderSpec]:
        return self.text_encoder if isinstance(self.text_encoder, list) else [self.text_encoder]


class DiffusionSpec(Strict):
    prediction: Literal["velocity", "x"] = "velocity"
    timestep_sampling: Literal["lognorm", "uniform"] = "lognorm"
    lognorm_mean: float = 0.0
    lognorm_std: Annotated[float, Field(gt=0)] = 1.0
    train_shift: Annotated[float, Field(ge=0)] = Field(0.0, description="0 and 1 both mean off (§7)")


class SourceSpec(Strict):
    name: str = Field(..., min_length=1)
    kind: Literal["shapes", "webdataset", "tfrecord"] = "shapes"
    count: Annotated[int, Field(ge=1)] = Field(..., description="number of unique images in the source")
    group: Literal["real", "synthetic", "text"] = "real"
    path: str | None = Field(None, description="shard location for webdataset/tfrecord sources")
    family: str | None = Field(None, description="generator family for shapes sources")


class MixingSpec(Strict):
    strategy: Literal["count_proportional", "capped", "equal"] = "count_proportional"
    cap: Annotated[int, Field(ge=1)] | None = Field(None, description="threshold T for capped mixing")

    @model_validator(mode="after")
    def _cap(self) -> MixingSpec:
        if (self.strategy == "capped") != (self.cap is not None):
            raise ValueError("cap is required for strategy capped and only allowed there")
        return self


def _paper_sources() -> list[SourceSpec]:
    counts = {
        "yfcc": (98_121_424, "real"),
        "imagenet22k": (13_673_551, "real"),
        "renderedtext": (11_977_824, "text"),
        "megalith10m": (9_393_971, "real"),
        "places365": (8_026_628, "real"),
        "flux_reason_6m": (5_890_279, "synthetic"),
        "textatlas5m": (5_397_762, "text"),
        "redcaps": (4_817_431, "real"),
        "inaturalist2024": (4_813_543, "real"),
        "pexels": (2_810_634, "real"),
        "gpt_edit": (1_553_575, "synthetic"),
        "midjourney_v6": (1_240_185, "synthetic"),
    }
    return [SourceSpec(name=n, kind="tfrecord", count=c, group=g) for n, (c, g) in counts.items()]


#: The VLM whose captions the data records carry (docs/design-space.md §11).
CAPTIONER = "qwen3-vl-30b-a3b"


class DataSpec(Strict):
    sources: list[SourceSpec] = Field(default_factory=_paper_sources, min_length=1)
    mixing: MixingSpec = MixingSpec()
    keep: list[str] | None = Field(None, description="train only on these source names or groups")
    remove: list[str] = Field(default_factory=list, description="source names or groups to leave out")
    subset_count: Annotated[int, Field(ge=1)] | None = Field(None, description="unique images per source")
    long_caption_fraction: Annotated[float, Field(ge=0, le=1)] = 1.0
    captioner: str = Field(
        "qwen3-vl-30b-a3b",
        description="the VLM that wrote the captions; only the records' own (qwen3-vl-30b-a3b) until data "
        "preparation can recaption",
    )
    resolution: Annotated[int, Field(ge=8, le=4096)] = 256
    resume_from: str | None = Field(None, description="run (name or hash) whose checkpoint starts this stage")

    @field_validator("captioner")
    @classmethod
    def _captioner(cls, value: str) -> str:
        if value != CAPTIONER:
            raise ValueError(
                f"captions by {value!r} do not exist: the data records carry {CAPTIONER} captions, and i1lab "
                "cannot recaption data yet"
            )
        return value

    @model_validator(mode="after")
    def _sources(self) -> DataSpec:
        names = [s.name for s in self.sources]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"duplicate source names: {', '.join(dup)}")
        known = set(names) | {s.group for s in self.sources}
        for key, listed in (("keep", self.keep or []), ("remove", self.remove)):
            unknown = [r for r in listed if r not in known]
            if unknown:
                names_known = ", ".join(sorted(known))
                raise ValueError(
                    f"{key} names unknown sources or groups: {', '.join(unknown)}; known: {names_known}"
                )
        if not self.kept_sources():
            raise ValueError("keep/remove leave no data source")
        return self

    def kept_sources(self) -> list[SourceSpec]:
        """The sources a run trains on, after ``keep`` and ``remove`` (by name or group)."""
        kept = [s for s in self.sources if self.keep is None or s.name in self.keep or s.group in self.keep]
        return [s for s in kept if s.name not in self.remove and s.group not in self.remove]


class TrainSpec(Strict):
    steps: Annotated[int, Field(ge=1)] = 500_000
    batch_size: Annotated[int, Field(ge=1)] = 512
    lr: Annotated[float, Field(gt=0, le=1)] = 1e-4
    b1: Annotated[float, Field(ge=0, lt=1)] = 0.9
    b2: Annotated[float, Field(ge=0, lt=1)] = 0.95
    eps: Annotated[float, Field(gt=0)] = 1e-8
    mu_dtype: Literal["bfloat16", "float32"] = "bfloat16"
    grad_clip: Annotated[float, Field(ge=0)] = Field(1.0, description="global-norm clip; 0 disables")
    weight_decay: Annotated[float, Field(ge=0)] = 0.0
    ema_decay: Annotated[float, Field(ge=0, lt=1)] = 0.9999
    caption_dropout: Annotated[float, Field(ge=0, le=1)] = 0.1
    grad_accum: Annotated[int, Field(ge=1)] = 1
    checkpoint_every: Annotated[int, Field(ge=1)] = 5_000
    keep_every: Annotated[int, Field(ge=1)] = 50_000
    log_every: Annotated[int, Field(ge=1)] = Field(100, json_schema_extra=COSMETIC)
    seed: int = 0

    @model_validator(mode="after")
    def _cadence(self) -> TrainSpec:
        if self.keep_every % self.checkpoint_every:
            raise ValueError(
                f"keep_every ({self.keep_every}) must be a multiple of "
                f"checkpoint_every ({self.checkpoint_every})"
            )
        if self.batch_size % self.grad_accum:
            raise ValueError(f"batch_size {self.batch_size} is not divisible by grad_accum {self.grad_accum}")
        return self


class SamplingSpec(Strict):
    steps: Annotated[int, Field(ge=1, le=10_000)] = 250
    cfg_scale: Annotated[float, Field(ge=0)] = 12.0
    cfg_rescale: Annotated[float, Field(ge=0, le=1)] = 0.0
    cfg_interval_start: Annotated[float, Field(ge=0, le=1)] = 0.0
    time_grid: Literal["uniform", "shifted"] = "uniform"
    time_shift: Annotated[float, Field(gt=0)] = Field(
        0.3, description="s of the shifted grid; ignored for uniform"
    )
    prompt_variant: str = Field(
        "original", pattern=r"^(original|simple_rewrite|complex_rewrite|repeated\d+)$"
    )
    seed: int = 42


class EvalSpec(Strict):
    benchmarks: list[str] = Field(default_factory=lambda: ["dpg", "prism", "longtext"])
    every: Annotated[int, Field(ge=1)] | None = Field(
        None, description="evaluate every N steps; default: each permanent checkpoint and the last step"
    )
    images_per_prompt: Annotated[int, Field(ge=1)] | None = Field(
        None,
        description="override the benchmark's images per prompt (GenEval 4, DPG 4, LongText 4, shapes 4); "
        "ignored where the layout holds one (PRISM, CVTG-2K)",
    )
    prompts_per_tag: Annotated[int, Field(ge=1)] = Field(
        8, description="prompt count per tag (shapes benchmark)"
    )
    prompt_limit: Annotated[int, Field(ge=1)] | None = Field(
        None,
        description="generate and judge only the first N prompts of each benchmark (CPU smoke runs); "
        "recorded as the metric n_prompts",
        json_schema_extra=COSMETIC,
    )
    commands: dict[str, str] = Field(
        default_factory=dict,
        description="official judge command template per benchmark; placeholders {python} {images} "
        "{out} {resolution} {step} {benchmarks}; default: the official invocation",
        json_schema_extra=COSMETIC,
    )
    official_summary: list[str] = Field(
        default_factory=list,
        description="benchmarks whose judged outputs the official summary code also scores, in its "
        "environment (`i1lab evals setup BENCH`); its printed headline must equal i1lab's exact score",
        json_schema_extra=COSMETIC,
    )
    judge_gpus: dict[str, Annotated[int, Field(ge=0)]] = Field(
        default_factory=dict,
        description="GPUs the judging of a benchmark needs, as its own Ray task on a node that has them; "
        "default: the official environment's judge stage for official, 1 for vlm when the cluster has "
        "GPUs, else 0 (judged where the images were sampled)",
        json_schema_extra=COSMETIC,
    )
    # after `commands`: the judges' validator checks that an official judge has the command it needs
    judges: dict[str, str] = Field(
        default_factory=dict,
        description="judge per benchmark: none (generate only), ocr[:tesseract|rapidocr], official, "
        "vlm:/path/to/local/weights, or the benchmark's own (shapes: exact-pixel); default: the "
        "benchmark's (ocr for cvtg and longtext, exact-pixel for shapes, else none)",
        json_schema_extra=COSMETIC,
    )

    #: Which benchmarks exist, their judges and default judges: the catalogue of `evals.benchmark`.
    OCR_ENGINES: ClassVar[tuple[str, ...]] = ("auto", "tesseract", "rapidocr")
    #: Placeholders i1lab fills in an official command template.
    PLACEHOLDERS: ClassVar[tuple[str, ...]] = (
        "python",
        "images",
        "out",
        "resolution",
        "step",
        "benchmarks",
        "weights",
        "gpus",
    )

    @field_validator("benchmarks")
    @classmethod
    def _known(cls, value: list[str]) -> list[str]:
        known = benchmarks()
        for name in value:
            if name not in known:
                raise ValueError(f"unknown benchmark {name!r}; known: {', '.join(known)}")
        if len(set(value)) != len(value):
            raise ValueError("benchmarks listed twice")
        return value

    @classmethod
    def _bench_key(cls, bench: str, what: str, judge: str | None = None) -> None:
        """``bench`` must be a benchmark (that accepts ``judge``, when given)."""
        known = [n for n, b in benchmarks().items() if judge is None or judge in b.judges]
        if bench not in known:
            raise ValueError(f"{what}: unknown benchmark {bench!r}; known: {', '.join(known)}")

    @classmethod
    def parse_judge(cls, bench: str, value: str) -> tuple[str, str]:
        """``(kind, argument)`` of a judge name: ("ocr", engine), ("vlm", weights path), ("official", ""),
        ("none", ""). Raises ValueError naming the benchmark and what is allowed."""
        kind, sep, arg = value.partition(":")
        kind = kind.strip()
        known = benchmarks()
        if kind not in {NONE}.union(*(b.judges for b in known.values())):
            raise ValueError(
                f"judges.{bench}: unknown judge {value!r}; expected none, official, ocr, ocr:<engine> "
                "or vlm:<weights folder>"
            )
        allowed = (NONE, *known[bench].judges) if bench in known else ()
        if kind not in allowed:
            raise ValueError(f"judges.{bench}: {kind} cannot judge {bench}; use {' or '.join(allowed)}")
        if kind == "ocr":
            arg = arg.strip() or "auto"
            if arg not in cls.OCR_ENGINES:
                raise ValueError(
                    f"judges.{bench}: unknown OCR engine {arg!r}; expected {', '.join(cls.OCR_ENGINES)}"
                )
        elif kind == "vlm":
            if not arg.strip():
                raise ValueError(f"judges.{bench}: vlm needs its local weights folder, e.g. vlm:/models/qwen")
        elif sep:
            raise ValueError(f"judges.{bench}: {kind} takes no argument (got {value!r})")
        return kind, arg

    @field_validator("judges")
    @classmethod
    def _judges(cls, value: dict[str, str], info: ValidationInfo) -> dict[str, str]:
        for bench, judge in value.items():
            cls._bench_key(bench, "judges")
            cls.parse_judge(bench, judge)
        return value

    @field_validator("official_summary")
    @classmethod
    def _summaries(cls, value: list[str]) -> list[str]:
        from evals.judges.environment import for_benchmark

        for bench in value:
            cls._bench_key(bench, "official_summary")
            env = for_benchmark(benchmarks()[bench])
            if env is None or "summary" not in env.stages:
                having = [
                    n for n, b in benchmarks().items() if (e := for_benchmark(b)) and "summary" in e.stages
                ]
                raise ValueError(
                    f"official_summary: {bench} has no official summary stage; "
                    f"those that do: {', '.join(having)}"
                )
        return value

    @field_validator("judge_gpus")
    @classmethod
    def _gpus(cls, value: dict[str, int]) -> dict[str, int]:
        for bench in value:
            cls._bench_key(bench, "judge_gpus")
        return value

    @field_validator("commands")
    @classmethod
    def _commands(cls, value: dict[str, str]) -> dict[str, str]:
        import string

        for bench, template in value.items():
            cls._bench_key(bench, "commands", OFFICIAL)
            if not template.strip():
                raise ValueError(f"commands.{bench}: empty command")
            try:
                names = {f for _, f, _, _ in string.Formatter().parse(template) if f is not None}
            except ValueError as exc:
                raise ValueError(f"commands.{bench}: not a command template: {exc}") from None
            unknown = sorted(n for n in names if n not in cls.PLACEHOLDERS)
            if unknown:
                raise ValueError(
                    f"commands.{bench}: unknown placeholder {{{unknown[0]}}}; i1lab fills "
                    + " ".join(f"{{{p}}}" for p in cls.PLACEHOLDERS)
                    + " (write other values, e.g. a model path, into the command itself)"
                )
        return value

    def judge_for(self, bench: str) -> str:
        """The configured judge of ``bench``, else the benchmark's default (none for an unknown name)."""
        if bench in self.judges:
            return self.judges[bench].strip()
        known = benchmarks()
        return known[bench].default_judge if bench in known else NONE


RESOURCE_RE = re.compile(r"^(cpu(:\d+)?|gpu:\d+|tpu-v6e-(8|16|32|64|128|256))$")


class ResourcesSpec(Strict):
    accelerator: str = Field("tpu-v6e-8", description="cpu[:N], gpu:N or tpu-v6e-{8,16,32,...}")
    hosts: Annotated[int, Field(ge=1)] | None = Field(
        None, description="hosts of the TPU slice (default: one 8-chip host for v6e-8, else 4 chips per host)"
    )

    @property
    def slice_hosts(self) -> int:
        """How many hosts the slice spans (1 for CPUs and GPUs): ``hosts`` if given, else one 8-chip
        host for a v6e-8 and four chips per host for the larger v6e slices, as Cloud TPU provides them."""
        if not self.accelerator.startswith("tpu-"):
            return 1
        if self.hosts is not None:
            return self.hosts
        chips = int(self.accelerator.rsplit("-", 1)[1])
        return 1 if chips <= 8 else chips // 4

    @property
    def layout_key(self) -> str:
        """The key that decides ``slice_hosts``: ``hosts`` if given, else ``accelerator``."""
        return "hosts" if self.hosts is not None else "accelerator"

    @field_validator("accelerator")
    @classmethod
    def _pattern(cls, value: str) -> str:
        if not RESOURCE_RE.match(value):
            raise ValueError(f"{value!r} is not cpu[:N], gpu:N or tpu-v6e-{{8,16,32,64,128,256}}")
        return value

    @model_validator(mode="after")
    def _hosts(self) -> ResourcesSpec:
        """``hosts`` must be a layout the slice comes in (a v6e host has 8 or 4 chips)."""
        if self.hosts is None:
            return self
        if not self.accelerator.startswith("tpu-"):
            if self.hosts != 1:
                raise ValueError(f"hosts: {self.accelerator} runs on one host, not {self.hosts}")
            return self
        chips = int(self.accelerator.rsplit("-", 1)[1])
        if chips == 8 and self.hosts not in (1, 2):
            raise ValueError(
                f"hosts: a {self.accelerator} slice is 1 host of 8 chips or 2 of 4, not {self.hosts}"
            )
        if chips > 8 and self.hosts != chips // 4:
            raise ValueError(
                f"hosts: a {self.accelerator} slice is {chips // 4} hosts of 4 chips, not {self.hosts}"
            )
        return self


class RunSpec(Strict):
    """The fully resolved description of one training run and how it is evaluated."""

    name: str = Field("run", json_schema_extra=COSMETIC)
    label: str | None = Field(None, json_schema_extra=COSMETIC)
    model: ModelSpec = ModelSpec()
    diffusion: DiffusionSpec = DiffusionSpec()
    data: DataSpec = DataSpec()
    train: TrainSpec = TrainSpec()
    sampling: SamplingSpec = SamplingSpec()
    eval: EvalSpec = Field(EvalSpec(), json_schema_extra=COSMETIC)
    resources: ResourcesSpec = Field(ResourcesSpec(), json_schema_extra=COSMETIC)

    @model_validator(mode="after")
    def _cross_field(self) -> RunSpec:
        vae = VAES[self.model.vae]
        factor = vae.downsample * self.model.patch_size
        if self.data.resolution % factor:
            raise ValueError(
                f"data.resolution {self.data.resolution} is not divisible by VAE factor {vae.downsample}"
                f" x patch {self.model.patch_size} = {factor}"
            )
        return self

    def semantic_dict(self) -> dict[str, Any]:
        """The fields that define the run's result (the content hash input)."""
        from i1lab.hashing import semantic_view

        return semantic_view(self)
