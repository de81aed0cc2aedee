"""The state of a training run that is not in the model: where it is, what it has seen,
what it decided. One record, written into every backup and read back by ``--resume``.

>>> state = TrainState(epoch=2, step=10, best=0.91, best_epoch=2)
>>> TrainState.from_json(state.to_json()) == state
True
>>> state.global_step(steps_per_epoch=100)
210
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Required, TypedDict

from cnncli.config.sections import SHORT_NAMES


class EpochRow(TypedDict, total=False):
    """One finished epoch of a run: a row of ``history.csv``, an entry of the backup's
    history, what the epoch line shows. Keras' figures keep Keras' names (``loss``,
    ``accuracy``, ``val_loss``, ``val_accuracy``, and ``top_5_accuracy``-like names of
    any other metric); the rest are cnncli's. Plain JSON values: backups and CSV files
    hold it as it is.
    """

    epoch: Required[int]  # 1-based
    loss: float
    accuracy: float
    val_loss: float
    val_accuracy: float
    learning_rate: Required[float]  # what the epoch's last step used
    seconds: Required[float]
    images_per_s: Required[float]
    stage: int  # fine-tuning only: 1 with the backbone frozen, 2 once unfrozen
    unreadable_images: int  # image files skipped so far in the run (resumes included)


@dataclass
class TrainState:
    """Where a run is and what it has decided so far.

    Args:
        epoch: the epoch being trained (0-based); after an epoch ends, the next one.
        step: steps done in `epoch` (0 at an epoch's start).
        history: one `EpochRow` per finished epoch.
        best, best_epoch: the best value of the monitored figure and its epoch (1-based).
        best_of: the figure `best` is of (``val_accuracy``; "" in backups made before it
            was recorded).
        es_best, wait: early stopping's best value and epochs without improvement.
        plateau_best, plateau_wait: the same for the plateau schedule.
        stopped_early: early stopping ended the run.
        stage: 0, or 1 once fine-tuning unfroze the backbone.
        backup_every: steps between backups (for the "steps trained again" note).
        train_seconds: time spent in finished epochs.
        epoch_seconds: time spent in `epoch` up to its backup mid-way (0 at its start):
            resumed there, the epoch's row counts it with the rest.
        precision, replicas: how the run trains (a resume must match, or say so).
        cpu_threads: the CPU threads it computes on (0 on GPUs, and in backups made
            before it was recorded): a resume on another number says it is not exact.
        resumes: one entry per ``--resume --force`` that changed the config.
        data: what the run trains on (`cnncli.data.feed.Feed.fingerprint`); ``--resume``
            refuses other data ({} in backups made before it was recorded).
        network: the network's `cnncli.model.spec.Spec.digest`; ``--resume`` refuses
            another ("" in backups made before it was recorded).
        unreadable: the image files that could not be decoded so far (skipped), sorted,
            by their path below the data's folder: a resumed run counts them as the run
            it continues did, from wherever the data is now.
    """

    epoch: int = 0
    step: int = 0
    history: list[EpochRow] = field(default_factory=list)
    best: float | None = None
    best_epoch: int | None = None
    best_of: str = ""
    es_best: float | None = None
    wait: int = 0
    plateau_best: float | None = None
    plateau_wait: int = 0
    stopped_early: bool = False
    stage: int = 0
    backup_every: int = 500
    train_seconds: float = 0.0
    epoch_seconds: float = 0.0
    precision: str = "float32"
    replicas: int = 1
    cpu_threads: int = 0
    resumes: list[dict] = field(default_factory=list)
    data: dict = field(default_factory=dict)
    network: str = ""
    unreadable: list[str] = field(default_factory=list)

    def add_unreadable(self, files) -> list[str]:
        """Record `files` as found unreadable (with those found before): the files new
        to the run, in the order given."""
        known = set(self.unreadable)
        new = [f for f in dict.fromkeys(files) if f not in known]
        self.unreadable = sorted(known | set(new))
        return new

    def global_step(self, steps_per_epoch: int) -> int:
        """Optimizer steps done since the run started."""
        return self.epoch * steps_per_epoch + self.step

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> TrainState:
        """The state in `data`; keys this version does not know are ignored, and where
        training stands (epoch, step, history) must be there.

        Raises:
            ValueError: `data` does not say where training stands (a damaged backup).
        """
        if not isinstance(data, dict):
            raise ValueError("its training state is not a JSON object")
        for key, kind in (("epoch", int), ("step", int), ("history", list)):
            value = data.get(key)
            if not isinstance(value, kind) or isinstance(value, bool) or (
                    kind is int and value < 0):
                raise ValueError(f"its training state has no valid '{key}'")
        known = {f.name for f in fields(cls)}
        state = cls(**{k: v for k, v in data.items() if k in known})
        # an older cnncli's rows of `metrics: [acc]` (acc, val_acc): the figures' names now
        state.history = [{SHORT_NAMES.get(k, k): v for k, v in row.items()}
                         if isinstance(row, dict) else row for row in state.history]
        return state
