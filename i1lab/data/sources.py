"""Random-access data sources. Each example is ``{"image": uint8 (H, W, 3), "short": str, "long": str}``."""

from __future__ import annotations

import zlib
from typing import Any

import numpy as np

from evals.shapes import caption, render, sample_scene
from i1lab.spec.run import SourceSpec


class ShapesSource:
    """Procedural coloured-shapes scenes: example ``i`` is a pure function of (source name, seed, i)."""

    def __init__(self, spec: SourceSpec, resolution: int, count: int, seed: int) -> None:
        self.spec = spec
        self.resolution = resolution
        self.count = count
        self._key = zlib.crc32(spec.name.encode()) ^ (seed & 0xFFFFFFFF)

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index: int) -> dict[str, Any]:
        rng = np.random.default_rng([self._key, int(index)])
        scene = sample_scene(rng)
        return {
            "source": self.spec.name,
            "image": render(scene, self.resolution),
            "short": caption(scene, "short", rng),
            "long": caption(scene, "long", rng),
        }


def open_source(spec: SourceSpec, resolution: int, count: int, seed: int) -> ShapesSource:
    if spec.kind == "shapes":
        return ShapesSource(spec, resolution, count, seed)
    raise NotImplementedError(
        f"data source kind {spec.kind!r} ({spec.name}) is not readable on this build yet"
    )
