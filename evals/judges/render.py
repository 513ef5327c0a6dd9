"""Rendering ground-truth text with a TrueType font (for OCR judge tests and sanity checks).

Fonts, in order: DejaVu Sans shipped inside matplotlib (a pinned dependency), Debian's
`fonts-dejavu-core`, then Pillow's built-in scalable default font.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt
from PIL import Image, ImageDraw, ImageFont

DEBIAN_DEJAVU = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")

Font = ImageFont.FreeTypeFont | ImageFont.ImageFont


def font_path() -> Path | None:
    """A DejaVu Sans TTF if one is installed, else None."""
    spec = importlib.util.find_spec("matplotlib")
    if spec is not None and spec.origin is not None:
        bundled = Path(spec.origin).parent / "mpl-data" / "fonts" / "ttf" / "DejaVuSans.ttf"
        if bundled.is_file():
            return bundled
    return DEBIAN_DEJAVU if DEBIAN_DEJAVU.is_file() else None


def load_font(size: int) -> Font:
    path = font_path()
    if path is not None:
        return ImageFont.truetype(str(path), size)
    return ImageFont.load_default(size=size)


def render_lines(
    lines: Sequence[str], *, width: int = 768, font_size: int = 32, margin: int = 16, line_gap: int = 18
) -> npt.NDArray[np.uint8]:
    """Black text on white, one line per entry, as an ``(H, W, 3)`` uint8 array."""
    font = load_font(font_size)
    height = 2 * margin + len(lines) * (font_size + line_gap)
    image = Image.new("RGB", (width, max(height, font_size + 2 * margin)), "white")
    draw = ImageDraw.Draw(image)
    for i, line in enumerate(lines):
        draw.text((margin, margin + i * (font_size + line_gap)), line, font=font, fill="black")
    return np.asarray(image)


def wrap_words(words: Sequence[str], *, width: int = 768, font_size: int = 32, margin: int = 16) -> list[str]:
    """Greedy word wrap so that every line fits `width` pixels in the render font."""
    font = load_font(font_size)
    lines: list[str] = []
    current = ""
    for word in words:
        candidate = f"{current} {word}".strip()
        if current and font.getlength(candidate) > width - 2 * margin:
            lines.append(current)
            current = word
        else:
            current = candidate
    if current:
        lines.append(current)
    return lines
