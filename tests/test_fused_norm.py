"""Tests for cnncli.model.fused_norm: BatchNormalization trained with the fused kernel
learns exactly what Keras' own does, and the model stays Keras' own."""

from __future__ import annotations

import numpy as np
import pytest

from cnncli.model.fused_norm import fuse_batch_norm
from cnncli.runtime import import_keras

keras = import_keras()


def _model(seed: int = 0, **bn):
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, padding="same")(inputs)
    x = keras.layers.BatchNormalization(momentum=0.5, **bn)(x)
    x = keras.layers.ReLU()(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(x))
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="sparse_categorical_crossentropy")
    return model


def _data():
    rng = np.random.default_rng(0)
    return rng.normal(3.0, 2.0, (16, 8, 8, 3)).astype("float32"), rng.integers(0, 2, 16)


def _trained(fused: bool, **bn):
    model = _model(**bn)
    if fused:
        assert fuse_batch_norm(model) == 1
    x, y = _data()
    model.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0)
    return model


@pytest.mark.parametrize("bn", [{}, {"scale": False, "center": False}])
def test_fused_training_learns_what_keras_batch_norm_learns(bn):
    keras_model, fused_model = _trained(False, **bn), _trained(True, **bn)
    for a, b in zip(keras_model.weights, fused_model.weights, strict=True):
        assert a.path.split("/")[-1] == b.path.split("/")[-1]
        # moving mean and variance (biased, as Keras 3 keeps it), gamma, beta, the rest
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-5,
                                   err_msg=a.path)


def test_a_frozen_batch_norm_keeps_its_moving_statistics():
    model = _model()
    fuse_batch_norm(model)
    bn = next(layer for layer in model.layers
              if isinstance(layer, keras.layers.BatchNormalization))
    bn.trainable = False
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    before = [np.asarray(v).copy() for v in (bn.moving_mean, bn.moving_variance)]
    model.fit(*_data(), batch_size=8, epochs=1, verbose=0)
    after = [np.asarray(v) for v in (bn.moving_mean, bn.moving_variance)]
    assert all((a == b).all() for a, b in zip(before, after, strict=True))


def test_a_fused_model_saves_and_loads_as_plain_keras(tmp_path):
    model = _trained(True)
    path = tmp_path / "m.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert [type(layer) for layer in loaded.layers] == [type(layer) for layer in model.layers]
    x, _ = _data()
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0),
                               rtol=1e-6)


def test_fusing_twice_switches_each_layer_once():
    model = _model()
    assert fuse_batch_norm(model) == 1 and fuse_batch_norm(model) == 1


def test_fused_training_runs_in_bfloat16():
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        keras_model, fused_model = _trained(False), _trained(True)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    x, _ = _data()
    # bfloat16 keeps 8 bits of mantissa: the same model, to bfloat16's precision
    np.testing.assert_allclose(fused_model.predict(x, verbose=0),
                               keras_model.predict(x, verbose=0), atol=0.05)


def test_a_tiny_epsilon_keeps_keras_own_batch_norm():
    assert fuse_batch_norm(_model(epsilon=1e-6)) == 0


def test_fused_training_is_repeatable_bit_for_bit():
    # what exact resume relies on: the same steps give the same weights
    a, b = _trained(True), _trained(True)
    assert all((np.asarray(x) == np.asarray(y)).all()
               for x, y in zip(a.weights, b.weights, strict=True))


def test_a_nested_backbone_s_batch_norm_layers_are_switched_too():
    backbone = _model()
    inputs = keras.Input((8, 8, 3))
    outer = keras.Model(inputs, keras.layers.Dense(2)(backbone(inputs)))
    assert fuse_batch_norm(outer) == 1
