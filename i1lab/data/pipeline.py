"""The training batch pipeline, built on Grain's random-access ``MapDataset``.

Batch ``s`` is a pure function of the data spec, the seed and ``s``: resuming at step ``s`` needs no
iterator state beyond the step itself, so a resumed run sees exactly the batches an uninterrupted one
would have seen (the *data position* of a checkpoint is its step).

Per kept source ``i`` (after ``keep`` / ``remove``):

1. its indices: ``range(count)``, or with ``data.subset_count = N < count`` the first N positions of
   the source's nested permutation (:mod:`i1lab.data.subset`);
2. repeated forever, each epoch in the order of a fresh keyed permutation (seed, source, epoch; see
   :mod:`i1lab.data.subset`), so within each epoch every kept image is visited exactly once;
3. the sources are interleaved by Grain's ``mix`` in the proportions of :func:`mixing_weights`: a
   deterministic weighted interleave (not an independent draw per example as in the reference's
   ``sample_from_datasets``), so each source's share of any window of examples is its weight to within
   a few examples — the frequencies are exact rather than right on average;
4. each visit reads the example and draws its caption (:func:`choose_caption`): long with probability
   ``data.long_caption_fraction``, then uniformly among that kind's captions.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, NamedTuple

import grain
import numpy as np

from i1lab.data.mixing import effective_count, kept_sources, mixing_weights
from i1lab.data.sources import DataError, Example, Source, open_source
from i1lab.data.subset import EpochShuffle, nested_subset
from i1lab.spec.run import DataSpec, SourceSpec


def choose_caption(example: Example, rng: np.random.Generator, long_fraction: float) -> str:
    """Long with probability ``long_fraction`` (else short), uniformly among that kind's captions; the
    other kind when the chosen one has none; "" when the image has no caption at all."""
    use_long = bool(rng.random() < long_fraction)
    pool = example["long"] if use_long else example["short"]
    if not pool:
        pool = example["short"] if use_long else example["long"]
    return pool[int(rng.integers(len(pool)))] if pool else ""


def _indices(position: int, source: SourceSpec, n: int, seed: int) -> grain.MapDataset:
    """The endless ``(position, index)`` stream of one source: per-epoch shuffled (subset) indices."""
    shuffle = EpochShuffle(seed, source.name, n)
    subset = nested_subset(source.name, source.count) if n < source.count else None

    def pick(k: int, _: int) -> tuple[int, int]:
        j = shuffle(k)
        return position, subset[j] if subset is not None else j

    return grain.MapDataset.range(n).repeat().map_with_index(pick)


def example_ids(data: DataSpec, seed: int) -> grain.MapDataset:
    """The infinite stream of ``(source position in kept_sources, index in source)`` pairs, without
    reading any example (cheap: used for statistics and for the data position)."""
    weights = mixing_weights(data)
    sources = kept_sources(data)
    parts = [
        _indices(i, source, effective_count(source, data.subset_count), seed)
        for i, source in enumerate(sources)
    ]
    if len(parts) == 1:
        return parts[0]
    return grain.MapDataset.mix(parts, [weights[s.name] for s in sources])


class _Reader:
    def __init__(self, sources: list[Source]) -> None:
        self.sources = sources

    def __call__(self, pair: tuple[int, int]) -> Example:
        return self.sources[pair[0]][pair[1]]


def example_dataset(data: DataSpec, seed: int, latents: LatentShape | None = None) -> grain.MapDataset:
    """An infinite, mixed, shuffled stream of ``{"source", "index", "image", "caption"}`` examples; with
    ``latents`` (the run's VAE and its moments' shape) also ``"moments"`` and ``"stored"``: the example's
    precomputed VAE moments for that VAE at ``data.resolution`` where its source has them (zeros and
    False where not)."""
    sources = [open_source(s, data.resolution) for s in kept_sources(data)]
    fraction = data.long_caption_fraction
    tag = f"{latents.vae}.{data.resolution}" if latents is not None else ""

    def pick(example: Example, rng: np.random.Generator) -> dict[str, Any]:
        out = {
            "source": example["source"],
            "index": example["index"],
            "image": example["image"],
            "caption": choose_caption(example, rng, fraction),
        }
        if latents is not None:
            stored = example.get("latents", {}).get(tag)
            if stored is not None and stored.shape != latents.shape:
                raise DataError(
                    f"data source {example['source']}[{example['index']}]: stored latents {tag} have shape "
                    f"{stored.shape}, expected {latents.shape} (mean and log-variance of {latents.vae})"
                )
            out["stored"] = stored is not None
            out["moments"] = stored if stored is not None else np.zeros(latents.shape, np.float32)
        return out

    return example_ids(data, seed).map(_Reader(sources)).random_map(pick, seed=seed + 7)


def data_fingerprint(data: DataSpec, batch_size: int, seed: int) -> str:
    """What determines the batch stream; stored with each checkpoint so that a resume onto a different
    stream is refused rather than silently mixing two."""
    payload = {"data": data.model_dump(mode="json"), "batch_size": batch_size, "seed": seed, "version": 3}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


class LatentShape(NamedTuple):
    """The VAE a run encodes with, and the shape (2C, h, w) of its stored posterior moments."""

    vae: str
    shape: tuple[int, int, int]


class BatchStream:
    """Batches by step number: ``stream[s]`` is the batch of step ``s`` (0-based)."""

    def __init__(
        self, data: DataSpec, batch_size: int, seed: int, latents: LatentShape | None = None
    ) -> None:
        self.batch_size = batch_size
        self.batches = example_dataset(data, seed, latents).batch(batch_size)

    def __getitem__(self, step: int) -> dict[str, np.ndarray]:
        batch: dict[str, np.ndarray] = self.batches[step]
        return batch
