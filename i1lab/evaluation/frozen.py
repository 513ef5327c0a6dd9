"""The frozen models on their own: ``i1lab weights``, ``i1lab encode-text`` and ``i1lab vae``.

For inspection and numerical checks outside a run: what the weights directory holds, one encoder's
features for a file of captions, one VAE's latents for images (or images for latents). The same
loaders as training (:mod:`models.text_encoders.families`, :mod:`models.vaes`) read the folder given.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from i1lab.errors import I1labError
from i1lab.evaluation.forward import write_npz
from i1lab.i1import.sources import check_npz_headers
from i1lab.spec.catalog import TEXT_ENCODERS, VAES
from i1lab.spec.weights import Kind, locate
from i1lab.train.build import codec_from, encoder_from

#: Captions longer than this many characters are refused (a line that is a whole file is a mistake).
MAX_CAPTION_CHARS = 100_000


def read_captions(path: Path) -> list[str]:
    """One caption per line of a UTF-8 text file (trailing newline ignored; empty lines are captions)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise I1labError(f"{path}: no such file") from None
    except UnicodeDecodeError as exc:
        raise I1labError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    except OSError as exc:
        raise I1labError(f"{path}: cannot read ({exc.strerror or exc})") from None
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    if not lines:
        raise I1labError(f"{path}: no captions (one per line)")
    for i, line in enumerate(lines, 1):
        if len(line) > MAX_CAPTION_CHARS:
            raise I1labError(
                f"{path}:{i}: caption of {len(line):,} characters (at most {MAX_CAPTION_CHARS:,})"
            )
    return [line.removesuffix("\r") for line in lines]


def _folder(kind: Kind, name: str, weights: Path | None) -> str | None:
    """The folder to read: ``--weights`` when given (checked to exist), else the weights directory's."""
    if weights is not None:
        if not Path(weights).is_dir():
            raise I1labError(f"--weights {weights}: no such folder")
        return str(Path(weights).resolve())
    status = locate(kind, name)
    if not status.usable:
        raise I1labError(f"{status.problem()}; or give --weights DIR")
    return status.path


def encode_text(
    name: str,
    captions_file: Path,
    out: Path,
    *,
    weights: Path | None = None,
    token_len: int | None = None,
    dtype: str = "bfloat16",
    batch_size: int = 32,
) -> tuple[int, ...]:
    """Write ``features`` (N, L, D) float32 and ``mask`` (N, L) bool of ``name`` for each caption of
    ``captions_file`` to ``out`` (.npz, atomically). Returns the features' shape."""
    if name not in TEXT_ENCODERS:
        raise I1labError(f"unknown text encoder {name!r}; known: {', '.join(sorted(TEXT_ENCODERS))}")
    if dtype not in ("bfloat16", "float32"):
        raise I1labError(f"--dtype must be bfloat16 or float32, got {dtype!r}")
    if token_len is not None and not 1 <= token_len <= 4096:
        raise I1labError(f"--token-len must be between 1 and 4096, got {token_len}")
    info = TEXT_ENCODERS[name]
    length = token_len or info.tokens
    captions = read_captions(captions_file)
    encoder = encoder_from(name, _folder("text_encoder", name, weights), length, dtype)
    feats, masks = [], []
    for start in range(0, len(captions), batch_size):
        f, m = encoder.encode(captions[start : start + batch_size])
        feats.append(np.asarray(f, np.float32))
        masks.append(np.asarray(m, bool))
    features = np.concatenate(feats)
    write_npz(Path(out), features=features, mask=np.concatenate(masks))
    return tuple(features.shape)


def _read_array(path: Path, key: str, what: str) -> np.ndarray:
    check_npz_headers(path)
    try:
        archive = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise I1labError(f"{path}: no such file") from None
    except (OSError, ValueError) as exc:
        raise I1labError(f"{path}: not a readable .npz file ({str(exc).splitlines()[0]})") from None
    if not hasattr(archive, "files"):
        raise I1labError(f"{path}: expected an .npz archive with {key} {what}")
    with archive:
        if key not in archive.files:
            raise I1labError(
                f"{path}: no array {key!r} (expected {key} {what}; found {', '.join(archive.files)})"
            )
        return np.asarray(archive[key])


def vae_code(
    direction: str, name: str, inputs: Path, out: Path, *, weights: Path | None = None
) -> tuple[int, ...]:
    """``encode``: ``images`` (N, H, W, 3) uint8 -> ``latents`` (N, C, H/8, W/8) float32, normalised as the
    model sees them (the posterior mean); ``moments``: the same images -> ``moments`` (N, 2C, H/8, W/8),
    the raw posterior mean and log-variance that a data source stores for training; ``decode``: normalised
    latents -> images. Writes ``out`` atomically and returns the output's shape."""
    if direction not in ("encode", "moments", "decode"):
        raise I1labError(f"expected encode, moments or decode, got {direction!r}")
    if name not in VAES:
        raise I1labError(f"unknown VAE {name!r}; known: {', '.join(VAES)}")
    info = VAES[name]
    if direction == "moments" and name == "identity":
        raise I1labError("the identity VAE has no posterior: moments exist for flux2, flux and qwenimage")
    if direction in ("encode", "moments"):
        images = _read_array(inputs, "images", "(N, H, W, 3) uint8")
        if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
            raise I1labError(
                f"{inputs}: images has shape {images.shape} {images.dtype}, expected (N, H, W, 3) uint8"
            )
        if images.shape[1] % info.downsample or images.shape[2] % info.downsample:
            raise I1labError(
                f"{inputs}: images of {images.shape[1]}x{images.shape[2]} px are not a multiple of "
                f"{info.downsample} ({name} downsamples by {info.downsample})"
            )
        codec = codec_from(name, _folder("vae", name, weights))
        if direction == "moments":
            mean, logvar = codec.moments(images)
            result = np.concatenate([np.asarray(mean), np.asarray(logvar)], axis=1).astype(np.float32)
            write_npz(Path(out), moments=result)
            return tuple(result.shape)
        result = np.asarray(codec.encode(images, None), np.float32)
        write_npz(Path(out), latents=result)
        return tuple(result.shape)
    latents = _read_array(inputs, "latents", f"(N, {info.channels}, h, w) float")
    if latents.ndim != 4 or latents.shape[1] != info.channels or latents.dtype.kind != "f":
        raise I1labError(
            f"{inputs}: latents has shape {latents.shape} {latents.dtype}, "
            f"expected (N, {info.channels}, h, w) float"
        )
    if not np.all(np.isfinite(latents)):
        raise I1labError(f"{inputs}: latents holds NaN or Inf")
    codec = codec_from(name, _folder("vae", name, weights))
    images = np.asarray(codec.decode(latents.astype(np.float32)), np.uint8)
    write_npz(Path(out), images=images)
    return tuple(images.shape)
