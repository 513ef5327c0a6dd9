"""The i1 diffusion model family in Flax (no dependency on i1lab or evals).

Modules (docs/design-space.md sections in brackets):

- `models.config` — `ModelConfig`, every architectural knob, validated (§1–§6); pure Python.
- `models.presets` — `PRESETS`, `make_config(size, **fields)` (§6), the final recipe `i1_config(res)`
  (§13); pure Python.
- `models.layers` — norms, FFNs, attention, AdaLN, timestep embedder, final layer (§1, §2).
- `models.posemb` — frozen sinusoidal `pos_embed`, `frozen_param_mask`, `reset_frozen`, 2-D RoPE and
  the 3-axis RoPE of single/dual stream (§3).
- `models.adapters` — MLP / transformer text adapters, null caption, dropout, pooling, several text
  encoders (§4.2, §4.3).
- `models.cross_attn`, `models.single_stream`, `models.dual_stream` — the three backbones (§5.2–§5.4);
  `models.long_skip` — their shared long-skip wiring (§5.1); `models.dit` — the top-level `DiT`.
- `models.params` — `count_params`, `param_shapes` via `jax.eval_shape` (§6); `models.param_count` —
  the same counts in closed form (pure Python); `models.flops` — model FLOPs per training step.
- `models.rectified_flow` — t sampling, interpolation, velocity loss (§7).
- `models.sampler` — Euler + CFG sampler in one `lax.scan` (§8).
- `models.text_encoders` — `HashWordEncoder` for tiny runs; Flax `BertEncoder` (`load_minilm`) and
  `T5Encoder` loading Hugging Face checkpoints; `FeatureCache` (§4.1).
- `models.vae` — `LatentCodec` protocol and `IdentityVAE`; `models.flux2_vae` — the FLUX.2 VAE in Flax
  (`Flux2VAE`) with the patchified BatchNorm latent normalisation (§10).
- `models.hf_weights` — PyTorch-layout safetensors → Flax parameters, every tensor accounted for.
- `models.sharding` — `data × fsdp × model` mesh, rule-based parameter / optimizer-state / batch
  sharding (§9).

Importing `models` itself does not import JAX: the names below load their module on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from models.config import ModelConfig as ModelConfig
    from models.dit import DiT as DiT
    from models.dit import init_variables as init_variables
    from models.flux2_vae import Flux2VAE as Flux2VAE
    from models.params import count_params as count_params
    from models.params import param_shapes as param_shapes
    from models.posemb import frozen_param_mask as frozen_param_mask
    from models.posemb import reset_frozen as reset_frozen
    from models.presets import PRESETS as PRESETS
    from models.presets import i1_config as i1_config
    from models.presets import make_config as make_config
    from models.rectified_flow import sample_t as sample_t
    from models.rectified_flow import velocity_loss as velocity_loss
    from models.sampler import euler_sample as euler_sample
    from models.sharding import make_mesh as make_mesh
    from models.text_encoders import HashWordEncoder as HashWordEncoder
    from models.vae import IdentityVAE as IdentityVAE

_EXPORTS = {
    "ModelConfig": "models.config",
    "PRESETS": "models.presets",
    "make_config": "models.presets",
    "i1_config": "models.presets",
    "DiT": "models.dit",
    "init_variables": "models.dit",
    "count_params": "models.params",
    "param_shapes": "models.params",
    "frozen_param_mask": "models.posemb",
    "reset_frozen": "models.posemb",
    "sample_t": "models.rectified_flow",
    "velocity_loss": "models.rectified_flow",
    "euler_sample": "models.sampler",
    "HashWordEncoder": "models.text_encoders",
    "IdentityVAE": "models.vae",
    "Flux2VAE": "models.flux2_vae",
    "make_mesh": "models.sharding",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'models' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
