"""The built-in architectures are what their papers (and keras.applications) say."""

import numpy as np
import pytest

from cnncli.model import architectures, builder, spec, weights
from cnncli.runtime import import_keras

keras = import_keras()


def output_shapes(model):
    return [tuple(layer.output.shape[1:]) for layer in model.layers]


@pytest.mark.parametrize("name,factory,params", [
    ("vgg16", "VGG16", 138_357_544),
    ("vgg19", "VGG19", 143_667_240),
])
def test_vgg_matches_keras_applications_shapes_params_and_outputs(name, factory, params):
    ours = builder.build(spec.load(name))
    theirs = getattr(keras.applications, factory)(weights=None)
    assert ours.count_params() == theirs.count_params() == params
    assert output_shapes(ours) == output_shapes(theirs)
    assert weights.transfer(theirs, ours) == len(weights.weighted_layers(theirs))
    x = np.random.default_rng(0).uniform(-100, 100, (1, 224, 224, 3)).astype("float32")
    np.testing.assert_allclose(ours.predict(x, verbose=0), theirs.predict(x, verbose=0),
                               rtol=1e-5, atol=1e-6)


def test_vgg16_weights_from_a_saved_keras_file_load_into_our_model(tmp_path):
    path = tmp_path / "vgg16.weights.h5"
    keras.applications.VGG16(weights=None).save_weights(path)  # stands in for ImageNet's file
    theirs = keras.applications.VGG16(weights=str(path))
    ours = builder.build(spec.load("vgg16"))
    weights.transfer(theirs, ours)
    assert np.array_equal(ours.get_layer("conv5_3").get_weights()[0],
                          theirs.get_layer("block5_conv3").get_weights()[0])


# Szegedy et al. 2014, "Going deeper with convolutions", Table 1: output size per row.
GOOGLENET_TABLE_1 = {
    "conv1_1": (112, 112, 64), "pool1": (56, 56, 64), "conv2_2": (56, 56, 192),
    "pool2": (28, 28, 192), "inception3a_concatenate": (28, 28, 256),
    "inception3b_concatenate": (28, 28, 480), "pool3": (14, 14, 480),
    "inception4a_concatenate": (14, 14, 512), "inception4b_concatenate": (14, 14, 512),
    "inception4c_concatenate": (14, 14, 512), "inception4d_concatenate": (14, 14, 528),
    "inception4e_concatenate": (14, 14, 832), "pool4": (7, 7, 832),
    "inception5a_concatenate": (7, 7, 832), "inception5b_concatenate": (7, 7, 1024),
    "pool5": (1, 1, 1024), "fc1": (1000,),
}


def test_googlenet_output_sizes_match_table_1_of_the_paper():
    model = builder.build(spec.load("googlenet"))
    shapes = {layer.name: tuple(layer.output.shape[1:]) for layer in model.layers}
    assert {k: shapes[k] for k in GOOGLENET_TABLE_1} == GOOGLENET_TABLE_1


def test_mnist_net_is_the_lectures_table():
    model = builder.build(spec.load("mnist_net"))
    assert output_shapes(model)[1:] == [(28, 28, 32), (14, 14, 32), (14, 14, 64), (7, 7, 64),
                                        (3136,), (1024,), (10,)]


@pytest.mark.parametrize("name", architectures.names())
def test_every_builtin_builds_and_trains_one_step(name):
    keras.utils.set_random_seed(0)
    s = spec.load(name)
    model = builder.build(s, classes=3)
    x = np.random.default_rng(0).uniform(0, 1, (2, *s.input)).astype("float32")
    y = np.array([0, 2])
    model.compile(optimizer=keras.optimizers.SGD(1e-3), loss="sparse_categorical_crossentropy")
    before = [w.copy() for w in model.get_weights()]
    loss = model.train_on_batch(x, y)
    assert np.isfinite(loss)
    assert any(not np.array_equal(a, b) for a, b in zip(before, model.get_weights(),
                                                        strict=True))
