"""Early stopping and `best.keras` follow the direction Keras knows for each figure, not a
guess from its name (GitHub issue 12, item 4)."""

import numpy as np
import pytest

from cnncli import config
from cnncli.errors import ConfigError
from cnncli.run.callbacks.stopping import EarlyStopping
from cnncli.run.monitor import direction, improved
from cnncli.run.state import TrainState
from cnncli.runtime import import_keras

keras = import_keras()


@pytest.fixture(scope="module")
def model():
    net = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="softmax")])
    net.compile(loss="categorical_crossentropy",
                metrics=["accuracy", keras.metrics.AUC(name="auc"),
                         keras.metrics.Precision(name="precision"), "mae"])
    net.compute_metrics(None, np.array([[0.0, 1, 0]]), np.array([[0.2, 0.5, 0.3]]))  # builds
    return net


@pytest.mark.parametrize("monitor,way", [
    ("val_auc", "max"), ("auc", "max"), ("val_precision", "max"), ("val_accuracy", "max"),
    ("val_loss", "min"), ("loss", "min"), ("val_mae", "min")])
def test_direction_comes_from_the_metric(model, monitor, way):
    assert direction(model, monitor) == way


def test_an_explicit_mode_wins(model):
    assert direction(model, "val_auc", "min") == "min"


def test_an_unknown_direction_asks_for_a_mode(model):
    with pytest.raises(ConfigError, match="set `train.early_stopping.mode: max`"):
        direction(model, "val_something")


@pytest.mark.parametrize("way", ["max", "min"])
def test_an_equal_figure_is_not_an_improvement(way):
    assert improved(0.8, 0.8, way) is False
    assert improved(0.8, 0.8, way, min_delta=0.01) is False


def test_early_stopping_on_auc_waits_while_it_rises_and_stops_when_it_falls(model):
    section = config.EarlyStoppingSection(monitor="val_auc", patience=2)
    stopping = EarlyStopping(section, TrainState(), direction(model, "val_auc"))
    decisions = [stopping.should_stop({"val_auc": v}) for v in (0.6, 0.7, 0.8, 0.75, 0.74)]
    assert decisions == [False, False, False, False, True]


def test_early_stopping_on_loss_stops_when_it_stops_falling(model):
    section = config.EarlyStoppingSection(monitor="val_loss", patience=1)
    stopping = EarlyStopping(section, TrainState(), direction(model, "val_loss"))
    assert [stopping.should_stop({"val_loss": v}) for v in (1.0, 0.8, 0.9)] == \
        [False, False, True]


def test_best_keras_of_epochs_tied_on_accuracy_is_the_one_with_the_lowest_loss(
        tmp_path, monkeypatch):
    from cnncli.run.callbacks import best

    saved = []
    monkeypatch.setattr(best, "save_model_atomic", lambda model, path, meta: saved.append(
        state.history[-1]["epoch"]))
    state = TrainState()
    keeper = best.BestModel(tmp_path, state, "val_accuracy", "max", meta=None)
    for epoch, accuracy, loss in [(1, 0.5, 1.0), (2, 0.5, 0.8), (3, 0.5, 0.9), (4, 0.4, 0.1),
                                  (5, 0.75, 2.0), (6, 0.75, None)]:
        row = {"epoch": epoch, "val_accuracy": accuracy, "val_loss": loss}
        state.history.append(row)
        keeper.update(model=None, row=row)
    assert saved == [1, 2, 5] and (state.best, state.best_epoch) == (0.75, 5)


def test_an_older_backups_best_of_another_figure_is_measured_again_by_the_one_followed(
        tmp_path, monkeypatch):
    """A run of `metrics: [acc]` made before `acc` was read as `accuracy` followed
    val_loss for its best model; resumed now it follows val_accuracy, from the figure
    of the best model it has (recorded then as `val_acc`), not from its loss."""
    from cnncli.run.callbacks import best

    saved = []
    monkeypatch.setattr(best, "save_model_atomic", lambda *a: saved.append(1))
    history = [{"epoch": 1, "val_loss": 0.9, "val_acc": 0.6},
               {"epoch": 2, "val_loss": 0.8, "val_acc": 0.7}]
    state = TrainState.from_json({"epoch": 2, "step": 0, "history": history, "best": 0.8,
                                  "best_epoch": 2})  # as its backup holds it (no best_of)
    assert state.history[1] == {"epoch": 2, "val_loss": 0.8, "val_accuracy": 0.7}
    keeper = best.BestModel(tmp_path, state, "val_accuracy", "max", meta=None)
    assert (state.best, state.best_of) == (0.7, "val_accuracy")
    keeper.update(model=None, row={"epoch": 3, "val_loss": 0.85, "val_accuracy": 0.65})
    assert saved == [] and state.best_epoch == 2
    keeper.update(model=None, row={"epoch": 4, "val_loss": 0.7, "val_accuracy": 0.75})
    assert saved == [1] and (state.best, state.best_epoch) == (0.75, 4)


def test_a_tie_on_the_loss_itself_keeps_the_first_best(tmp_path, monkeypatch):
    from cnncli.run.callbacks import best

    saved = []
    monkeypatch.setattr(best, "save_model_atomic", lambda *a: saved.append(1))
    state = TrainState()
    keeper = best.BestModel(tmp_path, state, "val_loss", "min", meta=None)
    for epoch in (1, 2):
        row = {"epoch": epoch, "val_loss": 0.5}
        state.history.append(row)
        keeper.update(model=None, row=row)
    assert state.best_epoch == 1 and saved == [1]


def test_a_tie_after_a_best_epoch_whose_loss_was_nan_takes_the_finite_loss(tmp_path,
                                                                          monkeypatch):
    from cnncli.run.callbacks import best

    monkeypatch.setattr(best, "save_model_atomic", lambda *a: None)
    state = TrainState()
    keeper = best.BestModel(tmp_path, state, "val_accuracy", "max", meta=None)
    for epoch, loss in [(1, float("nan")), (2, 0.7), (3, float("nan"))]:
        row = {"epoch": epoch, "val_accuracy": 0.5, "val_loss": loss}
        state.history.append(row)
        keeper.update(model=None, row=row)
    assert state.best_epoch == 2


def test_the_plateau_schedule_lowers_the_rate_once_every_patience_epochs():
    """Lowered, its count of epochs without improvement starts again: not every epoch
    from then on."""
    from cnncli.run.callbacks.stopping import Plateau

    rate = keras.Variable(1.0)
    net = type("Net", (), {"optimizer": type("Opt", (), {"learning_rate": rate})()})()
    plateau = Plateau(config.ScheduleSection(name="plateau", patience=2, factor=0.5),
                      TrainState())
    said = [plateau.update(net, {"epoch": e, "val_loss": 1.0}) for e in range(1, 7)]
    assert [s is not None for s in said] == [False, False, True, False, True, False]
    assert float(rate.numpy()) == 0.25


def test_a_runs_directions_are_the_best_models_and_early_stoppings(model):
    from cnncli.run.monitor import Directions

    train = config.TrainSection(metrics=["accuracy"], early_stopping={"monitor": "val_loss"})
    assert Directions.of(model, train, validation=True) == Directions("val_accuracy", "max",
                                                                      "min")
    assert Directions.of(model, config.TrainSection(), validation=False) == Directions(
        "loss", "min", None)
