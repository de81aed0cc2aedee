"""What a run writes after each epoch for people to read: ``history.csv``, TensorBoard
logs (``logs/``) and ``curves.png``."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from cnncli import files, plots
from cnncli.runtime import import_tf

#: history.csv's first columns, in this order; other figures follow, sorted.
HISTORY_FIELDS = ["epoch", "loss", "accuracy", "val_loss", "val_accuracy", "learning_rate",
                  "seconds", "images_per_s"]


class Outputs:
    """Writes the epoch outputs of the run in `run`."""

    def __init__(self, run: Path):
        self.run = run
        self.writer = import_tf().summary.create_file_writer(str(run / "logs"))

    def write(self, history: list[dict], row: dict) -> None:
        buffer = io.StringIO()
        fields = HISTORY_FIELDS + sorted({k for r in history for k in r} - set(HISTORY_FIELDS))
        writer = csv.DictWriter(buffer, fieldnames=fields, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(history)
        files.write_atomic(self.run / "history.csv", buffer.getvalue())
        tf = import_tf()
        with self.writer.as_default(step=row["epoch"]):
            for key, value in row.items():
                if key != "epoch":
                    tf.summary.scalar(key, value)
        self.writer.flush()
        plots.training_curves(history, self.run / "curves.png")
