"""Model size presets (docs/design-space.md §6) plus CPU-sized ones for tests and `--profile tiny` runs.

A preset fixes only width, depth, heads and mlp_ratio; the data-dependent fields (latent channels
and size, resolution, text width and length) and the ablation switches come from the caller via
`make_config`. Pure Python: importing this module does not import JAX.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from models.config import ModelConfig


@dataclass(frozen=True)
class SizePreset:
    """Width, depth, heads and FFN ratio of one model size."""

    hidden: int
    depth: int
    heads: int
    mlp_ratio: float = 4.0

    @property
    def head_dim(self) -> int:
        """Width of one attention head."""
        return self.hidden // self.heads


def _paper_presets() -> dict[str, SizePreset]:
    """The §6 table: depth 29, mlp_ratio 4, head_dim 72, widths 1152…2016."""
    table = {"DiT-XL": SizePreset(hidden=1152, depth=29, heads=16)}
    for hidden in (1296, 1440, 1584, 1728, 1872, 2016):
        table[f"DiT-XL_{hidden}"] = SizePreset(hidden=hidden, depth=29, heads=hidden // 72)
    return table


#: Every size by name. "tiny" trains in milliseconds per step on CPU at 16×16 px; "small" is a
#: slightly larger CPU model; the "DiT-XL*" entries are the paper's sizes (§6).
PRESETS: MappingProxyType[str, SizePreset] = MappingProxyType(
    {
        "tiny": SizePreset(hidden=64, depth=3, heads=2),
        "small": SizePreset(hidden=128, depth=5, heads=4),
        **_paper_presets(),
    }
)


def make_config(size: str, **fields: Any) -> ModelConfig:
    """A validated `ModelConfig` with the size of preset `size` and any other fields overridden.

    Example: ``make_config("tiny", in_channels=3, latent_size=16, resolution=16, text_dim=32, text_len=8)``.
    Size fields (hidden, depth, heads, mlp_ratio) given in `fields` win over the preset.
    """
    if size not in PRESETS:
        raise ValueError(f"unknown model size {size!r}; known: {sorted(PRESETS)}")
    preset = PRESETS[size]
    sized: dict[str, Any] = {
        "hidden": preset.hidden,
        "depth": preset.depth,
        "heads": preset.heads,
        "mlp_ratio": preset.mlp_ratio,
    }
    sized.update(fields)
    return ModelConfig(**sized)


#: The final i1 recipe's model fields (docs/design-space.md §13 "i1" column; `jax/configs/i1_training/*.py`).
I1_RECIPE: MappingProxyType[str, Any] = MappingProxyType(
    {
        "backbone": "dual_stream",
        "adapter": "transformer",
        "adapter_blocks": 2,
        "repeat_text_emb": False,
        "use_long_skip": True,
        "use_adaln": False,
        "position_embedding": "sinusoidal_and_rope",
        "use_sandwich_norm": True,
        "use_separate_norms": False,
        "use_image_connector": False,
        "use_qknorm": True,
        "use_swiglu": True,
        "use_rmsnorm": True,
        "wo_shift": False,
        "patch_size": 2,
    }
)
#: FLUX.2 VAE latents: 32 channels at 1/8 of the pixel resolution (§1, §10).
FLUX2_CHANNELS, FLUX2_DOWNSAMPLE = 32, 8


def i1_config(
    resolution: int = 256,
    *,
    size: str = "DiT-XL_2016",
    text_dim: int = 2304,
    text_len: int = 256,
    **fields: Any,
) -> ModelConfig:
    """The final i1 model (§13 "i1"): `dual_stream` MMDiT at DiT-XL_2016 (H 2016, depth 29, 28 heads),
    transformer adapter ×2, AdaLN **off** (the model ignores t; §5.5), sandwich norms on, shared
    norms, long skips, sinusoidal + 3-axis RoPE, QK-norm, SwiGLU, RMSNorm, patch 2, on FLUX.2
    latents (32 channels, resolution/8) with T5Gemma 2B-2B text (D 2304, 256 tokens).

    The three training stages are `i1_config(256)`, `i1_config(512)` and `i1_config(1024)`; image
    positions scale by 256/resolution. `size`, the text sizes and any other `ModelConfig` field can
    be overridden (e.g. `i1_config(16, size="tiny", text_dim=32, text_len=8, in_channels=3,
    latent_size=16)` for a CPU-sized model of the same recipe). `count_params` gives about 3.17 B
    at 256 px (the paper's "i1-3B").
    """
    recipe: dict[str, Any] = dict(I1_RECIPE)
    recipe.update(
        in_channels=FLUX2_CHANNELS,
        resolution=resolution,
        latent_size=resolution // FLUX2_DOWNSAMPLE,
        text_dim=text_dim,
        text_len=text_len,
    )
    recipe.update(fields)
    return make_config(size, **recipe)
