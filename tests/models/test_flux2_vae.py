"""The FLUX.2 VAE in Flax and its patchified BatchNorm latent normalisation (docs/design-space.md §7, §10).

Offline: random weights only. The diffusers weight layout is written out by hand below (names and
PyTorch shapes, independent of the module code) and must load with every tensor mapped.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from safetensors.numpy import save_file

from models.flux2_vae import (
    FLUX2_VAE,
    AutoencoderKL,
    Flux2VAE,
    VAEConfig,
    denormalize_latents,
    load_latent_stats,
    normalize_latents,
    patchify_latents,
    unpatchify_latents,
    vae_ignored,
    vae_module_path,
    vae_param_shapes,
)
from models.hf_weights import WeightMappingError, map_torch_state
from models.vae import LatentCodec

SMALL = VAEConfig(block_out_channels=(8, 16), layers_per_block=1, latent_channels=4, norm_num_groups=4)


def diffusers_layout(c: VAEConfig) -> dict[str, tuple[int, ...]]:
    """Every tensor of a diffusers `AutoencoderKLFlux2` checkpoint with its PyTorch shape."""
    out: dict[str, tuple[int, ...]] = {}

    def conv(prefix: str, cin: int, cout: int, k: int) -> None:
        out[f"{prefix}.weight"], out[f"{prefix}.bias"] = (cout, cin, k, k), (cout,)

    def norm(prefix: str, ch: int) -> None:
        out[f"{prefix}.weight"], out[f"{prefix}.bias"] = (ch,), (ch,)

    def resnet(prefix: str, cin: int, cout: int) -> None:
        norm(f"{prefix}.norm1", cin)
        conv(f"{prefix}.conv1", cin, cout, 3)
        norm(f"{prefix}.norm2", cout)
        conv(f"{prefix}.conv2", cout, cout, 3)
        if cin != cout:
            conv(f"{prefix}.conv_shortcut", cin, cout, 1)

    def mid(prefix: str, ch: int) -> None:
        resnet(f"{prefix}.resnets.0", ch, ch)
        norm(f"{prefix}.attentions.0.group_norm", ch)
        for name in ("to_q", "to_k", "to_v", "to_out.0"):
            conv_like = f"{prefix}.attentions.0.{name}"
            out[f"{conv_like}.weight"], out[f"{conv_like}.bias"] = (ch, ch), (ch,)
        resnet(f"{prefix}.resnets.1", ch, ch)

    ch, latent = c.block_out_channels, c.latent_channels
    conv("encoder.conv_in", 3, ch[0], 3)
    cin = ch[0]
    for i, cout in enumerate(ch):
        for j in range(c.layers_per_block):
            resnet(f"encoder.down_blocks.{i}.resnets.{j}", cin if j == 0 else cout, cout)
        if i < len(ch) - 1:
            conv(f"encoder.down_blocks.{i}.downsamplers.0.conv", cout, cout, 3)
        cin = cout
    mid("encoder.mid_block", ch[-1])
    norm("encoder.conv_norm_out", ch[-1])
    conv("encoder.conv_out", ch[-1], 2 * latent, 3)
    conv("quant_conv", 2 * latent, 2 * latent, 1)
    conv("post_quant_conv", latent, latent, 1)
    rev = list(reversed(ch))
    conv("decoder.conv_in", latent, rev[0], 3)
    mid("decoder.mid_block", rev[0])
    prev = rev[0]
    for i, cout in enumerate(rev):
        for j in range(c.layers_per_block + 1):
            resnet(f"decoder.up_blocks.{i}.resnets.{j}", prev if j == 0 else cout, cout)
        if i < len(rev) - 1:
            conv(f"decoder.up_blocks.{i}.upsamplers.0.conv", cout, cout, 3)
        prev = cout
    norm("decoder.conv_norm_out", ch[0])
    conv("decoder.conv_out", ch[0], 3, 3)
    out["bn.running_mean"], out["bn.running_var"] = (4 * latent,), (4 * latent,)
    out["bn.num_batches_tracked"] = ()
    return out


def test_patchify_layout_and_normalisation_round_trip() -> None:
    rng = np.random.default_rng(0)
    z = rng.standard_normal((2, 3, 4, 6)).astype(np.float32)
    p = np.asarray(patchify_latents(jnp.asarray(z)))
    assert p.shape == (2, 12, 2, 3)
    for c in range(3):
        for dy in range(2):
            for dx in range(2):
                # ⚑ channel c·4 + 2·dy + dx
                np.testing.assert_array_equal(p[:, c * 4 + 2 * dy + dx], z[:, c, dy::2, dx::2])
    np.testing.assert_array_equal(np.asarray(unpatchify_latents(jnp.asarray(p))), z)

    mean, var = rng.normal(0, 1, 12), rng.uniform(0.5, 3, 12)
    normed = np.asarray(normalize_latents(jnp.asarray(z), mean, var))
    want = (p - mean[None, :, None, None]) / np.sqrt(var[None, :, None, None] + 1e-4)  # eps 1e-4 ⚑
    np.testing.assert_allclose(np.asarray(patchify_latents(jnp.asarray(normed))), want, rtol=1e-5, atol=1e-5)
    back = np.asarray(denormalize_latents(jnp.asarray(normed), mean, var))
    np.testing.assert_allclose(back, z, rtol=1e-5, atol=1e-5)


def test_packaged_flux2_statistics() -> None:
    mean, var = load_latent_stats()
    assert mean.shape == var.shape == (128,) and mean.dtype == np.float32
    assert np.all(var > 2.5) and np.all(var < 3.6) and np.abs(mean).max() < 0.1
    assert math.isclose(float(mean[0]), -0.06761776655912399, rel_tol=1e-6)
    # a latent whose patch channel k is constant μ_k normalises to exactly zero
    z = unpatchify_latents(jnp.broadcast_to(jnp.asarray(mean)[None, :, None, None], (1, 128, 2, 2)))
    assert float(jnp.abs(normalize_latents(z, mean, var)).max()) < 1e-6


def test_flux2_architecture_shapes_and_layout() -> None:
    """The full FLUX.2 VAE: 84.0 M parameters, every diffusers tensor maps onto the module."""
    assert FLUX2_VAE.latent_channels == 32 and FLUX2_VAE.downsample == 8
    template = vae_param_shapes(FLUX2_VAE)
    layout = diffusers_layout(FLUX2_VAE)
    count = sum(math.prod(s) for n, s in layout.items() if not n.startswith("bn."))
    assert count == sum(math.prod(x.shape) for x in jax.tree_util.tree_leaves(template)) == 84_046_115
    tensors = {name: np.broadcast_to(np.float32(0), shape) for name, shape in layout.items()}
    params = map_torch_state(template, tensors, vae_module_path, ignore=vae_ignored)  # raises on leftovers
    assert params["encoder"]["down_blocks_0"]["downsamplers_0"]["conv"]["kernel"].shape == (3, 3, 128, 128)
    x = jax.ShapeDtypeStruct((1, 64, 64, 3), jnp.float32)
    moments = jax.eval_shape(
        lambda p, v: AutoencoderKL(FLUX2_VAE).apply({"params": p}, v, method=AutoencoderKL.encode),
        template,
        x,
    )
    assert moments[0].shape == moments[1].shape == (1, 8, 8, 32)


@pytest.fixture(scope="module")
def small_vae() -> Flux2VAE:
    rng = np.random.default_rng(1)
    stats = (rng.normal(0, 0.1, 16).astype(np.float32), rng.uniform(0.5, 2.0, 16).astype(np.float32))
    return Flux2VAE.init_random(0, SMALL, stats=stats)


def test_encode_decode_shapes_and_normalisation(small_vae: Flux2VAE) -> None:
    assert isinstance(small_vae, LatentCodec) and small_vae.channels == 4 and small_vae.downsample == 2
    images = np.random.default_rng(2).integers(0, 256, (2, 16, 16, 3), dtype=np.uint8)
    latents = np.asarray(small_vae.encode(images))
    assert latents.shape == (2, 4, 8, 8) and latents.dtype == np.float32
    # the latent is the posterior mean, normalised; denormalising gives the raw module output back
    x = jnp.asarray(images, jnp.float32) / 127.5 - 1.0
    encode = jax.jit(lambda p, v: AutoencoderKL(SMALL).apply({"params": p}, v, method=AutoencoderKL.encode))
    mean, _ = encode(small_vae.params, x)
    raw = denormalize_latents(jnp.asarray(latents), small_vae.mean, small_vae.var)
    np.testing.assert_allclose(np.asarray(raw), np.asarray(mean).transpose(0, 3, 1, 2), rtol=1e-4, atol=1e-5)
    # with a key the posterior is sampled ⚑
    sampled = np.asarray(small_vae.encode(images, jax.random.key(3)))
    assert sampled.shape == latents.shape and np.abs(sampled - latents).max() > 1e-3
    pixels = np.asarray(small_vae.decode(latents))
    assert pixels.shape == (2, 16, 16, 3) and pixels.dtype == np.uint8


def test_diffusers_checkpoint_loads_with_every_tensor_mapped(tmp_path: Path, small_vae: Flux2VAE) -> None:
    rng = np.random.default_rng(4)
    layout = diffusers_layout(SMALL)
    tensors = {name: rng.normal(0, 0.2, shape).astype(np.float32) for name, shape in layout.items()}
    tensors["bn.running_var"] = np.abs(tensors["bn.running_var"]) + 1.0
    tensors["bn.num_batches_tracked"] = np.array(7, np.int64)
    vae_dir = tmp_path / "vae"
    vae_dir.mkdir()
    save_file(tensors, str(vae_dir / "diffusion_pytorch_model.safetensors"))
    config = {
        "_class_name": "AutoencoderKLFlux2",
        "block_out_channels": [8, 16],
        "layers_per_block": 1,
        "latent_channels": 4,
        "norm_num_groups": 4,
        "down_block_types": ["DownEncoderBlock2D"] * 2,
        "up_block_types": ["UpDecoderBlock2D"] * 2,
        "batch_norm_eps": 1e-4,
        "patch_size": [2, 2],
    }
    (vae_dir / "config.json").write_text(json.dumps(config))

    vae = Flux2VAE.from_pretrained(tmp_path)  # the repo root: its vae/ subfolder is used
    assert vae.config == SMALL
    np.testing.assert_array_equal(np.asarray(vae.mean), tensors["bn.running_mean"])  # stats from the BN
    kernel = vae.params["decoder"]["up_blocks_0"]["resnets_0"]["conv1"]["kernel"]
    np.testing.assert_array_equal(
        np.asarray(kernel), tensors["decoder.up_blocks.0.resnets.0.conv1.weight"].transpose(2, 3, 1, 0)
    )
    attn = vae.params["encoder"]["mid_block"]["attentions_0"]["to_out_0"]["kernel"]
    want = tensors["encoder.mid_block.attentions.0.to_out.0.weight"].T
    np.testing.assert_array_equal(np.asarray(attn), want)
    leaves = jax.tree_util.tree_leaves(vae.params)
    assert len(leaves) == len([n for n in layout if not n.startswith("bn.")])

    template = vae_param_shapes(SMALL)
    for broken, message in (
        ({k: v for k, v in tensors.items() if k != "decoder.conv_out.bias"}, "missing 1"),
        ({**tensors, "encoder.extra.weight": np.ones(3, np.float32)}, "unexpected 1"),
    ):
        with pytest.raises(WeightMappingError, match=message):
            map_torch_state(template, broken, vae_module_path, ignore=vae_ignored)
    assert vae.decode(np.zeros((1, 4, 4, 4), np.float32)).shape == (1, 8, 8, 3)
