"""Decoding stored images into training pixels (docs/design-space.md §11 "Records")."""

from __future__ import annotations

import io

import numpy as np
import numpy.typing as npt
from PIL import Image


def resize_center_crop(image: Image.Image, resolution: int) -> Image.Image:
    """Shorter edge to ``resolution`` (bilinear; the longer edge rounded to the nearest pixel), then
    the centred ``resolution`` x ``resolution`` crop."""
    w, h = image.size
    if (w, h) != (resolution, resolution):
        scale = resolution / min(w, h)
        nw, nh = max(resolution, round(w * scale)), max(resolution, round(h * scale))
        if (nw, nh) != (w, h):
            image = image.resize((nw, nh), Image.Resampling.BILINEAR)
        left, top = (nw - resolution) // 2, (nh - resolution) // 2
        image = image.crop((left, top, left + resolution, top + resolution))
    return image


def decode_image(data: bytes, resolution: int) -> npt.NDArray[np.uint8]:
    """Encoded image bytes (PNG, JPEG, WebP, ...) -> uint8 ``(resolution, resolution, 3)`` RGB."""
    with Image.open(io.BytesIO(data)) as img:
        rgb = img.convert("RGB")
    return np.asarray(resize_center_crop(rgb, resolution), np.uint8)


def encode_png(image: npt.ArrayLike) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.asarray(image, np.uint8)).save(buf, format="PNG")
    return buf.getvalue()
