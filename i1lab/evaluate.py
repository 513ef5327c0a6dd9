"""Evaluating a checkpoint: sample a benchmark's prompts with the run's sampling settings, judge, score.

Generation uses ``models/`` (EMA weights, the run's sampler settings); judging and the exact aggregation
live in ``evals/``. Images are written in the benchmark's official folder layout under the run directory,
so official tools can read them unchanged.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel

from i1lab.spec.run import RunSpec

#: The synthetic benchmark's judge: exact pixel analysis (nearest palette colour, components, fill ratio).
SHAPES_JUDGE = "exact-pixel"


class BenchmarkScore(BaseModel):
    """One benchmark's numbers for one checkpoint, as given by one judge."""

    benchmark: str
    judge: str
    step: int
    metrics: dict[str, float]
    headline: str


def generate(
    spec: RunSpec, params: Any, captions: list[str], *, seed: int, batch_size: int = 256
) -> np.ndarray:
    """Images (N, H, W, 3) uint8 for ``captions`` from ``params`` (EMA weights), sampled as the spec says."""
    import jax
    import jax.numpy as jnp

    from i1lab.train.build import TextEncoder, decode_latents, model_config
    from models.dit import DiT
    from models.sampler import euler_sample

    config = model_config(spec)
    model = DiT(config)
    encoder = TextEncoder(spec)
    s = spec.sampling
    shape = (config.in_channels, config.latent_size, config.latent_size)
    out = []
    key = jax.random.PRNGKey(seed)
    for start in range(0, len(captions), batch_size):
        chunk = captions[start : start + batch_size]
        text, mask = (jnp.asarray(a) for a in encoder(chunk))
        rng = jax.random.fold_in(key, start)
        latents = euler_sample(
            model.apply,
            {"params": params},
            text,
            mask,
            rng,
            shape=(len(chunk), *shape),
            steps=s.steps,
            cfg_scale=s.cfg_scale,
            cfg_rescale=s.cfg_rescale,
            cfg_interval_start=s.cfg_interval_start,
            time_shift=s.time_shift if s.time_grid == "shifted" else None,
        )
        out.append(decode_latents(spec, np.asarray(latents)))
    return np.concatenate(out, axis=0)


def _save_png(image: np.ndarray, path: Path) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(path)


def grid(images: np.ndarray, columns: int) -> np.ndarray:
    """Tile (N, H, W, 3) images into one picture, ``columns`` per row."""
    n, h, w, c = images.shape
    rows = -(-n // columns)
    canvas = np.full((rows * h, columns * w, c), 255, np.uint8)
    for i, img in enumerate(images):
        r, col = divmod(i, columns)
        canvas[r * h : (r + 1) * h, col * w : (col + 1) * w] = img
    return canvas


def evaluate_shapes(spec: RunSpec, params: Any, step: int, out_dir: Path) -> BenchmarkScore:
    """The synthetic shapes benchmark (GenEval rules on the shapes domain) with its exact pixel judge."""
    from evals.geneval_score import format_summary
    from evals.shapes import prompts, score_images

    metas = prompts(n_per_tag=spec.eval.prompts_per_tag, seed=0)
    k = spec.eval.images_per_prompt or 4
    captions = [m["prompt"] for m in metas for _ in range(k)]
    images = generate(spec, params, captions, seed=spec.sampling.seed)
    root = out_dir / "shapes" / f"step_{step:07d}"
    pairs = []
    for i, meta in enumerate(metas):
        folder = root / f"{i:05d}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "metadata.jsonl").write_text(json.dumps(meta) + "\n")
        for j in range(k):
            img = images[i * k + j]
            _save_png(img, folder / "samples" / f"{j:05d}.png")
            pairs.append((meta, img))
    records, summary = score_images(pairs)
    with (root / "results.jsonl").open("w") as f:
        for rec in records:
            f.write(json.dumps(rec) + "\n")
    _save_png(grid(images[::k][:48], 8), root / "grid.png")
    metrics = {"overall": summary.headline, "correct_images": summary.pct_correct_images}
    metrics.update({f"tag/{tag}": score.fraction for tag, score in summary.per_tag.items()})
    text = format_summary(summary)
    (root / "summary.txt").write_text(text + "\n")
    return BenchmarkScore(
        benchmark="shapes", judge=SHAPES_JUDGE, step=step, metrics=metrics, headline="overall"
    )


def evaluate(spec: RunSpec, params: Any, step: int, out_dir: Path) -> list[BenchmarkScore]:
    """Every benchmark of ``spec.eval`` that can run here, for one checkpoint."""
    results = []
    for bench in spec.eval.benchmarks:
        if bench == "shapes":
            results.append(evaluate_shapes(spec, params, step, out_dir))
        else:
            raise NotImplementedError(f"benchmark {bench!r} needs its judge; not available on this build")
    return results
