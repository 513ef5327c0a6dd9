"""The ``words`` synthetic family: one to three words rendered with a DejaVu font (PIL).

Fonts come from matplotlib's bundled DejaVu files first (matplotlib's version is pinned by
``constraints.txt``, so every machine renders the same pixels), then from Debian's
``fonts-dejavu-core`` (``/usr/share/fonts/truetype/dejavu``). Text is drawn at up to 4x the target
resolution and box-filtered down, so small images get anti-aliased letters rather than noise.
"""

from __future__ import annotations

import importlib.util
import threading
from functools import lru_cache
from pathlib import Path

import numpy as np
import numpy.typing as npt
from PIL import Image, ImageDraw, ImageFont

from i1lab.errors import I1labError

WORDS = (
    "apple", "river", "stone", "cloud", "garden", "window", "silver", "forest", "coffee", "market",
    "winter", "summer", "bridge", "candle", "planet", "rocket", "ocean", "desert", "castle", "violin",
    "pencil", "orange", "yellow", "purple", "tiger", "zebra", "eagle", "whale", "maple", "cedar",
    "harbor", "island", "meadow", "valley", "canyon", "glacier", "thunder", "breeze", "shadow", "light",
    "dream", "story", "music", "dance", "smile", "heart", "magic", "spark", "storm", "frost",
    "open", "close", "sale", "exit", "enter", "stop", "go", "hello", "welcome", "thanks",
    "coffee shop", "bakery", "library", "museum", "station", "hotel", "cinema", "pharmacy", "school", "park",
    "north", "south", "east", "west", "left", "right", "up", "down", "fresh", "bread",
    "pizza", "sushi", "tea", "juice", "milk", "honey", "lemon", "mango", "cherry", "grape",
    "robot", "pixel", "laser", "signal", "vector", "matrix", "atom", "orbit", "comet", "nova",
    "happy", "quiet", "bold", "brave", "calm", "wild", "kind", "swift", "bright", "gentle",
    "one", "two", "three", "four", "five", "ten", "hundred", "first", "last", "best",
)  # fmt: skip

TEXT_COLORS: dict[str, tuple[int, int, int]] = {
    "black": (10, 10, 10),
    "red": (220, 20, 30),
    "blue": (20, 60, 220),
    "green": (20, 160, 40),
    "purple": (130, 30, 170),
    "white": (250, 250, 250),
    "yellow": (255, 235, 0),
    "orange": (255, 130, 0),
}
LIGHT_BACKGROUNDS: dict[str, tuple[int, int, int]] = {
    "white": (250, 250, 250),
    "cream": (245, 235, 205),
    "light grey": (210, 210, 210),
    "pale blue": (200, 220, 240),
}
DARK_BACKGROUNDS: dict[str, tuple[int, int, int]] = {
    "black": (15, 15, 15),
    "navy": (20, 30, 80),
    "dark green": (20, 70, 40),
    "charcoal": (55, 55, 60),
}
_LIGHT_TEXT = {"white", "yellow", "orange"}
#: Font files by style, in the order they are looked for.
FONT_FILES = {
    "sans-serif": "DejaVuSans.ttf",
    "bold sans-serif": "DejaVuSans-Bold.ttf",
    "serif": "DejaVuSerif.ttf",
    "monospace": "DejaVuSansMono.ttf",
}
DEBIAN_FONTS = Path("/usr/share/fonts/truetype/dejavu")


def _font_dirs() -> list[Path]:
    dirs = []
    spec = importlib.util.find_spec("matplotlib")  # locates the package without importing it
    if spec is not None and spec.submodule_search_locations:
        for root in spec.submodule_search_locations:
            dirs.append(Path(root) / "mpl-data" / "fonts" / "ttf")
    dirs.append(DEBIAN_FONTS)
    return dirs


@lru_cache(maxsize=1)
def font_files() -> dict[str, Path]:
    """Style -> font file of the first folder that has the regular DejaVu Sans; I1labError if none."""
    for folder in _font_dirs():
        if (folder / FONT_FILES["sans-serif"]).is_file():
            return {style: folder / f for style, f in FONT_FILES.items() if (folder / f).is_file()}
    raise I1labError(
        "the words data family needs the DejaVu fonts: install matplotlib or Debian's fonts-dejavu-core"
    )


_lock = threading.Lock()  # FreeType faces are not safe to share between threads


@lru_cache(maxsize=256)
def _font(path: Path, size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(str(path), size)


def _place(rng: np.random.Generator) -> tuple[str, float]:
    where = ("near the top", "in the middle", "near the bottom")[int(rng.integers(3))]
    return where, {"near the top": 0.25, "in the middle": 0.5, "near the bottom": 0.75}[where]


def generate(rng: np.random.Generator, resolution: int) -> tuple[npt.NDArray[np.uint8], list[str], list[str]]:
    """``(image, long captions, short captions)`` of one rendered-words example."""
    fonts = font_files()
    count = 1 + int(rng.choice(3, p=(0.6, 0.3, 0.1)))  # mostly one word: legible at small sizes
    picks = [WORDS[int(i)] for i in rng.choice(len(WORDS), size=count, replace=False)]
    case = ("lower", "upper", "title")[int(rng.integers(3))]
    text = " ".join(picks)
    text = text.upper() if case == "upper" else text.title() if case == "title" else text
    style = list(fonts)[int(rng.integers(len(fonts)))]
    color_names = list(TEXT_COLORS)
    color = color_names[int(rng.integers(len(color_names)))]
    backgrounds = DARK_BACKGROUNDS if color in _LIGHT_TEXT else LIGHT_BACKGROUNDS
    bg_names = list(backgrounds)
    bg = bg_names[int(rng.integers(len(bg_names)))]
    where, cy = _place(rng)

    scale = max(1, min(4, 128 // resolution))
    canvas = resolution * scale
    image = Image.new("RGB", (canvas, canvas), backgrounds[bg])
    with _lock:
        probe = _font(fonts[style], 64)
        left, top, right, bottom = probe.getbbox(text)
        width, height = max(1, right - left), max(1, bottom - top)
        size = max(4, int(64 * min(0.92 * canvas / width, 0.5 * canvas / height)))
        font = _font(fonts[style], size)
        left, top, right, bottom = font.getbbox(text)
        x = (canvas - (right - left)) / 2 - left + float(rng.uniform(-0.03, 0.03)) * canvas
        y = cy * canvas - (bottom - top) / 2 - top
        y = min(max(y, -top), canvas - bottom)
        ImageDraw.Draw(image).text((x, y), text, font=font, fill=TEXT_COLORS[color])
    if scale > 1:
        image = image.resize((resolution, resolution), Image.Resampling.BOX)

    noun = "word" if " " not in text else "words"
    quoted = f'"{text}"'
    short = [f"the {noun} {quoted}", f"a sign that says {quoted}"]
    longs = [
        f"The {noun} {quoted} written {where} in {color} {style} letters on a plain {bg} background.",
        f"A plain {bg} background with {quoted} in {color} {style} lettering {where} of the image.",
    ]
    return np.asarray(image, np.uint8), longs, short
