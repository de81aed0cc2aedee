"""PNG plots: training curves, confusion matrices and grids of example images; and the
pictures `cnncli.viz` computes (titled images placed pixel for pixel, box diagrams).

Each function draws on its own matplotlib `Figure` (no pyplot state, so nothing
leaks between calls), renders it to memory, and then writes the PNG atomically:
a temporary file in the same folder, renamed over `path`. A reader never sees a
half-written image. Missing parent folders are created.

>>> import tempfile, pathlib
>>> folder = pathlib.Path(tempfile.mkdtemp())
>>> training_curves([{"loss": 0.9, "accuracy": 0.6}, {"loss": 0.5, "accuracy": 0.8}],
...                 folder / "curves.png").name
'curves.png'
>>> sorted(p.name for p in folder.iterdir())
['curves.png']
"""

from __future__ import annotations

import errno
import io
import math
import textwrap
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # draw to files only; never open a window or need a display
# Titles hold class, layer and file names: "$x$" in one is text, not a formula (a name
# with "$\foo$" crashed the drawing).
matplotlib.rcParams["text.parse_math"] = False

import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from cnncli.errors import ConfigError, WriteError  # noqa: E402
from cnncli.files import (  # noqa: E402
    missing_folders,
    remove_empty,
    writable_folder,
    write_atomic,
)
from cnncli.text import percent, printable, shorten  # noqa: E402

DPI = 110
#: Write numbers into the confusion matrix's cells up to this many classes.
CELL_TEXT_MAX_CLASSES = 20
#: Show class names on the confusion matrix's axes up to this many classes.
TICK_LABELS_MAX_CLASSES = 120


#: The formats a picture can be written in, by the output's suffix.
FORMATS = {".png": "png", ".jpg": "jpeg", ".jpeg": "jpeg", ".pdf": "pdf", ".svg": "svg"}


def picture_format(path: str | Path) -> str:
    """The format `path`'s suffix asks for, or a `ConfigError` for a suffix that is not a
    picture's (a picture named ``x.jpg`` must be JPEG data, not PNG bytes under that name).

    >>> picture_format("maps/conv1.JPG")
    'jpeg'
    """
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        what = f"as '{suffix}'" if suffix else "without a suffix saying its format"
        raise ConfigError(f"cannot write a picture {what}", file=str(path),
                          hint="end the name in " + ", ".join(FORMATS))
    return FORMATS[suffix]


def picture_path(path: str | Path, option: str) -> str:
    """`path` (``~`` expanded), given to `option` as the picture to write, once its
    format and its folder are checked: before the work that draws it (seconds for a
    VGG16). A folder there, an unknown suffix, a file in the way of its folder or a
    read-only one are `ConfigError`s."""
    path = Path(path).expanduser()
    if path.is_dir():
        raise ConfigError(f"{option} is the picture to write, and this is a folder",
                          file=str(path), hint=f"give the picture's name, e.g. {option} "
                                               f"{path / 'picture.png'}")
    picture_format(path)
    made = missing_folders(path.parent)
    writable_folder(path.parent)  # a file in the way, a read-only folder
    remove_empty(made)  # made again with the picture: none is left if the work fails
    return str(path)


def check_picture_folder(path: str | Path, option: str) -> None:
    """A `ConfigError` if `path`, given to `option` as the folder to write pictures into,
    is a picture's name (``heat.png``) and no folder yet: it would become a folder.

    >>> check_picture_folder("cams", "--output")
    """
    if Path(path).suffix.lower() in FORMATS and not Path(path).is_dir():
        raise ConfigError(f"{option} is the folder to write the pictures into (one per "
                          "image), and this is a picture's name", file=str(path),
                          hint=f"give a folder, e.g. {option} {Path(path).with_suffix('')}")


def _save(fig: Figure, path: str | Path) -> Path:
    """Render `fig` in the format of `path`'s suffix, then write it to `path` atomically."""
    path = Path(path)
    kind = picture_format(path)
    buffer = io.BytesIO()
    fig.savefig(buffer, format=kind, dpi=DPI)
    try:
        writable_folder(path.parent)
        write_atomic(path, buffer.getvalue())
    except OSError as exc:
        message = f"cannot write the plot: {exc.strerror or exc}"
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):  # the disk's, not the command's
            raise WriteError(message, file=str(path), hint="free some disk space, or "
                             "choose another output folder") from None
        raise ConfigError(message, file=str(path),  # a folder in the way, no permission
                          hint="choose a writable output folder") from None
    return path


def _series(history: list[dict], key: str) -> np.ndarray:
    """The values of `key` per epoch, NaN where an epoch does not have it."""
    values = []
    for row in history:
        try:
            values.append(float(row.get(key)))
        except (TypeError, ValueError):  # missing (None) or not a number
            values.append(math.nan)
    return np.array(values, dtype=np.float64)


def training_curves(history: list[dict], path: str | Path) -> Path:
    """Two panels, loss and accuracy, each with training and validation curves.

    `history` has one dict per epoch with any of the keys ``loss``, ``accuracy``,
    ``val_loss``, ``val_accuracy`` (missing keys are simply not drawn). The x axis is
    each dict's ``epoch`` if present, else the 1-based position in the list.
    """
    epochs = [row.get("epoch", i + 1) for i, row in enumerate(history)]
    fig = Figure(figsize=(10, 4), layout="constrained")
    panels = fig.subplots(1, 2)
    for ax, metric, title in ((panels[0], "loss", "Loss"), (panels[1], "accuracy", "Accuracy")):
        drawn = False
        for key, label, style in ((metric, "training", "-"), (f"val_{metric}", "validation", "--")):
            values = _series(history, key)
            if np.isnan(values).all():
                continue
            ax.plot(epochs, values, style, marker="o", markersize=3, label=label)
            drawn = True
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(True, alpha=0.3)
        if drawn:
            ax.legend()
        else:
            ax.text(0.5, 0.5, f"no {metric} recorded", ha="center", va="center",
                    transform=ax.transAxes, color="gray")
    return _save(fig, path)


def _short(name: str, width: int = 18) -> str:
    name = printable(name, one_line=True)  # a font has no glyph for ESC
    return shorten(name, width, "…")


def _cell_text(count: int, share: float, normalize: bool, n_classes: int) -> str:
    if not normalize:
        return str(count)
    percent = "<1%" if 0 < share < 0.005 else f"{share:.0%}"
    return f"{percent}\n({count})" if n_classes <= 10 else percent


def confusion_matrix(confusion, class_names: list[str], path: str | Path, *,
                     normalize: bool = True) -> Path:
    """A heat map of `confusion` (rows = true class, columns = predicted class).

    With `normalize`, colours and cell text are the share of each true class (each
    row sums to 100%; up to 10 classes the count is shown too); otherwise raw counts.
    Numbers are written in the cells up to 20 classes, class names on the axes up to
    120 classes; the figure grows with the number of classes.
    """
    counts = np.asarray(confusion, dtype=np.int64)
    n = len(class_names)
    if counts.shape != (n, n):
        raise ValueError(f"confusion has shape {counts.shape}, expected ({n}, {n})")
    totals = counts.sum(axis=1, keepdims=True)
    shares = np.divide(counts, totals, out=np.zeros(counts.shape), where=totals > 0)
    values = shares if normalize else counts
    vmax = 1.0 if normalize else max(int(counts.max(initial=0)), 1)

    side = min(max(6.0, 0.45 * n + 3.0), 24.0)
    fig = Figure(figsize=(side + 1.5, side), layout="constrained")
    ax = fig.add_subplot()
    image = ax.imshow(values, cmap="Blues", vmin=0, vmax=vmax, interpolation="nearest")
    fig.colorbar(image, ax=ax, shrink=0.8,
                 label="share of the true class" if normalize else "examples")

    if n <= TICK_LABELS_MAX_CLASSES:
        row_points = side * 72 / n  # height of one row, in points
        font = min(10.0, max(4.0, row_points / 2))
        labels = [_short(str(name)) for name in class_names]
        rotation = 45 if n <= 20 else 90
        ax.set_xticks(range(n), labels, fontsize=font, rotation=rotation,
                      ha="right" if rotation == 45 else "center", rotation_mode="anchor")
        ax.set_yticks(range(n), labels, fontsize=font)
    else:
        ax.set_xticks([])
        ax.set_yticks([])
    if n <= CELL_TEXT_MAX_CLASSES:
        font = 9 if n <= 10 else 7
        for t in range(n):
            for p in range(n):
                dark = values[t, p] > 0.5 * vmax
                ax.text(p, t, _cell_text(int(counts[t, p]), float(shares[t, p]), normalize, n),
                        ha="center", va="center", fontsize=font,
                        color="white" if dark else "black")
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    what = "% of each true class" if normalize else "counts"
    ax.set_title(f"Confusion matrix ({what}, {n} classes, {int(counts.sum()):,} examples)")
    return _save(fig, path)


def misclassified_title(true_name: str, predicted_name: str, confidence: float) -> str:
    """A grid title for a wrong prediction (`cnncli.infer.metrics.Mistake`).

    >>> misclassified_title("Shirt", "T-shirt/top", 0.97)
    'true: Shirt / pred: T-shirt/top 97%'
    """
    return f"true: {true_name} / pred: {predicted_name} {percent(confidence, 0)}"


def _wrap(title: str) -> str:
    """Break a title at " / " and wrap each part, so it fits above a small image."""
    return "\n".join(textwrap.fill(part, 24) for part in title.split(" / "))


def image_grid(images, titles: list[str], path: str | Path, *, columns: int = 8) -> Path:
    """A grid of uint8 images (N, H, W, C) with C = 1 or 3, each with its title.

    Titles are split at " / " onto separate lines, e.g. "true: Shirt / pred: T-shirt/top 97%".
    With no images, the PNG says so.
    """
    array = np.asarray(images)
    if array.ndim == 3:  # (N, H, W): grayscale without a channel axis
        array = array[..., np.newaxis]
    if array.ndim != 4 or array.shape[-1] not in (1, 3):
        raise ValueError(f"images must be (N, H, W, 1 or 3), got shape {array.shape}")
    if array.dtype != np.uint8:
        raise ValueError(f"images must be uint8, got {array.dtype}")
    if len(titles) != len(array):
        raise ValueError(f"{len(titles)} titles for {len(array)} images")

    count = len(array)
    cols = max(1, min(columns, count))
    rows = max(1, math.ceil(count / cols))
    fig = Figure(figsize=(1.8 * cols, 2.2 * rows), layout="constrained")
    if count == 0:
        fig.text(0.5, 0.5, "no images", ha="center", va="center", color="gray")
    for i, (image, title) in enumerate(zip(array, titles, strict=True)):
        ax = fig.add_subplot(rows, cols, i + 1)
        if image.shape[-1] == 1:
            ax.imshow(image[..., 0], cmap="gray", vmin=0, vmax=255, interpolation="nearest")
        else:
            ax.imshow(image, interpolation="nearest")
        ax.set_title(_wrap(printable(str(title))), fontsize=7)
        ax.axis("off")
    return _save(fig, path)


# ------------------------------------------------------------------- cnncli.viz's pictures
# `cnncli.viz` computes its pictures as uint8 arrays and boxes; these write them.

#: Pixels above each panel for its title, and around panels.
PANEL_TITLE = 26
PANEL_MARGIN = 8
PANEL_FONT = 10


def colormap(values01, name: str = "jet") -> np.ndarray:
    """Values in [0, 1] (any shape) as uint8 RGB colours of matplotlib's colormap `name`.

    >>> colormap(np.array([0.0, 1.0])).tolist()
    [[0, 0, 127], [127, 0, 0]]
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
    return _save(fig, path)


def _text_width(text: str, size: float) -> int:
    """How many pixels wide `text` is drawn at `size` points."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    fig = Figure(dpi=DPI)
    drawn = fig.text(0, 0, text, fontsize=size)
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


def box_diagram(boxes: list[DiagramBox], lines: list[list[tuple[float, float]]],
                path: str | Path, *, title: str = "",
                legend: list[tuple[str, str]] = ()) -> Path:
    """Boxes joined by lines (each a list of points, drawn behind the boxes), with a
    legend of (colour, label)."""
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
        (2.8 + 0.62 * len(label)) * 7 * em for _, label in legend) + 0.2
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
                    fontsize=6, ha="center", va="center", zorder=3)
        fits = upright or across
        under = b.caption if fits else f"{b.caption}  {b.text}".strip()
        if under:
            ax.annotate(under, (x, bottom), xytext=(0, -4), textcoords="offset points",
                        rotation=90, fontsize=6, ha="center", va="top",
                        annotation_clip=False)
    if legend:
        fig.legend(handles=[Patch(facecolor=c, edgecolor="#333333", label=t)
                            for c, t in legend], loc="upper right", ncols=len(legend),
                   fontsize=7, frameon=False)
    if title:
        fig.text(0.3 / fig.get_figwidth(), 1 - 0.25 / fig.get_figheight(),
                 printable(title, one_line=True), fontsize=10, va="center")
    return _save(fig, path)
