"""The FLUX.2 VAE in Flax and its latent normalisation (DESIGN_SPACE §1, §7, §10).

Architecture: the diffusers `AutoencoderKL` encoder/decoder as configured for FLUX.2
(`AutoencoderKLFlux2`): block channels (128, 256, 512, 512), 2 resnets per encoder level (3 per
decoder level), GroupNorm(32, eps 1e-6) + SiLU, a mid block (resnet, single-head self-attention,
resnet), 1×1 `quant_conv` / `post_quant_conv`, 32 latent channels, 8× downsampling (three stride-2
convolutions with (0, 1, 0, 1) padding; nearest ×2 upsampling + conv in the decoder). The encoder
outputs a diagonal Gaussian (mean, log-variance clipped to [−30, 20]).

Latent normalisation ⚑ (§10): fold each 2×2 block into channels (128 channels, index
`c·4 + 2·dy + dx`), apply `(z − μ_k)/sqrt(σ²_k + 1e-4)`, unfold. Decoding inverts it exactly. The
128 statistics ship in `models/data/flux2_latent_stats.json` (the FLUX.2-dev VAE BatchNorm statistics
as listed by the i1 reference); `latent_stats_from_checkpoint` reads them from a checkpoint's
`bn.running_mean` / `bn.running_var` instead, and `Flux2VAE(…, stats=…)` accepts any pair.

Weights: `Flux2VAE.from_pretrained(path_or_repo)` reads a diffusers-format checkpoint
(`config.json` + `diffusion_pytorch_model.safetensors`), e.g. the `vae/` folder of
`black-forest-labs/FLUX.2-dev`; every tensor must map (the `bn` buffers become the statistics).

Images are channels-last uint8 `(B, H, W, 3)`; latents are channels-first float32
`(B, 32, H/8, W/8)`, normalised. The module itself works channels-last.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from models.hf_weights import default_module_path, load_safetensors, map_torch_state
from models.vae import pixels_to_unit, unit_to_pixels

#: eps of the FLUX.2 latent BatchNorm normalisation ⚑ (§10).
LATENT_EPS = 1e-4
STATS_FILE = Path(__file__).with_name("data") / "flux2_latent_stats.json"
WEIGHTS_NAME = "diffusion_pytorch_model.safetensors"
FLUX2_REPO = "black-forest-labs/FLUX.2-dev"


# ---------------------------------------------------------------------------- config
@dataclass(frozen=True)
class VAEConfig:
    """The fields of a diffusers `AutoencoderKL(Flux2)` config.json that shape the network."""

    in_channels: int = 3
    out_channels: int = 3
    block_out_channels: tuple[int, ...] = (128, 256, 512, 512)
    layers_per_block: int = 2
    latent_channels: int = 32
    norm_num_groups: int = 32
    use_quant_conv: bool = True
    use_post_quant_conv: bool = True
    mid_block_add_attention: bool = True
    batch_norm_eps: float = LATENT_EPS
    patch_size: tuple[int, int] = field(default=(2, 2))

    @property
    def downsample(self) -> int:
        """Spatial reduction factor, 2^(levels − 1) (8 for FLUX.2)."""
        return int(2 ** (len(self.block_out_channels) - 1))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> VAEConfig:
        """From a diffusers config.json dict (unknown keys such as `_class_name` are ignored)."""
        for key in ("down_block_types", "up_block_types"):
            kinds = set(data.get(key, ()))
            if kinds - {"DownEncoderBlock2D", "UpDecoderBlock2D"}:
                raise NotImplementedError(f"{key}={sorted(kinds)} is not supported")
        if data.get("act_fn", "silu") != "silu":
            raise NotImplementedError(f"act_fn={data['act_fn']!r} is not supported")
        fields: dict[str, Any] = {
            "in_channels": int(data.get("in_channels", 3)),
            "out_channels": int(data.get("out_channels", 3)),
            "block_out_channels": tuple(int(c) for c in data.get("block_out_channels", (128, 256, 512, 512))),
            "layers_per_block": int(data.get("layers_per_block", 2)),
            "latent_channels": int(data.get("latent_channels", 32)),
            "norm_num_groups": int(data.get("norm_num_groups", 32)),
            "use_quant_conv": bool(data.get("use_quant_conv", True)),
            "use_post_quant_conv": bool(data.get("use_post_quant_conv", True)),
            "mid_block_add_attention": bool(data.get("mid_block_add_attention", True)),
            "batch_norm_eps": float(data.get("batch_norm_eps", LATENT_EPS)),
            "patch_size": tuple(int(p) for p in data.get("patch_size", (2, 2))),
        }
        return cls(**fields)


#: The FLUX.2 VAE (`black-forest-labs/FLUX.2-dev`, subfolder `vae`).
FLUX2_VAE = VAEConfig()


# ---------------------------------------------------------------------------- latent normalisation
def load_latent_stats(path: str | Path = STATS_FILE) -> tuple[np.ndarray, np.ndarray]:
    """The packaged FLUX.2 (mean, var), each (128,) float32, indexed `c·4 + 2·dy + dx`."""
    data = json.loads(Path(path).read_text())
    return np.asarray(data["mean"], np.float32), np.asarray(data["var"], np.float32)


def latent_stats_from_checkpoint(tensors: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(mean, var) from a checkpoint's BatchNorm running statistics (`bn.running_mean/var`)."""
    return (
        np.asarray(tensors["bn.running_mean"], np.float32),
        np.asarray(tensors["bn.running_var"], np.float32),
    )


def patchify_latents(z: jax.Array) -> jax.Array:
    """(B, C, H, W) → (B, 4C, H/2, W/2), channel `c·4 + 2·dy + dx` holds pixel (2i + dy, 2j + dx)."""
    b, c, h, w = z.shape
    z = z.reshape(b, c, h // 2, 2, w // 2, 2).transpose(0, 1, 3, 5, 2, 4)
    return z.reshape(b, c * 4, h // 2, w // 2)


def unpatchify_latents(z: jax.Array) -> jax.Array:
    """Inverse of `patchify_latents`."""
    b, c4, h, w = z.shape
    z = z.reshape(b, c4 // 4, 2, 2, h, w).transpose(0, 1, 4, 2, 5, 3)
    return z.reshape(b, c4 // 4, h * 2, w * 2)


def normalize_latents(z: jax.Array, mean: ArrayLike, var: ArrayLike, eps: float = LATENT_EPS) -> jax.Array:
    """`(z − μ_k)/sqrt(σ²_k + eps)` in the 2×2-patchified space ⚑ (§10); (B, C, H, W) float32."""
    p = patchify_latents(jnp.asarray(z, jnp.float32))
    mu = jnp.asarray(mean, jnp.float32)[None, :, None, None]
    sd = jnp.sqrt(jnp.asarray(var, jnp.float32) + eps)[None, :, None, None]
    return unpatchify_latents((p - mu) / sd)


def denormalize_latents(z: jax.Array, mean: ArrayLike, var: ArrayLike, eps: float = LATENT_EPS) -> jax.Array:
    """Exact inverse of `normalize_latents`: `z·sqrt(σ²_k + eps) + μ_k` in patchified space."""
    p = patchify_latents(jnp.asarray(z, jnp.float32))
    mu = jnp.asarray(mean, jnp.float32)[None, :, None, None]
    sd = jnp.sqrt(jnp.asarray(var, jnp.float32) + eps)[None, :, None, None]
    return unpatchify_latents(p * sd + mu)


# ---------------------------------------------------------------------------- modules (channels-last)
def _conv(features: int, kernel: int, name: str | None, stride: int = 1, padding: Any = "SAME") -> nn.Conv:
    return nn.Conv(
        features,
        (kernel, kernel),
        strides=(stride, stride),
        padding=padding,
        dtype=jnp.float32,
        param_dtype=jnp.float32,
        name=name,
    )


def _group_norm(groups: int, name: str) -> nn.GroupNorm:
    return nn.GroupNorm(
        num_groups=groups, epsilon=1e-6, dtype=jnp.float32, param_dtype=jnp.float32, name=name
    )


class ResnetBlock(nn.Module):
    """GN → SiLU → conv3 → GN → SiLU → conv3, plus a 1×1 `conv_shortcut` when the width changes."""

    out_channels: int
    groups: int = 32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        h = _conv(self.out_channels, 3, "conv1")(nn.silu(_group_norm(self.groups, "norm1")(x)))
        h = _conv(self.out_channels, 3, "conv2")(nn.silu(_group_norm(self.groups, "norm2")(h)))
        if x.shape[-1] != self.out_channels:
            x = _conv(self.out_channels, 1, "conv_shortcut")(x)
        return x + h


class Downsample(nn.Module):
    """Pad (0, 1) on the bottom and right, then a stride-2 3×3 `conv` (diffusers, padding 0)."""

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        x = jnp.pad(x, ((0, 0), (0, 1), (0, 1), (0, 0)))
        return _conv(x.shape[-1], 3, "conv", stride=2, padding="VALID")(x)


class Upsample(nn.Module):
    """Nearest ×2, then a 3×3 `conv`."""

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        x = jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)
        return _conv(x.shape[-1], 3, "conv")(x)


class MidAttention(nn.Module):
    """Single-head self-attention over all positions: GN, to_q/k/v, softmax(qkᵀ/√C), to_out_0, +x."""

    groups: int = 32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        b, h, w, c = x.shape
        t = _group_norm(self.groups, "group_norm")(x).reshape(b, h * w, c)

        def dense(name: str, y: jax.Array) -> jax.Array:
            return nn.Dense(c, dtype=jnp.float32, param_dtype=jnp.float32, name=name)(y)

        q, k, v = dense("to_q", t), dense("to_k", t), dense("to_v", t)
        probs = jax.nn.softmax(jnp.einsum("bqc,bkc->bqk", q, k) / np.sqrt(c), axis=-1)
        out = dense("to_out_0", jnp.einsum("bqk,bkc->bqc", probs, v))
        return x + out.reshape(b, h, w, c)


class MidBlock(nn.Module):
    """resnets_0 → [attentions_0] → resnets_1."""

    channels: int
    groups: int = 32
    add_attention: bool = True

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        x = ResnetBlock(self.channels, self.groups, name="resnets_0")(x)
        if self.add_attention:
            x = MidAttention(self.groups, name="attentions_0")(x)
        return ResnetBlock(self.channels, self.groups, name="resnets_1")(x)


class _DownBlock(nn.Module):
    out_channels: int
    layers: int
    groups: int
    add_downsample: bool

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        for j in range(self.layers):
            x = ResnetBlock(self.out_channels, self.groups, name=f"resnets_{j}")(x)
        if self.add_downsample:
            x = Downsample(name="downsamplers_0")(x)
        return x


class _UpBlock(nn.Module):
    out_channels: int
    layers: int
    groups: int
    add_upsample: bool

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        for j in range(self.layers):
            x = ResnetBlock(self.out_channels, self.groups, name=f"resnets_{j}")(x)
        if self.add_upsample:
            x = Upsample(name="upsamplers_0")(x)
        return x


class Encoder(nn.Module):
    """Image (B, H, W, 3) in [−1, 1] → moments (B, H/8, W/8, 2·latent) (before `quant_conv`)."""

    config: VAEConfig

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        c = self.config
        chans, g = c.block_out_channels, c.norm_num_groups
        x = _conv(chans[0], 3, "conv_in")(x)
        for i, width in enumerate(chans):
            block = _DownBlock(width, c.layers_per_block, g, i < len(chans) - 1, name=f"down_blocks_{i}")
            x = block(x)
        x = MidBlock(chans[-1], g, c.mid_block_add_attention, name="mid_block")(x)
        x = nn.silu(_group_norm(g, "conv_norm_out")(x))
        return _conv(2 * c.latent_channels, 3, "conv_out")(x)


class Decoder(nn.Module):
    """Latent (B, h, w, latent) (after `post_quant_conv`) → image (B, 8h, 8w, 3)."""

    config: VAEConfig

    @nn.compact
    def __call__(self, z: jax.Array) -> jax.Array:
        c = self.config
        chans, g = list(reversed(c.block_out_channels)), c.norm_num_groups
        x = _conv(chans[0], 3, "conv_in")(z)
        x = MidBlock(chans[0], g, c.mid_block_add_attention, name="mid_block")(x)
        for i, width in enumerate(chans):
            block = _UpBlock(width, c.layers_per_block + 1, g, i < len(chans) - 1, name=f"up_blocks_{i}")
            x = block(x)
        x = nn.silu(_group_norm(g, "conv_norm_out")(x))
        return _conv(c.out_channels, 3, "conv_out")(x)


class AutoencoderKL(nn.Module):
    """`encode(x) -> (mean, logvar)` and `decode(z) -> image`, all channels-last float32.

    `__call__(x)` runs encode then decode of the mean (used by `init`).
    """

    config: VAEConfig

    def setup(self) -> None:
        c = self.config
        self.encoder = Encoder(c)
        self.decoder = Decoder(c)
        # named by their attributes: quant_conv, post_quant_conv
        self.quant_conv = _conv(2 * c.latent_channels, 1, None) if c.use_quant_conv else None
        self.post_quant_conv = _conv(c.latent_channels, 1, None) if c.use_post_quant_conv else None

    def encode(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        """Posterior mean and log-variance (clipped to [−30, 20]), each (B, h, w, latent)."""
        h = self.encoder(x)
        if self.quant_conv is not None:
            h = self.quant_conv(h)
        mean, logvar = jnp.split(h, 2, axis=-1)
        return mean, jnp.clip(logvar, -30.0, 20.0)

    def decode(self, z: jax.Array) -> jax.Array:
        """Latent (B, h, w, latent) → image (B, 8h, 8w, out_channels), roughly in [−1, 1]."""
        if self.post_quant_conv is not None:
            z = self.post_quant_conv(z)
        return self.decoder(z)

    def __call__(self, x: jax.Array) -> jax.Array:
        mean, _ = self.encode(x)
        return self.decode(mean)


def vae_module_path(torch_module: str) -> str | None:
    """diffusers names → `AutoencoderKL` paths (`down_blocks.0.resnets.1` → `down_blocks_0/resnets_1`)."""
    return default_module_path(torch_module)


def vae_ignored(torch_name: str) -> bool:
    """The latent BatchNorm buffers (`bn.*`) are statistics, not module parameters."""
    return torch_name.startswith("bn.")


def vae_param_shapes(config: VAEConfig, image_size: int = 64) -> Any:
    """The parameter tree of `AutoencoderKL(config)` as shapes (no allocation)."""
    x = jax.ShapeDtypeStruct((1, image_size, image_size, config.in_channels), jnp.float32)
    return jax.eval_shape(AutoencoderKL(config).init, jax.random.key(0), x)["params"]


# ---------------------------------------------------------------------------- the codec
class Flux2VAE:
    """The FLUX.2 latent codec: uint8 images ↔ normalised latents (a `models.vae.LatentCodec`).

    Args:
        params: `AutoencoderKL(config)` parameters.
        config: the architecture (default FLUX.2).
        stats: (mean, var) of the 2×2-patchified latent, each (4·latent_channels,); default: the
            packaged FLUX.2 statistics (`load_latent_stats`). A checkpoint's `bn.running_mean/var`
            can be passed instead (`from_pretrained` does so when they are present).
    """

    def __init__(
        self,
        params: Any,
        config: VAEConfig = FLUX2_VAE,
        stats: tuple[ArrayLike, ArrayLike] | None = None,
    ) -> None:
        self.config = config
        self.channels = config.latent_channels
        self.downsample = config.downsample
        self.params = jax.tree_util.tree_map(jnp.asarray, params)
        mean, var = load_latent_stats() if stats is None else stats
        self.mean = jnp.asarray(mean, jnp.float32)
        self.var = jnp.asarray(var, jnp.float32)
        expected = config.latent_channels * config.patch_size[0] * config.patch_size[1]
        if self.mean.shape != (expected,) or self.var.shape != (expected,):
            raise ValueError(f"latent statistics must have shape ({expected},), got {self.mean.shape}")
        self.eps = config.batch_norm_eps
        self.module = AutoencoderKL(config)
        self._encode = jax.jit(self._encode_impl)
        self._decode = jax.jit(self._decode_impl)

    @classmethod
    def init_random(cls, seed: int = 0, config: VAEConfig = FLUX2_VAE, **kwargs: Any) -> Flux2VAE:
        """Random weights drawn with numpy (fast; for tests and shape checks): kernels
        N(0, 1/fan_in), biases 0, norm scales 1."""
        rng = np.random.default_rng(seed)

        def draw(path: Any, leaf: Any) -> np.ndarray:
            name = getattr(path[-1], "key", "")
            if name == "kernel":
                fan_in = math.prod(leaf.shape[:-1])
                return rng.normal(0.0, fan_in**-0.5, leaf.shape).astype(np.float32)
            fill = 1.0 if name == "scale" else 0.0
            return np.full(leaf.shape, fill, np.float32)

        params = jax.tree_util.tree_map_with_path(draw, vae_param_shapes(config))
        return cls(params, config, **kwargs)

    @classmethod
    def from_pretrained(cls, path_or_repo: str | Path = FLUX2_REPO, subfolder: str = "vae") -> Flux2VAE:
        """Load a diffusers-format VAE: a local directory, or a Hugging Face repo id (e.g.
        `black-forest-labs/FLUX.2-dev`, fetched with `huggingface_hub.snapshot_download`; gated
        repos need a token) whose `subfolder` holds config.json and the safetensors weights."""
        directory = Path(path_or_repo)
        if not directory.exists():
            from huggingface_hub import snapshot_download

            root = snapshot_download(str(path_or_repo), allow_patterns=[f"{subfolder}/*"])
            directory = Path(root) / subfolder
        elif (directory / subfolder / "config.json").exists():
            directory = directory / subfolder
        config = VAEConfig.from_dict(json.loads((directory / "config.json").read_text()))
        tensors = load_safetensors(directory / WEIGHTS_NAME)
        params = map_torch_state(vae_param_shapes(config), tensors, vae_module_path, ignore=vae_ignored)
        stats = latent_stats_from_checkpoint(tensors) if "bn.running_mean" in tensors else None
        return cls(params, config, stats)

    def latent_size(self, image_size: int) -> int:
        """Side of the latent for a square image of side `image_size`."""
        return image_size // self.downsample

    def _encode_impl(self, params: Any, images: jax.Array, rng: jax.Array | None) -> jax.Array:
        x = pixels_to_unit(images)
        moments = self.module.apply({"params": params}, x, method=AutoencoderKL.encode)
        mean, logvar = cast(tuple[jax.Array, jax.Array], moments)
        z = mean
        if rng is not None:  # the posterior is sampled ⚑ (§7)
            z = mean + jnp.exp(0.5 * logvar) * jax.random.normal(rng, mean.shape, mean.dtype)
        return normalize_latents(z.transpose(0, 3, 1, 2), self.mean, self.var, self.eps)

    def _decode_impl(self, params: Any, latents: jax.Array) -> jax.Array:
        z = denormalize_latents(latents, self.mean, self.var, self.eps).transpose(0, 2, 3, 1)
        image = cast(jax.Array, self.module.apply({"params": params}, z, method=AutoencoderKL.decode))
        return unit_to_pixels(image)

    def encode(self, images: ArrayLike, rng: jax.Array | None = None) -> jax.Array:
        """uint8 (B, H, W, 3) → normalised float32 (B, 32, H/8, W/8).

        With `rng` the posterior is sampled (training ⚑); without it, its mean is used.
        """
        return self._encode(self.params, jnp.asarray(images), rng)

    def decode(self, latents: ArrayLike) -> jax.Array:
        """Normalised float32 (B, 32, h, w) → uint8 (B, 8h, 8w, 3) via `round(clip(x/2+0.5)·255)`."""
        return self._decode(self.params, jnp.asarray(latents, jnp.float32))
