"""Evaluating a checkpoint: sample a benchmark's prompts with the run's sampling settings, judge, score.

Generation uses ``models/`` (EMA weights, the run's sampler settings); judging and the exact aggregation
live in ``evals/`` (through :mod:`i1lab.evaluation.judging`). Images are written in the benchmark's official
folder layout under ``<out_dir>/<bench>/step_<step:07d>/``, so official tools can read them unchanged; i1lab's
own files (generation record, prompts, sample grid, judge outputs) go to its ``i1lab/`` sub-folder, which
no official walk reads.

Five benchmarks (docs/benchmarks.md): the generation prompts come from ``spec.sampling.prompt_variant``
(aligned with the original order), the layout and every score from the ORIGINAL files. Images per
prompt: GenEval 4, DPG 4 (plus the 2×2 grids the DPG scorer reads), PRISM 1, CVTG-2K 1, LongText 4;
``eval.images_per_prompt`` overrides where the layout holds several (not PRISM, CVTG-2K). The initial
noise of image ``k`` of prompt ``i`` depends only on (sampling seed, benchmark, i, k), so it does not
change with batching, ``eval.prompt_limit`` or the prompt variant.
"""

from __future__ import annotations

import functools
import json
import logging
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from i1lab.errors import I1labError
from i1lab.evaluation.judging import EXTRAS, BenchmarkScore, judge_images
from i1lab.spec.run import RunSpec

__all__ = [
    "IMAGES_PER_PROMPT",
    "BenchmarkScore",
    "Generated",
    "evaluate",
    "evaluate_shapes",
    "generate",
    "generate_benchmark",
    "grid",
    "load_benchmark_prompts",
    "sample",
]

log = logging.getLogger(__name__)

#: The synthetic benchmark's judge: exact pixel analysis (nearest palette colour, components, fill ratio).
SHAPES_JUDGE = "exact-pixel"

#: Images per prompt of each benchmark's official protocol (docs/benchmarks.md).
IMAGES_PER_PROMPT: dict[str, int] = {"geneval": 4, "dpg": 4, "prism": 1, "cvtg": 1, "longtext": 4}
#: Benchmarks whose official layout holds exactly one image per prompt.
ONE_PER_PROMPT = ("prism", "cvtg")
#: Images sampled together; batches are padded up to a power of two (at least `MIN_BUCKET`), so one
#: compiled sampler serves every benchmark of a run.
BATCH_SIZE = 64
MIN_BUCKET = 8


def generate(
    spec: RunSpec, params: Any, captions: list[str], *, seed: int, batch_size: int = 256
) -> np.ndarray:
    """Images (N, H, W, 3) uint8 for ``captions`` from ``params`` (EMA weights), sampled as the spec says."""
    import jax
    import jax.numpy as jnp

    from i1lab.spec.model import model_config
    from i1lab.train.build import TextEncoder, decode_latents
    from models.sampler import euler_sample

    config = model_config(spec)
    apply, _ = _sampler(config, spec.diffusion.prediction)
    encoder = TextEncoder(spec)
    s = spec.sampling
    shape = (config.in_channels, config.latent_size, config.latent_size)
    out = []
    key = jax.random.PRNGKey(seed)
    for start in range(0, len(captions), batch_size):
        chunk = captions[start : start + batch_size]
        text, mask = jax.tree_util.tree_map(jnp.asarray, encoder(chunk))
        rng = jax.random.fold_in(key, start)
        latents = euler_sample(
            apply,
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


@functools.lru_cache(maxsize=8)
def _sampler(config: Any, prediction: str = "velocity") -> tuple[Any, Any]:
    """``(apply, draw)``: the model as a velocity model (x-prediction mapped, docs/design-space.md §7), bound
    once so that the compiled sampler is reused, and a jitted ``draw(root key, ids)`` of the initial noise
    of images ``ids = [(prompt, sample)]``."""
    import jax
    import jax.numpy as jnp

    from models.dit import DiT
    from models.rectified_flow import velocity_model

    shape = (config.in_channels, config.latent_size, config.latent_size)

    def one(root: jax.Array, ids: jax.Array) -> jax.Array:
        key = jax.random.fold_in(jax.random.fold_in(root, ids[0]), ids[1])
        return jax.random.normal(key, shape, jnp.float32)

    return velocity_model(DiT(config).apply, prediction), jax.jit(jax.vmap(one, in_axes=(None, 0)))


def sample(
    spec: RunSpec,
    params: Any,
    captions: Sequence[str],
    noise_ids: Sequence[tuple[int, int]],
    *,
    seed: int,
    salt: int = 0,
    batch_size: int = BATCH_SIZE,
) -> np.ndarray:
    """Images (N, H, W, 3) uint8 for ``captions`` from ``params`` (EMA weights), sampled as the spec says.

    The initial noise of image n is drawn from ``(seed, salt, *noise_ids[n])`` alone, so an image does
    not depend on which other images share its batch. Batches are padded to a power of two.
    """
    import jax
    import jax.numpy as jnp

    from i1lab.spec.model import model_config
    from i1lab.train.build import TextEncoder, decode_latents
    from models.sampler import euler_sample

    if len(captions) != len(noise_ids):
        raise ValueError(f"{len(captions)} captions for {len(noise_ids)} noise ids")
    if not captions:
        return np.zeros((0, spec.data.resolution, spec.data.resolution, 3), np.uint8)
    config = model_config(spec)
    apply, draw = _sampler(config, spec.diffusion.prediction)
    root = jax.random.fold_in(jax.random.PRNGKey(seed), salt)
    encoder = TextEncoder(spec)
    s = spec.sampling
    shape = (config.in_channels, config.latent_size, config.latent_size)
    bucket = min(batch_size, max(MIN_BUCKET, 1 << (len(captions) - 1).bit_length()))
    out = []
    for start in range(0, len(captions), bucket):
        chunk = list(captions[start : start + bucket])
        ids = list(noise_ids[start : start + bucket])
        real = len(chunk)
        chunk += [chunk[-1]] * (bucket - real)
        ids += [ids[-1]] * (bucket - real)
        text, mask = jax.tree_util.tree_map(jnp.asarray, encoder(chunk))
        latents = euler_sample(
            apply,
            {"params": params},
            text,
            mask,
            jax.random.PRNGKey(0),  # unused: the noise is given
            shape=(bucket, *shape),
            steps=s.steps,
            cfg_scale=s.cfg_scale,
            cfg_rescale=s.cfg_rescale,
            cfg_interval_start=s.cfg_interval_start,
            time_shift=s.time_shift if s.time_grid == "shifted" else None,
            noise=draw(root, jnp.asarray(ids, jnp.uint32)),
        )
        out.append(decode_latents(spec, np.asarray(latents[:real])))
    return np.concatenate(out, axis=0)


def _missing(exc: FileNotFoundError) -> I1labError:
    text = str(exc).strip().splitlines()[0]
    return I1labError(f"{text} (`i1lab evals fetch` downloads the official files)")


def load_benchmark_prompts(
    bench: str, variant: str = "original", limit: int | None = None, directory: Path | None = None
) -> tuple[list[Any], list[str]]:
    """``(originals, prompts)`` of the first ``limit`` prompts: the ORIGINAL entries the layout and the
    scorers use (GenEval metadata lines, DPG ``(item_id, prompt)``, PRISM ``(category, j, prompt)``,
    `CvtgPrompt`, `LongTextPrompt`) and the generation prompts of ``variant``, aligned with them."""
    from evals import cvtg, dpg, geneval, longtext, prism
    from evals.variants import load_variant

    try:
        originals: list[Any]
        if bench == "geneval":
            originals = geneval.load_metadata(directory)
            texts = [str(m["prompt"]) for m in originals]
        elif bench == "dpg":
            originals = dpg.load_prompts(directory)
            texts = [p for _, p in originals]
        elif bench == "prism":
            originals = prism.flat_prompts(prism.load_prompts(directory))
            texts = [p for _, _, p in originals]
        elif bench == "cvtg":
            originals = cvtg.load_prompts(directory)
            texts = [p.prompt for p in originals]
        elif bench == "longtext":
            originals = longtext.load_prompts(directory)
            texts = [p.prompt for p in originals]
        else:
            raise I1labError(f"unknown benchmark {bench!r}; expected one of {', '.join(IMAGES_PER_PROMPT)}")
        if variant != "original":
            texts = load_variant(bench, variant, directory)
    except FileNotFoundError as exc:
        raise _missing(exc) from None
    except ValueError as exc:
        raise I1labError(f"{bench} prompts ({variant}): {str(exc).splitlines()[0]}") from None
    if len(texts) != len(originals):
        raise I1labError(
            f"{bench}: prompt variant {variant!r} has {len(texts)} prompts, the original {len(originals)}"
        )
    n = len(originals) if limit is None else min(limit, len(originals))
    return originals[:n], texts[:n]


@dataclass(frozen=True)
class Generated:
    """What `generate_benchmark` wrote: the image root (official layout) and its counts."""

    bench: str
    root: Path
    n_prompts: int
    images_per_prompt: int
    files: list[Path]


def images_per_prompt(spec: RunSpec, bench: str) -> int:
    if bench in ONE_PER_PROMPT:
        if spec.eval.images_per_prompt not in (None, 1):
            log.warning("%s: one image per prompt (its official layout); images_per_prompt ignored", bench)
        return 1
    return spec.eval.images_per_prompt or IMAGES_PER_PROMPT[bench]


def _write_layout(
    bench: str, root: Path, originals: list[Any], images: list[list[np.ndarray]], k: int
) -> list[Path]:
    from evals import cvtg, dpg, geneval, longtext, prism
    from evals.dpg.layout import IMAGES_PER_PROMPT as DPG_GRID
    from evals.imageio import save_png

    if bench == "geneval":
        return geneval.write_images(root, originals, images)
    if bench == "dpg":
        if k != DPG_GRID:
            log.warning("dpg: %d images per prompt, not 4: no 2x2 grids, the DPG scorer cannot read them", k)
        dpg.write_images(root, originals, images, grids=False)
        paths = [dpg.sample_path(root, i, j) for i in range(len(originals)) for j in range(k)]
        if k == DPG_GRID:
            paths += dpg.write_images(root, originals, images, grids=True)
        return paths
    if bench == "prism":
        return [
            save_png(imgs[0], prism.image_path(root, c, j))
            for (c, j, _), imgs in zip(originals, images, strict=True)
        ]
    if bench == "cvtg":
        return cvtg.write_images(root, originals, [imgs[0] for imgs in images])
    return longtext.write_images(root, originals, images)


def generate_benchmark(
    spec: RunSpec, params: Any, bench: str, step: int, out_dir: Path, *, directory: Path | None = None
) -> Generated:
    """Sample ``bench``'s prompts and write them in its official layout under
    ``out_dir/<bench>/step_<step:07d>/`` (an existing folder is replaced)."""
    import shutil

    variant = spec.sampling.prompt_variant
    originals, prompts = load_benchmark_prompts(bench, variant, spec.eval.prompt_limit, directory)
    k = images_per_prompt(spec, bench)
    captions = [p for p in prompts for _ in range(k)]
    ids = [(i, j) for i in range(len(prompts)) for j in range(k)]
    flat = sample(spec, params, captions, ids, seed=spec.sampling.seed, salt=zlib.crc32(bench.encode()))
    root = Path(out_dir) / bench / f"step_{step:07d}"
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    grouped = [list(flat[i * k : (i + 1) * k]) for i in range(len(prompts))]
    files = _write_layout(bench, root, originals, grouped, k)
    extras = root / EXTRAS
    extras.mkdir()
    record = {
        "benchmark": bench,
        "step": step,
        "prompt_variant": variant,
        "prompt_limit": spec.eval.prompt_limit,
        "n_prompts": len(prompts),
        "images_per_prompt": k,
        "seed": spec.sampling.seed,
        "sampling": spec.sampling.model_dump(),
        "judge": spec.eval.judge_for(bench),
    }
    (extras / "generation.json").write_text(json.dumps(record, indent=2) + "\n")
    with (extras / "prompts.jsonl").open("w", encoding="utf-8") as f:
        for i, prompt in enumerate(prompts):
            f.write(json.dumps({"index": i, "prompt": prompt}, ensure_ascii=False) + "\n")
    if len(flat):
        _save_png(grid(flat[::k][:48], 8), extras / "grid.png")
    return Generated(bench, root, len(prompts), k, files)


def evaluate(
    spec: RunSpec, params: Any, step: int, out_dir: Path, *, directory: Path | None = None
) -> list[BenchmarkScore]:
    """Every benchmark of ``spec.eval`` for one checkpoint: generate, then judge with the configured judge
    (a benchmark judged ``none`` has its images written and no score)."""
    results = []
    for bench in spec.eval.benchmarks:
        if bench == "shapes":
            results.append(evaluate_shapes(spec, params, step, out_dir))
            continue
        generated = generate_benchmark(spec, params, bench, step, out_dir, directory=directory)
        score = judge_images(
            bench,
            generated.root,
            spec.eval.judge_for(bench),
            step=step,
            command=spec.eval.commands.get(bench),
            directory=directory,
            extra={"resolution": spec.data.resolution, "step": step},
        )
        if score is not None:
            results.append(score)
    return results
