"""The ``textured`` synthetic family: coloured-shapes scenes on textured backgrounds.

The objects are the benchmark domain's (:mod:`evals.shapes`); only the plain grey background is
replaced by one of five patterns in two muted colours, distinct from the saturated object palette.
The captions are the scene's captions with the background described.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from evals.shapes import BACKGROUND, caption, render, sample_scene
from evals.shapes.palette import BACKGROUND_NAME

#: Background colours: muted, so that the saturated object colours stay apart from them.
TEXTURE_COLORS: dict[str, tuple[int, int, int]] = {
    "beige": (225, 210, 170),
    "light blue": (170, 200, 230),
    "pale green": (180, 220, 170),
    "lavender": (200, 180, 225),
    "sand": (195, 170, 120),
    "light grey": (205, 205, 205),
    "dark grey": (70, 70, 70),
    "teal": (60, 140, 140),
}
PATTERNS = ("stripes", "checks", "dots", "gradient", "mottled")
_ADJECTIVE = {
    "stripes": "striped",
    "checks": "checkered",
    "dots": "dotted",
    "gradient": "gradient",
    "mottled": "mottled",
}


def texture(rng: np.random.Generator, size: int) -> tuple[npt.NDArray[np.uint8], str, str]:
    """A ``(size, size, 3)`` texture, its short adjective and its long description."""
    names = list(TEXTURE_COLORS)
    i, j = (int(k) for k in rng.choice(len(names), size=2, replace=False))
    a, b = names[i], names[j]
    ca = np.asarray(TEXTURE_COLORS[a], np.float64)
    cb = np.asarray(TEXTURE_COLORS[b], np.float64)
    pattern = PATTERNS[int(rng.integers(len(PATTERNS)))]
    y, x = np.mgrid[0:size, 0:size].astype(np.float64) + 0.5
    if pattern == "stripes":
        orientation = ("horizontal", "vertical", "diagonal")[int(rng.integers(3))]
        period = size * float(rng.uniform(0.15, 0.35))
        coord = {"horizontal": y, "vertical": x, "diagonal": (x + y) / np.sqrt(2.0)}[orientation]
        weight = (np.floor(coord / (period / 2)) % 2).astype(np.float64)
        words = f"a background of {a} and {b} {orientation} stripes"
    elif pattern == "checks":
        cell = size * float(rng.uniform(0.12, 0.3))
        weight = ((np.floor(x / cell) + np.floor(y / cell)) % 2).astype(np.float64)
        words = f"a {a} and {b} checkerboard background"
    elif pattern == "dots":
        pitch = size * float(rng.uniform(0.18, 0.3))
        dx = (x % pitch) - pitch / 2
        dy = (y % pitch) - pitch / 2
        weight = (dx * dx + dy * dy <= (pitch * 0.3) ** 2).astype(np.float64)
        words = f"a {a} background with {b} polka dots"
    elif pattern == "gradient":
        angle = float(rng.uniform(0, 2 * np.pi))
        proj = (x - size / 2) * np.cos(angle) + (y - size / 2) * np.sin(angle)
        weight = np.clip(proj / size + 0.5, 0.0, 1.0)
        words = f"a smooth gradient background from {a} to {b}"
    else:
        cells = int(rng.integers(3, 6))
        coarse = rng.random((cells, cells))
        reps = -(-size // cells)
        weight = np.kron(coarse, np.ones((reps, reps)))[:size, :size]
        words = f"a mottled {a} and {b} background"
    image = ca * (1.0 - weight[..., None]) + cb * weight[..., None]
    return np.clip(np.rint(image), 0, 255).astype(np.uint8), _ADJECTIVE[pattern], words


def generate(rng: np.random.Generator, resolution: int) -> tuple[npt.NDArray[np.uint8], list[str], list[str]]:
    """``(image, long captions, short captions)`` of one textured-background example."""
    scene = sample_scene(rng)
    image = render(scene, resolution)
    background, adjective, words = texture(rng, resolution)
    plain = np.all(image == np.asarray(BACKGROUND, np.uint8), axis=-1)
    image[plain] = background[plain]
    short = f"{caption(scene, 'short', rng)} on a {adjective} background"
    plain_words = f"a plain {BACKGROUND_NAME} background"
    longs = []
    for _ in range(2):
        text = caption(scene, "long", rng)
        longs.append(text.replace(plain_words, words) if plain_words in text else f"{text} Behind: {words}.")
    return image, list(dict.fromkeys(longs)), [short]
