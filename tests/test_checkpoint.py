"""Backups: atomic, complete, and recoverable when the newest one is damaged."""

import numpy as np
import pytest
from trainkit import write_config

from cnncli import config
from cnncli.errors import TrainingError
from cnncli.run import checkpoint
from cnncli.run import train as training
from cnncli.run.state import TrainState


@pytest.fixture
def model(tmp_path):
    return training.compile_model(training.plan(config.load(write_config(tmp_path))))


def test_save_and_load_restore_weights_optimizer_and_state(tmp_path, model):
    model.optimizer.iterations.assign(7)
    checkpoint.save(tmp_path, model, TrainState(epoch=2, step=5))
    saved = [w.copy() for w in model.get_weights()]
    for v in model.trainable_variables:
        v.assign(np.zeros(v.shape))
    model.optimizer.iterations.assign(0)
    state, note = checkpoint.load(tmp_path, model)
    assert state == TrainState(epoch=2, step=5) and note is None
    assert int(model.optimizer.iterations.numpy()) == 7
    for a, b in zip(model.get_weights(), saved, strict=True):
        np.testing.assert_array_equal(a, b)


def test_a_truncated_backup_falls_back_to_the_previous_and_says_so(tmp_path, model):
    checkpoint.save(tmp_path, model, TrainState(epoch=1, step=0, backup_every=50))
    checkpoint.save(tmp_path, model, TrainState(epoch=1, step=50, backup_every=50))
    newest = tmp_path / checkpoint.BACKUP
    newest.write_bytes(newest.read_bytes()[:1000])
    state, note = checkpoint.load(tmp_path, model)
    assert state.step == 0
    assert "unreadable" in note and "trained again" in note


def test_no_readable_backup_is_an_error_not_a_silent_restart(tmp_path, model):
    (tmp_path / checkpoint.BACKUP).write_bytes(b"")
    with pytest.raises(TrainingError, match="no readable backup"):
        checkpoint.load(tmp_path, model)


def test_a_backup_of_another_model_is_refused(tmp_path, model):
    checkpoint.save(tmp_path, model, TrainState(epoch=0, step=1))
    from cnncli.runtime import import_keras

    keras = import_keras()
    other = keras.Sequential([keras.Input((2,)), keras.layers.Dense(2)])
    other.compile("adam", "mse")
    other.optimizer.build(other.trainable_variables)
    with pytest.raises(TrainingError, match="model changed"):
        checkpoint.load(tmp_path, other)


def test_writes_leave_no_temporary_files(tmp_path, model):
    checkpoint.save(tmp_path, model, TrainState(epoch=0, step=1))
    checkpoint.save(tmp_path, model, TrainState(epoch=0, step=2))
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("backup")) == \
        ["backup.npz", "backup.prev.npz"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_a_full_disk_keeps_the_previous_backup_and_says_so(tmp_path, model, monkeypatch):
    checkpoint.save(tmp_path, model, TrainState(epoch=1, step=0))

    def full(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("os.fsync", full)
    with pytest.raises(TrainingError, match="No space left on device; the previous backup"):
        checkpoint.save(tmp_path, model, TrainState(epoch=1, step=9))
    monkeypatch.undo()
    state, note = checkpoint.load(tmp_path, model)
    assert state.step == 0 and "unreadable" in note
