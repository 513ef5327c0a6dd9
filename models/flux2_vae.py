"""The FLUX.2 and FLUX.1 VAEs in Flax and their latent normalisations (docs/design-space.md §1, §7, §10).

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
(`config.json` + `diffusion_pytorch_model.safetensors`, or its sharded index), e.g. the `vae/`
folder of `black-forest-labs/FLUX.2-dev`; every tensor must map (the `bn` buffers become the
statistics).

FLUX.1 (§10, `FluxVAE`): the same module family read from the diffusers `AutoencoderKL` config
(FLUX.1-dev: 16 latent channels, no `quant_conv` / `post_quant_conv`), latents normalised
`(z − 0.1159)·0.3611` (the config's `shift_factor` / `scaling_factor` when present).

Images are channels-last uint8 `(B, H, W, 3)`; latents are channels-first float32
`(B, C, H/8, W/8)`, normalised. The module itself works channels-last.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

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

#: eps of the FLUX.2 latent BatchNorm normalisation ⚑ (§10).
LATENT_EPS = 1e-4
STATS_FILE = Path(__file__).with_name("data") / "flux2_latent_stats.json"
FLUX2_REPO = "black-forest-labs/FLUX.2-dev"
#: FLUX.1 latent normalisation `(z − shift)·scale` (§10), unless the config.json says otherwise.
FLUX1_SHIFT = 0.1159
FLUX1_SCALE = 0.3611


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
    #: the decoder's own widths (`AutoencoderKLFlux2`), when they differ from `block_out_channels`
    decoder_block_out_channels: tuple[int, ...] | None = None

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
        if data.get("decoder_block_out_channels"):
            fields["decoder_block_out_channels"] = tuple(int(c) for c in data["decoder_block_out_channels"])
        return cls(**fields)


#: The FLUX.2 VAE (`black-forest-labs/FLUX.2-dev`, subfolder `vae`).
FLUX2_VAE = VAEConfig()
#: The FLUX.1 VAE (`black-forest-labs/FLUX.1-dev`, subfolder `vae`): 16 channels, no quant convs.
FLUX1_VAE = VAEConfig(latent_channels=16, use_quant_conv=False, use_post_quant_conv=False)


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
def _group_norm(groups: int, name: str) -> nn.GroupNorm:
    return nn.GroupNorm(
        num_groups=groups, epsilon=1e-6, dtype=jnp.float32, param_dtype=jnp.float32, name=name
    )


def _resnet(out_channels: int, groups: int, name: str) -> ResnetBlock:
    """GN → SiLU → conv3 → GN → SiLU → conv3, plus a 1×1 `conv_shortcut` when the width changes."""
    return ResnetBlock(out_channels, partial(_group_norm, groups), name=name)


class MidAttention(nn.Module):
    """Single-head self-attention over all positions: GN, to_q/k/v, softmax(qkᵀ/√C), to_out_0, +x."""

    groups: int = 32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        b, h, w, c = x.shape
        t = _group_norm(self.groups, "group_norm")(x).reshape(b, h * w, c)

        def dense(name: str, y: jax.Array) -> jax.Array:
            return nn.Dense(c, dtype=jnp.float32, param_dtype=jnp.float32, name=name)(y)

        out = dense("to_out_0", spatial_attention(dense("to_q", t), dense("to_k", t), dense("to_v", t)))
        return x + out.reshape(b, h, w, c)


class MidBlock(nn.Module):
    """resnets_0 → [attentions_0] → resnets_1."""

    channels: int
    groups: int = 32
    add_attention: bool = True

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        x = _resnet(self.channels, self.groups, "resnets_0")(x)
        if self.add_attention:
            x = MidAttention(self.groups, name="attentions_0")(x)
        return _resnet(self.channels, self.groups, "resnets_1")(x)


class _DownBlock(nn.Module):
    out_channels: int
    layers: int
    groups: int
    add_downsample: bool

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        for j in range(self.layers):
            x = _resnet(self.out_channels, self.groups, f"resnets_{j}")(x)
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
            x = _resnet(self.out_channels, self.groups, f"resnets_{j}")(x)
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
        x = conv(chans[0], 3, "conv_in")(x)
        for i, width in enumerate(chans):
            block = _DownBlock(width, c.layers_per_block, g, i < len(chans) - 1, name=f"down_blocks_{i}")
            x = block(x)
        x = MidBlock(chans[-1], g, c.mid_block_add_attention, name="mid_block")(x)
        x = nn.silu(_group_norm(g, "conv_norm_out")(x))
        return conv(2 * c.latent_channels, 3, "conv_out")(x)


class Decoder(nn.Module):
    """Latent (B, h, w, latent) (after `post_quant_conv`) → image (B, 8h, 8w, 3)."""

    config: VAEConfig

    @nn.compact
    def __call__(self, z: jax.Array) -> jax.Array:
        c = self.config
        chans, g = list(reversed(c.decoder_block_out_channels or c.block_out_channels)), c.norm_num_groups
        x = conv(chans[0], 3, "conv_in")(z)
        x = MidBlock(chans[0], g, c.mid_block_add_attention, name="mid_block")(x)
        for i, width in enumerate(chans):
            block = _UpBlock(width, c.layers_per_block + 1, g, i < len(chans) - 1, name=f"up_blocks_{i}")
            x = block(x)
        x = nn.silu(_group_norm(g, "conv_norm_out")(x))
        return conv(c.out_channels, 3, "conv_out")(x)


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
        self.quant_conv = conv(2 * c.latent_channels, 1, None) if c.use_quant_conv else None
        self.post_quant_conv = conv(c.latent_channels, 1, None) if c.use_post_quant_conv else None

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


# ---------------------------------------------------------------------------- the codecs
class AutoencoderKLCodec(AutoencoderCodec):
    """`AutoencoderKL(config)` as a `GaussianCodec`; subclasses choose the latent normalisation."""

    def __init__(self, params: Any, config: VAEConfig, *, fingerprint: str) -> None:
        self.config = config
        self.channels = config.latent_channels
        self.downsample = config.downsample
        self.module = AutoencoderKL(config)
        super().__init__(params, fingerprint)

    @staticmethod
    def map_params(config: VAEConfig, tensors: dict[str, np.ndarray]) -> dict[str, Any]:
        """The module parameters from a diffusers state dict; every tensor but `bn.*` must map."""
        return map_torch_state(vae_param_shapes(config), tensors, vae_module_path, ignore=vae_ignored)


class Flux2VAE(AutoencoderKLCodec):
    """The FLUX.2 latent codec: uint8 images ↔ normalised latents (a `models.vae.LatentCodec`).

    Args:
        params: `AutoencoderKL(config)` parameters.
        config: the architecture (default FLUX.2).
        stats: (mean, var) of the 2×2-patchified latent, each (4·latent_channels,); default: the
            packaged FLUX.2 statistics (`load_latent_stats`). A checkpoint's `bn.running_mean/var`
            can be passed instead (`from_pretrained` does so when they are present).
        fingerprint: identity of the weights (`from_pretrained`: `flux2:` + safetensors fingerprint).
    """

    def __init__(
        self,
        params: Any,
        config: VAEConfig = FLUX2_VAE,
        stats: tuple[ArrayLike, ArrayLike] | None = None,
        *,
        fingerprint: str,
    ) -> None:
        mean, var = load_latent_stats() if stats is None else stats
        self.mean = jnp.asarray(mean, jnp.float32)
        self.var = jnp.asarray(var, jnp.float32)
        expected = config.latent_channels * config.patch_size[0] * config.patch_size[1]
        if self.mean.shape != (expected,) or self.var.shape != (expected,):
            raise ValueError(f"latent statistics must have shape ({expected},), got {self.mean.shape}")
        self.eps = config.batch_norm_eps
        super().__init__(params, config, fingerprint=fingerprint)

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
        return cls(params, config, fingerprint=f"flux2:random-{seed}", **kwargs)

    @classmethod
    def from_pretrained(cls, path_or_repo: str | Path = FLUX2_REPO, subfolder: str = "vae") -> Flux2VAE:
        """Load a diffusers-format VAE: a local directory (the VAE folder, or a pipeline root whose
        `subfolder` holds it), or a Hugging Face repo id (e.g. `black-forest-labs/FLUX.2-dev`,
        fetched with `huggingface_hub.snapshot_download`; gated repos need a token)."""
        directory = Path(path_or_repo)
        if not directory.exists():
            from huggingface_hub import snapshot_download

            root = snapshot_download(str(path_or_repo), allow_patterns=[f"{subfolder}/*"])
            directory = Path(root) / subfolder
        config_dict, tensors, weights = read_folder(directory, subfolder)
        config = VAEConfig.from_dict(config_dict)
        stats = latent_stats_from_checkpoint(tensors) if "bn.running_mean" in tensors else None
        fingerprint = f"flux2:{safetensors_fingerprint(weights)}"
        return cls(cls.map_params(config, tensors), config, stats, fingerprint=fingerprint)

    def normalize(self, z: jax.Array) -> jax.Array:
        """`(z − μ_k)/sqrt(σ²_k + eps)` in the 2×2-patchified space ⚑ (§10)."""
        return normalize_latents(z, self.mean, self.var, self.eps)

    def denormalize(self, z: jax.Array) -> jax.Array:
        """Exact inverse of `normalize`."""
        return denormalize_latents(z, self.mean, self.var, self.eps)


class FluxVAE(AutoencoderKLCodec):
    """The FLUX.1 latent codec (§10): the same `AutoencoderKL` family (16 latent channels, no quant
    convs), latents normalised `(z − shift)·scale`.

    Args:
        params: `AutoencoderKL(config)` parameters.
        config: the architecture (default FLUX.1, `FLUX1_VAE`).
        shift, scale: the normalisation (default FLUX.1's 0.1159 and 0.3611).
        fingerprint: identity of the weights (`from_pretrained`: `flux:` + safetensors fingerprint).
    """

    def __init__(
        self,
        params: Any,
        config: VAEConfig,
        shift: float = FLUX1_SHIFT,
        scale: float = FLUX1_SCALE,
        *,
        fingerprint: str,
    ) -> None:
        self.shift = float(shift)
        self.scale = float(scale)
        super().__init__(params, config, fingerprint=fingerprint)

    @classmethod
    def from_pretrained(cls, path: str | Path, subfolder: str = "vae") -> FluxVAE:
        """Load a local diffusers `AutoencoderKL` folder (or a pipeline root whose `subfolder` holds
        it, e.g. a FLUX.1-dev snapshot); `shift_factor` / `scaling_factor` of its config.json replace
        the FLUX.1 defaults when present (not null)."""
        config_dict, tensors, weights = read_folder(path, subfolder)
        config = VAEConfig.from_dict(config_dict)
        shift = config_dict.get("shift_factor")
        scale = config_dict.get("scaling_factor")
        return cls(
            cls.map_params(config, tensors),
            config,
            FLUX1_SHIFT if shift is None else float(shift),
            FLUX1_SCALE if scale is None else float(scale),
            fingerprint=f"flux:{safetensors_fingerprint(weights)}",
        )

    def normalize(self, z: jax.Array) -> jax.Array:
        """`(z − shift)·scale` (§10): shift first, then scale."""
        return (jnp.asarray(z, jnp.float32) - self.shift) * self.scale

    def denormalize(self, z: jax.Array) -> jax.Array:
        """Exact inverse of `normalize`: `z/scale + shift`."""
        return jnp.asarray(z, jnp.float32) / self.scale + self.shift
