"""cnncli.optimizers: Keras optimizers by name; Adam fused into one kernel, same results."""

import json
import subprocess
import sys
import textwrap
import zipfile

import numpy as np
import pytest
from trainkit import TWO_LOGICAL_CPUS

from cnncli.run import optimizers
from cnncli.runtime import import_keras

keras = import_keras()


def _train(optimizer, *, layers=None, steps=5, seed=0):
    """Weights of a tiny model after `steps` full-batch steps with `optimizer`."""
    keras.utils.set_random_seed(seed)
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(32, 6)).astype("float32")
    y = rng.integers(0, 3, size=32)
    model = keras.Sequential(layers or [keras.Input((6,)), keras.layers.Dense(8, "relu"),
                                        keras.layers.Dense(3, "softmax")])
    model.compile(optimizer, "sparse_categorical_crossentropy")
    model.fit(x, y, batch_size=32, epochs=steps, shuffle=False, verbose=0)
    return model


@pytest.fixture
def fused_updates(monkeypatch):
    """The variables TensorFlow's fused ResourceApplyAdam kernel was traced for."""
    from cnncli.runtime import import_tf

    tf = import_tf()
    seen, real = [], tf.raw_ops.ResourceApplyAdam

    def spy(**kwargs):
        seen.append(tuple(kwargs["grad"].shape))
        return real(**kwargs)

    monkeypatch.setattr(tf.raw_ops, "ResourceApplyAdam", spy)
    return seen


def _same_weights(a, b, atol=1e-6):
    for wa, wb in zip(a.get_weights(), b.get_weights(), strict=True):
        np.testing.assert_allclose(wa, wb, atol=atol)


def test_fused_adam_trains_to_the_same_weights_as_keras_adam(fused_updates):
    fused = _train(optimizers.get("adam", {"learning_rate": 0.01}))
    assert sorted(set(fused_updates)) == [(3,), (6, 8), (8,), (8, 3)]  # traced for each weight
    fused_updates.clear()
    plain = _train(keras.optimizers.Adam(0.01))
    assert fused_updates == []
    assert optimizers.is_fused(fused.optimizer) and not optimizers.is_fused(plain.optimizer)
    _same_weights(fused, plain)
    assert fused.get_weights()[0].tolist() != _train(keras.optimizers.Adam(0.01),
                                                      steps=1).get_weights()[0].tolist()


def test_fused_adamw_keeps_its_weight_decay(fused_updates):
    config = {"learning_rate": 0.01, "weight_decay": 0.1}
    fused = _train(optimizers.get("adamw", config))
    assert len(set(fused_updates)) == 4
    _same_weights(fused, _train(keras.optimizers.AdamW(**config)))


def test_fused_adam_keeps_its_own_beta_and_epsilon_arguments(fused_updates):
    config = {"learning_rate": 0.02, "beta_1": 0.5, "beta_2": 0.9, "epsilon": 1e-3}
    fused = _train(optimizers.get("adam", config))
    assert len(set(fused_updates)) == 4
    _same_weights(fused, _train(keras.optimizers.Adam(**config)))


def test_sparse_gradients_fall_back_to_keras_update(fused_updates):
    def layers():
        return [keras.Input((6,), dtype="int32"), keras.layers.Embedding(10, 4),
                keras.layers.Flatten(), keras.layers.Dense(3, "softmax")]

    def train(optimizer):
        keras.utils.set_random_seed(0)
        x = np.random.default_rng(0).integers(0, 10, size=(32, 6))
        y = np.arange(32) % 3
        model = keras.Sequential(layers())
        model.compile(optimizer, "sparse_categorical_crossentropy")
        model.fit(x, y, batch_size=32, epochs=3, verbose=0)
        return model

    fused = train(optimizers.get("adam", {"learning_rate": 0.01}))
    assert sorted(set(fused_updates)) == [(3,), (24, 3)]  # the Dense layer, not the embedding
    _same_weights(fused, train(keras.optimizers.Adam(0.01)))


@pytest.mark.parametrize("name,config", [("sgd", {}), ("rmsprop", {}),
                                         ("adam", {"amsgrad": True})])
def test_other_optimizers_keep_keras_update(name, config):
    assert not optimizers.is_fused(optimizers.get(name, config))


def test_unknown_optimizer_is_keras_error():
    with pytest.raises(ValueError):
        optimizers.get("adamm", {})


def test_saved_model_names_plain_keras_adam(tmp_path):
    model = _train(optimizers.get("adam", {"learning_rate": 0.01}), steps=1)
    path = tmp_path / "m.keras"
    model.save(path)
    config = json.loads(zipfile.ZipFile(path).read("config.json"))
    assert config["compile_config"]["optimizer"]["class_name"] == "Adam"
    assert config["compile_config"]["optimizer"]["module"] == "keras.optimizers"
    loaded = keras.models.load_model(path)  # safe mode, nothing of cnncli registered
    assert type(loaded.optimizer) is keras.optimizers.Adam


MIRRORED_SCRIPT = TWO_LOGICAL_CPUS + textwrap.dedent(
    """
    import json
    import numpy as np
    from cnncli.run import optimizers

    x = np.random.default_rng(0).normal(size=(64, 6)).astype("float32")
    y = np.arange(64) % 3

    def train(make):
        keras.utils.set_random_seed(0)
        with tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"]).scope():
            model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(3, "softmax")])
            model.compile(make(), "sparse_categorical_crossentropy")
        model.fit(x, y, batch_size=32, epochs=3, shuffle=False, verbose=0)
        return [w.tolist() for w in model.get_weights()], optimizers.is_fused(model.optimizer)

    print(json.dumps([train(lambda: optimizers.get("adam", {"learning_rate": 0.01})),
                      train(lambda: keras.optimizers.Adam(0.01))]))
    """
)


def test_fused_adam_under_mirrored_strategy_matches_keras_adam():
    done = subprocess.run([sys.executable, "-c", MIRRORED_SCRIPT], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    (fused, was_fused), (plain, _) = json.loads(done.stdout.strip().splitlines()[-1])
    assert was_fused
    for a, b in zip(fused, plain, strict=True):
        np.testing.assert_allclose(a, b, atol=1e-6)


@pytest.mark.parametrize("schedule,said", [
    ({"name": "constant", "warmup_epochs": 1}, "the constant schedule has no warmup"),
    ({"name": "step", "warmup_epochs": 1}, "the step schedule has no warmup"),
    ({"name": "cosine", "warmup_epochs": 5}, "a warmup of 5 epochs is as long as the training"),
    ({"name": "cosine", "min_lr": 0.5}, "`train.schedule.min_lr` (0.5) is not below the "
                                        "learning rate (0.1)"),
])
def test_schedule_settings_that_would_be_ignored_or_raise_the_rate_are_refused(schedule,
                                                                               said):
    from cnncli import config
    from cnncli.errors import ConfigError
    from cnncli.run import compile as compiling

    t = config.TrainSection(epochs=3, schedule=schedule, optimizer={"name": "sgd",
                                                                    "learning_rate": 0.1})
    with pytest.raises(ConfigError, match=said.replace("(", "\\(").replace(")", "\\)")):
        compiling.check_training(t, classes=3)
    compiling.check_training(config.TrainSection(epochs=6, schedule={
        "name": "cosine", "warmup_epochs": 1, "min_lr": 1e-5}), classes=3)  # sensible: fine


def test_a_weight_decay_given_twice_is_refused_unless_the_same():
    from cnncli import config
    from cnncli.errors import ConfigError
    from cnncli.run import compile as compiling

    both = config.TrainSection(weight_decay=0.5, optimizer={"name": "adam",
                                                            "weight_decay": 0.001})
    with pytest.raises(ConfigError, match="`train.weight_decay` is 0.5 and "
                                          "`train.optimizer.weight_decay` 0.001: which one"):
        compiling.check_training(both, classes=3)
    compiling.check_training(config.TrainSection(weight_decay=0.5, optimizer={
        "name": "adam", "weight_decay": 0.5}), classes=3)
