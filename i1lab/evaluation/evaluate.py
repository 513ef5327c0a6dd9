"""Evaluating a checkpoint: sample a benchmark's prompts with the run's sampling settings, judge, score.

Generation uses ``models/`` (EMA weights, the run's sampler settings); judging and the exact aggregation
live in ``evals/`` (through :mod:`i1lab.evaluation.judging`). Images are written in the benchmark's official
folder layout under ``<out_dir>/<bench>/step_<step:07d>/``, so official tools can read them unchanged; i1lab's
own files (generation record, prompts, sample grid, judge outputs) go to its ``i1lab/`` sub-folder, which
no official walk reads.

Every benchmark of the catalogue (`evals.benchmark`) goes the same way: its prompts (the generation
prompts of ``spec.sampling.prompt_variant``, aligned with the ORIGINAL entries that the layout and the
scorer use), ``images_per_prompt`` images each (``eval.images_per_prompt`` overrides it where the layout
holds several), its official layout, then its judge (docs/benchmarks.md). The initial noise of image
``k`` of a prompt depends only on (sampling seed, benchmark, the prompt's identity, k) — the identity is
`evals.Benchmark.prompt_key` of its ORIGINAL entry, hashed (`prompt_noise_ids`) — so it does not change
with batching, ``eval.prompt_limit``, ``eval.prompts_per_tag``, the prompt variant or the prompt's
position: every run sampled with the same seed gives a prompt the same initial noise, which is what
makes the per-prompt comparison of two runs paired (`i1lab.report.paired`).
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from evals.benchmark import lookup
from evals.imageio import grid, save_png
from i1lab.errors import I1labError
from i1lab.evaluation.judging import EXTRAS, BenchmarkScore, judge_images
from i1lab.spec.run import RunSpec

__all__ = [
    "BenchmarkScore",
    "Generated",
    "evaluate",
    "generate_benchmark",
    "grid",
    "images_per_prompt",
    "load_benchmark_prompts",
    "prompt_noise_ids",
    "sample",
]

log = logging.getLogger(__name__)

#: Images sampled together; batches are padded up to a power of two (at least `MIN_BUCKET`), so one
#: compiled sampler serves every benchmark of a run.
BATCH_SIZE = 64
MIN_BUCKET = 8


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


def prompt_noise_ids(keys: Sequence[str], per_prompt: int) -> list[tuple[int, int]]:
    """The noise ids ``(prompt id, k)`` of ``per_prompt`` images of each prompt, prompt by prompt: the
    prompt id is a 32-bit hash (BLAKE2b) of its identity ``keys[i]`` (``#n`` appended for the n-th
    repeat of an identity already listed), so a prompt's noise does not depend on where it is listed."""
    seen: dict[str, int] = {}
    out = []
    for key in keys:
        n = seen.get(key, 0)
        seen[key] = n + 1
        name = key if n == 0 else f"{key}#{n}"
        pid = int.from_bytes(hashlib.blake2b(name.encode(), digest_size=4).digest(), "little")
        out += [(pid, k) for k in range(per_prompt)]
    return out


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
    bench: str,
    variant: str = "original",
    limit: int | None = None,
    directory: Path | None = None,
    *,
    per_tag: int = 8,
) -> tuple[list[Any], list[str]]:
    """``(originals, prompts)`` of the first ``limit`` prompts: the ORIGINAL entries the layout and the
    scorers use (GenEval metadata lines, DPG ``(item_id, prompt)``, PRISM ``(category, j, prompt)``,
    `CvtgPrompt`, `LongTextPrompt`, shapes metadata) and the generation prompts of ``variant``, aligned
    with them. ``per_tag`` sizes a generated prompt set (shapes)."""
    try:
        benchmark = lookup(bench)
    except ValueError as exc:
        raise I1labError(str(exc)) from None
    try:
        originals, texts = benchmark.prompts(variant, directory, per_tag=per_tag)
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
    """Images per prompt of ``bench`` for ``spec``: ``eval.images_per_prompt``, else the benchmark's own;
    always one where its layout holds one."""
    benchmark = lookup(bench)
    if benchmark.one_per_prompt:
        if spec.eval.images_per_prompt not in (None, 1):
            log.warning("%s: one image per prompt (its official layout); images_per_prompt ignored", bench)
        return 1
    return spec.eval.images_per_prompt or benchmark.images_per_prompt


def generate_benchmark(
    spec: RunSpec, params: Any, bench: str, step: int, out_dir: Path, *, directory: Path | None = None
) -> Generated:
    """Sample ``bench``'s prompts and write them in its official layout under
    ``out_dir/<bench>/step_<step:07d>/`` (an existing folder is replaced)."""
    import shutil

    variant = spec.sampling.prompt_variant
    originals, prompts = load_benchmark_prompts(
        bench, variant, spec.eval.prompt_limit, directory, per_tag=spec.eval.prompts_per_tag
    )
    k = images_per_prompt(spec, bench)
    captions = [p for p in prompts for _ in range(k)]
    benchmark = lookup(bench)
    ids = prompt_noise_ids([benchmark.prompt_key(o) for o in originals], k)
    flat = sample(spec, params, captions, ids, seed=spec.sampling.seed, salt=zlib.crc32(bench.encode()))
    root = Path(out_dir) / bench / f"step_{step:07d}"
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    grouped = [list(flat[i * k : (i + 1) * k]) for i in range(len(prompts))]
    files = lookup(bench).write_images(root, originals, grouped)
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
        save_png(grid(flat[::k][:48], 8), extras / "grid.png")
    return Generated(bench, root, len(prompts), k, files)


def evaluate(
    spec: RunSpec, params: Any, step: int, out_dir: Path, *, directory: Path | None = None
) -> list[BenchmarkScore]:
    """Every benchmark of ``spec.eval`` for one checkpoint: generate, then judge with the configured judge
    (a benchmark judged ``none`` has its images written and no score). A judge that needs GPUs runs as
    its own Ray task on a node that has them (`judge_gpus`); each score records how it was made."""
    results = []
    for bench in spec.eval.benchmarks:
        generated = generate_benchmark(spec, params, bench, step, out_dir, directory=directory)
        score = judge_placed(
            bench,
            generated.root,
            spec.eval.judge_for(bench),
            gpus=judge_gpus(spec, bench),
            step=step,
            command=spec.eval.commands.get(bench),
            directory=directory,
            extra={"resolution": spec.data.resolution, "step": step},
            official_summary=bench in spec.eval.official_summary,
        )
        if score is not None:
            score.provenance.update(sampling_provenance(spec, generated))
            results.append(score)
    return results


def sampling_provenance(spec: RunSpec, generated: Generated) -> dict[str, str]:
    """What of a score's making the sampling decides: the exact prompts (their hash), variant, images
    per prompt, sampler settings and seed."""
    import hashlib

    from i1lab.hashing import canonical_json

    prompts = (generated.root / EXTRAS / "prompts.jsonl").read_bytes()
    return {
        "prompts": hashlib.sha256(prompts).hexdigest()[:16],
        "n_prompts": str(generated.n_prompts),
        "prompt_variant": spec.sampling.prompt_variant,
        "images_per_prompt": str(generated.images_per_prompt),
        "sampling": canonical_json(spec.sampling.model_dump(mode="json")),
        "seed": str(spec.sampling.seed),
    }


def judge_gpus(spec: RunSpec, bench: str) -> int:
    """GPUs the judge of ``bench`` needs: ``eval.judge_gpus``, else the official environment's judge
    stage (official), else one for a VLM judge where the Ray cluster has GPUs, else none."""
    if bench in spec.eval.judge_gpus:
        return spec.eval.judge_gpus[bench]
    kind = spec.eval.judge_for(bench).partition(":")[0]
    if kind == "official":
        from evals.judges.environment import for_benchmark

        env = for_benchmark(lookup(bench))
        return next(iter(env.stages.values())).gpus if env is not None else 0
    if kind == "vlm":
        return 1 if _cluster_gpus() > 0 else 0
    return 0


def _cluster_gpus() -> float:
    import sys

    if "ray" not in sys.modules:
        return 0.0
    import ray

    return float(ray.cluster_resources().get("GPU", 0)) if ray.is_initialized() else 0.0


def _judge_task(bench: str, images: Path, judge: str, kwargs: dict[str, Any]) -> BenchmarkScore | None:
    """A Ray task: judge on the node it was placed on, recording which."""
    import ray

    score = judge_images(bench, images, judge, **kwargs)
    if score is not None:
        context = ray.get_runtime_context()
        score.provenance["judge_node"] = context.get_node_id()
        score.provenance["judge_gpus"] = f"{context.get_assigned_resources().get('GPU', 0):g}"
    return score


def judge_placed(bench: str, images: Path, judge: str, *, gpus: int, **kwargs: Any) -> BenchmarkScore | None:
    """`judge_images`, as a Ray task holding ``gpus`` GPUs when it needs any (never the CPUs or chips of
    the training that sampled the images: the task asks for one CPU and the GPUs only), else here."""
    import sys

    if gpus <= 0 or "ray" not in sys.modules:
        return judge_images(bench, images, judge, **kwargs)
    import ray
    from ray.exceptions import RayTaskError

    if not ray.is_initialized():
        return judge_images(bench, images, judge, **kwargs)
    have = _cluster_gpus()
    if have < gpus:
        raise I1labError(
            f"{bench}: its judge needs {gpus} GPU(s) and the Ray cluster has {have:g}; add a GPU node "
            f"(`ray start --num-gpus N`) or set eval.judge_gpus.{bench}: 0 to judge here"
        )
    task = ray.remote(_judge_task).options(
        num_cpus=1, num_gpus=gpus, max_retries=1, name=f"i1lab-judge:{bench}"
    )
    try:
        result: BenchmarkScore | None = ray.get(task.remote(bench, images, judge, kwargs))
    except RayTaskError as exc:
        cause = exc.cause if isinstance(exc.cause, BaseException) else exc
        if isinstance(cause, I1labError):
            raise I1labError(str(cause)) from None
        raise
    return result
