"""The figures of a run: training curves, the confusion matrix and grids of example
images (evaluate's misclassified ones)."""

from __future__ import annotations

import math
import textwrap
from collections import Counter
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from cnncli.plots.saving import save
from cnncli.text import percent, printable, probability

#: Write numbers into the confusion matrix's cells up to this many classes.
CELL_TEXT_MAX_CLASSES = 20
#: Show class names on the confusion matrix's axes up to this many classes.
TICK_LABELS_MAX_CLASSES = 120
#: The colour of the line where fine-tuning's second stage starts on the curves.
STAGE_LINE = "#7f7f7f"


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
    each dict's ``epoch`` if present, else the 1-based position in the list. A run of
    two stages (rows with ``stage`` 1, then 2: `train.fine_tune`) gets a dotted line
    where the second stage starts, in both panels.
    """
    epochs = [row.get("epoch", i + 1) for i, row in enumerate(history)]
    second = [e for e, row in zip(epochs, history, strict=True) if row.get("stage") == 2]
    switch = second[0] - 0.5 if second and second[0] != epochs[0] else None
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
        if switch is not None:
            ax.axvline(switch, color=STAGE_LINE, linestyle=":", label="stage 2 (fine-tuning)")
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if len(set(epochs)) == 1:  # (no whole number near one point: ticks at 0.96, 0.98)
            ax.set_xticks(epochs)
            ax.set_xlim(epochs[0] - 1, epochs[0] + 1)
        ax.grid(True, alpha=0.3)
        if drawn:
            ax.legend()
        else:
            ax.text(0.5, 0.5, f"no {metric} recorded", ha="center", va="center",
                    transform=ax.transAxes, color="gray")
    return save(fig, path)


def _short(name: str, width: int = 18) -> str:
    """`name` as an axis shows it: escaped (a font has no glyph for ESC), and cut in the
    middle when longer than `width` (names alike at the start, "Sony Alpha 7 IV ... front
    view" and "... back view", stay told apart by their ends).

    >>> _short("Sony Alpha 7 IV camera - front view"), _short("cat")
    ('Sony Alph…ont view', 'cat')
    """
    name = printable(name, one_line=True)
    if len(name) <= width:
        return name
    head = (width - 1) // 2 + (width - 1) % 2
    return f"{name[:head]}…{name[len(name) - (width - 1 - head):]}"


def _axis_labels(class_names) -> list[str]:
    """Each class's `_short` name; two that come out the same get their class numbers.

    >>> _axis_labels(["a" * 10 + "1" + "b" * 10, "a" * 10 + "2" + "b" * 10, "c"])
    ['aaaaaaaaa…bbbbbbbb (0)', 'aaaaaaaaa…bbbbbbbb (1)', 'c']
    """
    labels = [_short(str(name)) for name in class_names]
    seen = Counter(labels)
    return [f"{label} ({i})" if seen[label] > 1 else label for i, label in enumerate(labels)]


def _cell_text(count: int, share: float, normalize: bool, n_classes: int) -> str:
    if not normalize:
        return str(count)
    shown = percent(share, 0)  # (never 0% nor 100% for a share that is not)
    return f"{shown}\n({count})" if n_classes <= 10 else shown


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
        labels = _axis_labels(class_names)
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
    return save(fig, path)


def misclassified_title(true_name: str, predicted_name: str, confidence: float) -> str:
    """A grid title for a wrong prediction (`cnncli.infer.metrics.Mistake`): a line for
    each class, its name escaped (a name's own newline or " / " never breaks it) and a
    long one cut in the middle to `TITLE_NAME` characters (a line then wraps into
    `TITLE_LINES` at most, the confidence kept).

    >>> misclassified_title("Shirt", "T-shirt/top", 0.97)
    'true: Shirt\\npred: T-shirt/top 97%'
    >>> misclassified_title("a" * 200, "b" * 200, 0.5).split("\\n")[1]
    'pred: bbbbbbbbbbbbbbbbb…bbbbbbbbbbbbbbbb 50%'
    """
    return (f"true: {_short(true_name, TITLE_NAME)}\n"
            f"pred: {_short(predicted_name, TITLE_NAME)} {probability(confidence, 0)}")


#: The characters of a class name a misclassified image's title keeps; a title line wraps
#: at `TITLE_WIDTH` and keeps at most `TITLE_LINES` lines (names of 200 characters made
#: the titles cover the images, and the grid's layout collapse).
TITLE_NAME, TITLE_WIDTH, TITLE_LINES = 34, 24, 3


def _wrap(title: str) -> str:
    """Wrap each line of a title, so it fits above a small image.

    >>> print(_wrap(misclassified_title("frog", "European_fire_salamander", 0.97)))
    true: frog
    pred:
    European_fire_salamander
    97%
    >>> print(_wrap("true: " + "x" * 80))
    true: xxxxxxxxxxxxxxxxxx
    xxxxxxxxxxxxxxxxxxxxxxxx
    xxxxxxxxxxxxxxxxxxxxxxx…
    """
    lines = []
    for line in title.split("\n"):
        wrapped = textwrap.wrap(line, TITLE_WIDTH) or [""]
        if len(wrapped) > TITLE_LINES:
            wrapped = wrapped[:TITLE_LINES]
            wrapped[-1] = wrapped[-1][:TITLE_WIDTH - 1] + "…"
        lines += wrapped
    return "\n".join(lines)


def image_grid(images, titles: list[str], path: str | Path, *, columns: int = 8) -> Path:
    """A grid of uint8 images (N, H, W, C) with C = 1 or 3, each with its title.

    A title's lines (``\\n``) stay lines, each wrapped: "true: Shirt\\npred: T-shirt/top 97%".
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
        ax.set_title(_wrap("\n".join(printable(line, one_line=True)
                                      for line in str(title).split("\n"))), fontsize=7)
        ax.axis("off")
    return save(fig, path)

