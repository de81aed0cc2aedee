"""The pictures `cnncli.viz` computes (uint8 arrays, boxes), written: titled images
placed pixel for pixel, colormaps, box diagrams of a network."""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from cnncli.plots.saving import DPI, NO_GLYPH, save
from cnncli.text import printable

#: Pixels above each panel for its title, and around panels.
PANEL_TITLE = 26
PANEL_MARGIN = 8
PANEL_FONT = 10


def colormap(values01, name: str = "inferno") -> np.ndarray:
    """Values in [0, 1] (any shape) as uint8 RGB colours of matplotlib's colormap `name`
    (inferno: from black through red to pale yellow, brighter all the way, so it reads
    printed in grey and by colour-blind eyes, as jet does not).

    >>> colormap(np.array([0.0, 1.0])).tolist()
    [[0, 0, 3], [252, 254, 164]]
    """
    from matplotlib import colormaps

    rgba = colormaps[name](np.clip(np.asarray(values01, dtype=np.float64), 0, 1))
    return (rgba[..., :3] * 255).astype(np.uint8)


def panel_origins(sizes: list[tuple[int, int]]) -> tuple[list[tuple[int, int]], int, int]:
    """Where `pixel_panels` puts images of these (height, width): each one's (top, left)
    pixel, and the picture's height and width.

    >>> panel_origins([(10, 20), (5, 40)])
    ([(26, 8), (70, 8)], 91, 56)
    """
    origins, top = [], 0
    for height, _ in sizes:
        top += PANEL_TITLE
        origins.append((top, PANEL_MARGIN))
        top += height + PANEL_MARGIN
    width = max((w for _, w in sizes), default=0) + 2 * PANEL_MARGIN
    return origins, top + PANEL_MARGIN, width


def pixel_panels(panels: list[tuple[str, np.ndarray]], path: str | Path) -> Path:
    """Titled uint8 RGB images, one under the other, each drawn pixel for pixel (no
    resampling: pixel (r, c) of an image is pixel ``origin + (r, c)`` of the PNG, see
    `panel_origins`), on white; wider than the widest image if a title needs it."""
    images = [np.asarray(image) for _, image in panels]
    for image in images:
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[-1] != 3:
            raise ValueError(f"panels must be uint8 (H, W, 3), got {image.dtype} "
                             f"{image.shape}")
    origins, height, width = panel_origins([image.shape[:2] for image in images])
    # A title wider than its image widens the picture: it is never cut off.
    titles = [printable(str(title), one_line=True) for title, _ in panels]
    width = max([width, *(_text_width(title, PANEL_FONT) + 2 * PANEL_MARGIN
                          for title in titles)])
    fig = Figure(figsize=(width / DPI, height / DPI), dpi=DPI)
    for title, image, (top, left) in zip(titles, images, origins, strict=True):
        fig.figimage(image, xo=left, yo=height - top - image.shape[0], origin="upper")
        fig.text(left / width, 1 - (top - PANEL_TITLE / 2) / height, title,
                 ha="left", va="center", fontsize=PANEL_FONT)
    return save(fig, path)


def _text_width(text: str, size: float) -> int:
    """How many pixels wide `text` is drawn at `size` points (characters the font lacks:
    said once when the picture is saved, `saving.save`)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    fig = Figure(dpi=DPI)
    drawn = fig.text(0, 0, text, fontsize=size)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=NO_GLYPH.pattern)
        return math.ceil(drawn.get_window_extent(FigureCanvasAgg(fig).get_renderer()).width)


@dataclass(frozen=True)
class DiagramBox:
    """A rectangle of `box_diagram`, in data units: its lower-left corner and size."""

    left: float
    bottom: float
    width: float
    height: float
    colour: str
    text: str = ""  # on the box, upright (else across, else below it if too long)
    caption: str = ""  # under the box
    hatch: str = ""  # matplotlib's hatch pattern over the colour ("xxx"), if any


def box_diagram(boxes: list[DiagramBox], lines: list[list[tuple[float, float]]],
                path: str | Path, *, title: str = "",
                legend: list[tuple[str, str, str]] = ()) -> Path:
    """Boxes joined by lines (each a list of points, drawn behind the boxes), with a
    legend of (colour, label, hatch: "" for none)."""
    from matplotlib.patches import Patch, Rectangle

    points = [p for line in lines for p in line]
    left = min(b.left for b in boxes)
    right = max(b.left + b.width for b in boxes)
    bottom = min(b.bottom for b in boxes)
    top = max([b.bottom + b.height for b in boxes] + [y for _, y in points])
    inch = min(0.16, 40 / (right - left))  # inches per data unit; at most 40 inches wide
    below = 1.2  # inches under the lowest box, for captions
    # wide enough for the title and the legend on the line above the boxes (a network of
    # two layers is narrower than its legend, which was cut)
    em = 1 / 72  # an inch a point
    heading = 0.3 + len(title) * 10 * 0.6 * em + 0.4 + sum(
        (2.8 + 0.62 * len(label)) * 7 * em for _, label, _ in legend) + 0.2
    fig = Figure(figsize=(max((right - left) * inch + 0.6, heading),
                          (top - bottom) * inch + below + 0.9))
    ax = fig.add_axes((0.3 / fig.get_figwidth(), below / fig.get_figheight(),
                       (right - left) * inch / fig.get_figwidth(),
                       (top - bottom) * inch / fig.get_figheight()))
    ax.set_xlim(left, right)
    ax.set_ylim(bottom, top)
    ax.axis("off")
    for line in lines:
        xs, ys = zip(*line, strict=True)
        ax.plot(xs, ys, color="#777777", linewidth=0.8, zorder=1)
    points_per_unit = inch * 72
    for b in boxes:
        ax.add_patch(Rectangle((b.left, b.bottom), b.width, b.height, facecolor=b.colour,
                               edgecolor="#333333", linewidth=0.6, zorder=2,
                               hatch=b.hatch or None,
                               clip_on=False))  # outer boxes' edges lie on the axes' edges

        x = b.left + b.width / 2
        # 6-point text is about 0.62 x 6 points a character: write it on the box, upright
        # if it fits so, else across (a short wide box: 7x7 branches of an inception
        # module, whose texts below would fall on each other), else under the diagram.
        long = len(b.text) * 6 * 0.62 + 4
        upright = bool(b.text) and long < b.height * points_per_unit
        across = bool(b.text) and not upright and long < b.width * points_per_unit \
            and b.height * points_per_unit > 8
        if upright or across:
            ax.text(x, b.bottom + b.height / 2, b.text, rotation=90 if upright else 0,
                    fontsize=6, ha="center", va="center", zorder=3,
                    bbox=dict(facecolor="white", edgecolor="none", pad=1) if b.hatch
                    else None)  # readable over the hatching
        fits = upright or across
        under = b.caption if fits else f"{b.caption}  {b.text}".strip()
        if under:
            ax.annotate(under, (x, bottom), xytext=(0, -4), textcoords="offset points",
                        rotation=90, fontsize=6, ha="center", va="top",
                        annotation_clip=False)
    if legend:
        fig.legend(handles=[Patch(facecolor=c, edgecolor="#333333", label=t, hatch=h or None)
                            for c, t, h in legend], loc="upper right", ncols=len(legend),
                   fontsize=7, frameon=False)
    if title:
        fig.text(0.3 / fig.get_figwidth(), 1 - 0.25 / fig.get_figheight(),
                 printable(title, one_line=True), fontsize=10, va="center")
    return save(fig, path)
