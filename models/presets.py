"""Model size presets (DESIGN_SPACE §6) plus CPU-sized ones for tests and `--profile tiny` runs.

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
