"""From a RunSpec to the objects training needs: model config, text encoder, VAE."""

from __future__ import annotations

from typing import Any

import numpy as np

from i1lab.spec.catalog import VAES
from i1lab.spec.run import RunSpec
from models.config import ModelConfig
from models.presets import make_config


def model_config(spec: RunSpec) -> ModelConfig:
    """The ``models`` configuration of a run (the bridge between the spec and the model code)."""
    m = spec.model
    vae = VAES[m.vae]
    encoders = m.encoders
    if len(encoders) != 1:
        raise NotImplementedError("several text encoders are not supported by the model yet")
    enc = encoders[0]
    fields: dict[str, Any] = {
        "backbone": m.backbone,
        "mlp_ratio": m.mlp_ratio,
        "patch_size": m.patch_size,
        "in_channels": vae.channels,
        "resolution": spec.data.resolution,
        "latent_size": spec.data.resolution // vae.downsample,
        "text_dim": enc.dim,
        "text_len": enc.tokens,
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
    if m.backbone == "single_stream" and m.refiner_layers is not None:
        fields["refiner_layers"] = m.refiner_layers
    if m.backbone == "dual_stream" and m.separate_norms is not None:
        fields["use_separate_norms"] = m.separate_norms
    if m.hidden is not None or m.heads is not None:
        fields["hidden"], fields["heads"] = m.resolved_hidden, m.resolved_heads
    if m.depth is not None:
        fields["depth"] = m.depth
    return make_config(m.size, **fields)


class TextEncoder:
    """The frozen text encoder of a run: captions -> (features (B, L, D) float32, mask (B, L) bool)."""

    def __init__(self, spec: RunSpec) -> None:
        enc = spec.model.encoders[0]
        if enc.type != "hash":
            raise NotImplementedError(
                f"text encoder {enc.type!r} cannot run on this build; use type: hash for CPU runs"
            )
        from models.text_encoders import HashWordEncoder

        self._impl = HashWordEncoder(dim=enc.dim, token_len=enc.tokens, seed=0)

    def __call__(self, captions: list[str]) -> tuple[np.ndarray, np.ndarray]:
        feats, mask = self._impl.encode(list(captions))
        return np.asarray(feats, np.float32), np.asarray(mask, bool)


def encode_images(spec: RunSpec, images: np.ndarray) -> np.ndarray:
    """uint8 (B, H, W, 3) images -> model latents (B, C, h, w)."""
    if spec.model.vae != "identity":
        raise NotImplementedError(f"VAE {spec.model.vae!r} cannot run on this build; use vae: identity")
    from models.vae import IdentityVAE

    return np.asarray(IdentityVAE().encode(images), np.float32)


def decode_latents(spec: RunSpec, latents: np.ndarray) -> np.ndarray:
    """Model latents (B, C, h, w) -> uint8 (B, H, W, 3) images."""
    if spec.model.vae != "identity":
        raise NotImplementedError(f"VAE {spec.model.vae!r} cannot run on this build; use vae: identity")
    from models.vae import IdentityVAE

    return np.asarray(IdentityVAE().decode(latents), np.uint8)
