"""cnncli.run.schedules: which rate each step trains with, and which the history shows."""

import os
import signal
import time

import numpy as np
import pytest
from trainkit import history_rows, weights, write_config

from cnncli import config
from cnncli.run import schedules
from cnncli.run import train as training
from cnncli.run.callbacks import Interrupted
from cnncli.runtime import import_keras

keras = import_keras()


def _rates_of_each_step(rate, steps: int) -> list[float]:
    """The rate each of `steps` SGD steps trained with: on the loss `x`, whose gradient
    is 1, a step moves x by exactly its rate."""
    x = keras.Variable(0.0)
    optimizer = keras.optimizers.SGD(rate)
    moved = []
    for _ in range(steps):
        before = float(x.numpy())
        optimizer.apply([keras.ops.ones(())], [x])
        moved.append(round(before - float(x.numpy()), 6))
    return moved


def test_a_step_schedule_lowers_the_rate_from_the_first_step_of_the_next_period():
    rate = schedules.make("step", 1.0, steps_per_epoch=2, total_steps=6, step_epochs=1,
                          factor=0.5)
    assert _rates_of_each_step(rate, 6) == [1.0, 1.0, 0.5, 0.5, 0.25, 0.25]


def test_a_step_schedule_of_one_step_per_period_lowers_at_each_step():
    rate = schedules.make("step", 1.0, steps_per_epoch=1, total_steps=3, step_epochs=1,
                          factor=0.5)
    assert _rates_of_each_step(rate, 3) == [1.0, 0.5, 0.25]


def test_a_step_schedule_never_goes_below_its_min_lr():
    """`min_lr` was accepted with `step` and ignored: a run trained below it."""
    rate = schedules.make("step", 1.0, steps_per_epoch=1, total_steps=4, step_epochs=1,
                          factor=0.1, min_lr=0.05)
    assert _rates_of_each_step(rate, 4) == [1.0, 0.1, 0.05, 0.05]


@pytest.mark.parametrize("schedule,key,takes", [
    ({"name": "constant", "factor": 0.5}, "factor", "step, plateau"),
    ({"name": "cosine", "step_epochs": 2}, "step_epochs", "step"),
    ({"name": "step", "patience": 4}, "patience", "plateau")])
def test_a_schedule_setting_the_schedule_does_not_use_is_refused(schedule, key, takes):
    """As a warmup of a schedule without one is: the run would not use it, silently."""
    from cnncli.errors import ConfigError
    from cnncli.run.compile import check_training

    with pytest.raises(ConfigError) as caught:
        check_training(config.TrainSection(schedule=schedule), 10)
    assert caught.value.message == f"`train.schedule.{key}`: the {schedule['name']} " \
        "schedule does not use it (it would be ignored)"
    assert caught.value.hint == f"remove {key}, or use a schedule that takes it: {takes}"
    check_training(config.TrainSection(schedule={"name": "plateau", "factor": 0.5,
                                                 "patience": 3, "min_lr": 1e-6}), 10)


def test_a_warmup_starts_at_a_25th_and_reaches_the_rate_when_it_ends():
    rate = schedules.make("cosine", 1.0, steps_per_epoch=4, total_steps=12, warmup_epochs=1)
    moved = _rates_of_each_step(rate, 12)
    assert moved[0] == pytest.approx(1 / 25) and moved[4] == pytest.approx(1.0)
    assert moved[1:5] == sorted(moved[1:5]) and moved[4:] == sorted(moved[4:], reverse=True)


def test_the_last_step_rate_is_the_one_the_last_step_trained_with():
    optimizer = keras.optimizers.SGD(schedules.make("step", 1.0, steps_per_epoch=2,
                                                    total_steps=6, step_epochs=1, factor=0.5))
    x = keras.Variable(0.0)
    assert schedules.last_step_rate(optimizer) == 1.0  # no step yet: the first step's
    for _ in range(2):
        optimizer.apply([keras.ops.ones(())], [x])
    assert schedules.last_step_rate(optimizer) == 1.0  # the next step's is 0.5
    assert float(optimizer.learning_rate) == 0.5


def test_the_last_step_rate_of_a_rate_kept_as_a_number_is_that_number():
    optimizer = keras.optimizers.SGD(0.25)
    optimizer.build([keras.Variable(0.0)])
    optimizer.learning_rate.assign(0.125)  # as the plateau schedule lowers it
    assert schedules.last_step_rate(optimizer) == 0.125


def test_the_history_shows_the_rate_each_epoch_trained_with(tmp_path):
    path = write_config(tmp_path, epochs=3, lr=0.1, optimizer="sgd",
                        extra_train="schedule: {name: step, step_epochs: 1, factor: 0.5}")
    result = training.train(config.load(path))
    assert [r["learning_rate"] for r in result.history] == pytest.approx([0.1, 0.05, 0.025])


def test_the_last_epoch_of_a_cosine_schedule_shows_its_last_step_not_the_end_of_the_curve(
        tmp_path):
    path = write_config(tmp_path, epochs=2, lr=0.1, optimizer="sgd",
                        extra_train="schedule: {name: cosine, min_lr: 0.001}")
    result = training.train(config.load(path))
    rates, steps = [r["learning_rate"] for r in result.history], result.metrics.steps
    last = 0.001 + (0.1 - 0.001) * 0.5 * (1 + np.cos(np.pi * (steps - 1) / steps))
    assert rates[1] == pytest.approx(last, rel=1e-4) and rates[1] > 0.001


class CtrlCInTheSecondEpoch(training.Reporter):
    """Presses Ctrl-C once in the second epoch, at the first step reported from its 5th
    on (several steps may run at once): training stops after it, with a backup."""

    epoch, pressed = 0, False

    def epoch_begin(self, epoch, *args):
        self.epoch = epoch

    def step(self, step, logs):
        if self.epoch == 1 and step >= 5 and not self.pressed:
            self.pressed = True
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.1)


def test_a_step_schedule_resumed_mid_epoch_gives_the_uninterrupted_rates_and_weights(
        tmp_path):
    settings = {"epochs": 3, "batch_size": 8, "lr": 0.05, "optimizer": "sgd",
                "extra_train": "schedule: {name: step, step_epochs: 1, factor: 0.5}"}
    (tmp_path / "reference").mkdir()
    reference = training.train(config.load(write_config(tmp_path / "reference", **settings)))
    path = write_config(tmp_path, **settings)
    with pytest.raises(Interrupted):
        training.train(config.load(path), reporter=CtrlCInTheSecondEpoch())
    resumed = training.train(config.load(path), resume=tmp_path / "runs" / "toy" / "1")
    assert history_rows(resumed.run) == history_rows(reference.run)
    for a, b in zip(weights(resumed.run), weights(reference.run), strict=True):
        np.testing.assert_array_equal(a, b)
