"""`i1lab generate`: images for prompts from a checkpoint, as PNGs in a folder.

The run's own sampler settings (``sampling`` of its spec: steps, CFG scale and rescale, interval,
time grid, seed) apply unless overridden. Sampling uses the EMA weights (docs/design-space.md §8), the run's
text encoder and VAE, and the evaluator's sampler (:func:`i1lab.evaluation.evaluate.sample`): the initial
noise of a prompt's image depends only on the seed and the prompt's text (the n-th repeat of a text: its
text and n; `i1lab.evaluation.evaluate.prompt_noise_ids`), so the images do not change with
``--batch-size`` or with the order of the prompts.

``--size`` samples at another resolution than the one trained: the frozen sinusoidal table is
recomputed for it and image positions are scaled by 256/size, as for the reference's resolution
stages. Outputs: ``<out>/<index:05d>.png``, ``prompts.jsonl`` (index, prompt, file) and
``generation.json`` (checkpoint, step, settings); each file is written under a temporary name and
renamed when complete.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import ValidationError

from i1lab.errors import I1labError
from i1lab.spec.catalog import VAES
from i1lab.spec.run import RunSpec, SamplingSpec


@dataclass
class Generated:
    folder: Path
    step: int
    files: list[Path]
    spec: RunSpec


def read_prompts(prompts: list[str] | None, prompts_file: Path | None) -> list[str]:
    """The prompts of ``--prompt`` (repeatable) and ``--prompts FILE`` (one per line; ``.jsonl``: objects
    with a ``prompt`` field), in that order; blank lines are skipped."""
    out = [p for p in (prompts or [])]
    if prompts_file is not None:
        try:
            text = Path(prompts_file).read_text(encoding="utf-8")
        except OSError as exc:
            raise I1labError(f"{prompts_file}: cannot read ({exc.strerror or exc})") from None
        for n, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            if Path(prompts_file).suffix == ".jsonl":
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise I1labError(f"{prompts_file}:{n}: not JSON ({exc.msg})") from None
                if not isinstance(record, dict) or not isinstance(record.get("prompt"), str):
                    raise I1labError(f"{prompts_file}:{n}: expected an object with a string 'prompt'")
                out.append(record["prompt"])
            else:
                out.append(line.strip())
    if not out:
        raise I1labError("no prompts: give --prompt TEXT (repeatable) or --prompts FILE")
    return out


def sampling_spec(
    spec: RunSpec,
    *,
    cfg_scale: float | None = None,
    cfg_rescale: float | None = None,
    steps: int | None = None,
    seed: int | None = None,
    size: int | None = None,
) -> RunSpec:
    """``spec`` with the given sampler settings (and resolution) replaced, validated."""
    update: dict[str, Any] = {}
    for key, value in (
        ("cfg_scale", cfg_scale),
        ("cfg_rescale", cfg_rescale),
        ("steps", steps),
        ("seed", seed),
    ):
        if value is not None:
            update[key] = value
    raw = spec.model_dump(mode="json")
    raw["sampling"] = {**raw["sampling"], **update}
    if size is not None:
        factor = VAES[spec.model.vae].downsample * spec.model.patch_size
        if size < factor or size % factor:
            raise I1labError(
                f"--size {size} is not a positive multiple of {factor} (VAE factor x patch size)"
            )
        raw["data"] = {**raw["data"], "resolution": size}
    try:
        SamplingSpec.model_validate(raw["sampling"])
        return RunSpec.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        what = "sampling setting" if exc.title == "SamplingSpec" else "setting"
        raise I1labError(f"invalid {what}: {where + ': ' if where else ''}{first['msg']}") from None


def _check_runnable(spec: RunSpec) -> None:
    """One line naming the first frozen model (text encoder, VAE) whose weights are not usable here."""
    from i1lab.spec.weights import weight_problems

    problems = weight_problems(spec)
    if problems:
        raise I1labError(problems[0])


def _params_at(spec: RunSpec, params: Any) -> Any:
    """``params`` with the frozen sinusoidal table recomputed for ``spec``'s resolution."""
    if "pos_embed" not in params:
        return params
    import jax.numpy as jnp

    from i1lab.spec.model import model_config
    from models.posemb import pos_embed_table

    return {**params, "pos_embed": jnp.asarray(pos_embed_table(model_config(spec)))}


def _save_png(image: np.ndarray, path: Path) -> None:
    from PIL import Image

    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        Image.fromarray(image).save(tmp, format="PNG")
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise I1labError(f"cannot write {path}: {exc.strerror or exc}") from None


def _write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise I1labError(f"cannot write {path}: {exc.strerror or exc}") from None


def generate_images(
    checkpoint: Path,
    prompts: list[str],
    out: Path,
    *,
    cfg_scale: float | None = None,
    cfg_rescale: float | None = None,
    steps: int | None = None,
    seed: int | None = None,
    size: int | None = None,
    batch_size: int = 8,
    progress: bool = True,
    console: Any = None,
) -> Generated:
    """Sample one image per prompt from ``checkpoint`` (EMA weights) into ``out`` (see the module doc)."""
    from i1lab.evaluation.evaluate import prompt_noise_ids, sample
    from i1lab.evaluation.forward import load_checkpoint

    if batch_size < 1:
        raise I1labError(f"--batch-size must be >= 1, got {batch_size}")
    loaded = load_checkpoint(checkpoint, only="ema")  # the EMA weights alone
    spec = sampling_spec(
        loaded.spec, cfg_scale=cfg_scale, cfg_rescale=cfg_rescale, steps=steps, seed=seed, size=size
    )
    _check_runnable(spec)
    from i1lab.spec.weights import check_recorded

    check_recorded(loaded.spec, loaded.folder)
    params = loaded.state.ema
    if spec.data.resolution != loaded.spec.data.resolution:
        params = _params_at(spec, params)
    out = Path(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise I1labError(f"cannot create {out}: {exc.strerror or exc}") from None
    files: list[Path] = []
    s = spec.sampling

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    columns = (TextColumn("generating"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, disable=not progress, transient=False) as bar:
        task = bar.add_task("images", total=len(prompts))
        noise_ids = prompt_noise_ids(prompts, 1)
        for start in range(0, len(prompts), batch_size):
            chunk = prompts[start : start + batch_size]
            ids = noise_ids[start : start + batch_size]
            images = sample(spec, params, chunk, ids, seed=s.seed, batch_size=batch_size)
            for i, image in enumerate(images):
                path = out / f"{start + i:05d}.png"
                _save_png(image, path)
                files.append(path)
            bar.advance(task, len(chunk))
    index = "".join(
        json.dumps({"index": i, "prompt": p, "file": f.name}, ensure_ascii=False) + "\n"
        for i, (p, f) in enumerate(zip(prompts, files, strict=True))
    )
    _write_text(out / "prompts.jsonl", index)
    record = {
        "checkpoint": str(loaded.folder),
        "step": loaded.step,
        "weights": "ema",
        "resolution": spec.data.resolution,
        "sampling": s.model_dump(mode="json"),
        "n_images": len(files),
    }
    _write_text(out / "generation.json", json.dumps(record, indent=2) + "\n")
    return Generated(out, loaded.step, files, spec)
