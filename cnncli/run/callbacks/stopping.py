"""Decisions taken at an epoch's end from its figures: early stopping, and lowering the
learning rate on a plateau. Both keep their counters in the run's `TrainState`, so a
resumed run decides as an uninterrupted one would."""

from __future__ import annotations

from cnncli import config
from cnncli.run.monitor import improved
from cnncli.run.state import EpochRow, TrainState
from cnncli.text import count


class EarlyStopping:
    """Stop after `patience` epochs without improvement of `monitor`."""

    def __init__(self, section: config.EarlyStoppingSection, state: TrainState, way: str):
        self.section, self.state, self.way = section, state, way

    def should_stop(self, row: EpochRow) -> bool:
        es = self.section
        if es.monitor not in row:
            return False
        if improved(row[es.monitor], self.state.es_best, self.way, es.min_delta):
            self.state.es_best, self.state.wait = row[es.monitor], 0
            return False
        self.state.wait += 1
        return self.state.wait >= es.patience

    def note(self, epoch: int, epochs: int, fine_tune_pending: bool) -> str:
        """What to say when it stops the run after `epoch` (1-based) of `epochs`."""
        es = self.section
        return (f"early stopping: {es.monitor} has not improved for "
                f"{count(es.patience, 'epoch')}: the run ends after epoch {epoch} "
                f"of {epochs}" + ("; its fine-tuning stage (train.fine_tune) does not run"
                                  if fine_tune_pending else ""))


class Plateau:
    """The ``plateau`` schedule: multiply the learning rate by `factor` after `patience`
    epochs without a lower validation loss (training loss without validation)."""

    def __init__(self, schedule: config.ScheduleSection, state: TrainState):
        self.schedule, self.state = schedule, state

    def update(self, model, row: EpochRow) -> str | None:
        """Lower the rate if due; return a note saying so, else None."""
        key = "val_loss" if "val_loss" in row else "loss"
        if improved(row[key], self.state.plateau_best, "min"):
            self.state.plateau_best, self.state.plateau_wait = row[key], 0
            return None
        self.state.plateau_wait += 1
        s = self.schedule
        if self.state.plateau_wait < s.patience:
            return None
        rate = model.optimizer.learning_rate
        new = max(float(rate.numpy()) * s.factor, s.min_lr)
        rate.assign(new)
        self.state.plateau_wait = 0
        return (f"{key.replace('_', ' ')} has not improved for "
                f"{count(s.patience, 'epoch')}: learning rate now {new:g}")
