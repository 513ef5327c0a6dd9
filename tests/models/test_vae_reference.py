"""The three VAEs of §10 (flux2, flux, qwenimage) against diffusers on the same random weights.

Each tiny model is built by diffusers' own class, saved with `save_pretrained` and loaded with
`models.vaes.load_vae`. On random uint8 images: (a) the normalised posterior mean, (b) the decoded
float image and the uint8 pixels, (c) the sampled posterior `mean + std·ε` for the codec's ε,
all compared in float32 with max |Δ| ≤ 1e-4 × mean |reference|. The reference normalisations are
written here in numpy, independently of the codecs.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from models.hf_weights import safetensors_fingerprint
from models.vae import GaussianCodec, IdentityVAE
from models.vaes import VAE_KINDS, VaeFolderMismatch, check_vae_folder, load_vae

TOL = 1e-4
LEVELS = 3  # ↓4: two down/upsampling stages
Norm = Callable[[np.ndarray], np.ndarray]


def diffusers_vae(kind: str, rng: np.random.Generator) -> Any:
    """A tiny random-weight diffusers VAE of `kind`; norm scales and biases perturbed too."""
    import torch
    from diffusers import AutoencoderKL, AutoencoderKLFlux2, AutoencoderKLQwenImage

    torch.manual_seed(int(rng.integers(1 << 30)))
    kl: dict[str, Any] = {
        "block_out_channels": (8, 16, 16),
        "layers_per_block": 1,
        "norm_num_groups": 4,
        "latent_channels": 4,
        "down_block_types": ("DownEncoderBlock2D",) * LEVELS,
        "up_block_types": ("UpDecoderBlock2D",) * LEVELS,
        "sample_size": 32,
    }
    model: Any
    if kind == "flux2":
        model = AutoencoderKLFlux2(**kl)
        model.bn.running_mean.copy_(torch.randn(16) * 0.3)
        model.bn.running_var.copy_(torch.rand(16) * 2 + 0.5)
    elif kind == "flux":  # FLUX.1 layout: no quant convs; non-default factors, read from config.json
        model = AutoencoderKL(
            **kl, use_quant_conv=False, use_post_quant_conv=False, shift_factor=0.25, scaling_factor=0.5
        )
    else:
        model = AutoencoderKLQwenImage(
            base_dim=8,
            z_dim=4,
            dim_mult=[1, 2, 2],
            num_res_blocks=1,
            temperal_downsample=[False, True],  # one "3d" resampler each way: its time_conv is ignored
            latents_mean=[float(v) for v in rng.normal(0, 0.5, 4)],
            latents_std=[float(v) for v in rng.uniform(0.5, 2.0, 4)],
        )
    with torch.no_grad():
        for name, param in model.named_parameters():
            if param.ndim == 1 or name.endswith("gamma"):
                param.add_(0.2 * torch.randn_like(param))
    return model.eval()


def reference_norms(kind: str, model: Any) -> tuple[Norm, Norm]:
    """(normalise, denormalise) of raw channels-first latents as the diffusers pipelines do (§10)."""
    cfg = model.config
    if kind == "flux2":  # 2×2 patchify, channel c·4 + 2·dy + dx, BatchNorm statistics
        mean = model.bn.running_mean.numpy()[None, :, None, None]
        sd = np.sqrt(model.bn.running_var.numpy() + cfg.batch_norm_eps)[None, :, None, None]

        def patch(z: np.ndarray) -> np.ndarray:
            b, c, h, w = z.shape
            return (
                z.reshape(b, c, h // 2, 2, w // 2, 2)
                .transpose(0, 1, 3, 5, 2, 4)
                .reshape(b, 4 * c, h // 2, w // 2)
            )

        def unpatch(p: np.ndarray) -> np.ndarray:
            b, c4, h, w = p.shape
            return (
                p.reshape(b, c4 // 4, 2, 2, h, w)
                .transpose(0, 1, 4, 2, 5, 3)
                .reshape(b, c4 // 4, 2 * h, 2 * w)
            )

        return (lambda z: unpatch((patch(z) - mean) / sd)), (lambda z: unpatch(patch(z) * sd + mean))
    if kind == "flux":
        shift, scale = cfg.shift_factor, cfg.scaling_factor
        return (lambda z: (z - shift) * scale), (lambda z: z / scale + shift)
    mu = np.asarray(cfg.latents_mean, np.float32)[None, :, None, None]
    std = np.asarray(cfg.latents_std, np.float32)[None, :, None, None]
    return (lambda z: (z - mu) / std), (lambda z: z * std + mu)


def rel_err(got: Any, want: np.ndarray) -> float:
    """max |got − want| / mean |want|."""
    return float(np.abs(np.asarray(got, np.float64) - want).max() / np.abs(want).mean())


@pytest.mark.parametrize("kind", VAE_KINDS)
def test_codec_matches_diffusers(kind: str, tmp_path: Path) -> None:
    import torch

    rng = np.random.default_rng(VAE_KINDS.index(kind))
    model = diffusers_vae(kind, rng)
    # flux is saved sharded, so the shard index is read too
    model.save_pretrained(tmp_path, **({"max_shard_size": "30KB"} if kind == "flux" else {}))
    weights = next(tmp_path.glob("diffusion_pytorch_model.safetensors*"))
    assert (kind == "flux") == weights.name.endswith(".index.json")
    # the qwenimage checkpoint holds temporal tensors the single frame never uses (ignored by name)
    assert (kind == "qwenimage") == any(".time_conv." in name for name in model.state_dict())
    codec = load_vae(kind, tmp_path)
    assert isinstance(codec, GaussianCodec)
    assert codec.channels == check_vae_folder(kind, tmp_path) == 4 and codec.downsample == 4
    assert codec.fingerprint == f"{kind}:{safetensors_fingerprint(weights)}"

    images = rng.integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)
    x = torch.from_numpy(images.astype(np.float32) / 127.5 - 1.0).permute(0, 3, 1, 2)
    video = kind == "qwenimage"  # one frame of a (B, C, T, H, W) video
    normalise, denormalise = reference_norms(kind, model)
    with torch.no_grad():
        posterior = model.encode(x[:, :, None] if video else x).latent_dist
        mean, std = (t[:, :, 0] if video else t for t in (posterior.mean, posterior.std))
        mean, std = mean.numpy(), std.numpy()
        latents = normalise(mean)
        z = torch.from_numpy(denormalise(latents))
        decoded = model.decode(z[:, :, None] if video else z).sample
        decoded = (decoded[:, :, 0] if video else decoded).permute(0, 2, 3, 1).numpy()

    # (a) encode: the normalised posterior mean
    got = np.asarray(codec.encode(images))
    assert got.shape == (2, 4, 8, 8) and got.dtype == np.float32
    err_encode = rel_err(got, latents)
    # (b) decode from the same normalised latents: float image before quantisation, then uint8
    err_decode = rel_err(codec.decode_unit(latents), decoded)
    pixels = np.asarray(codec.decode(latents))
    want = np.round(np.clip(decoded / 2 + 0.5, 0, 1) * 255)
    assert pixels.dtype == np.uint8 and pixels.shape == images.shape
    assert np.abs(pixels.astype(np.int64) - want).max() <= 1
    assert float(np.mean((decoded > -1) & (decoded < 1))) > 0.05  # not all saturated
    # (c) sampled: exactly mean + std·ε with ε = jax.random.normal(rng, latent shape)
    key = jax.random.key(11)
    eps = np.asarray(jax.random.normal(key, mean.shape, jnp.float32))
    sampled = np.asarray(codec.encode(images, key))
    err_sample = rel_err(sampled, normalise(mean + std * eps))
    assert np.abs(sampled - latents).mean() > 0.1 * np.abs(latents).mean()
    print(f"{kind}: relative errors encode {err_encode:.2e} decode {err_decode:.2e} sampled {err_sample:.2e}")
    assert max(err_encode, err_decode, err_sample) <= TOL


def test_folder_checks(tmp_path: Path) -> None:
    """check_vae_folder reads config.json only; mismatches raise VaeFolderMismatch with one line."""
    folder = tmp_path / "pipeline" / "vae"  # a pipeline root with its vae/ subfolder is accepted
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({"_class_name": "AutoencoderKLQwenImage", "z_dim": 16}))
    with pytest.raises(VaeFolderMismatch, match="no diffusion_pytorch_model"):
        check_vae_folder("qwenimage", tmp_path / "pipeline")
    (folder / "diffusion_pytorch_model.safetensors").write_bytes(b"")  # never read
    assert check_vae_folder("qwenimage", tmp_path / "pipeline") == 16
    for kind in ("flux", "flux2"):
        with pytest.raises(VaeFolderMismatch, match="_class_name 'AutoencoderKLQwenImage'") as info:
            check_vae_folder(kind, folder)
        assert "\n" not in str(info.value) and isinstance(info.value, ValueError)
    with pytest.raises(VaeFolderMismatch, match=r"no config\.json"):
        check_vae_folder("flux", tmp_path)
    with pytest.raises(VaeFolderMismatch, match="_class_name"):
        load_vae("flux2", folder)
    with pytest.raises(ValueError, match="unknown VAE kind"):
        check_vae_folder("sdxl", folder)
    assert check_vae_folder("identity", None) == 3 and isinstance(load_vae("identity"), IdentityVAE)
