"""Model configuration of the i1 family (docs/design-space.md §1–§6, §13 "model" rows).

`ModelConfig` is a frozen, hashable dataclass holding every architectural knob of the design space.
It is pure Python (no JAX import) so that spec validation and planning can use it cheaply.
A config is validated when it is built: an impossible combination raises `ValueError`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

BACKBONES = ("cross_attn", "single_stream", "dual_stream")
IMPLEMENTED_BACKBONES = BACKBONES
ADAPTERS = ("mlp", "transformer")
POSITION_EMBEDDINGS = ("sinusoidal_and_rope", "sinusoidal_only", "rope_only")
DTYPES = ("float32", "bfloat16")

#: Pixel resolution whose integer position grid is the reference one (§3): positions scale by 256/res.
BASE_RESOLUTION = 256


@dataclass(frozen=True)
class ModelConfig:
    """Every architectural knob of an i1 model (docs/design-space.md §1–§6).

    The defaults are the controlled-experiment `cross_attn` baseline: DiT-XL at 256 px on FLUX.2
    latents (32 channels, 32×32) with T5Gemma text (D 2304, 256 tokens) and an MLP adapter.

    Attributes:
        backbone: "cross_attn" (§5.2), "single_stream" (§5.3) or "dual_stream" (MMDiT, the i1 backbone; §5.4).
        hidden: width H of the token stream.
        depth: number of blocks d (odd when `use_long_skip`: d//2 in, 1 mid, d//2 out; §5.1).
        heads: attention heads; head_dim = hidden / heads.
        mlp_ratio: FFN width ratio (SwiGLU hidden F = int(2/3·int(H·mlp_ratio)); §2).
        patch_size: p of the p×p patchify convolution (§1).
        in_channels: latent channels C (32 for FLUX.2, 3 for pixel space).
        resolution: pixel resolution; image positions are scaled by 256/resolution (§3).
        latent_size: h = w of the latent the model sees.
        text_dim: width D of the frozen text-encoder features (of the first encoder).
        text_len: number L of text tokens (also the null-caption length; §4.3) (of the first encoder).
        text_encoders: several text encoders as `((D_0, L_0), (D_1, L_1), …)` (§4.3). Empty (the
            default) means one encoder `((text_dim, text_len),)`. When set it wins: `text_dim` and
            `text_len` are overwritten by its first entry. Each encoder gets its own adapter and null
            caption; the adapter outputs and masks are concatenated along the sequence.
        adapter: text adapter type, "mlp" or "transformer" (§4.2).
        adapter_blocks: number of pre-norm blocks of the transformer adapter.
        repeat_text_emb: concatenate the adapter output with itself and double the mask (§4.3).
        use_long_skip: U-Net-like long skips between in and out blocks (§5.1).
        use_adaln: AdaLN modulation in blocks and final layer; off ⇒ the model ignores t (§5.5).
        use_pooled_text: add the masked-mean text to the conditioning vector (cross_attn only).
        use_timestep: build the timestep embedder and add it to the conditioning (cross_attn only).
        position_embedding: "sinusoidal_and_rope", "sinusoidal_only" or "rope_only" (§3).
        use_qknorm: per-head QK-norm over head_dim (§2).
        use_swiglu: SwiGLU FFN; otherwise a GELU(tanh) MLP (§2).
        use_rmsnorm: RMSNorm everywhere (including QK-norm); otherwise LayerNorm (§2).
        use_sandwich_norm: norm3/norm4 after the attention and FFN sub-layers (§5.2); in single_stream
            only in AdaLN-modulated blocks, in dual_stream always shared by both streams (§5.3, §5.4).
        use_image_connector: one pre-norm block on image tokens before the sinusoidal table (§2).
        wo_shift: AdaLN without shifts (4H: scales and gates only; §2).
        refiner_layers: number of context refiners and of noise refiners of `single_stream` (§5.3).
        use_separate_norms: per-stream norm1/norm2/QK-norms of `dual_stream` (§5.4).
        rope_theta: RoPE base θ (§3).
        rope_axes_dims: RoPE dims per axis (text/time, row, col) for single/dual stream; None gives
            `default_rope_axes_dims(head_dim)`, (36, 18, 18) at head_dim 72 (§3).
        rope_axes_lens: RoPE table lengths per axis for single/dual stream; None gives
            `(context_len + 1, grid_size, grid_size)` (§3). Position ids are clipped into range.
        dtype: compute dtype, "float32" or "bfloat16"; parameters are always float32 (§1).
    """

    backbone: str = "cross_attn"
    hidden: int = 1152
    depth: int = 29
    heads: int = 16
    mlp_ratio: float = 4.0
    patch_size: int = 2
    in_channels: int = 32
    resolution: int = 256
    latent_size: int = 32
    text_dim: int = 2304
    text_len: int = 256
    text_encoders: tuple[tuple[int, int], ...] = ()
    adapter: str = "mlp"
    adapter_blocks: int = 1
    repeat_text_emb: bool = False
    use_long_skip: bool = True
    use_adaln: bool = True
    use_pooled_text: bool = True
    use_timestep: bool = True
    position_embedding: str = "sinusoidal_and_rope"
    use_qknorm: bool = True
    use_swiglu: bool = True
    use_rmsnorm: bool = True
    use_sandwich_norm: bool = False
    use_image_connector: bool = False
    wo_shift: bool = False
    refiner_layers: int = 2
    use_separate_norms: bool = False
    rope_theta: float = 10000.0
    rope_axes_dims: tuple[int, ...] | None = None
    rope_axes_lens: tuple[int, ...] | None = None
    dtype: str = "float32"

    def __post_init__(self) -> None:
        encoders = tuple((int(d), int(n)) for d, n in self.text_encoders)
        object.__setattr__(self, "text_encoders", encoders)
        if encoders:  # the list wins over the single-encoder fields
            object.__setattr__(self, "text_dim", encoders[0][0])
            object.__setattr__(self, "text_len", encoders[0][1])
        self.validate()

    # ------------------------------------------------------------------ derived sizes
    @property
    def head_dim(self) -> int:
        """Width of one attention head."""
        return self.hidden // self.heads

    @property
    def grid_size(self) -> int:
        """Side of the token grid, latent_size / patch_size."""
        return self.latent_size // self.patch_size

    @property
    def num_patches(self) -> int:
        """Number of image tokens N (row-major grid; §1)."""
        return self.grid_size * self.grid_size

    @property
    def patch_dim(self) -> int:
        """Values carried by one output token, p²·C (§1)."""
        return self.patch_size * self.patch_size * self.in_channels

    @property
    def position_scale(self) -> float:
        """Factor applied to integer image positions, 256/resolution (§3)."""
        return BASE_RESOLUTION / self.resolution

    @property
    def mlp_hidden(self) -> int:
        """Hidden width of the plain MLP, int(H·mlp_ratio) (§2)."""
        return int(self.hidden * self.mlp_ratio)

    @property
    def ffn_hidden(self) -> int:
        """Hidden width of the FFN actually built: SwiGLU F = int(2/3·int(H·mlp_ratio)) or the MLP's (§2)."""
        return int(2 / 3 * self.mlp_hidden) if self.use_swiglu else self.mlp_hidden

    @property
    def encoder_specs(self) -> tuple[tuple[int, int], ...]:
        """`(D, L)` of every text encoder, in order: `text_encoders`, or `((text_dim, text_len),)`."""
        return self.text_encoders or ((self.text_dim, self.text_len),)

    @property
    def num_encoders(self) -> int:
        """Number of text encoders (each with its own adapter and null caption; §4.3)."""
        return len(self.encoder_specs)

    @property
    def total_text_len(self) -> int:
        """Sum of the encoders' token counts (the concatenated adapter output, before any repeat)."""
        return sum(length for _, length in self.encoder_specs)

    @property
    def context_len(self) -> int:
        """Length of the text context the backbone attends to (doubled by `repeat_text_emb`)."""
        return 2 * self.total_text_len if self.repeat_text_emb else self.total_text_len

    @property
    def rope_dims(self) -> tuple[int, int, int]:
        """RoPE head dims per axis (text/time, row, col) of single/dual stream (§3)."""
        if self.rope_axes_dims is not None:
            t, r, c = self.rope_axes_dims
            return t, r, c
        return default_rope_axes_dims(self.head_dim)

    @property
    def rope_lens(self) -> tuple[int, int, int]:
        """RoPE table lengths per axis: `rope_axes_lens` or `(context_len + 1, grid, grid)` (§3)."""
        if self.rope_axes_lens is not None:
            t, r, c = self.rope_axes_lens
            return t, r, c
        return self.context_len + 1, self.grid_size, self.grid_size

    @property
    def uses_sinusoidal(self) -> bool:
        """Whether the frozen 2-D sinusoidal table is added to the image tokens (§3)."""
        return self.position_embedding in ("sinusoidal_and_rope", "sinusoidal_only")

    @property
    def uses_rope(self) -> bool:
        """Whether image self-attention applies RoPE (§3)."""
        return self.position_embedding in ("sinusoidal_and_rope", "rope_only")

    @property
    def adaln_chunks(self) -> int:
        """Number of H-wide outputs of a block's AdaLN projection: 6, or 4 with `wo_shift` (§2)."""
        return 4 if self.wo_shift else 6

    # ------------------------------------------------------------------ validation
    def validate(self) -> None:
        """Raise `ValueError` describing the first impossible combination of knobs."""
        errors = _collect_errors(self)
        if errors:
            raise ValueError("invalid ModelConfig: " + "; ".join(errors))

    # ------------------------------------------------------------------ (de)serialisation
    def replace(self, **changes: Any) -> ModelConfig:
        """A copy with `changes` applied (validated)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """A plain-JSON-compatible dict of every field (tuples become lists)."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name == "text_encoders":
                value = [list(pair) for pair in value]
            out[f.name] = list(value) if isinstance(value, tuple) else value
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ModelConfig:
        """Build a config from `to_dict` output; unknown keys raise `ValueError`."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"unknown ModelConfig fields: {unknown}")
        kwargs = dict(data)
        if kwargs.get("text_encoders") is not None:
            kwargs["text_encoders"] = tuple((int(d), int(n)) for d, n in kwargs["text_encoders"])
        for key in ("rope_axes_dims", "rope_axes_lens"):
            if kwargs.get(key) is not None:
                kwargs[key] = tuple(int(v) for v in kwargs[key])
        return cls(**kwargs)


def default_rope_axes_dims(head_dim: int) -> tuple[int, int, int]:
    """Default 3-axis RoPE split (§3): the time axis gets head_dim/2 made even, the rest is split
    evenly between row and col (made even). (36, 18, 18) at head_dim 72; raises if an axis gets < 2."""
    if head_dim % 2:
        raise ValueError(f"RoPE needs an even head_dim, got {head_dim}")
    time_dim = head_dim // 2
    time_dim -= time_dim % 2
    rest = head_dim - time_dim
    row_dim = rest // 2
    col_dim = rest - row_dim
    if row_dim % 2:
        row_dim, col_dim = row_dim - 1, col_dim + 1
    if min(time_dim, row_dim, col_dim) < 2:
        raise ValueError(f"head_dim={head_dim} is too small for 3-axis RoPE (each axis needs >= 2 dims)")
    return time_dim, row_dim, col_dim


def _collect_errors(c: ModelConfig) -> list[str]:
    """All reasons why `c` cannot be built (empty when it is valid)."""
    errors: list[str] = []

    def choice(name: str, value: str, allowed: tuple[str, ...]) -> None:
        if value not in allowed:
            errors.append(f"{name}={value!r} is not one of {list(allowed)}")

    choice("backbone", c.backbone, BACKBONES)
    choice("adapter", c.adapter, ADAPTERS)
    choice("position_embedding", c.position_embedding, POSITION_EMBEDDINGS)
    choice("dtype", c.dtype, DTYPES)

    for name in ("hidden", "depth", "heads", "patch_size", "in_channels", "resolution", "latent_size"):
        if getattr(c, name) < 1:
            errors.append(f"{name} must be >= 1, got {getattr(c, name)}")
    for name in ("text_dim", "text_len", "adapter_blocks"):
        if getattr(c, name) < 1:
            errors.append(f"{name} must be >= 1, got {getattr(c, name)}")
    for i, (dim, length) in enumerate(c.text_encoders):
        if dim < 1 or length < 1:
            errors.append(f"text_encoders[{i}]=({dim}, {length}) must have D >= 1 and L >= 1")
    if c.refiner_layers < 0:
        errors.append(f"refiner_layers must be >= 0, got {c.refiner_layers}")
    if not c.mlp_ratio > 0:
        errors.append(f"mlp_ratio must be > 0, got {c.mlp_ratio}")
    if not c.rope_theta > 0:
        errors.append(f"rope_theta must be > 0, got {c.rope_theta}")
    if errors:
        return errors  # sizes below are meaningless until the basics hold

    if c.hidden % c.heads:
        errors.append(f"hidden={c.hidden} is not divisible by heads={c.heads}")
    if c.latent_size % c.patch_size:
        errors.append(f"latent_size={c.latent_size} is not divisible by patch_size={c.patch_size}")
    if c.ffn_hidden < 1:
        errors.append(f"FFN hidden width int(H·mlp_ratio) is {c.ffn_hidden}; increase mlp_ratio")
    if c.use_long_skip and c.depth % 2 == 0:
        errors.append(
            f"use_long_skip needs an odd depth (d//2 in + 1 mid + d//2 out blocks), got depth={c.depth}"
        )
    if not (c.use_pooled_text or c.use_timestep):
        errors.append(
            "use_pooled_text and use_timestep cannot both be False: the conditioning would be empty"
        )
    if c.backbone != "cross_attn" and not (c.use_pooled_text and c.use_timestep):
        errors.append(
            f"use_pooled_text/use_timestep switches exist only for cross_attn; {c.backbone} always uses both"
        )
    if c.uses_sinusoidal and c.hidden % 4:
        errors.append(f"the 2-D sinusoidal table needs hidden % 4 == 0, got hidden={c.hidden}")
    if c.hidden % c.heads == 0:
        head_dim = c.hidden // c.heads
        if c.uses_rope and head_dim % 2:
            errors.append(f"RoPE needs an even head_dim, got {head_dim}")
        elif c.uses_rope and c.backbone == "cross_attn" and head_dim % 4:
            errors.append(
                f"2-D RoPE (cross_attn) gives head_dim/2 dims to each of row and col, which must be even; "
                f"head_dim={head_dim} is not divisible by 4"
            )
        elif c.uses_rope and c.backbone != "cross_attn" and c.rope_axes_dims is None:
            try:
                default_rope_axes_dims(head_dim)
            except ValueError as err:
                errors.append(str(err))
        if c.rope_axes_dims is not None:
            if c.backbone == "cross_attn":
                errors.append("rope_axes_dims applies to single_stream/dual_stream only")
            elif len(c.rope_axes_dims) != 3 or sum(c.rope_axes_dims) != head_dim:
                errors.append(f"rope_axes_dims={c.rope_axes_dims} must be 3 values summing to head_dim")
            elif any(d <= 0 or d % 2 for d in c.rope_axes_dims):
                errors.append(f"rope_axes_dims={c.rope_axes_dims} must be positive and even")
    if c.rope_axes_lens is not None and (
        c.backbone == "cross_attn" or len(c.rope_axes_lens) != 3 or min(c.rope_axes_lens) < 1
    ):
        errors.append(f"rope_axes_lens={c.rope_axes_lens} must be 3 positive lengths (single/dual stream)")
    return errors
