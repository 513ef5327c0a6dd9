"""The training batch pipeline, built on Grain's random-access ``MapDataset``.

Batch ``s`` is a pure function of the data spec, the seed and ``s``: resuming at step ``s`` needs no
iterator state beyond the step itself, so a resumed run sees exactly the batches an uninterrupted one
would have seen.
"""

from __future__ import annotations

from typing import Any

import grain
import numpy as np

from i1lab.data.mixing import effective_count, kept_sources, mixing_weights
from i1lab.data.sources import open_source
from i1lab.spec.run import DataSpec


def _pick_caption(example: dict[str, Any], rng: np.random.Generator, long_fraction: float) -> dict[str, Any]:
    use_long = bool(rng.random() < long_fraction)
    return {
        "source": example["source"],
        "image": example["image"],
        "caption": example["long" if use_long else "short"],
    }


def example_dataset(data: DataSpec, seed: int) -> grain.MapDataset:
    """An infinite, mixed, shuffled stream of ``{"image", "caption"}`` examples."""
    weights = mixing_weights(data)
    parts = []
    for i, source in enumerate(kept_sources(data)):
        count = effective_count(source, data.subset_count)
        src = open_source(source, data.resolution, count, seed)
        parts.append(grain.MapDataset.source(src).seed(seed * 1009 + i).shuffle().repeat())
    mixed = (
        parts[0]
        if len(parts) == 1
        else grain.MapDataset.mix(parts, [weights[s.name] for s in kept_sources(data)])
    )
    fraction = data.long_caption_fraction
    return mixed.random_map(lambda ex, rng: _pick_caption(ex, rng, fraction), seed=seed + 7)


class BatchStream:
    """Batches by step number: ``stream[s]`` is the batch of step ``s`` (0-based)."""

    def __init__(self, data: DataSpec, batch_size: int, seed: int) -> None:
        self.batches = example_dataset(data, seed).batch(batch_size)

    def __getitem__(self, step: int) -> dict[str, np.ndarray]:
        batch: dict[str, np.ndarray] = self.batches[step]
        return batch
