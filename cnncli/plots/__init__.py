"""Pictures: training curves, confusion matrices and grids of example images
(`run_figures`); the pictures `cnncli.viz` computes: titled images placed pixel for
pixel, box diagrams (`pixels`); and how each is written (`saving`).

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

import matplotlib

matplotlib.use("Agg")  # draw to files only; never open a window or need a display
# Titles hold class, layer and file names: "$x$" in one is text, not a formula (a name
# with "$\foo$" crashed the drawing).
matplotlib.rcParams["text.parse_math"] = False

from cnncli.plots.pixels import (  # noqa: E402
    PANEL_MARGIN,
    PANEL_TITLE,
    DiagramBox,
    box_diagram,
    colormap,
    panel_origins,
    pixel_panels,
)
from cnncli.plots.run_figures import (  # noqa: E402
    confusion_matrix,
    image_grid,
    misclassified_title,
    training_curves,
)
from cnncli.plots.saving import (  # noqa: E402
    FORMATS,
    check_picture_folder,
    picture_format,
    picture_path,
)

__all__ = [
    "FORMATS",
    "PANEL_MARGIN",
    "PANEL_TITLE",
    "DiagramBox",
    "box_diagram",
    "check_picture_folder",
    "colormap",
    "confusion_matrix",
    "image_grid",
    "misclassified_title",
    "panel_origins",
    "picture_format",
    "picture_path",
    "pixel_panels",
    "training_curves",
]
