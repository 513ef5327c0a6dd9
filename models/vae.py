"""Latent codecs ("VAEs") between uint8 images and model latents (docs/design-space.md §1, §7, §10).

`LatentCodec` is the protocol every codec follows: `IdentityVAE` (pixel space) here, and the KL
VAEs of §10 (FLUX.2 and FLUX.1 in `models.flux2_vae`, Qwen-Image in `models.qwenimage_vae`), which
share `GaussianCodec`: encode to a diagonal Gaussian posterior, sample it (training ⚑ §7) or take
its mean, normalise; decode = denormalise, decode, map pixels `x/2 + 0.5`, clip to [0, 1], ×255,
round (§10). `models.vaes.load_vae` builds a codec from a diffusers-format folder.

Images are channels-last uint8 `(B, H, W, 3)`; latents are channels-first float32
`(B, channels, H/downsample, W/downsample)`. The functions are jit-compatible (jax.numpy).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar, Protocol, runtime_checkable

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike


@runtime_checkable
class LatentCodec(Protocol):
    """Encoder/decoder between images and normalised latents."""

    @property
    def channels(self) -> int:
        """Latent channels."""
        ...

    @property
    def downsample(self) -> int:
        """Spatial reduction factor of the latent."""
        ...

    @property
    def fingerprint(self) -> str:
        """Cheap identity of the codec's weights and normalisation (same fingerprint, same latents)."""
        ...

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
    fingerprint: ClassVar[str] = "identity"

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


class GaussianCodec(ABC):
    """A KL VAE as a `LatentCodec`: the shared posterior sampling, normalisation and pixel mapping.

    Subclasses give the network (`_moments`, `_decode_unit`) and the latent normalisation
    (`normalize`, `denormalize`, both on raw channels-first latents). The network calls are jitted.

    Attributes:
        params: the Flax parameters (float32).
        channels, downsample: latent channels and spatial reduction factor.
        fingerprint: identity of the weights (e.g. `kind:safetensors_fingerprint`).
    """

    channels: int
    downsample: int

    def __init__(self, params: Any, fingerprint: str) -> None:
        self.params = jax.tree_util.tree_map(jnp.asarray, params)
        self.fingerprint = fingerprint
        self._encode = jax.jit(self._encode_impl)
        self._decode = jax.jit(self._decode_impl)
        self._moments_jit = jax.jit(lambda p, images: self._moments(p, pixels_to_unit(images)))
        self._from_moments = jax.jit(self._from_moments_impl)

    @abstractmethod
    def _moments(self, params: Any, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        """Image (B, H, W, 3) in [−1, 1] → posterior mean and log-variance (clipped to [−30, 20]),
        each raw (not normalised) channels-first (B, channels, h, w)."""

    @abstractmethod
    def _decode_unit(self, params: Any, z: jax.Array) -> jax.Array:
        """Raw latent (B, channels, h, w) → image (B, H, W, 3), roughly in [−1, 1]."""

    @abstractmethod
    def normalize(self, z: jax.Array) -> jax.Array:
        """Raw → normalised latent, (B, channels, h, w) float32 (§10)."""

    @abstractmethod
    def denormalize(self, z: jax.Array) -> jax.Array:
        """Exact inverse of `normalize`."""

    def latent_size(self, image_size: int) -> int:
        """Side of the latent for a square image of side `image_size`."""
        return image_size // self.downsample

    def _encode_impl(self, params: Any, images: jax.Array, rng: jax.Array | None) -> jax.Array:
        return self._from_moments_impl(*self._moments(params, pixels_to_unit(images)), rng)

    def _from_moments_impl(self, mean: jax.Array, logvar: jax.Array, rng: jax.Array | None) -> jax.Array:
        z = mean
        if rng is not None:  # the posterior is sampled ⚑ (§7)
            z = mean + jnp.exp(0.5 * logvar) * jax.random.normal(rng, mean.shape, jnp.float32)
        return self.normalize(z)

    def moments(self, images: ArrayLike) -> tuple[jax.Array, jax.Array]:
        """uint8 (B, H, W, 3) → the raw posterior mean and log-variance, each (B, channels, h, w) float32:
        what data preparation stores so that training need not run the encoder (see `from_moments`)."""
        return self._moments_jit(self.params, jnp.asarray(images))

    def from_moments(self, mean: ArrayLike, logvar: ArrayLike, rng: jax.Array | None = None) -> jax.Array:
        """Stored moments → normalised latents, exactly as `encode` continues from its own moments:
        sampled `mean + std·ε` with `rng` (training ⚑ §7), the mean without."""
        mean32, logvar32 = (jnp.asarray(a, jnp.float32) for a in (mean, logvar))
        return self._from_moments(mean32, logvar32, rng)

    def _decode_impl(self, params: Any, latents: jax.Array) -> jax.Array:
        return self._decode_unit(params, self.denormalize(latents))

    def encode(self, images: ArrayLike, rng: jax.Array | None = None) -> jax.Array:
        """uint8 (B, H, W, 3) → normalised float32 (B, channels, h, w).

        With `rng` the posterior is sampled (training ⚑ §7): `mean + std·ε` with
        `ε = jax.random.normal(rng, (B, channels, h, w))`; without it, its mean is used.
        """
        return self._encode(self.params, jnp.asarray(images), rng)

    def decode_unit(self, latents: ArrayLike) -> jax.Array:
        """Normalised (B, channels, h, w) → float32 image (B, H, W, 3) before quantisation."""
        return self._decode(self.params, jnp.asarray(latents, jnp.float32))

    def decode(self, latents: ArrayLike) -> jax.Array:
        """Normalised float32 (B, channels, h, w) → uint8 (B, H, W, 3) via `round(clip(x/2+0.5)·255)`."""
        return unit_to_pixels(self.decode_unit(latents))
