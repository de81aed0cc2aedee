"""Which way a figure improves: the direction Keras knows for each metric, not a guess
from its name (``val_auc`` and ``val_precision`` go up, ``val_loss`` and ``val_mae`` go
down).

>>> improved(0.8, 0.7, "max"), improved(0.8, 0.7, "min"), improved(0.8, None, "min")
(True, False, True)
"""

from __future__ import annotations

from dataclasses import dataclass

from cnncli.errors import ConfigError


def best_monitor(metrics: list[str], validation: bool) -> str:
    """The figure ``best.keras`` follows: validation accuracy when recorded, else the
    validation loss, else the training loss.

    >>> best_monitor(["accuracy"], True), best_monitor(["auc"], True), best_monitor([], False)
    ('val_accuracy', 'val_loss', 'loss')
    """
    if validation:
        return "val_accuracy" if "accuracy" in metrics else "val_loss"
    return "loss"


def direction(model, monitor: str, mode: str = "auto") -> str:
    """``"min"`` or ``"max"`` for the figure `monitor` (``val_auc``...) of a compiled model.

    `mode` ``min``/``max`` wins; ``auto`` asks Keras as its MonitorCallback does: a loss
    goes down, a metric goes the way its ``_direction`` says (``up`` for accuracy, AUC,
    precision, recall; ``down`` for errors).

    Raises:
        ConfigError: ``auto`` and Keras does not know the metric's direction.
    """
    if mode in ("min", "max"):
        return mode
    name = monitor.removeprefix("val_")
    if name == "loss" or name.endswith("_loss"):
        return "min"
    for metric in _metrics(model):
        if metric.name == name and hasattr(metric, "_direction"):
            return "max" if metric._direction == "up" else "min"
    raise ConfigError(
        f"cannot tell whether '{monitor}' should go up or down",
        hint="set `train.early_stopping.mode: max` (higher is better) or `min`")


def _metrics(model) -> list:
    """The compiled metrics, unwrapped from Keras' containers (as MonitorCallback does)."""
    from keras.src.trainers import compile_utils

    found = []
    for m in getattr(model, "metrics", []):
        if isinstance(m, (compile_utils.CompileMetrics, compile_utils.MetricsList)):
            found.extend(m.metrics)
        else:
            found.append(m)
    return found


def improved(value: float, best: float | None, way: str, min_delta: float = 0.0) -> bool:
    """True when `value` beats `best` by more than `min_delta` in direction `way`."""
    if best is None:
        return True
    return value > best + min_delta if way == "max" else value < best - min_delta


@dataclass(frozen=True)
class Directions:
    """What a run follows and which way each figure improves: the best model's
    (`monitor`, `best`) and early stopping's (None without it)."""

    monitor: str
    best: str
    early_stopping: str | None = None

    @classmethod
    def of(cls, model, train, validation: bool) -> Directions:
        """For the compiled `model` trained by the `train` section, with or without a
        validation part. Raises `ConfigError` for a figure whose way Keras does not know
        (before any run folder is made)."""
        monitor = best_monitor(list(train.metrics), validation)
        early = train.early_stopping
        return cls(monitor, direction(model, monitor), direction(
            model, early.monitor, early.mode) if early else None)
