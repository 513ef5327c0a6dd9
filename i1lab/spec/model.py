"""From a RunSpec to the ``models`` configuration of its network: the one mapping between the spec and
the model code, read by planning, cost, training, evaluation, sampling, searches and the dashboard.

Importing it is light (no JAX): :mod:`models.config` and :mod:`models.presets` are plain dataclasses.
"""

from __future__ import annotations

from typing import Any

from i1lab.spec.catalog import VAES
from i1lab.spec.run import RunSpec
from models.config import ModelConfig
from models.presets import make_config


def model_config(spec: RunSpec) -> ModelConfig:
    """The ``models`` configuration of a run (the bridge between the spec and the model code).

    Each text encoder's width D is its weights' own (when they are present here), else the catalogue's.
    """
    from i1lab.spec.weights import text_dims

    m = spec.model
    vae = VAES[m.vae]
    dims = text_dims(spec)
    fields: dict[str, Any] = {
        "backbone": m.backbone,
        "mlp_ratio": m.mlp_ratio,
        "patch_size": m.patch_size,
        "in_channels": vae.channels,
        "resolution": spec.data.resolution,
        "latent_size": spec.data.resolution // vae.downsample,
        "text_dim": dims[0],
        "text_len": m.encoders[0].tokens,
        "adapter": m.adapter.type,
        "adapter_blocks": m.adapter.blocks,
        "repeat_text_emb": m.repeat_text_emb,
        "use_long_skip": m.long_skip,
        "use_adaln": m.adaln,
        "use_pooled_text": m.pooled_text if m.pooled_text is not None else True,
        "use_timestep": m.timestep if m.timestep is not None else True,
        "position_embedding": m.position_embedding,
        "use_qknorm": m.qknorm,
        "use_swiglu": m.swiglu,
        "use_rmsnorm": m.rmsnorm,
        "use_sandwich_norm": m.sandwich_norm,
        "use_image_connector": m.image_connector,
        "wo_shift": m.wo_shift,
        "dtype": m.precision,
    }
    if len(m.encoders) > 1:
        fields["text_encoders"] = tuple((d, e.tokens) for d, e in zip(dims, m.encoders, strict=True))
    if m.backbone == "single_stream" and m.refiner_layers is not None:
        fields["refiner_layers"] = m.refiner_layers
    if m.backbone == "dual_stream" and m.separate_norms is not None:
        fields["use_separate_norms"] = m.separate_norms
    if m.hidden is not None or m.heads is not None:
        fields["hidden"], fields["heads"] = m.resolved_hidden, m.resolved_heads
    if m.depth is not None:
        fields["depth"] = m.depth
    return make_config(m.size, **fields)
