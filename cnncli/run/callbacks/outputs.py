"""What a run writes after each epoch for people to read: ``history.csv``, TensorBoard
logs (``logs/``) and ``curves.png`` (drawn again when enough time has passed since its
last drawing, and when the run ends: `CURVES_SPACING`)."""

from __future__ import annotations

import csv
import io
import time
from pathlib import Path

from cnncli import files, plots
from cnncli.run import rundir
from cnncli.run.state import EpochRow
from cnncli.runtime import import_tf

#: history.csv's first columns, in this order; other figures follow, sorted.
HISTORY_FIELDS = ["epoch", "loss", "accuracy", "val_loss", "val_accuracy", "learning_rate",
                  "seconds", "images_per_s"]


#: curves.png is drawn again once this many times its last drawing's time has passed, so
#: drawing takes at most about 1/20 of a run: a plot takes 0.3 s, and the 30 epochs of a
#: hundred photos 0.07 s each (drawn every epoch, the run took four times as long).
CURVES_SPACING = 20


class Outputs:
    """Writes the epoch outputs of the run in `run`."""

    def __init__(self, run: Path):
        self.run = run
        self.writer = import_tf().summary.create_file_writer(str(run / "logs"))
        self.drawn_at, self.drawing_seconds, self.drawn_rows = -float("inf"), 0.0, 0

    def write(self, history: list[EpochRow], row: EpochRow) -> None:
        self.write_history(history)
        tf = import_tf()
        with self.writer.as_default(step=row["epoch"]):
            for key, value in row.items():
                if key != "epoch":
                    tf.summary.scalar(key, value)
        self.writer.flush()
        if time.monotonic() - self.drawn_at >= CURVES_SPACING * self.drawing_seconds:
            self.draw(history)

    def write_history(self, history: list[EpochRow]) -> None:
        """``history.csv``: a row per epoch of `history`, written whole."""
        buffer = io.StringIO()
        fields = HISTORY_FIELDS + sorted({k for r in history for k in r} - set(HISTORY_FIELDS))
        writer = csv.DictWriter(buffer, fieldnames=fields, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(history)
        files.write_atomic(self.run / rundir.HISTORY, buffer.getvalue())

    def draw(self, history: list[EpochRow]) -> None:
        """curves.png of `history`, unless it shows all of it already."""
        if not history or self.drawn_rows == len(history):
            return
        start = time.monotonic()
        plots.training_curves(history, self.run / "curves.png")
        self.drawn_at, self.drawn_rows = time.monotonic(), len(history)
        self.drawing_seconds = self.drawn_at - start
