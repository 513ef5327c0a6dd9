"""Named things a spec may refer to: text encoders, VAEs, model sizes, benchmarks.

These tables are facts from DESIGN_SPACE.md (§4.1, §6, §10) and BENCHMARKS.md; validation and the
cost model read them, so they live here rather than inside the model code.
"""

from __future__ import annotations

from typing import Literal, NamedTuple

from models.presets import PRESETS


class TextEncoderInfo(NamedTuple):
    dim: int
    tokens: int
    params: int  # parameters of the frozen encoder (forward cost only); 0 where negligible


TEXT_ENCODERS: dict[str, TextEncoderInfo] = {
    "T5Gemma": TextEncoderInfo(2304, 256, 2_000_000_000),
    "T5Gemma_2B_no_IT": TextEncoderInfo(2304, 256, 2_000_000_000),
    "T5Gemma_9B_2B": TextEncoderInfo(3584, 256, 9_000_000_000),
    "T5Gemma_9B_2B_no_IT": TextEncoderInfo(3584, 256, 9_000_000_000),
    "T5Gemma2-1b": TextEncoderInfo(1152, 256, 1_000_000_000),
    "T5Gemma2-4b": TextEncoderInfo(2560, 256, 4_000_000_000),
    "qwen3-1.7b": TextEncoderInfo(2048, 256, 1_700_000_000),
    "qwen3-4b-instruct-2507": TextEncoderInfo(2560, 256, 4_000_000_000),
    "qwen3-vl-2b-instruct": TextEncoderInfo(2048, 256, 2_000_000_000),
    "qwen3-vl-4b-instruct": TextEncoderInfo(2560, 256, 4_000_000_000),
    "qwen3-vl-2b-instruct_system_prompt": TextEncoderInfo(2048, 256, 2_000_000_000),
    "qwen3-vl-4b-instruct_system_prompt": TextEncoderInfo(2560, 256, 4_000_000_000),
    "fg-clip2-short-so400m": TextEncoderInfo(1152, 64, 400_000_000),
    "fg-clip2-long-so400m": TextEncoderInfo(1152, 196, 400_000_000),
    "clip-large": TextEncoderInfo(768, 77, 123_000_000),
    "T5": TextEncoderInfo(4096, 120, 4_700_000_000),
    "T5-xxl": TextEncoderInfo(4096, 120, 4_700_000_000),
    "T5-xl": TextEncoderInfo(2048, 120, 1_200_000_000),
    "T5-large": TextEncoderInfo(1024, 120, 335_000_000),
    "T5-base": TextEncoderInfo(768, 120, 110_000_000),
    "T5-small": TextEncoderInfo(512, 120, 35_000_000),
    # Offline encoders usable on a CPU machine.
    "minilm": TextEncoderInfo(384, 64, 22_700_000),
    "hash": TextEncoderInfo(32, 16, 0),
}

VaeName = Literal["flux2", "flux", "qwenimage", "identity"]


class VaeInfo(NamedTuple):
    channels: int
    downsample: int


VAES: dict[str, VaeInfo] = {
    "flux2": VaeInfo(32, 8),
    "flux": VaeInfo(16, 8),
    "qwenimage": VaeInfo(16, 8),
    "identity": VaeInfo(3, 1),
}


# Model sizes come from models.presets (pure Python, no JAX import).
SIZES = PRESETS

BENCHMARKS: tuple[str, ...] = ("shapes", "geneval", "dpg", "prism", "cvtg", "longtext")
