"""Latent codecs ("VAEs") between uint8 images and model latents (DESIGN_SPACE §1, §10).

`LatentCodec` is the protocol every codec follows, so that FLUX.2 (32 channels, ↓8, sampled
posterior with patchified BatchNorm normalisation; §10) can be added beside `IdentityVAE`.
Images are channels-last uint8 `(B, H, W, 3)`; latents are channels-first float32
`(B, channels, H/downsample, W/downsample)`. The functions are jit-compatible (jax.numpy).
"""

from __future__ import annotations

from typing import ClassVar, Protocol, runtime_checkable

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike


@runtime_checkable
class LatentCodec(Protocol):
    """Encoder/decoder between images and normalised latents."""

    channels: int
    downsample: int

    def encode(self, images: ArrayLike, rng: jax.Array | None = None) -> jax.Array:
        """uint8 (B, H, W, 3) → float32 (B, channels, H/downsample, W/downsample).

        `rng` samples the posterior for stochastic codecs (§7 ⚑); deterministic ones ignore it.
        """
        ...

    def decode(self, latents: ArrayLike) -> jax.Array:
        """float32 latents → uint8 (B, H, W, 3) via `round(clip(x/2 + 0.5, 0, 1)·255)` (§10)."""
        ...


def pixels_to_unit(images: ArrayLike) -> jax.Array:
    """uint8 pixels → float32 in [−1, 1] (§11)."""
    return jnp.asarray(images).astype(jnp.float32) / 127.5 - 1.0


def unit_to_pixels(x: jax.Array) -> jax.Array:
    """[−1, 1] floats → uint8: `x/2 + 0.5`, clipped to [0, 1], ×255, rounded (§10)."""
    return jnp.round(jnp.clip(x.astype(jnp.float32) / 2.0 + 0.5, 0.0, 1.0) * 255.0).astype(jnp.uint8)


class IdentityVAE:
    """Pixel space: latents are the image in [−1, 1], channels-first (3 channels, no downsampling)."""

    channels: ClassVar[int] = 3
    downsample: ClassVar[int] = 1

    def latent_size(self, image_size: int) -> int:
        """Side of the latent for a square image of side `image_size`."""
        return image_size // self.downsample

    def encode(self, images: ArrayLike, rng: jax.Array | None = None) -> jax.Array:
        """uint8 (B, H, W, 3) → float32 (B, 3, H, W) in [−1, 1]; `rng` is unused."""
        del rng
        return pixels_to_unit(images).transpose(0, 3, 1, 2)

    def decode(self, latents: ArrayLike) -> jax.Array:
        """float32 (B, 3, H, W) → uint8 (B, H, W, 3)."""
        return unit_to_pixels(jnp.asarray(latents).transpose(0, 2, 3, 1))
