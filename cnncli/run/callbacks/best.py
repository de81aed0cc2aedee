"""The best model of a run: ``best.keras``, saved whenever the monitored figure improves
in the direction Keras knows for it (`cnncli.run.monitor`)."""

from __future__ import annotations

from pathlib import Path

from cnncli.model.meta import ModelMeta
from cnncli.model.modelfile import save_model_atomic
from cnncli.run.monitor import improved
from cnncli.run.state import TrainState


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
