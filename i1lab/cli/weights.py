"""``i1lab weights``, ``encode-text`` and ``vae``: the frozen text encoders and VAEs on their own."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from i1lab.cli.common import JsonOpt, out

vae_app = typer.Typer(help="A VAE on its own: images to latents and back.", no_args_is_help=True)

VaeWeightsOpt = Annotated[
    Path | None,
    typer.Option("--weights", help="the VAE's diffusers-format folder (default: the weights dir's)"),
]
VaeInOpt = Annotated[Path, typer.Option("--in", help="input .npz")]
VaeOutOpt = Annotated[Path, typer.Option("--out", help="output .npz")]


def weights_cmd(
    as_json: JsonOpt = False,
) -> None:
    """What the weights directory holds: every text encoder and VAE of the catalogue, present, missing
    or mismatched, with the folder read (or looked for) and its feature width / latent channels."""
    from i1lab.spec.weights import inventory, weights_dir

    rows = inventory()
    if as_json:
        payload = {"weights_dir": str(weights_dir()), "weights": [r.model_dump() for r in rows]}
        sys.stdout.write(json.dumps(payload, indent=2) + "\n")
        return
    from rich.table import Table

    table = Table(title=f"weights: {weights_dir()}")
    for col in ("kind", "name", "state", "D / ch", "folder or reason"):
        table.add_column(col, overflow="fold")
    styles = {"present": "green", "builtin": "green", "missing": "yellow", "mismatched": "red"}
    for r in rows:
        where = r.detail if r.state == "mismatched" else (r.path or "built in")
        dim = str(r.dim) if r.dim is not None and r.state != "missing" else "—"
        table.add_row(r.kind, r.name, f"[{styles[r.state]}]{r.state}[/]", dim, where)
    out.print(table)


def encode_text_cmd(
    encoder: Annotated[str, typer.Argument(help="catalogue name, e.g. T5Gemma, minilm, clip-large")],
    captions: Annotated[Path, typer.Option(help="text file, one caption per line")],
    out_path: Annotated[Path, typer.Option("--out", help="output .npz: features (N, L, D), mask (N, L)")],
    weights: Annotated[
        Path | None,
        typer.Option(help="the encoder's Hugging Face-format folder (default: the weights dir's)"),
    ] = None,
    token_len: Annotated[
        int | None, typer.Option(help="tokens per caption (default: the catalogue's)")
    ] = None,
    dtype: Annotated[str, typer.Option(help="bfloat16 (as training) or float32")] = "bfloat16",
) -> None:
    """One text encoder's features for a file of captions: last hidden state, float32, and the mask."""
    from i1lab.evaluation.frozen import encode_text

    shape = encode_text(encoder, captions, out_path, weights=weights, token_len=token_len, dtype=dtype)
    out.print(f"wrote {out_path}: features {shape}, mask {shape[:2]}")


@vae_app.command("encode")
def vae_encode(
    vae: Annotated[str, typer.Argument(help="flux2, flux, qwenimage or identity")],
    inputs: VaeInOpt,
    out_path: VaeOutOpt,
    weights: VaeWeightsOpt = None,
) -> None:
    """``images`` (N, H, W, 3) uint8 -> ``latents`` (N, C, H/8, W/8) float32, normalised as the model sees
    them (posterior mean)."""
    from i1lab.evaluation.frozen import vae_code

    shape = vae_code("encode", vae, inputs, out_path, weights=weights)
    out.print(f"wrote {out_path}: latents {shape}")


@vae_app.command("moments")
def vae_moments(
    vae: Annotated[str, typer.Argument(help="flux2, flux or qwenimage")],
    inputs: VaeInOpt,
    out_path: VaeOutOpt,
    weights: VaeWeightsOpt = None,
) -> None:
    """``images`` (N, H, W, 3) uint8 -> ``moments`` (N, 2C, H/8, W/8) float32: the raw posterior mean and
    log-variance, what a WebDataset sample stores as ``KEY.latents.<vae>.<resolution>.npy`` so that
    training samples the posterior from it instead of running the encoder."""
    from i1lab.evaluation.frozen import vae_code

    shape = vae_code("moments", vae, inputs, out_path, weights=weights)
    out.print(f"wrote {out_path}: moments {shape}")


@vae_app.command("decode")
def vae_decode(
    vae: Annotated[str, typer.Argument(help="flux2, flux, qwenimage or identity")],
    inputs: VaeInOpt,
    out_path: VaeOutOpt,
    weights: VaeWeightsOpt = None,
) -> None:
    """``latents`` (N, C, h, w) normalised -> ``images`` (N, 8h, 8w, 3) uint8."""
    from i1lab.evaluation.frozen import vae_code

    shape = vae_code("decode", vae, inputs, out_path, weights=weights)
    out.print(f"wrote {out_path}: images {shape}")
