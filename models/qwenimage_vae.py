"""The Qwen-Image VAE for single images, in Flax (docs/design-space.md §1, §7, §10).

Qwen-Image's VAE (diffusers `AutoencoderKLQwenImage`, a fine-tune of the Wan 2.1 video VAE) is a
causal 3-D network. For one frame, in float32, it reduces exactly to the 2-D network built here:

- causal 3-D convolution, kernel (kt, k, k): the input is zero-padded by kt − 1 frames *before*
  the frame and by (k − 1)/2 pixels on each side, so the single output frame sees only the last
  temporal tap: a 2-D convolution with `weight[:, :, kt − 1]` ("SAME" padding);
- RMS norm: `x / max(‖x‖₂ over channels, 1e-12) · √C · γ` (no bias);
- residual block: `shortcut(x) + conv2(SiLU(norm2(conv1(SiLU(norm1(x))))))`, the shortcut a 1×1
  conv when the width changes; dropout is inert;
- attention (mid block): RMS norm, 1×1 `to_qkv` (q, k, v = its channel thirds), single-head
  softmax(q·kᵀ/√C)·v over all pixels, 1×1 `proj`, plus the input;
- downsampling: pad (0, 1) bottom and right, 3×3 stride-2 conv (`resample.1`); upsampling: nearest
  ×2 then a 3×3 conv halving the width (`resample.1`). The temporal `time_conv` of the "3d"
  resamplers is never applied to the first frame (the cache is empty), so it is ignored;
- `quant_conv` / `post_quant_conv` are 1×1×1, i.e. 1×1 convs; the decoder output is clamped to
  [−1, 1] (as diffusers' `decode` does).

Encoder: conv_in, then per level `num_res_blocks` residual blocks and (except the last) a
downsample, flattened into `down_blocks.{i}`; mid block (resnet, attention, resnet); RMS norm, SiLU,
conv_out to 2·z_dim (mean, log-variance clipped to [−30, 20]). Decoder: conv_in, mid block, per level
`num_res_blocks + 1` residual blocks and (except the last) an upsample; RMS norm, SiLU, conv_out.

Latent normalisation (§10): per channel `(z − latents_mean)/latents_std` from the config.json.
Images are channels-last uint8 `(B, H, W, 3)`; latents channels-first float32 `(B, 16, H/8, W/8)`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from models.hf_weights import default_module_path, map_torch_state, safetensors_fingerprint
from models.kl_vae import (
    AutoencoderCodec,
    Downsample,
    ResnetBlock,
    Upsample,
    conv,
    read_folder,
    spatial_attention,
)


@dataclass(frozen=True)
class QwenVAEConfig:
    """The fields of a diffusers `AutoencoderKLQwenImage` config.json that shape the network."""

    latents_mean: tuple[float, ...]
    latents_std: tuple[float, ...]
    base_dim: int = 96
    z_dim: int = 16
    dim_mult: tuple[int, ...] = (1, 2, 4, 4)
    num_res_blocks: int = 2
    input_channels: int = 3

    @property
    def downsample(self) -> int:
        """Spatial reduction factor, 2^(levels − 1) (8 for Qwen-Image)."""
        return int(2 ** (len(self.dim_mult) - 1))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> QwenVAEConfig:
        """From a diffusers config.json dict; `latents_mean` and `latents_std` are required."""
        if data.get("attn_scales"):
            raise NotImplementedError(f"attn_scales={data['attn_scales']} is not supported")
        dim_mult = tuple(int(m) for m in data.get("dim_mult", (1, 2, 4, 4)))
        temporal = data.get("temperal_downsample", (False, True, True))
        if len(temporal) != len(dim_mult) - 1:
            raise ValueError(f"temperal_downsample has {len(temporal)} entries for {len(dim_mult)} levels")
        config = cls(
            latents_mean=tuple(float(v) for v in data["latents_mean"]),
            latents_std=tuple(float(v) for v in data["latents_std"]),
            base_dim=int(data.get("base_dim", 96)),
            z_dim=int(data.get("z_dim", 16)),
            dim_mult=dim_mult,
            num_res_blocks=int(data.get("num_res_blocks", 2)),
            input_channels=int(data.get("input_channels", 3)),
        )
        if len(config.latents_mean) != config.z_dim or len(config.latents_std) != config.z_dim:
            raise ValueError(f"latents_mean/latents_std must have z_dim={config.z_dim} entries")
        return config


# ---------------------------------------------------------------------------- modules (channels-last)
class RMSNorm(nn.Module):
    """`x / max(‖x‖₂, 1e-12) · √C · gamma` over the channel axis (diffusers `QwenImageRMS_norm`)."""

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        c = x.shape[-1]
        gamma = self.param("gamma", nn.initializers.ones, (c,), jnp.float32)
        norm = jnp.sqrt(jnp.sum(jnp.square(x), axis=-1, keepdims=True))
        return x / jnp.maximum(norm, 1e-12) * (c**0.5) * gamma


def _residual(out_channels: int, name: str) -> ResnetBlock:
    """`shortcut(x) + conv2(SiLU(norm2(conv1(SiLU(norm1(x))))))`, the norms RMS norms."""
    return ResnetBlock(out_channels, RMSNorm, name=name)


class Attention(nn.Module):
    """Single-head self-attention over all pixels: RMS norm, 1×1 `to_qkv`, softmax, 1×1 `proj`, +x."""

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        b, h, w, c = x.shape
        qkv = conv(3 * c, 1, "to_qkv")(RMSNorm(name="norm")(x)).reshape(b, h * w, 3 * c)
        out = spatial_attention(*jnp.split(qkv, 3, axis=-1)).reshape(b, h, w, c)
        return x + conv(c, 1, "proj")(out)


class MidBlock(nn.Module):
    """resnets_0 → attentions_0 → resnets_1."""

    channels: int

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        x = _residual(self.channels, "resnets_0")(x)
        x = Attention(name="attentions_0")(x)
        return _residual(self.channels, "resnets_1")(x)


class Encoder(nn.Module):
    """Image (B, H, W, 3) in [−1, 1] → moments (B, H/8, W/8, 2·z_dim) (before `quant_conv`)."""

    config: QwenVAEConfig

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        c = self.config
        dims = [c.base_dim * m for m in (1, *c.dim_mult)]
        x = conv(dims[0], 3, "conv_in")(x)
        index = 0
        for level, width in enumerate(dims[1:]):
            for _ in range(c.num_res_blocks):
                x = _residual(width, f"down_blocks_{index}")(x)
                index += 1
            if level < len(c.dim_mult) - 1:  # pad (0, 1), 3×3 stride-2 conv (`resample.1`)
                x = Downsample("resample_1", name=f"down_blocks_{index}")(x)
                index += 1
        x = MidBlock(dims[-1], name="mid_block")(x)
        x = nn.silu(RMSNorm(name="norm_out")(x))
        return conv(2 * c.z_dim, 3, "conv_out")(x)


class _UpBlock(nn.Module):
    out_channels: int
    layers: int
    add_upsample: bool

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        for j in range(self.layers):
            x = _residual(self.out_channels, f"resnets_{j}")(x)
        if self.add_upsample:  # nearest ×2, 3×3 conv to half the width (`resample.1`)
            x = Upsample("resample_1", self.out_channels // 2, name="upsamplers_0")(x)
        return x


class Decoder(nn.Module):
    """Latent (B, h, w, z_dim) (after `post_quant_conv`) → image (B, 8h, 8w, 3)."""

    config: QwenVAEConfig

    @nn.compact
    def __call__(self, z: jax.Array) -> jax.Array:
        c = self.config
        dims = [c.base_dim * m for m in (c.dim_mult[-1], *reversed(c.dim_mult))]
        x = conv(dims[0], 3, "conv_in")(z)
        x = MidBlock(dims[0], name="mid_block")(x)
        for i, width in enumerate(dims[1:]):
            last = i == len(c.dim_mult) - 1
            x = _UpBlock(width, c.num_res_blocks + 1, not last, name=f"up_blocks_{i}")(x)
        x = nn.silu(RMSNorm(name="norm_out")(x))
        return conv(c.input_channels, 3, "conv_out")(x)


class QwenImageAutoencoder(nn.Module):
    """`encode(x) -> (mean, logvar)` and `decode(z) -> image` in [−1, 1], all channels-last float32."""

    config: QwenVAEConfig

    def setup(self) -> None:
        c = self.config
        self.encoder = Encoder(c)
        self.decoder = Decoder(c)
        self.quant_conv = conv(2 * c.z_dim, 1, "quant_conv")
        self.post_quant_conv = conv(c.z_dim, 1, "post_quant_conv")

    def encode(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        """Posterior mean and log-variance (clipped to [−30, 20]), each (B, h, w, z_dim)."""
        mean, logvar = jnp.split(self.quant_conv(self.encoder(x)), 2, axis=-1)
        return mean, jnp.clip(logvar, -30.0, 20.0)

    def decode(self, z: jax.Array) -> jax.Array:
        """Latent (B, h, w, z_dim) → image (B, 8h, 8w, 3), clamped to [−1, 1]."""
        return jnp.clip(self.decoder(self.post_quant_conv(z)), -1.0, 1.0)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.decode(self.encode(x)[0])


# ---------------------------------------------------------------------------- weights
def single_frame_tensors(tensors: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The diffusers 3-D checkpoint reduced to its single-frame 2-D equivalent: 5-D conv kernels
    keep their last temporal tap (`w[:, :, -1]`), RMS-norm `gamma` (C, 1, 1[, 1]) becomes (C,),
    and the temporal resampling convs (`*.time_conv.*`) are dropped (never used on one frame)."""
    out: dict[str, np.ndarray] = {}
    for name, array in tensors.items():
        if ".time_conv." in name:
            continue
        array = np.asarray(array)
        if array.ndim == 5:
            array = array[:, :, -1]
        elif name.endswith(".gamma"):
            array = array.reshape(-1)
        out[name] = array
    return out


def qwen_param_shapes(config: QwenVAEConfig, image_size: int = 32) -> Any:
    """The parameter tree of `QwenImageAutoencoder(config)` as shapes (no allocation)."""
    x = jax.ShapeDtypeStruct((1, image_size, image_size, config.input_channels), jnp.float32)
    return jax.eval_shape(QwenImageAutoencoder(config).init, jax.random.key(0), x)["params"]


# ---------------------------------------------------------------------------- the codec
class QwenImageVAE(AutoencoderCodec):
    """The Qwen-Image latent codec (a `models.vae.LatentCodec`): single-frame, float32, latents
    normalised per channel `(z − latents_mean)/latents_std` (§10).

    Args:
        params: `QwenImageAutoencoder(config)` parameters.
        config: the architecture and the latent statistics.
        fingerprint: identity of the weights (`from_pretrained`: `qwenimage:` + safetensors fingerprint).
    """

    def __init__(self, params: Any, config: QwenVAEConfig, *, fingerprint: str) -> None:
        self.config = config
        self.channels = config.z_dim
        self.downsample = config.downsample
        self.module = QwenImageAutoencoder(config)
        self.mean = jnp.asarray(config.latents_mean, jnp.float32)[None, :, None, None]
        self.std = jnp.asarray(config.latents_std, jnp.float32)[None, :, None, None]
        super().__init__(params, fingerprint)

    @classmethod
    def from_pretrained(cls, path: str | Path, subfolder: str = "vae") -> QwenImageVAE:
        """Load a local diffusers `AutoencoderKLQwenImage` folder (or a pipeline root whose
        `subfolder` holds it); every tensor is mapped or, for `time_conv`, explicitly ignored."""
        config_dict, tensors, weights = read_folder(path, subfolder)
        config = QwenVAEConfig.from_dict(config_dict)
        params = map_torch_state(
            qwen_param_shapes(config), single_frame_tensors(tensors), default_module_path
        )
        return cls(params, config, fingerprint=f"qwenimage:{safetensors_fingerprint(weights)}")

    def normalize(self, z: jax.Array) -> jax.Array:
        """`(z − latents_mean)/latents_std` per channel (§10)."""
        return (jnp.asarray(z, jnp.float32) - self.mean) / self.std

    def denormalize(self, z: jax.Array) -> jax.Array:
        """Exact inverse of `normalize`: `z·latents_std + latents_mean`."""
        return jnp.asarray(z, jnp.float32) * self.std + self.mean
