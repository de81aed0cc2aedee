"""Backups while training: every `train.backup_every` steps and at each epoch's end, never
of weights that are no longer finite; and the epoch's running metrics restored when a
run resumes in the middle of an epoch.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cnncli.run import checkpoint
from cnncli.run.state import TrainState


def weights_finite(model) -> bool:
    """Whether every trainable weight is finite: the loss of a step is computed before
    its update, so a finite loss proves nothing about the weights it leaves."""
    return all(np.isfinite(v.numpy()).all() for v in model.trainable_variables)


class Backups:
    """When to write a backup, and writing it."""

    def __init__(self, run: Path, model, state: TrainState, steps_per_epoch: int,
                 every: int):
        self.run, self.state, self.every = run, state, every
        self.steps_per_epoch = steps_per_epoch
        self.last = state.global_step(steps_per_epoch)
        # Resuming mid-epoch: the epoch's running metrics (restored from the backup into
        # the model) are put back at the epoch's start, after Keras has reset them.
        self.metric_values = ([v.numpy() for m in model.metrics for v in m.variables]
                              if state.step else None)

    def restore_metrics(self, model) -> None:
        """Put back the running metrics of a resumed epoch (once, at its start)."""
        if self.metric_values is None:
            return
        variables = [v for m in model.metrics for v in m.variables]
        for v, value in zip(variables, self.metric_values, strict=True):
            v.assign(value)
        self.metric_values = None

    def due(self) -> bool:
        return self.state.global_step(self.steps_per_epoch) - self.last >= self.every

    def save(self, model, checked: bool = False) -> bool:
        """Write a backup; False (nothing written) when a weight is no longer finite
        (`checked`: the caller just saw them finite; a look copies every weight)."""
        if not checked and not weights_finite(model):
            return False
        checkpoint.save(self.run, model, self.state)
        self.last = self.state.global_step(self.steps_per_epoch)
        return True
