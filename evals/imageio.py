"""PNG helpers shared by the layout writers (uint8 RGB numpy arrays in, files out)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt
from PIL import Image


def as_uint8_rgb(image: npt.ArrayLike) -> npt.NDArray[np.uint8]:
    """``(H, W, 3)`` uint8; raises ValueError for any other shape or dtype."""
    array = np.asarray(image)
    if array.ndim != 3 or array.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) RGB image, got shape {array.shape}")
    if array.dtype != np.uint8:
        raise ValueError(f"expected uint8 pixels, got {array.dtype}")
    return array


def save_png(image: npt.ArrayLike, path: Path) -> Path:
    """Write one RGB image as PNG, creating parent folders."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(as_uint8_rgb(image)).save(path, format="PNG")
    return path


def load_rgb(path: Path) -> npt.NDArray[np.uint8]:
    """An image file as an ``(H, W, 3)`` uint8 array."""
    with Image.open(path) as img:
        return np.asarray(img.convert("RGB"))


def grid(images: npt.ArrayLike, columns: int) -> npt.NDArray[np.uint8]:
    """Tile (N, H, W, 3) images into one picture, ``columns`` per row (white where a row runs short)."""
    array = np.asarray(images, dtype=np.uint8)
    n, h, w, c = array.shape
    rows = -(-n // columns)
    canvas = np.full((rows * h, columns * w, c), 255, np.uint8)
    for i, img in enumerate(array):
        r, col = divmod(i, columns)
        canvas[r * h : (r + 1) * h, col * w : (col + 1) * w] = img
    return canvas
