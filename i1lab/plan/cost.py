"""What a run costs before it runs: parameters, FLOPs per step, accelerator-hours. Pure functions.

**FLOPs.** Training FLOPs per image are 3x the forward (forward + backward), and the forward is

* ``2 * P_img * N`` for every weight that touches image tokens (all DiT parameters except the text
  adapter, the null caption and the frozen position table), with ``N`` image tokens;
* ``2 * P_adapter * L`` for the text adapter over ``L`` text tokens;
* attention: ``4 * N^2 * H`` per self-attention layer and ``4 * N * L * H`` per cross-attention layer
  (scores and weighted sum), ``H`` the width;

plus the frozen text encoder's forward, ``2 * P_enc * L`` per caption (no backward). The VAE encoder's
forward is not counted (it is small against the DiT at 256 px and unknown for future VAEs): the estimate
is a lower bound.

**Hours.** ``hours = steps * batch * flops_per_image / (chips * peak * utilisation) / 3600`` of wall clock,
and accelerator-hours (chip-hours) are that times the chip count. Peaks are dense bf16 per chip from the
vendors' data sheets; utilisation is an assumption stated in the table (override per study).
"""

from __future__ import annotations

from functools import lru_cache
from typing import NamedTuple

from pydantic import BaseModel

from i1lab.spec.catalog import TEXT_ENCODERS
from i1lab.spec.run import RunSpec
from models.config import ModelConfig


class Accelerator(NamedTuple):
    name: str
    peak_flops: float  # per chip, dense bf16 (CPU: nominal fp32 per core)
    utilisation: float  # assumed model FLOPs utilisation


ACCELERATORS: dict[str, Accelerator] = {
    "tpu-v6e": Accelerator("TPU v6e", 918e12, 0.40),
    "gpu": Accelerator("NVIDIA H100/H200", 989e12, 0.40),
    "cpu": Accelerator("CPU core", 50e9, 0.25),
}


class RunCost(BaseModel):
    params: int
    flops_per_image: float
    flops_per_step: float
    total_flops: float
    accelerator: str
    chips: int
    hours: float
    accelerator_hours: float


def chips_of(accelerator: str) -> tuple[Accelerator, int]:
    """``tpu-v6e-64`` -> (v6e, 64); ``gpu:8`` -> (gpu, 8); ``cpu:4`` -> (cpu, 4)."""
    if accelerator.startswith("tpu-v6e-"):
        return ACCELERATORS["tpu-v6e"], int(accelerator.rsplit("-", 1)[1])
    kind, _, n = accelerator.partition(":")
    return ACCELERATORS[kind], int(n or 1)


@lru_cache(maxsize=4096)
def param_count(config: ModelConfig) -> int:
    """Parameters of the model: closed form where available, else traced with ``jax.eval_shape``."""
    from models.param_count import count_params_fast

    try:
        return count_params_fast(config)
    except NotImplementedError:
        from models.params import count_params

        return count_params(config)


def _adapter_params(config: ModelConfig) -> int:
    from models.param_count import adapter_params

    return adapter_params(config)


def run_cost(spec: RunSpec, config: ModelConfig, utilisation: float | None = None) -> RunCost:
    c = config
    params = param_count(c)
    n_img = c.num_patches
    n_txt = c.context_len
    adapter = _adapter_params(c)
    frozen_table = n_img * c.hidden if c.uses_sinusoidal else 0
    p_img = params - adapter - frozen_table
    attn = c.depth * (
        4 * n_img * n_img * c.hidden + (4 * n_img * n_txt * c.hidden if c.backbone == "cross_attn" else 0)
    )
    if c.backbone != "cross_attn":  # joint attention over [image ; text]
        joint = n_img + n_txt
        attn = c.depth * 4 * joint * joint * c.hidden
    forward = 2 * p_img * n_img + 2 * adapter * c.text_len + attn
    encoder = sum(2 * TEXT_ENCODERS[e.type].params * e.tokens for e in spec.model.encoders)
    per_image = 3 * forward + encoder
    per_step = per_image * spec.train.batch_size
    total = per_step * spec.train.steps
    acc, chips = chips_of(spec.resources.accelerator)
    mfu = utilisation if utilisation is not None else acc.utilisation
    hours = total / (chips * acc.peak_flops * mfu) / 3600
    return RunCost(
        params=params,
        flops_per_image=per_image,
        flops_per_step=per_step,
        total_flops=total,
        accelerator=spec.resources.accelerator,
        chips=chips,
        hours=hours,
        accelerator_hours=hours * chips,
    )
