"""The one VAE loader: a diffusers-format folder → a `LatentCodec` (DESIGN_SPACE §10).

| kind      | diffusers `_class_name` | latent channels (config.json) | normalisation                      |
| flux2     | AutoencoderKLFlux2      | `latent_channels` (32)        | BatchNorm stats, 2×2-patchified    |
| flux      | AutoencoderKL           | `latent_channels` (16)        | `(z − shift_factor)·scaling_factor`|
| qwenimage | AutoencoderKLQwenImage  | `z_dim` (16)                  | `(z − latents_mean)/latents_std`   |

A folder holds `config.json` and `diffusion_pytorch_model.safetensors` (or its sharded
`….safetensors.index.json`); a pipeline root whose `vae/` subfolder holds them is accepted too.
The kind "identity" (`IdentityVAE`, pixel space) takes no folder.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from models.vae import IdentityVAE, LatentCodec, diffusers_folder, diffusers_weights_file

#: The VAE kinds of the design space (§10), each with the diffusers classes its config.json may name.
VAE_CLASSES: dict[str, tuple[str, ...]] = {
    "flux2": ("AutoencoderKLFlux2",),
    "flux": ("AutoencoderKL",),
    "qwenimage": ("AutoencoderKLQwenImage",),
}
VAE_KINDS: tuple[str, ...] = tuple(VAE_CLASSES)
#: latent-channel key of each kind's config.json and the diffusers class default when it is absent
_CHANNELS_KEY: dict[str, tuple[str, int]] = {
    "flux2": ("latent_channels", 32),
    "flux": ("latent_channels", 4),
    "qwenimage": ("z_dim", 16),
}


class VaeFolderMismatch(ValueError):
    """The folder is not a checkpoint of the requested VAE kind (one-line message)."""


def _folder_config(kind: str, path: str | Path) -> tuple[Path, dict[str, Any]]:
    """The VAE folder and its config.json, checked against `kind` (no weights read)."""
    if kind not in VAE_CLASSES:
        raise ValueError(f"unknown VAE kind {kind!r}; expected one of {(*VAE_KINDS, 'identity')}")
    folder = diffusers_folder(path)
    config_file = folder / "config.json"
    if not config_file.is_file():
        raise VaeFolderMismatch(f"{kind} VAE: no config.json in {path}")
    try:
        config = json.loads(config_file.read_text())
    except json.JSONDecodeError as error:
        raise VaeFolderMismatch(f"{kind} VAE: unreadable {config_file}: {error}") from None
    name = config.get("_class_name") if isinstance(config, dict) else None
    if name not in VAE_CLASSES[kind]:
        expected = " or ".join(VAE_CLASSES[kind])
        raise VaeFolderMismatch(f"{kind} VAE: {config_file} has _class_name {name!r}, expected {expected}")
    try:
        diffusers_weights_file(folder)
    except FileNotFoundError as error:
        raise VaeFolderMismatch(f"{kind} VAE: {error}") from None
    return folder, config


def check_vae_folder(kind: str, path: str | Path | None) -> int:
    """Latent channels of the `kind` VAE in `path`, read from its config.json after checking that
    its `_class_name` belongs to `kind` and that its weights file exists (no weights are read).

    "identity" needs no folder (`path` is ignored) and has 3 channels.

    Raises:
        VaeFolderMismatch: no config.json, another class, or no weights file.
        ValueError: an unknown kind.
    """
    if kind == "identity":
        return IdentityVAE.channels
    if path is None:
        raise VaeFolderMismatch(f"{kind} VAE: no folder given")
    _, config = _folder_config(kind, path)
    key, default = _CHANNELS_KEY[kind]
    return int(config.get(key, default))


def load_vae(kind: str, path: str | Path | None = None) -> LatentCodec:
    """The codec of `kind` (`VAE_KINDS` or "identity") with the weights of the folder `path`."""
    if kind == "identity":
        return IdentityVAE()
    if path is None:
        raise VaeFolderMismatch(f"{kind} VAE: no folder given")
    folder, _ = _folder_config(kind, path)
    if kind == "flux2":
        from models.flux2_vae import Flux2VAE

        return Flux2VAE.from_pretrained(folder)
    if kind == "flux":
        from models.flux2_vae import FluxVAE

        return FluxVAE.from_pretrained(folder)
    from models.qwenimage_vae import QwenImageVAE

    return QwenImageVAE.from_pretrained(folder)
