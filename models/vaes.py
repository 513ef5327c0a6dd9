"""The one VAE loader: a diffusers-format folder → a `LatentCodec` (docs/design-space.md §10).

| kind      | diffusers `_class_name` | latent channels (config.json) | normalisation                      |
| flux2     | AutoencoderKLFlux2      | `latent_channels` (32)        | BatchNorm stats, 2×2-patchified    |
| flux      | AutoencoderKL           | `latent_channels` (16)        | `(z − shift_factor)·scaling_factor`|
| qwenimage | AutoencoderKLQwenImage  | `z_dim` (16)                  | `(z − latents_mean)/latents_std`   |

A folder holds `config.json` and `diffusion_pytorch_model.safetensors` (or its sharded
`….safetensors.index.json`); a pipeline root whose `vae/` subfolder holds them is accepted too.
The kind "identity" (`IdentityVAE`, pixel space) takes no folder. Checking a folder imports no JAX.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from models.vae import LatentCodec

#: The weights of a diffusers-format VAE folder: one file, or a shard index (tried in this order).
WEIGHTS_NAMES = ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.safetensors.index.json")
#: Latent channels of the identity codec (pixel space).
IDENTITY_CHANNELS = 3

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


def diffusers_folder(path: str | Path, subfolder: str = "vae") -> Path:
    """The folder holding a VAE's config.json: `path` itself, or `path/subfolder` when `path` is a
    pipeline root (e.g. a FLUX.2-dev snapshot, whose VAE lies in `vae/`)."""
    path = Path(path)
    if not (path / "config.json").exists() and (path / subfolder / "config.json").exists():
        return path / subfolder
    return path


def diffusers_weights_file(folder: str | Path) -> Path:
    """The safetensors file (or shard index) of a diffusers-format folder; FileNotFoundError if none."""
    for name in WEIGHTS_NAMES:
        if (Path(folder) / name).exists():
            return Path(folder) / name
    raise FileNotFoundError(f"no {' or '.join(WEIGHTS_NAMES)} in {folder}")


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
        return IDENTITY_CHANNELS
    if path is None:
        raise VaeFolderMismatch(f"{kind} VAE: no folder given")
    _, config = _folder_config(kind, path)
    key, default = _CHANNELS_KEY[kind]
    return int(config.get(key, default))


def load_vae(kind: str, path: str | Path | None = None) -> LatentCodec:
    """The codec of `kind` (`VAE_KINDS` or "identity") with the weights of the folder `path`."""
    if kind == "identity":
        from models.vae import IdentityVAE

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
