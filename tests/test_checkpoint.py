"""Backups: atomic, complete, and recoverable when the newest one is damaged."""

import shutil

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


def test_a_backup_carries_the_unreadable_images_found_and_a_resume_adds_to_them(tmp_path,
                                                                               model):
    """A resumed run's epochs count the files the run it continues could not decode
    (an uninterrupted run's do: once found, a file stays counted), each file once."""
    found = TrainState(epoch=1)
    assert found.add_unreadable(["b.png", "a.png", "b.png"]) == ["b.png", "a.png"]
    checkpoint.save(tmp_path, model, found)
    resumed, _ = checkpoint.load(tmp_path, model)
    assert resumed.unreadable == ["a.png", "b.png"]
    assert resumed.add_unreadable(["c.png", "a.png"]) == ["c.png"]
    assert resumed.unreadable == ["a.png", "b.png", "c.png"]


def test_a_truncated_backup_falls_back_to_the_previous_and_says_so(tmp_path, model):
    checkpoint.save(tmp_path, model, TrainState(epoch=1, step=0, backup_every=50))
    checkpoint.save(tmp_path, model, TrainState(epoch=1, step=50, backup_every=50))
    newest = tmp_path / checkpoint.BACKUP
    newest.write_bytes(newest.read_bytes()[:1000])
    state, note = checkpoint.load(tmp_path, model)
    assert state.step == 0
    assert "unreadable" in note and "trained again" in note


def test_the_backup_resumed_from_survives_the_next_backup_after_a_truncated_one(tmp_path,
                                                                              model):
    """Resumed from the previous backup (the newest unreadable), the next backup must not
    rotate the unreadable one over it: stopped again before that backup is complete, the
    run still resumes."""
    checkpoint.save(tmp_path, model, TrainState(epoch=1, step=0, backup_every=50))
    checkpoint.save(tmp_path, model, TrainState(epoch=1, step=50, backup_every=50))
    newest = tmp_path / checkpoint.BACKUP
    newest.write_bytes(newest.read_bytes()[:1000])
    checkpoint.load(tmp_path, model, mend=False)  # another worker's: it only reads the run
    assert newest.exists()
    checkpoint.load(tmp_path, model)  # the run's writer: the unreadable one goes
    checkpoint.save(tmp_path, model, TrainState(epoch=1, step=25, backup_every=50))
    (tmp_path / checkpoint.BACKUP).write_bytes(b"")  # stopped mid-write, say
    state, note = checkpoint.load(tmp_path, model)
    assert (state.step, "unreadable" in note) == (0, True)


def test_what_writes_of_backups_and_models_stopped_midway_left_is_removed(tmp_path, model):
    """As a kill -9 leaves them: `write_atomic`'s and `save_model_atomic`'s temporaries."""
    checkpoint.save(tmp_path, model, TrainState(epoch=1))
    stray = tmp_path / f".{checkpoint.BACKUP}.k9x2"
    stray.write_bytes(b"partial")
    model_stray = tmp_path / ".best.keras.4242-beef.tmp.keras"
    model_stray.write_bytes(b"partial")
    keep = tmp_path / "notes.best.keras.txt"  # another file: not touched
    keep.write_bytes(b"mine")
    checkpoint.remove_unfinished(tmp_path)
    assert not stray.exists() and not model_stray.exists() and keep.exists()
    assert (tmp_path / checkpoint.BACKUP).exists()  # the backup itself stays
    stray.write_bytes(b"partial")
    checkpoint.remove(tmp_path)
    assert not stray.exists() and not (tmp_path / checkpoint.BACKUP).exists()


def rewrite_state(path, change):
    """The backup at `path` with its training state changed by `change(arrays)`."""
    import json

    with np.load(path) as data:
        arrays = {key: data[key] for key in data.files}
    change(arrays, json.loads(bytes(arrays["state"]).decode()), json)
    np.savez(path, **arrays)


@pytest.mark.parametrize("damage", ["no epoch", "negative epoch", "no state", "state not JSON",
                                    "list"])
def test_a_backup_whose_state_is_damaged_falls_back_to_the_previous(tmp_path, model, damage):
    """Its weights are read, but not where training stood: it is not resumed from (with
    epoch 0 and the history of 5 epochs it would train them all again, 35 rows)."""
    checkpoint.save(tmp_path, model, TrainState(epoch=4, step=0, backup_every=50))
    checkpoint.save(tmp_path, model, TrainState(epoch=5, step=0, backup_every=50))

    def change(arrays, state, json):
        if damage in ("no epoch", "negative epoch"):
            if damage == "no epoch":
                del state["epoch"]
            else:
                state["epoch"] = -1
            arrays["state"] = np.frombuffer(json.dumps(state).encode(), np.uint8)
        elif damage == "no state":
            del arrays["state"]
        else:
            arrays["state"] = np.frombuffer(b"{not json" if damage == "state not JSON"
                                            else b"[1, 2]", np.uint8)
    rewrite_state(tmp_path / checkpoint.BACKUP, change)
    state, note = checkpoint.load(tmp_path, model)
    assert state.epoch == 4 and note.startswith("the newest backup was unreadable (backup.npz")
    assert "the steps since (about 50, train.backup_every) are trained again" in note


def test_no_readable_backup_is_an_error_not_a_silent_restart(tmp_path, model):
    (tmp_path / checkpoint.BACKUP).write_bytes(b"")
    with pytest.raises(TrainingError, match="no readable backup") as err:
        checkpoint.load(tmp_path, model)
    assert err.value.hint == f"start it again as a new run: cnncli train {tmp_path}/config.yaml"


def test_a_backup_of_another_model_is_refused(tmp_path, model):
    checkpoint.save(tmp_path, model, TrainState(epoch=0, step=1))
    from cnncli.runtime import import_keras

    keras = import_keras()
    other = keras.Sequential([keras.Input((2,)), keras.layers.Dense(2)])
    other.compile("adam", "mse")
    other.optimizer.build(other.trainable_variables)
    with pytest.raises(TrainingError, match="model changed"):
        checkpoint.load(tmp_path, other)


def compiled(*layers):
    """A small Keras model on 4 inputs, compiled, its optimizer built (as training has it)."""
    from cnncli.runtime import import_keras

    keras = import_keras()
    built = keras.Sequential([keras.Input((4,)), *layers])
    built.compile("adam", "mse")
    built.optimizer.build(built.trainable_variables)
    return built


def test_a_model_with_more_than_ten_variables_gets_each_one_back(tmp_path):
    from cnncli.runtime import import_keras

    layers = import_keras().layers
    norms = compiled(*(layers.BatchNormalization() for _ in range(3)))  # 12 variables of (4,)
    assert len(norms.variables) > 10
    rng = np.random.default_rng(0)
    for v in norms.variables:
        v.assign(rng.normal(size=v.shape))
    checkpoint.save(tmp_path, norms, TrainState(epoch=0, step=1))
    saved = [v.numpy().copy() for v in norms.variables]
    for v in norms.variables:
        v.assign(np.zeros(v.shape))
    checkpoint.load(tmp_path, norms)
    for variable, value in zip(norms.variables, saved, strict=True):
        np.testing.assert_array_equal(variable.numpy(), value, err_msg=variable.path)


def test_the_running_metrics_of_the_epoch_are_restored(tmp_path, model):
    variables = [v for m in model.metrics for v in m.variables]
    assert variables  # the loss tracker's total and count at least
    for i, v in enumerate(variables):
        v.assign(np.full(v.shape, 3.0 + i))
    checkpoint.save(tmp_path, model, TrainState(epoch=0, step=3))
    for m in model.metrics:
        m.reset_state()
    checkpoint.load(tmp_path, model)
    assert [float(v.numpy()) for v in variables] == [3.0 + i for i in range(len(variables))]


def test_a_backup_of_a_cnncli_that_compiled_fewer_metrics_is_resumed(tmp_path):
    """With label smoothing, cnncli compiles the labels' own cross-entropy too (since
    2026-12-07): a run stopped before could not be resumed ("the backup holds 4 metrics
    variables, the model has 6"). Its weights come back; its running figures restart."""
    from cnncli.runtime import import_keras

    keras = import_keras()

    def made(metrics):
        built = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
        built.compile("adam", "mse", weighted_metrics=metrics)
        built.optimizer.build(built.trainable_variables)
        x = np.ones((2, 4), np.float32)
        built.compute_metrics(x, np.ones((2, 3)), built(x), sample_weight=np.ones(2))
        return built

    before = made(["accuracy"])
    checkpoint.save(tmp_path, before, TrainState(epoch=0, step=1))
    now = made(["accuracy", keras.metrics.CategoricalCrossentropy(name="crossentropy")])
    checkpoint.load(tmp_path, now)
    for a, b in zip(before.weights, now.weights, strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_a_backup_of_the_same_layers_in_other_sizes_is_refused_naming_the_shapes(tmp_path):
    from cnncli.runtime import import_keras

    layers = import_keras().layers
    checkpoint.save(tmp_path, compiled(layers.Dense(2)), TrainState(epoch=0, step=1))
    with pytest.raises(TrainingError, match=r"backup variable model/0 has shape \(4, 2\), the "
                                            r"model's has \(4, 3\)") as err:
        checkpoint.load(tmp_path, compiled(layers.Dense(3)))
    assert "start a new run" in err.value.hint


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


def test_a_first_backup_on_a_full_disk_says_to_start_again_not_to_resume(tmp_path, model,
                                                                          monkeypatch):
    """There is nothing to resume from: `--resume` would be refused ("no backup")."""
    def full(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("os.fsync", full)
    with pytest.raises(TrainingError, match="there is no earlier backup") as err:
        checkpoint.save(tmp_path, model, TrainState(epoch=0, step=9))
    assert err.value.hint.endswith("then start the run again (it had no backup to resume "
                                   "from yet)")
    assert "--resume" not in err.value.hint


def test_a_run_folder_removed_while_training_says_to_start_again(tmp_path, model):
    run = tmp_path / "runs" / "1"
    run.mkdir(parents=True)
    checkpoint.save(run, model, TrainState(epoch=1, step=0))
    shutil.rmtree(run)
    with pytest.raises(TrainingError) as err:
        checkpoint.save(run, model, TrainState(epoch=2, step=0))
    assert err.value.hint == ("the run folder is gone (removed while the run trained): start "
                              "the run again")


def _mixed_float16_model(tmp_path):
    return training.compile_model(training.plan(config.load(write_config(tmp_path), [
        "train.precision=mixed_float16"])))


@pytest.mark.filterwarnings("ignore:--precision mixed_float16 on this CPU")
def test_a_mixed_float16_backup_keeps_the_loss_scale_and_the_step_count(tmp_path):
    model = _mixed_float16_model(tmp_path)
    model.optimizer.dynamic_scale.assign(1024.0)
    model.optimizer.iterations.assign(7)
    checkpoint.save(tmp_path, model, TrainState(epoch=1))
    model.optimizer.dynamic_scale.assign(1.0)
    model.optimizer.iterations.assign(0)
    checkpoint.load(tmp_path, model)
    assert float(model.optimizer.dynamic_scale.numpy()) == 1024.0
    assert int(model.optimizer.iterations.numpy()) == 7


@pytest.mark.filterwarnings("ignore:--precision mixed_float16 on this CPU")
@pytest.mark.parametrize("now", ["mixed_float16", "float32"])
def test_a_mixed_float16_backup_written_before_12_2026_is_restored(tmp_path, now):
    """Then the loss scaling's variables and the optimizer's were one group, as Keras
    lists them (the loss scaling's first); a resume may also leave mixed_float16."""
    import io
    import json

    model = _mixed_float16_model(tmp_path)
    model.optimizer.dynamic_scale.assign(512.0)
    model.optimizer.iterations.assign(3)
    arrays = {f"model/{i}": v.numpy() for i, v in enumerate(model.variables)}
    arrays |= {f"optimizer/{i}": v.numpy() for i, v in enumerate(model.optimizer.variables)}
    arrays |= {f"metrics/{i}": v.numpy()
               for i, v in enumerate(v for m in model.metrics for v in m.variables)}
    arrays["state"] = np.frombuffer(json.dumps(TrainState(epoch=1).to_json()).encode(),
                                    np.uint8)
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    (tmp_path / checkpoint.BACKUP).write_bytes(buffer.getvalue())
    if now == "float32":
        model = training.compile_model(training.plan(config.load(write_config(tmp_path))))
    else:
        model.optimizer.dynamic_scale.assign(1.0)
    model.optimizer.iterations.assign(0)
    checkpoint.load(tmp_path, model)
    assert int(model.optimizer.iterations.numpy()) == 3
    if now == "mixed_float16":
        assert float(model.optimizer.dynamic_scale.numpy()) == 512.0
