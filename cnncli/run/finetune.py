"""The two stages of fine-tuning (`train.fine_tune`): the head is trained with the
backbone frozen, then, from epoch ``after_epochs`` on, the chosen layers are unfrozen and
training goes on at ``learning_rate`` with a new optimizer.

The switch happens between two `fit` calls, at an epoch's start (`split` cuts the run's
stretches of epochs there): Keras traces its training step for one set of trainable
weights, so the model is compiled again, and the new optimizer is built for the new set.
The stage is part of the run's `TrainState`: a backup of the second stage holds the
second optimizer's variables, and `restore` puts the model in that stage before the
backup is read, so a resumed run ends as an uninterrupted one would.

>>> split([(0, 5, 0, 10)], 2)
[(0, 2, 0, 10), (2, 5, 0, 10)]
>>> split([(1, 2, 3, 10), (2, 5, 0, 10)], 2)
[(1, 2, 3, 10), (2, 5, 0, 10)]
"""

from __future__ import annotations

from cnncli import devices
from cnncli.run import compile as compiling
from cnncli.run import transfer
from cnncli.run.state import TrainState


def boundary(p) -> int | None:
    """The epoch (0-based) the second stage starts at, or None for one stage."""
    t = p.transfer
    return t.fine_tune.after_epochs if t is not None and t.fine_tune else None


def split(stretches: list[tuple], epoch: int | None) -> list[tuple]:
    """`stretches` (first_epoch, end_epoch, first_step, steps) cut at `epoch`."""
    if epoch is None:
        return list(stretches)
    out = []
    for first, end, step, steps in stretches:
        if first < epoch < end:
            out += [(first, epoch, step, steps), (epoch, end, 0, steps)]
        else:
            out.append((first, end, step, steps))
    return out


def enter(p, model, state: TrainState, epoch: int, reporter) -> None:
    """Before training from `epoch` on: switch to the second stage when it is due."""
    start = boundary(p)
    if start is None or state.stage or epoch < start:
        return
    _switch(p, model)
    state.stage = 1
    t = p.transfer
    reporter.info(f"stage 2 from epoch {epoch + 1}: {len(t.unfrozen)} more layers trained "
                  f"(BatchNormalization stays frozen), learning rate "
                  f"{t.fine_tune.learning_rate:g}")


def restore(p, model, state: TrainState) -> None:
    """Before a backup is read into `model`: put it in the backup's stage."""
    if state.stage and boundary(p) is not None:
        _switch(p, model)


def row_fields(p, state: TrainState) -> dict:
    """What a history row says about the stage (nothing for a run of one stage)."""
    return {"stage": state.stage + 1} if boundary(p) is not None else {}


def _switch(p, model) -> None:
    with devices.strategy(p.placement).scope():
        transfer.set_stage(model, p.transfer, 1)
        compiling.compile_stage(p, model, p.transfer.fine_tune.learning_rate,
                                transfer.stage_steps(p, 1))
