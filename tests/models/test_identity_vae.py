"""IdentityVAE: pixel-space latents (docs/design-space.md §1, §10)."""

from __future__ import annotations

import jax
import numpy as np

from models.vae import IdentityVAE, LatentCodec


def test_round_trip_is_exact_and_layout_channels_first() -> None:
    vae = IdentityVAE()
    assert isinstance(vae, LatentCodec) and vae.channels == 3 and vae.downsample == 1
    images = np.random.default_rng(0).integers(0, 256, (2, 5, 7, 3), dtype=np.uint8)
    latents = np.asarray(vae.encode(images, jax.random.key(0)))
    assert latents.shape == (2, 3, 5, 7) and latents.dtype == np.float32
    assert latents.min() >= -1.0 and latents.max() <= 1.0
    np.testing.assert_allclose(latents[1, 2, 4, 6], images[1, 4, 6, 2] / 127.5 - 1.0, rtol=1e-6)
    np.testing.assert_array_equal(np.asarray(vae.decode(latents)), images)
    assert vae.latent_size(256) == 256


def test_decode_clips_and_rounds() -> None:
    latents = np.array([-3.0, -1.0, 0.0, 0.999, 3.0], np.float32).reshape(1, 1, 1, 5).repeat(3, axis=1)
    pixels = np.asarray(IdentityVAE().decode(latents))
    assert pixels.dtype == np.uint8 and pixels.shape == (1, 1, 5, 3)
    np.testing.assert_array_equal(pixels[0, 0, :, 0], [0, 0, 128, 255, 255])
