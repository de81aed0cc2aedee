"""The best model of a run: ``best.keras``, saved whenever the monitored figure improves
in the direction Keras knows for it (`cnncli.run.monitor`)."""

from __future__ import annotations

import math
from pathlib import Path

from cnncli import runfolder
from cnncli.model.meta import ModelMeta
from cnncli.model.modelfile import save_model_atomic
from cnncli.run.monitor import improved
from cnncli.run.state import EpochRow, TrainState


class BestModel:
    """Saves the model to ``best.keras`` when `monitor` beats the best so far, or ties
    with it at a lower loss: accuracy on a small validation set ties often (16 images:
    in steps of 6%), and of two epochs alike in it the one with the lower loss is the
    better model (one that stopped at the first would drop a whole fine-tuning stage)."""

    def __init__(self, run: Path, state: TrainState, monitor: str, way: str, meta: ModelMeta):
        self.path, self.state, self.monitor, self.way = run / runfolder.BEST_MODEL, state, \
            monitor, way
        self.meta = meta
        if state.best_of != monitor and state.best_epoch:  # a backup from before cnncli said
            # which figure its best is of (a run of `metrics: [acc]` followed val_loss):
            # the best model on file stays the best, measured by the figure followed now
            row = next((r for r in state.history if r["epoch"] == state.best_epoch), {})
            value = row.get(monitor)
            state.best = None if value is None or math.isnan(value) else value
        state.best_of = monitor

    def update(self, model, row: EpochRow) -> None:
        value = row.get(self.monitor)
        if value is not None and (improved(value, self.state.best, self.way)
                                  or self._tie_at_a_lower_loss(row, value)):
            self.state.best, self.state.best_epoch = value, row["epoch"]
            save_model_atomic(model, self.path, self.meta)

    def _tie_at_a_lower_loss(self, row: EpochRow, value: float) -> bool:
        """Whether `row` ties with the best epoch on the monitored figure (not itself a
        loss) and has a lower loss of the same split (``val_loss`` for ``val_accuracy``)."""
        loss = "val_loss" if self.monitor.startswith("val_") else "loss"
        if value != self.state.best or self.monitor == loss:
            return False
        best = next((r for r in self.state.history if r["epoch"] == self.state.best_epoch),
                    {})
        if row.get(loss) is None or math.isnan(row[loss]):
            return False
        return best.get(loss) is None or math.isnan(best[loss]) or row[loss] < best[loss]
