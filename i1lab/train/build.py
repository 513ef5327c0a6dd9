"""From a RunSpec to the frozen models training and sampling need: text encoders, VAE (the model config
is :func:`i1lab.spec.model.model_config`).

Every command that touches a model goes through here (training, checkpoint evaluation, searches,
``i1lab generate``, ``i1lab forward``, ``i1lab encode-text``, ``i1lab vae``), so every encoder and VAE
of the catalogue reaches all of them. Weights are found by :mod:`i1lab.spec.weights`; a frozen model is
loaded once per process and shared by every run that process executes.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import numpy as np

from i1lab.errors import I1labError
from i1lab.spec.catalog import TEXT_ENCODERS, VAES
from i1lab.spec.run import RunSpec, TextEncoderSpec


def caption_dropout(spec: RunSpec) -> float | tuple[float, ...]:
    """The training step's dropout probabilities (docs/design-space.md §4.3): ``train.caption_dropout`` as one
    decision shared by every encoder, or — when an encoder sets its own ``drop_prob`` — one independent
    probability per encoder (``train.caption_dropout`` for those that set none)."""
    encoders = spec.model.encoders
    if all(e.drop_prob is None for e in encoders):
        return spec.train.caption_dropout
    return tuple(spec.train.caption_dropout if e.drop_prob is None else e.drop_prob for e in encoders)


def load_text_encoder(enc: TextEncoderSpec) -> Any:
    """The frozen encoder ``enc`` names (``encode(captions) -> (features, mask)``), its weights found by
    :mod:`i1lab.spec.weights`; loaded once per process."""
    from i1lab.spec.weights import locate

    status = locate("text_encoder", enc.type)
    if not status.usable:
        raise I1labError(status.problem())
    return encoder_from(enc.type, status.path, enc.tokens, enc.dtype)


@functools.cache
def encoder_from(name: str, path: str | None, token_len: int, dtype: str) -> Any:
    """The catalogue encoder ``name`` read from ``path`` (checked to be of its family first), loaded once
    per process; the hash encoder needs no path."""
    info = TEXT_ENCODERS[name]
    if info.family is None:
        from models.text_encoders import HashWordEncoder

        return HashWordEncoder(dim=info.dim, token_len=token_len, seed=0)
    from models.text_encoders.families import check_folder, load_encoder

    assert path is not None
    options = {"system_prompt": True} if info.system_prompt else {}
    try:
        check_folder(info.family, path)
        return load_encoder(info.family, path, token_len=token_len, dtype=dtype, **options)
    except (ValueError, OSError) as exc:  # FolderMismatch and WeightMappingError are ValueErrors
        raise I1labError(f"text encoder {name} ({path}): {str(exc).splitlines()[0]}") from None


class TextEncoder:
    """The frozen text encoders of a run: captions -> ``(features, mask)``, float32 (B, L, D) and bool
    (B, L) for one encoder, tuples of them (one per encoder, in spec order) for several (§4.3)."""

    def __init__(self, spec: RunSpec) -> None:
        self.encoders = [load_text_encoder(e) for e in spec.model.encoders]

    def __call__(self, captions: Sequence[str]) -> tuple[Any, Any]:
        outs = [enc.encode(list(captions)) for enc in self.encoders]
        feats = tuple(np.asarray(f, np.float32) for f, _ in outs)
        masks = tuple(np.asarray(m, bool) for _, m in outs)
        if len(outs) == 1:
            return feats[0], masks[0]
        return feats, masks


def load_codec(name: str) -> Any:
    """The latent codec (VAE) ``name``, its weights found by :mod:`i1lab.spec.weights`; loaded once per
    process."""
    from i1lab.spec.weights import locate

    status = locate("vae", name)
    if not status.usable:
        raise I1labError(status.problem())
    return codec_from(name, status.path)


@functools.cache
def codec_from(name: str, path: str | None) -> Any:
    """The VAE ``name`` read from ``path`` (checked to be of its kind first), loaded once per process; the
    identity codec needs no path."""
    if path is None:
        from models.vae import IdentityVAE

        return IdentityVAE()
    from models.vaes import check_vae_folder, load_vae

    try:
        check_vae_folder(name, path)
        return load_vae(name, path)
    except (ValueError, OSError) as exc:  # VaeFolderMismatch and WeightMappingError are ValueErrors
        raise I1labError(f"VAE {name} ({path}): {str(exc).splitlines()[0]}") from None


def encode_images(spec: RunSpec, images: np.ndarray, rng: Any = None) -> np.ndarray:
    """uint8 (B, H, W, 3) images -> normalised model latents (B, C, h, w); with ``rng`` the posterior is
    sampled (training, docs/design-space.md §7), without it its mean."""
    return np.asarray(load_codec(spec.model.vae).encode(images, rng), np.float32)


def latent_shape(spec: RunSpec) -> Any:
    """The shape of the VAE moments a data source may store for this run (None: pixel space, no VAE)."""
    from i1lab.data.pipeline import LatentShape

    vae = VAES[spec.model.vae]
    if spec.model.vae == "identity":
        return None
    side = spec.data.resolution // vae.downsample
    return LatentShape(spec.model.vae, (2 * vae.channels, side, side))


def batch_latents(spec: RunSpec, rows: dict[str, np.ndarray], rng: Any = None) -> np.ndarray:
    """The normalised latents of a batch's rows (``image``, and ``moments``/``stored`` from
    :class:`~i1lab.data.pipeline.BatchStream`): rows whose source stores the VAE's posterior moments
    continue from them (no encoder pass), the others are encoded from their images; either way the
    posterior is sampled with ``rng`` exactly as :meth:`encode` samples it (docs/design-space.md §7)."""
    stored = np.asarray(rows.get("stored", np.zeros(len(rows["image"]), bool)), bool)
    if not stored.any():
        return encode_images(spec, rows["image"], rng)
    codec = load_codec(spec.model.vae)
    channels = VAES[spec.model.vae].channels
    if stored.all():
        moments = np.asarray(rows["moments"], np.float32)
    else:  # a batch mixing sources with and without stored moments: compute the missing rows' moments
        moments = np.array(rows["moments"], np.float32)
        mean, logvar = codec.moments(rows["image"][~stored])
        moments[~stored] = np.concatenate([np.asarray(mean), np.asarray(logvar)], axis=1)
    out = codec.from_moments(moments[:, :channels], moments[:, channels:], rng)
    return np.asarray(out, np.float32)


def decode_latents(spec: RunSpec, latents: np.ndarray) -> np.ndarray:
    """Normalised model latents (B, C, h, w) -> uint8 (B, H, W, 3) images."""
    return np.asarray(load_codec(spec.model.vae).decode(latents), np.uint8)
