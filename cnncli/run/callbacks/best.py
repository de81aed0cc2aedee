"""The best model of a run: ``best.keras``, saved whenever the monitored figure improves
in the direction Keras knows for it (`cnncli.run.monitor`)."""

from __future__ import annotations

from pathlib import Path

from cnncli.model.meta import ModelMeta
from cnncli.model.modelfile import save_model_atomic
from cnncli.run.monitor import improved
from cnncli.run.state import TrainState


def best_monitor(metrics: list[str], validation: bool) -> str:
    """The figure ``best.keras`` follows: validation accuracy when recorded, else the
    validation loss, else the training loss.

    >>> best_monitor(["accuracy"], True), best_monitor(["auc"], True), best_monitor([], False)
    ('val_accuracy', 'val_loss', 'loss')
    """
    if validation:
        return "val_accuracy" if "accuracy" in metrics else "val_loss"
    return "loss"


class BestModel:
    """Saves the model to ``best.keras`` when `monitor` beats the best so far."""

    def __init__(self, run: Path, state: TrainState, monitor: str, way: str, meta: ModelMeta):
        self.path, self.state, self.monitor, self.way = run / "best.keras", state, monitor, way
        self.meta = meta

    def update(self, model, row: dict) -> None:
        value = row.get(self.monitor)
        if value is not None and improved(value, self.state.best, self.way):
            self.state.best, self.state.best_epoch = value, row["epoch"]
            save_model_atomic(model, self.path, self.meta)
