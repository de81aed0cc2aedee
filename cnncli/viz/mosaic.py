"""Arrays to tiles, tiles to one grid image: the arithmetic shared by every picture.

A `Mosaic` is a uint8 RGB image plus the box of each tile in it, so a test (or a
caller) knows exactly which pixels show which filter or map. Small tiles (a 3x3
kernel) are enlarged by a whole factor, pixel for pixel; grids wider than `MAX_WIDTH`
are shrunk by averaging.

>>> m = grid([to_rgb(np.eye(3))] * 5, min_side=3)
>>> m.columns, len(m.boxes), m.image.shape
(3, 5, (15, 21, 3))
>>> m.boxes[4]
Box(top=9, left=9, height=3, width=3)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image

#: Pixels between two tiles, and around the grid (at least: see `grid`).
GAP = 3
#: The colour between tiles (white, as in the lecture's figure of Krizhevsky's filters).
GAP_COLOUR = (255, 255, 255)
#: Each tile's outline, its gap's pixel next to it: a tile whose edge is white (a map's
#: strongest response, a filter's largest weight) stays apart from the gap and from an
#: empty place of the grid, on a screen and printed in grey.
FRAME_COLOUR = (128, 128, 128)
#: Inside one tile: the colour separating the slices of a filter's input channels.
SLICE_GAP_COLOUR = (96, 160, 255)
#: Tiles are enlarged until their longer side has at least this many pixels...
MIN_SIDE = 48
#: ... and grids shrunk to at most this width.
MAX_WIDTH = 1600


@dataclass(frozen=True)
class Box:
    """Where a tile sits in a picture, in pixels (top row, left column, size)."""

    top: int
    left: int
    height: int
    width: int

    def of(self, image: np.ndarray) -> np.ndarray:
        """The pixels of this tile in `image`."""
        return image[self.top:self.top + self.height, self.left:self.left + self.width]


@dataclass
class Mosaic:
    """A grid of tiles as one uint8 RGB image, and the box of each tile (in order)."""

    image: np.ndarray
    boxes: list[Box]
    columns: int


def scale01(values: np.ndarray, constant: float = 0.5) -> np.ndarray:
    """`values` mapped linearly onto [0, 1], their smallest to 0 and their largest to 1.

    A constant array becomes `constant` (mid grey by default); NaN stays NaN.

    >>> scale01(np.array([2.0, 4.0, 6.0])).tolist()
    [0.0, 0.5, 1.0]
    """
    values = np.asarray(values, dtype=np.float64)
    finite = values[np.isfinite(values)]
    low = float(finite.min()) if finite.size else 0.0
    high = float(finite.max()) if finite.size else 0.0
    if high <= low:
        return np.where(np.isnan(values), np.nan, constant)
    return np.clip((values - low) / (high - low), 0.0, 1.0)


def to_rgb(values01: np.ndarray, nan_colour=SLICE_GAP_COLOUR) -> np.ndarray:
    """Values in [0, 1], (H, W) grey or (H, W, 3) colour, as uint8 RGB; NaN -> `nan_colour`.

    >>> to_rgb(np.array([[0.0, 1.0]]))[0].tolist()
    [[0, 0, 0], [255, 255, 255]]
    """
    values = np.asarray(values01, dtype=np.float64)
    if values.ndim == 2:
        values = np.repeat(values[..., np.newaxis], 3, axis=-1)
    missing = np.isnan(values).any(axis=-1)
    rgb = np.round(np.nan_to_num(values, nan=0.0) * 255).astype(np.uint8)
    rgb[missing] = nan_colour
    return rgb


def slices(stack: np.ndarray, *, limit: int) -> np.ndarray:
    """(H, W, C) -> one (H', W') float image: the first `limit` channels side by side in a
    near-square grid, NaN between them (drawn as `SLICE_GAP_COLOUR`).

    >>> slices(np.zeros((2, 2, 4)), limit=4).shape
    (5, 5)
    """
    height, width, count = stack.shape
    count = min(count, limit)
    cols = math.ceil(math.sqrt(count))
    rows = math.ceil(count / cols)
    out = np.full((rows * (height + 1) - 1, cols * (width + 1) - 1), np.nan)
    for i in range(count):
        r, c = divmod(i, cols)
        out[r * (height + 1):r * (height + 1) + height,
            c * (width + 1):c * (width + 1) + width] = stack[..., i]
    return out


def display_scale(height: int, width: int, columns: int, *, min_side: int = MIN_SIDE,
                  max_width: int = MAX_WIDTH) -> float:
    """How much to enlarge (a whole number) or shrink (below 1) tiles of this size.

    >>> display_scale(3, 3, 8), round(display_scale(224, 224, 8), 3), display_scale(28, 28, 6)
    (16, 0.878, 2)
    """
    grow = max(1, math.ceil(min_side / max(height, width)))
    fits = (max_width - GAP * (columns + 1)) / (columns * width)
    if grow <= fits:
        return grow
    return math.floor(fits) if fits >= 1 else fits


def resized(tile: np.ndarray, scale: float) -> np.ndarray:
    """A uint8 tile enlarged pixel for pixel (whole `scale`) or shrunk by averaging."""
    if scale >= 1:
        factor = int(scale)
        return np.repeat(np.repeat(tile, factor, axis=0), factor, axis=1)
    height = max(1, round(tile.shape[0] * scale))
    width = max(1, round(tile.shape[1] * scale))
    return np.asarray(Image.fromarray(tile).resize((width, height), Image.Resampling.BOX))


def grid(tiles: list[np.ndarray], *, columns: int | None = None, min_side: int = MIN_SIDE,
         max_width: int = MAX_WIDTH, sliced: bool = False) -> Mosaic:
    """Equal-sized uint8 RGB tiles in a near-square grid, `GAP` pixels apart, each
    outlined in `FRAME_COLOUR`. `sliced`: the tiles hold slices apart (`slices`), whose
    separating lines grow with the tiles: the gap between tiles is then wider than two
    of them, so tiles stay told apart from slices."""
    if not tiles:
        raise ValueError("no tiles to lay out")
    height, width = tiles[0].shape[:2]
    cols = columns or math.ceil(math.sqrt(len(tiles)))
    rows = math.ceil(len(tiles) / cols)
    scale = display_scale(height, width, cols, min_side=min_side, max_width=max_width)
    gap = max(GAP, 2 * math.floor(scale) + 1) if sliced else GAP
    shown = [resized(t, scale) for t in tiles]
    th, tw = shown[0].shape[:2]
    image = np.empty((rows * (th + gap) + gap, cols * (tw + gap) + gap, 3), np.uint8)
    image[:] = GAP_COLOUR
    boxes = []
    for i, tile in enumerate(shown):
        r, c = divmod(i, cols)
        box = Box(gap + r * (th + gap), gap + c * (tw + gap), th, tw)
        Box(box.top - 1, box.left - 1, th + 2, tw + 2).of(image)[:] = FRAME_COLOUR
        box.of(image)[:] = tile
        boxes.append(box)
    return Mosaic(image, boxes, cols)


def enlarged(image: np.ndarray, min_side: int = 256) -> np.ndarray:
    """A small uint8 image enlarged pixel for pixel until its longer side has `min_side`.

    >>> enlarged(np.zeros((28, 28, 3), np.uint8)).shape
    (280, 280, 3)
    """
    factor = max(1, math.ceil(min_side / max(image.shape[:2])))
    return resized(image, factor)


def grey_bar(width: int, height: int = 14) -> np.ndarray:
    """A grey scale from black (left) to white (right), as a uint8 RGB strip: the key
    printed under tiles drawn in grey.

    >>> bar = grey_bar(100)
    >>> bar.shape, bar[0, 0].tolist(), bar[0, -1].tolist()
    ((14, 100, 3), [0, 0, 0], [255, 255, 255])
    """
    row = np.linspace(0, 255, max(width, 1)).round().astype(np.uint8)
    return np.repeat(np.repeat(row[np.newaxis, :, np.newaxis], 3, axis=2), height, axis=0)
