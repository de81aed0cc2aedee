"""Learning-rate schedules, built from Keras' own (so saved models need no custom code).

All are functions of the optimizer's step count, which a resumed run restores, so
the schedule continues where it stopped. ``plateau`` is the exception: the training
loop lowers the rate itself (see `cnncli.run.train`).

The optimizer's step number `k` (from 0) trains with `schedule(k)`: a `step` schedule
lowers the rate from the first step of epoch `step_epochs + 1` on.

>>> schedule = make("step", 0.1, steps_per_epoch=100, total_steps=1000, step_epochs=3)
>>> [round(float(schedule(step)), 6) for step in (0, 299, 300, 599, 600)]
[0.1, 0.1, 0.01, 0.01, 0.001]
"""

from __future__ import annotations

from cnncli.errors import ConfigError
from cnncli.run.resume import RATE_AS_A_NUMBER
from cnncli.runtime import import_keras

keras = import_keras()

#: The schedules that ramp up first (`warmup_epochs`); the others take no warmup.
WITH_WARMUP = ("cosine", "one_cycle")
ONE_CYCLE_START = 25.0  # one-cycle starts at lr/25 (Smith & Topin 2018; PyTorch's default)
ONE_CYCLE_WARMUP = 0.3  # ... and peaks after 30% of the steps


def make(name: str, lr: float, *, steps_per_epoch: int, total_steps: int,
         warmup_epochs: float = 0, step_epochs: float = 10, factor: float = 0.1,
         min_lr: float = 0.0):
    """A learning rate (float) or a Keras `LearningRateSchedule` for the schedule `name`."""
    warmup = int(round(warmup_epochs * steps_per_epoch))
    if name in RATE_AS_A_NUMBER:
        return lr
    if name == "step":
        every = max(1, int(round(step_epochs * steps_per_epoch)))
        # Keras keeps values[k] while step <= boundaries[k]: a boundary one step before
        # each multiple of `every` lowers the rate at that multiple
        boundaries = [b - 1 for b in range(every, max(total_steps, every + 1), every)]
        return keras.optimizers.schedules.PiecewiseConstantDecay(
            boundaries, [max(lr * factor**k, min_lr) for k in range(len(boundaries) + 1)])
    if name == "cosine":
        decay = max(1, total_steps - warmup)
        return keras.optimizers.schedules.CosineDecay(
            initial_learning_rate=lr if not warmup else lr / ONE_CYCLE_START,
            decay_steps=decay, alpha=min_lr / lr,
            warmup_target=lr if warmup else None, warmup_steps=warmup)
    if name == "one_cycle":
        warmup = warmup or max(1, int(ONE_CYCLE_WARMUP * total_steps))
        return keras.optimizers.schedules.CosineDecay(
            initial_learning_rate=lr / ONE_CYCLE_START, decay_steps=max(1, total_steps - warmup),
            alpha=min_lr / lr, warmup_target=lr, warmup_steps=warmup)
    raise ConfigError(f"unknown schedule '{name}'",
                      hint="use constant, step, cosine, one_cycle or plateau")


def last_step_rate(optimizer) -> float:
    """The learning rate `optimizer`'s last step trained with (0 steps: the first's).

    Keras' `optimizer.learning_rate` is the next step's: after an epoch of a `step`
    schedule it is already the lowered rate the epoch did not use.
    """
    optimizer = getattr(optimizer, "inner_optimizer", optimizer)  # loss scaling's wrapper
    schedule = optimizer._learning_rate  # noqa: SLF001 (a schedule or a variable)
    if not isinstance(schedule, keras.optimizers.schedules.LearningRateSchedule):
        return float(keras.ops.convert_to_numpy(optimizer.learning_rate))
    done = int(keras.ops.convert_to_numpy(optimizer.iterations))
    return float(keras.ops.convert_to_numpy(schedule(max(done - 1, 0))))
