"""What the KL VAEs of §10 share: `models.flux2_vae` (the FLUX.2 / FLUX.1 `AutoencoderKL`) and
`models.qwenimage_vae` (Qwen-Image, reduced to one frame).

- Flax blocks, channels-last float32: `conv`; the residual block `ResnetBlock`
  (`shortcut(x) + conv2(SiLU(norm2(conv1(SiLU(norm1(x))))))`, GroupNorm for FLUX, RMS norm for
  Qwen-Image); the 2× `Downsample` (pad (0, 1) bottom and right, 3×3 stride-2 conv) and `Upsample`
  (nearest ×2, 3×3 conv); the single-head `spatial_attention` of the mid blocks;
- `AutoencoderCodec`: a `GaussianCodec` around a channels-last autoencoder module;
- `read_folder`: config.json, tensors and weights file of a diffusers-format VAE folder.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from models.hf_weights import load_safetensors
from models.vae import GaussianCodec
from models.vaes import diffusers_folder, diffusers_weights_file

#: Builds a norm layer given its checkpoint name (`norm(name="norm1")`).
NormLayer = Callable[..., Callable[[jax.Array], jax.Array]]


def conv(features: int, kernel: int, name: str | None, stride: int = 1, padding: Any = "SAME") -> nn.Conv:
    """A square `kernel` convolution with float32 parameters and compute."""
    return nn.Conv(
        features,
        (kernel, kernel),
        strides=(stride, stride),
        padding=padding,
        dtype=jnp.float32,
        param_dtype=jnp.float32,
        name=name,
    )


class ResnetBlock(nn.Module):
    """`shortcut(x) + conv2(SiLU(norm2(conv1(SiLU(norm1(x))))))` (3×3 convs), the shortcut a 1×1
    `conv_shortcut` when the width changes; `norm` builds `norm1` and `norm2`. Dropout is inert."""

    out_channels: int
    norm: NormLayer

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        h = conv(self.out_channels, 3, "conv1")(nn.silu(self.norm(name="norm1")(x)))
        h = conv(self.out_channels, 3, "conv2")(nn.silu(self.norm(name="norm2")(h)))
        if x.shape[-1] != self.out_channels:
            x = conv(self.out_channels, 1, "conv_shortcut")(x)
        return x + h


class Downsample(nn.Module):
    """Pad (0, 1) on the bottom and right, then a 3×3 stride-2 conv `conv_name` (diffusers, padding 0)."""

    conv_name: str = "conv"

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        x = jnp.pad(x, ((0, 0), (0, 1), (0, 1), (0, 0)))
        return conv(x.shape[-1], 3, self.conv_name, stride=2, padding="VALID")(x)


class Upsample(nn.Module):
    """Nearest ×2, then a 3×3 conv `conv_name` to `features` channels (default: the input's)."""

    conv_name: str = "conv"
    features: int | None = None

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        x = jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)
        return conv(self.features or x.shape[-1], 3, self.conv_name)(x)


def spatial_attention(q: jax.Array, k: jax.Array, v: jax.Array) -> jax.Array:
    """Single-head `softmax(q·kᵀ/√C)·v` over all pixels; q, k, v (B, N, C) → (B, N, C)."""
    probs = jax.nn.softmax(jnp.einsum("bqc,bkc->bqk", q, k) / np.sqrt(q.shape[-1]), axis=-1)
    return jnp.einsum("bqk,bkc->bqc", probs, v)


class AutoencoderCodec(GaussianCodec):
    """A `GaussianCodec` whose network is `module`, a channels-last Flax autoencoder with methods
    `encode(x) -> (mean, logvar)` and `decode(z) -> image`; latents are channels-first outside it."""

    module: nn.Module

    def _moments(self, params: Any, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        moments = self.module.apply({"params": params}, x, method="encode")
        mean, logvar = cast(tuple[jax.Array, jax.Array], moments)
        return mean.transpose(0, 3, 1, 2), logvar.transpose(0, 3, 1, 2)

    def _decode_unit(self, params: Any, z: jax.Array) -> jax.Array:
        image = self.module.apply({"params": params}, z.transpose(0, 2, 3, 1), method="decode")
        return cast(jax.Array, image)


def read_folder(
    path: str | Path, subfolder: str = "vae"
) -> tuple[dict[str, Any], dict[str, np.ndarray], Path]:
    """config.json, every tensor and the weights file of a diffusers-format VAE folder (`path`, or
    `path/subfolder` for a pipeline root; see `models.vaes.diffusers_folder`)."""
    directory = diffusers_folder(path, subfolder)
    config = json.loads((directory / "config.json").read_text())
    weights = diffusers_weights_file(directory)
    return config, load_safetensors(weights), weights
