"""What the pictures show: filters, activation maps, Grad-CAM heat maps and the network
drawing, checked on their arrays and on the pixels of the PNGs written; and the commands
`visualize filters`, `visualize activations`, `explain`, `summary --plot`, `predict --explain`.

The Grad-CAM tests train a small network (a few seconds) on 32x32 images whose class
(a ring, a cross, or nothing) is drawn in one random quadrant; the other quadrants hold
noise and a filled square that is there whatever the class.
"""

import json
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw
from typer.testing import CliRunner

from cnncli import config, plots
from cnncli.cli.app import app
from cnncli.data import images, pipeline
from cnncli.errors import ConfigError, ModelError
from cnncli.infer import classifier
from cnncli.model import builder, modelfile, spec
from cnncli.model.meta import ModelMeta
from cnncli.runtime import import_keras
from cnncli.viz import (
    activations,
    conv_layers,
    explain,
    filters,
    gradcam,
    model_input,
    mosaic,
    network_plot,
    pictures,
)

keras = import_keras()
runner = CliRunner()

SIZE = 32
QUADRANTS = [(0, 0), (0, 16), (16, 0), (16, 16)]  # (top, left) of each 16x16 quadrant
RING, CROSS, NOTHING = 0, 1, 2


# --------------------------------------------------------------------------- helpers


def quadrant_image(label: int, quadrant: int, square: int, rng) -> np.ndarray:
    """Noise, the class's shape in `quadrant`, and a filled square in `square`."""
    image = Image.fromarray(rng.integers(0, 90, (SIZE, SIZE), dtype=np.uint8))
    draw = ImageDraw.Draw(image)
    top, left = QUADRANTS[quadrant]
    cy, cx = top + 8 + rng.integers(-2, 3), left + 8 + rng.integers(-2, 3)
    if label == RING:
        draw.ellipse((cx - 5, cy - 5, cx + 5, cy + 5), outline=230, width=2)
    elif label == CROSS:
        draw.line((cx - 5, cy, cx + 5, cy), fill=230, width=2)
        draw.line((cx, cy - 5, cx, cy + 5), fill=230, width=2)
    top, left = QUADRANTS[square]
    sy, sx = top + 5 + rng.integers(0, 3), left + 5 + rng.integers(0, 3)
    draw.rectangle((sx, sy, sx + 5, sy + 5), fill=230)
    return np.asarray(image)[..., np.newaxis]


def quadrant_set(n: int, seed: int):
    """(images, labels, evidence quadrants), seeded."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 3, n)
    quadrants = rng.integers(0, 4, n)
    squares = (quadrants + rng.integers(1, 4, n)) % 4  # never the evidence's quadrant
    x = np.stack([quadrant_image(*args, rng) for args in zip(labels, quadrants, squares,
                                                              strict=True)])
    return x, labels.astype(np.int64), quadrants


QUADRANT_NET = """
  input: [32, 32, 1]
  classes: 3
  layers:
    - Conv2D: {filters: 16, kernel_size: 3, padding: same, activation: relu}
    - MaxPooling2D
    - Conv2D: {filters: 32, kernel_size: 3, padding: same, activation: relu}
    - MaxPooling2D
    - Conv2D: {filters: 32, kernel_size: 3, padding: same, activation: relu}
    - GlobalAveragePooling2D
    - Dense: {units: $classes, activation: softmax}
"""


@pytest.fixture(scope="module")
def quadrant_run(tmp_path_factory):
    """A run trained on quadrant images (about 4 s), and its held-out images."""
    from cnncli.run import train

    folder = tmp_path_factory.mktemp("quadrants")
    x_train, y_train, _ = quadrant_set(1200, seed=0)
    x_test, y_test, q_test = quadrant_set(200, seed=1)
    np.savez(folder / "quadrants.npz", x_train=x_train, y_train=y_train, x_test=x_test,
             y_test=y_test)
    path = folder / "quadrants.yaml"
    net = QUADRANT_NET.replace("\n", "\n  ")
    path.write_text(f"""
model:{net}
data: {{name: {folder / "quadrants.npz"}, validation_split: 0.1}}
train:
  epochs: 6
  batch_size: 32
  optimizer: {{name: adam, learning_rate: 0.003}}
  precision: float32
  seed: 0
output: {{dir: {folder / "runs"}, name: quadrants}}
""")
    run = train.train(config.load(path), config_file=str(path)).run
    return {"run": run, "x": x_test, "y": y_test, "quadrant": q_test, "folder": folder}


def quadrant_of(row: int, col: int) -> int:
    return (row // 16) * 2 + col // 16


def wrap(model, *, preprocessing: str = "scale", meta: ModelMeta | None = None):
    """A model as `classifier.load` returns it."""
    shape = tuple(model.inputs[0].shape[1:])
    names = [str(i) for i in range(model.outputs[0].shape[-1])]
    return classifier.keras_classifier("test-model", model, shape, preprocessing, names,
                                       meta=meta)


def conv_net(input_shape=(16, 16, 1), filters_=(4,), kernel=3, classes=2,
             activation=None):
    """Input -> Conv2D conv1_1 (-> conv2_1) -> global average -> softmax."""
    inputs = keras.Input(input_shape)
    x = inputs
    for i, n in enumerate(filters_):
        x = keras.layers.Conv2D(n, kernel, padding="same", activation=activation,
                                name=f"conv{i + 1}_1")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(classes, activation="softmax",
                                                  name="fc1")(x))


VERTICAL_EDGE = np.array([[-1.0, 0.0, 1.0]] * 3)  # dark left, bright right


def png_pixels(path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


def cli(*args):
    return runner.invoke(app, [str(a) for a in args])


def cnncli(*args):
    return subprocess.run([sys.executable, "-m", "cnncli", *map(str, args)],
                          capture_output=True, text=True, timeout=300)


# --------------------------------------------------------------------------- Grad-CAM


def test_gradcam_peaks_in_the_quadrant_holding_the_class_evidence(quadrant_run):
    clf = classifier.load(str(quadrant_run["run"]))
    shapes = quadrant_run["y"] != NOTHING  # images with evidence in one quadrant
    x = pipeline.preprocess_batch(quadrant_run["x"][shapes], clf.input_shape,
                                  clf.preprocessing)
    maps = gradcam.GradCam(clf.model)(x)
    hits = [quadrant_of(*m.peak()) == q
            for m, q in zip(maps, quadrant_run["quadrant"][shapes], strict=True)]
    assert len(hits) > 100
    assert np.mean(hits) >= 0.9, f"heat map maximum in the evidence quadrant for " \
                                 f"{np.mean(hits):.0%} of {len(hits)} images"


def test_gradcam_weighs_each_map_by_the_mean_gradient_of_the_score_before_softmax():
    # Two 1x1 "filters" copy the input's two channels; after global averaging, class
    # scores are z = W g with a known W. Grad-CAM for class c is then ReLU(sum_k W[k, c]
    # * A_k) / its max: the gradient of z_c (not of the probability) by A_k is W[k, c] / 16.
    inputs = keras.Input((4, 4, 2))
    conv = keras.layers.Conv2D(2, 1, use_bias=False, name="conv1_1")
    pooled = keras.layers.GlobalAveragePooling2D()(conv(inputs))
    dense = keras.layers.Dense(3, activation="softmax", use_bias=False, name="fc1")
    model = keras.Model(inputs, dense(pooled))
    conv.set_weights([np.eye(2, dtype="float32").reshape(1, 1, 2, 2)])
    w = np.array([[2.0, -1.0, 0.5], [-1.0, 3.0, 0.5]], dtype="float32")
    dense.set_weights([w])
    x = np.random.default_rng(0).uniform(0, 1, (1, 4, 4, 2)).astype("float32")
    for c in range(3):
        (heat,) = gradcam.GradCam(model)(x, [c])
        expected = np.maximum(x[0] @ w[:, c], 0)
        np.testing.assert_allclose(heat.coarse, expected / expected.max(), atol=1e-5)
        assert heat.class_index == c and heat.layer == "conv1_1"


def test_gradcam_of_a_loaded_sequential_model_is_that_of_its_layers(tmp_path):
    # A Sequential loaded from a file has called its layers more than once: the picture
    # must follow the call its output comes from (it had no gradient: "convert None").
    model = keras.Sequential([keras.Input((4, 4, 2)),
                              keras.layers.Conv2D(2, 1, use_bias=False, name="conv1_1"),
                              keras.layers.GlobalAveragePooling2D(),
                              keras.layers.Dense(3, activation="softmax", use_bias=False)])
    model.layers[0].set_weights([np.eye(2, dtype="float32").reshape(1, 1, 2, 2)])
    w = np.array([[2.0, -1.0, 0.5], [-1.0, 3.0, 0.5]], dtype="float32")
    model.layers[-1].set_weights([w])
    model.save(tmp_path / "sequential.keras")
    loaded = keras.saving.load_model(tmp_path / "sequential.keras")
    x = np.random.default_rng(0).uniform(0, 1, (1, 4, 4, 2)).astype("float32")
    for c in range(3):  # as for the same layers in a functional model (the test above)
        (heat,) = gradcam.GradCam(loaded)(x, [c])
        expected = np.maximum(x[0] @ w[:, c], 0)
        np.testing.assert_allclose(heat.coarse, expected / expected.max(), atol=1e-5)


def test_gradcam_of_a_sequential_takes_the_score_before_a_softmax_that_dropout_follows():
    model = keras.Sequential([keras.Input((4, 4, 2)),
                              keras.layers.Conv2D(2, 1, use_bias=False, name="conv1_1"),
                              keras.layers.GlobalAveragePooling2D(),
                              keras.layers.Dense(3, activation="softmax", use_bias=False),
                              keras.layers.Dropout(0.1)])
    model.layers[0].set_weights([np.eye(2, dtype="float32").reshape(1, 1, 2, 2)])
    w = np.array([[2.0, -1.0, 0.5], [-1.0, 3.0, 0.5]], dtype="float32")
    model.layers[2].set_weights([w])
    x = np.random.default_rng(0).uniform(0, 1, (1, 4, 4, 2)).astype("float32")
    for c in range(3):  # z_c's gradient, as for the functional model (the test below)
        (heat,) = gradcam.GradCam(model)(x, [c])
        expected = np.maximum(x[0] @ w[:, c], 0)
        np.testing.assert_allclose(heat.coarse, expected / expected.max(), atol=1e-5)


def test_gradcam_takes_the_score_before_a_softmax_that_dropout_follows():
    inputs = keras.Input((4, 4, 2))
    conv = keras.layers.Conv2D(2, 1, use_bias=False, name="conv1_1")
    dense = keras.layers.Dense(3, activation="softmax", use_bias=False, name="fc1")
    out = keras.layers.Dropout(0.1)(dense(keras.layers.GlobalAveragePooling2D()(
        conv(inputs))))
    model = keras.Model(inputs, out)
    conv.set_weights([np.eye(2, dtype="float32").reshape(1, 1, 2, 2)])
    w = np.array([[2.0, -1.0, 0.5], [-1.0, 3.0, 0.5]], dtype="float32")
    dense.set_weights([w])
    x = np.random.default_rng(0).uniform(0, 1, (1, 4, 4, 2)).astype("float32")
    for c in range(3):  # as without the Dropout (the test above): z_c's gradient
        (heat,) = gradcam.GradCam(model)(x, [c])
        expected = np.maximum(x[0] @ w[:, c], 0)
        np.testing.assert_allclose(heat.coarse, expected / expected.max(), atol=1e-5)


def test_gradcam_reaches_the_last_convolution_inside_a_nested_model():
    keras.utils.set_random_seed(0)
    backbone = keras.Sequential([keras.Input((16, 16, 3)),
                                 keras.layers.Conv2D(4, 3, activation="relu", name="c1"),
                                 keras.layers.Conv2D(6, 3, activation="relu", name="c2")],
                                name="backbone")
    backbone.trainable = False  # as when fine-tuning: the gradient must still get there
    inputs = keras.Input((16, 16, 3))
    pooled = keras.layers.GlobalAveragePooling2D()(backbone(inputs))
    head = keras.layers.Dense(3, activation="softmax", name="head")
    nested = keras.Model(inputs, head(pooled))
    # The same layers and weights in one flat model: the heat maps must be the same.
    flat_in = keras.Input((16, 16, 3))
    y = flat_in
    for layer in [*backbone.layers, keras.layers.GlobalAveragePooling2D(), head]:
        twin = type(layer).from_config(layer.get_config())
        y = twin(y)
        twin.set_weights(layer.get_weights())
    flat = keras.Model(flat_in, y)
    x = np.random.default_rng(1).uniform(0, 1, (3, 16, 16, 3)).astype("float32")
    got = gradcam.GradCam(nested)(x)
    want = gradcam.GradCam(flat)(x)
    assert got[0].layer == "backbone/c2" and want[0].layer == "c2"
    assert got[0].heatmap.shape == (16, 16) and got[0].coarse.shape == (12, 12)
    for g, w in zip(got, want, strict=True):
        assert g.class_index == w.class_index
        np.testing.assert_allclose(g.heatmap, w.heatmap, atol=1e-5)


def test_layers_are_named_by_the_paths_summary_and_train_freeze_use():
    from cnncli.model import backbone as backbones

    inner = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Conv2D(2, 3, name="c1"),
                              keras.layers.MaxPooling2D(name="p1")], name="inner")
    inputs = keras.Input((8, 8, 3))
    model = keras.Model(inputs, keras.layers.Dense(2, name="d")(
        keras.layers.Flatten(name="f")(inner(inputs))))
    paths = [r.name for r in conv_layers.walk(model)]
    assert paths == [p for p, _ in backbones.leaf_layers(model)]
    assert paths == ["inner/c1", "inner/p1", "f", "d"]


def test_the_nested_network_itself_as_the_layer_names_its_last_layer_instead():
    backbone = keras.Sequential([keras.Input((16, 16, 3)),
                                 keras.layers.Conv2D(4, 3, name="c1"),
                                 keras.layers.Conv2D(6, 3, name="c2")], name="backbone")
    inputs = keras.Input((16, 16, 3))
    pooled = keras.layers.GlobalAveragePooling2D()(backbone(inputs))
    model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(pooled))
    with pytest.raises(ConfigError, match="'backbone' is a network inside the model, not "
                                          "one layer") as err:
        gradcam.GradCam(model, "backbone")
    assert err.value.hint.startswith("name one of its layers by its path, e.g. backbone/c2")


def branched_net(merge: str):
    """Input -> conv stem -> two convolution branches joined by `merge` (concatenate or
    add) -> ReLU -> global average -> softmax: an inception module or a residual block."""
    inputs = keras.Input((12, 12, 1))
    stem = keras.layers.Conv2D(4, 3, padding="same", name="stem")(inputs)
    left = keras.layers.Conv2D(4, 1, name="branch_a")(stem)
    right = keras.layers.Conv2D(4, 3, padding="same", name="branch_b")(stem)
    joined = (keras.layers.Concatenate(name="join")([left, right]) if merge == "concatenate"
              else keras.layers.Add(name="join")([left, right]))
    out = keras.layers.ReLU(name="join_relu")(joined)
    pooled = keras.layers.GlobalAveragePooling2D()(out)
    return keras.Model(inputs, keras.layers.Dense(2, activation="softmax", name="fc1")(pooled))


@pytest.mark.parametrize("merge", ["concatenate", "add"])
def test_gradcam_looks_where_the_branches_join_not_into_the_last_branch(merge):
    model = branched_net(merge)
    assert conv_layers.convolutions(model)[-1].name == "branch_b"  # one branch only
    x = np.random.default_rng(0).uniform(0, 1, (1, 12, 12, 1)).astype("float32")
    (heat,) = gradcam.GradCam(model)(x)
    assert heat.layer == "join_relu"
    assert heat.coarse.shape == (12, 12)


def lenet_like():
    """Two convolutions with maps, then one whose maps are 1x1 (LeNet-5's C5)."""
    inputs = keras.Input((12, 12, 1))
    x = keras.layers.Conv2D(2, 3, activation="relu", name="conv1_1")(inputs)
    x = keras.layers.MaxPooling2D(name="pool1")(x)  # 5x5
    x = keras.layers.Conv2D(3, 5, activation="relu", name="conv2_1")(x)  # 1x1
    x = keras.layers.Flatten()(x)
    return keras.Model(inputs, keras.layers.Dense(2, activation="softmax", name="fc1")(x))


def test_gradcam_passes_over_a_last_convolution_of_1x1_maps():
    model = lenet_like()
    assert conv_layers.last_volume(model).name == "conv1_1"
    cam = gradcam.GradCam(model)
    assert cam.ref.name == "conv1_1" and cam.warnings == []


def test_a_gradcam_layer_of_1x1_maps_asked_for_is_looked_at_and_warned_of(tmp_path):
    from cnncli.viz import explain as explaining

    image = tmp_path / "x.png"
    Image.new("L", (12, 12), 200).save(image)
    result = explaining.explain([str(image)], wrap(lenet_like()), layer="conv2_1",
                                output=tmp_path)
    assert result.pictures[0].layer == "conv2_1"
    assert all("(the Grad-CAM is zero everywhere" in w for w in result.warnings[1:])
    assert result.warnings[:1] == [  # (an untrained network's map may also be all dark)
        "the maps of conv2_1 are 1x1: its Grad-CAM is one value, the whole image coloured "
        "the same, and cannot say where; a layer with larger maps can, such as conv1_1"]


def test_gradcam_keeps_the_last_convolution_when_nothing_joins_after_it():
    model = conv_net(filters_=(2, 3), activation="relu")
    assert conv_layers.last_volume(model).name == "conv2_1"


def test_gradcam_looks_after_the_batch_norm_and_relu_that_follow_the_last_convolution():
    # Batch norm with scale -1 and shift 1 turns the convolution's x into 1 - x: the class
    # "dark" is raised by dark pixels. At the ReLU the map is the dark patch; at the
    # convolution (the default before) the gradient is negative everywhere: no map at all.
    inputs = keras.Input((6, 6, 1))
    conv = keras.layers.Conv2D(1, 1, use_bias=False, name="conv")
    norm = keras.layers.BatchNormalization(epsilon=0.0, name="conv_bn")
    rectified = keras.layers.ReLU(name="conv_relu")(norm(conv(inputs)))
    dense = keras.layers.Dense(2, activation="softmax", use_bias=False, name="fc1")
    model = keras.Model(inputs, dense(keras.layers.GlobalAveragePooling2D()(rectified)))
    conv.set_weights([np.ones((1, 1, 1, 1), "float32")])
    norm.set_weights([np.array([-1.0]), np.array([1.0]), np.zeros(1), np.ones(1)])
    dense.set_weights([np.array([[1.0, -1.0]], "float32")])
    x = np.ones((1, 6, 6, 1), "float32")
    x[0, :2, :2] = 0  # the dark patch, top left
    assert conv_layers.last_volume(model).name == "conv_relu"
    (heat,) = gradcam.GradCam(model)(x, [0])
    np.testing.assert_allclose(heat.coarse, 1 - x[0, ..., 0], atol=1e-5)
    (before,) = gradcam.GradCam(model, "conv")(x, [0])
    assert before.coarse.max() == 0


def test_a_grad_cam_with_no_evidence_for_the_class_says_so(tmp_path):
    """A black image gives a convolution without bias nothing: no map raises the class,
    and a picture blue all over would look like an error without the words."""
    from cnncli.viz import explain as explaining

    image = tmp_path / "black.png"
    Image.new("L", (16, 16)).save(image)
    result = explaining.explain([str(image)], wrap(conv_net()), output=tmp_path)
    [picture] = result.pictures
    assert picture.evidence is False and picture.to_dict()["evidence"] is False
    assert result.warnings == [
        f"{image}: nothing at {picture.layer} raised '{picture.class_name}' (the Grad-CAM is "
        "zero everywhere: the overlay is dark all over); try another class (explain --class) "
        "or layer (--layer)"]


def test_predict_explain_warns_of_a_heat_map_with_no_evidence_as_explain_does(
        quadrant_run, bracketed, tmp_path, monkeypatch):
    from dataclasses import replace

    from cnncli.viz import explain as explaining

    write = explaining._write  # each heat map written as one with no evidence (all dark)
    monkeypatch.setattr(explaining, "_write",
                        lambda *a: replace(write(*a), evidence=False))
    cross = bracketed[1]
    for command in (["explain", quadrant_run["run"], cross, "--output", tmp_path],
                    ["predict", cross, "--model", quadrant_run["run"], "--explain", tmp_path]):
        result = cli(*command)
        assert result.exit_code == 0, result.output
        assert f"{cross}: nothing at conv3_1 raised '1' (the Grad-CAM is zero everywhere" \
            in " ".join(result.stderr.split()), command


def test_a_layer_that_is_not_a_convolution_is_named_for_what_it_is():
    model = conv_net(filters_=(2, 3))
    with pytest.raises(ConfigError, match="'fc1' is a Dense layer, not a convolution "
                                          "layer") as caught:
        filters.filter_grid(model, "fc1")
    assert caught.value.hint == "use one of: conv1_1, conv2_1"
    with pytest.raises(ConfigError, match="'fc1' is a Dense layer, not a layer with an "
                                          "HxWxD output"):
        gradcam.GradCam(model, "fc1")


def test_an_unknown_gradcam_layer_names_the_other_volumes_it_may_look_at():
    inputs = keras.Input((16, 16, 1))
    x = keras.layers.Conv2D(2, 3, name="conv1_1")(inputs)
    x = keras.layers.MaxPooling2D(name="pool1")(x)
    x = keras.layers.Conv2D(2, 3, name="conv2_1")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(x))
    with pytest.raises(ConfigError, match="no layer with an HxWxD output called 'nope'") as caught:
        gradcam.GradCam(model, "nope")
    assert caught.value.hint == ("use one of: conv1_1, conv2_1 (or another layer with an "
                                 "HxWxD output: pool1)")


def test_every_unknown_layer_is_reported_not_only_the_first():
    model = conv_net(filters_=(2, 3))
    with pytest.raises(ConfigError) as caught:
        activations.choose(model, ["conv9", "conv1_1", "nope"])
    assert [e.message for e in caught.value.errors] == [
        "the model has no layer with an HxWxD output called 'conv9'",
        "the model has no layer with an HxWxD output called 'nope'"]


def test_a_pooling_layers_maps_are_shown_when_named():
    """The lecture's activation figures show what pooling makes of the maps too."""
    inputs = keras.Input((8, 8, 1))
    x = keras.layers.Conv2D(2, 3, padding="same", name="conv1_1")(inputs)
    x = keras.layers.MaxPooling2D(name="pool1")(x)
    model = keras.Model(inputs, keras.layers.Dense(2)(keras.layers.Flatten()(x)))
    assert [s.ref.name for s in activations.choose(model, ["pool1", "conv1_1"])] == [
        "conv1_1", "pool1"]
    maps = activations.activation_maps(model, np.ones((1, 8, 8, 1), "float32"),
                                       activations.choose(model, ["pool1"]))
    assert maps[0].volume == "4x4x2"


def test_default_maps_are_shown_after_the_batch_norm_and_relu_that_follow_the_convolution():
    """Conv, batch norm, ReLU (MobileNet, ResNet): the maps as the network goes on with
    them, where a filter that does not respond is 0 (dark), not the convolution's raw
    output before them; the title says so. A convolution with its ReLU inside (VGG's, the
    lecture's) is shown as it is, and one followed by a branch's merge stops there."""
    inputs = keras.Input((8, 8, 1))
    x = keras.layers.Conv2D(2, 3, padding="same", name="conv1")(inputs)
    x = keras.layers.BatchNormalization(name="bn1")(x)
    x = keras.layers.ReLU(6.0, name="relu1")(x)
    y = keras.layers.Conv2D(2, 3, padding="same", activation="relu", name="conv2")(x)
    z = keras.layers.Conv2D(2, 1, name="conv3")(y)
    z = keras.layers.Add(name="join")([z, y])
    a = keras.layers.BatchNormalization(name="bn_a")(keras.layers.Conv2D(  # a residual
        2, 1, name="conv_a")(z))  # block's two branches: Keras lists both convolutions
    b = keras.layers.BatchNormalization(name="bn_b")(keras.layers.Conv2D(  # before
        2, 1, name="conv_b")(z))  # either's batch norm
    z = keras.layers.Add(name="join2")([a, b])
    model = keras.Model(inputs, keras.layers.Dense(2)(keras.layers.Flatten()(z)))
    bn = model.get_layer("bn1")
    bn.set_weights([np.ones(2), np.full(2, -5.0), np.zeros(2), np.ones(2)])  # all below 0
    shown = activations.choose(model, None)
    assert [(s.ref.name, s.at.name, s.after) for s in shown] == [
        ("conv1", "relu1", ("batch norm", "ReLU6")), ("conv2", "conv2", ()),
        ("conv3", "conv3", ()), ("conv_a", "bn_a", ("batch norm",)),
        ("conv_b", "bn_b", ("batch norm",))]
    maps = activations.activation_maps(model, np.ones((1, 8, 8, 1), "float32"), shown)
    assert maps[0].title == "conv1: 8x8x2, after batch norm, ReLU6" and maps[1].title == \
        "conv2: 8x8x2"
    assert maps[0].maps.max() == 0  # after the ReLU: nothing responds (dark)
    raw = activations.activation_maps(model, np.ones((1, 8, 8, 1), "float32"),
                                      activations.choose(model, ["conv1"]))
    assert raw[0].title == "conv1: 8x8x2" and raw[0].maps.std() > 0  # named: as it is


def test_an_empty_layer_name_is_an_unknown_layer_not_the_default():
    model = conv_net(filters_=(2, 3))
    for make in (lambda: filters.filter_grid(model, ""), lambda: gradcam.GradCam(model, ""),
                 lambda: activations.choose(model, [""])):
        with pytest.raises(ConfigError, match="no .*layer.* ''"):
            make()


def brightness(rgb) -> np.ndarray:
    """What a greyscale printer makes of uint8 RGB colours (ITU-R 601 luma)."""
    return np.asarray(rgb, np.float64) @ [0.299, 0.587, 0.114]


def test_gradcam_overlay_is_bright_where_the_heat_is_and_dark_where_it_is_not():
    image = np.full((4, 4, 1), 128, np.uint8)
    heat = np.zeros((4, 4))
    heat[0, 0] = 1.0
    out = gradcam.overlay(image, heat)
    assert out.shape == (4, 4, 3)
    assert brightness(out[0, 0]) > 150 > 100 > brightness(out[3, 3])


def test_gradcam_colours_grow_brighter_with_the_evidence_so_they_print_in_grey():
    """A greyscale print or colour-blind eyes keep the order of the evidence (jet's dark
    red, the most, printed as dark as its dark blue, none)."""
    luma = brightness(gradcam.scale_bar(256)[0])
    assert (np.diff(luma) > 0).all() and luma[-1] - luma[0] > 200


def test_an_unknown_class_name_lists_the_classes():
    with pytest.raises(ConfigError, match="no class 'dgo'.*did you mean 'dog'.*cat, dog"):
        explain.class_index(["cat", "dog"], "dgo")


def test_imagenets_two_cranes_are_told_apart_by_wordnet_id_not_picked_silently():
    """A bird and a machine are both `crane`: the name alone is refused with the IDs,
    which name each (as predict's JSON gives them)."""
    from cnncli.model import imagenet

    names = imagenet.class_names()
    with pytest.raises(ConfigError, match="two classes of the model are named 'crane'") as e:
        explain.class_index(names, "crane")
    assert e.value.hint == ("name the one meant by its WordNet ID: n02012849 or n03126707 (as "
                            "predict's JSON gives them)")
    assert names[explain.class_index(names, "n03126707")] == "crane"
    assert explain.class_index(names, "n03126707") != explain.class_index(names, "n02012849")
    assert names[explain.class_index(names, "tench")] == "tench"


# --------------------------------------------------------------------------- filters


def test_a_hand_set_vertical_edge_filter_shows_dark_left_and_bright_right(tmp_path):
    model = conv_net(filters_=(4,))
    layer = model.get_layer("conv1_1")
    kernel, bias = layer.get_weights()
    kernel[..., 0, 2] = VERTICAL_EDGE
    layer.set_weights([kernel, bias])
    picture = pictures.write_filters(wrap(model), None, tmp_path / "f.png")
    grid = picture.grid.grid
    assert len(grid.boxes) == 4  # one tile per filter
    tile = grid.boxes[2].of(grid.image)[..., 0]
    third = tile.shape[1] // 3
    assert (tile[:, :third] == 0).all()
    assert (tile[:, third:2 * third] == 128).all()
    assert (tile[:, 2 * third:] == 255).all()
    # The PNG holds the grid pixel for pixel under its title.
    (top, left), = plots.panel_origins([grid.image.shape[:2]])[0]
    png = png_pixels(picture.png)
    np.testing.assert_array_equal(
        png[top:top + grid.image.shape[0], left:left + grid.image.shape[1]], grid.image)
    assert picture.grid.title == "conv1_1: 4 filters of 3x3x1"
    # Under it, its key: a grey scale from black to white as wide as the grid.
    (top, left) = plots.panel_origins([grid.image.shape[:2], (14, grid.image.shape[1])])[0][1]
    key = png[top + 7, left:left + grid.image.shape[1], 0]
    assert key[0] == 0 and key[-1] == 255 and (np.diff(key.astype(int)) >= 0).all()


def test_the_grid_has_one_tile_per_filter_and_tiles_differ_from_the_gaps(tmp_path):
    model = conv_net(filters_=(5, 7))
    picture = pictures.write_filters(wrap(model), "conv2_1", tmp_path / "f.png")
    grid = picture.grid.grid
    assert len(grid.boxes) == 7 and picture.grid.kernel.shape == (3, 3, 5, 7)
    # Between the tiles: only the gap colour and each tile's frame; in each tile, the 5
    # input channels as grey slices separated by the slice colour.
    mask = np.zeros(grid.image.shape[:2], bool)
    for box in grid.boxes:
        mask[box.top:box.top + box.height, box.left:box.left + box.width] = True
        tile = box.of(grid.image)
        assert (tile == mosaic.SLICE_GAP_COLOUR).all(axis=-1).any()
        assert tile.min() == 0 and tile.max() == 255  # scaled to its own range
    between = grid.image[~mask]
    assert ((between == mosaic.GAP_COLOUR).all(axis=-1)
            | (between == mosaic.FRAME_COLOUR).all(axis=-1)).all()


def test_filters_are_further_apart_than_the_slices_inside_each_are():
    """A filter's input channels are slices of its tile, split by lines that grow with
    the tile: the gap between two filters is wider than two such lines."""
    grid = filters.filter_grid(conv_net(filters_=(5, 7)), "conv2_1").grid
    first, second = grid.boxes[0], grid.boxes[1]
    lines = (first.of(grid.image) == mosaic.SLICE_GAP_COLOUR).all(axis=-1).all(axis=0)
    edges = np.flatnonzero(np.diff(np.r_[0, lines.astype(int), 0]))  # starts and ends
    width = (edges[1::2] - edges[::2]).max()  # of the thickest line between two slices
    assert lines.any() and second.left - (first.left + first.width) > 2 * width


def test_a_tile_as_white_as_the_gap_is_outlined_apart_from_it():
    """The strongest activation map is drawn white, as the gap between tiles is."""
    tiles = [mosaic.to_rgb(np.ones((4, 4))), mosaic.to_rgb(np.zeros((4, 4)))]
    m = mosaic.grid(tiles, min_side=4)
    for box in m.boxes:
        ring = mosaic.Box(box.top - 1, box.left - 1, box.height + 2, box.width + 2).of(m.image)
        edge = np.concatenate([ring[0], ring[-1], ring[:, 0], ring[:, -1]])
        assert (edge == mosaic.FRAME_COLOUR).all()
    assert (m.boxes[0].of(m.image) == 255).all()  # the tile itself is untouched


def test_first_layer_filters_of_an_rgb_model_are_colour_tiles_in_rgb_order():
    model = conv_net(input_shape=(8, 8, 3), filters_=(2,))
    layer = model.get_layer("conv1_1")
    kernel = np.zeros((3, 3, 3, 2), "float32")
    kernel[..., 0, 0] = 1.0  # filter 0 looks for red
    layer.set_weights([kernel, np.zeros(2, "float32")])
    grid = filters.filter_grid(model)
    assert grid.rgb
    red = grid.grid.boxes[0].of(grid.grid.image)
    assert (red == (255, 0, 0)).all()
    # Caffe-preprocessed models (VGG's weights) see BGR: the same weights look for blue.
    bgr = filters.filter_grid(model, preprocessing="caffe")
    assert (bgr.grid.boxes[0].of(bgr.grid.image) == (0, 0, 255)).all()


def test_a_depthwise_convolution_has_one_single_channel_filter_per_map():
    inputs = keras.Input((8, 8, 2))
    x = keras.layers.DepthwiseConv2D(3, depth_multiplier=3, name="dw")(inputs)
    model = keras.Model(inputs, keras.layers.Dense(2)(keras.layers.Flatten()(x)))
    assert filters.filter_grid(model).kernel.shape == (3, 3, 1, 6)


def test_a_separable_convolution_is_drawn_as_the_plain_convolution_it_equals():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 2))
    separable = keras.layers.SeparableConv2D(5, 3, depth_multiplier=3, use_bias=False,
                                             name="sep")
    model = keras.Model(inputs, keras.layers.Dense(2)(keras.layers.Flatten()(
        separable(inputs))))
    kernel = filters.filter_grid(model).kernel
    assert kernel.shape == (3, 3, 2, 5)  # 5 filters over both input channels
    plain = keras.layers.Conv2D(5, 3, use_bias=False)
    x = np.random.default_rng(0).uniform(0, 1, (1, 8, 8, 2)).astype("float32")
    plain(x)
    plain.set_weights([kernel])
    np.testing.assert_allclose(plain(x), separable(x), atol=1e-5)


# --------------------------------------------------------------------------- activations


def edge_model():
    """One 3x3 filter that responds to dark-to-bright steps from left to right."""
    model = conv_net(input_shape=(32, 32, 1), filters_=(1,), activation="relu")
    model.get_layer("conv1_1").set_weights([VERTICAL_EDGE.reshape(3, 3, 1, 1),
                                            np.zeros(1)])
    return model


def test_a_default_picture_too_tall_to_view_is_said_with_how_to_pick_layers(tmp_path,
                                                                           monkeypatch):
    """EfficientNet's 81 convolutions made a PNG of 1,583x73,283 pixels without a word."""
    Image.new("L", (SIZE, SIZE), 0).save(tmp_path / "x.png")
    monkeypatch.setattr(pictures, "TALL", 100)
    picture = pictures.write_activations(wrap(edge_model()), str(tmp_path / "x.png"),
                                         output=tmp_path / "a.png")
    height = png_pixels(picture.png).shape[0]
    assert picture.warnings == [f"the maps of 1 convolution make a picture {height:,} "
                                "pixels tall, more than image viewers open; --layers picks "
                                "some (e.g. --layers conv1_1)"]
    assert picture.to_dict()["warnings"] == picture.warnings
    named = pictures.write_activations(wrap(edge_model()), str(tmp_path / "x.png"),
                                       ["conv1_1"], output=tmp_path / "b.png")
    assert named.warnings == []  # asked for


def test_an_edge_filters_map_peaks_on_the_edge_of_a_drawn_rectangle(tmp_path):
    image = Image.new("L", (SIZE, SIZE), 0)
    ImageDraw.Draw(image).rectangle((10, 8, 20, 24), fill=255)  # x 10..20, y 8..24
    path = tmp_path / "rectangle.png"
    image.save(path)
    picture = pictures.write_activations(wrap(edge_model()), str(path),
                                         output=tmp_path / "a.png")
    (maps,) = picture.layers
    assert maps.title == "conv1_1: 32x32x1"
    response = maps.maps[..., 0]
    row, col = np.unravel_index(np.argmax(response), response.shape)
    assert col in (9, 10) and 8 <= row <= 24  # on the rectangle's left edge
    assert response[16, 15] == 0  # inside: no step, no response
    # Its tile: white on the edge, black inside (the layer's range, enlarged).
    grid = maps.grid()
    tile = grid.boxes[0].of(grid.image)[..., 0]
    zoom = tile.shape[0] // SIZE
    assert tile[row * zoom, col * zoom] == 255 and tile[16 * zoom, 15 * zoom] == 0
    # The PNG shows the input, then the map, pixel for pixel.
    seen = mosaic.enlarged(np.repeat(np.asarray(image)[..., np.newaxis], 3, axis=-1))
    origins, _, _ = plots.panel_origins([seen.shape[:2], grid.image.shape[:2]])
    png = png_pixels(picture.png)
    (top, left) = origins[1]
    np.testing.assert_array_equal(png[top:top + grid.image.shape[0],
                                      left:left + grid.image.shape[1]], grid.image)
    (top, left) = origins[0]
    np.testing.assert_array_equal(png[top:top + seen.shape[0], left:left + seen.shape[1]],
                                  seen)


def test_activation_maps_of_the_lectures_mnist_net_have_its_volume_sizes():
    model = builder.build(spec.load("mnist_net"))
    refs = activations.choose(model, None)
    x = np.zeros((1, 28, 28, 1), "float32")
    assert [m.title for m in activations.activation_maps(model, x, refs)] == \
        ["conv1_1: 28x28x32", "conv2_1: 14x14x64"]
    assert [s.ref.name for s in activations.choose(model, ["conv2_1"])] == ["conv2_1"]


def test_a_layer_where_no_filter_responds_is_drawn_dark_not_grey():
    grid = activations.LayerMaps("conv1_1", np.zeros((4, 4, 2), np.float32)).grid()
    tiles = [box.of(grid.image) for box in grid.boxes]
    assert all(tile.max() == 0 for tile in tiles)


def test_an_unknown_layer_lists_the_valid_ones():
    model = conv_net(filters_=(2, 3))
    with pytest.raises(ConfigError, match="no layer with an HxWxD output called 'conv9'.*"
                                          "conv1_1, conv2_1"):
        activations.choose(model, ["conv9"])


def test_a_mistyped_layer_gets_a_did_you_mean():
    model = conv_net(filters_=(2, 3))
    with pytest.raises(ConfigError) as caught:
        activations.choose(model, ["conv2_l"])
    assert caught.value.hint.startswith("did you mean 'conv2_1'? use one of: conv1_1")


def test_a_model_without_convolutions_is_refused_naming_its_layers():
    model = builder.build(spec.load("linear"))
    for make in (lambda: filters.filter_grid(model, model_name="linear.keras"),
                 lambda: gradcam.GradCam(model, model_name="linear.keras")):
        with pytest.raises(ModelError, match="no convolution layer.*its layers: flatten1, fc1"):
            make()


def test_an_exported_model_is_refused_with_where_to_look_instead(tmp_path):
    onnx = types.SimpleNamespace(name="model.onnx", input_shape=(8, 8, 1), preprocessing="scale",
                                 class_names=["a", "b"])  # what an exported classifier lacks:
    for make in (lambda: pictures.write_filters(onnx, None, tmp_path / "f.png"),  # .model
                 lambda: pictures.write_activations(onnx, "x.png", None, tmp_path / "a.png"),
                 lambda: explain.explain(["x.png"], onnx, output=tmp_path)):
        with pytest.raises(ConfigError, match="model.onnx: .*exported file.*run folder"):
            make()  # a usage error (exit 2): the file is fine
    assert list(tmp_path.iterdir()) == []


def test_images_are_read_with_the_models_resize_mode(tmp_path):
    path = tmp_path / "wide.png"
    pixels = np.random.default_rng(0).integers(0, 255, (20, 40, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    clf = wrap(conv_net(input_shape=(10, 10, 3)), meta=ModelMeta(resize="center_crop"))
    seen = model_input.read(str(path), clf)
    want = images.resize(images.load_image(path), (10, 10), "center_crop")
    np.testing.assert_array_equal(seen.pixels, want)
    np.testing.assert_allclose(np.asarray(seen.x), want[np.newaxis] / 255.0, atol=1e-6)
    stretched = model_input.read(str(path), wrap(conv_net(input_shape=(10, 10, 3))))
    np.testing.assert_array_equal(stretched.pixels,
                                  images.resize(images.load_image(path), (10, 10), "bilinear"))


# --------------------------------------------------------------------------- network plot

POOL_RGB = tuple(int(network_plot.COLOURS["pool"][i:i + 2], 16) for i in (1, 3, 5))


def test_the_vgg16_drawing_has_five_pooling_stages_each_smaller(tmp_path):
    built = builder.build_checked(spec.load("vgg16"))
    boxes = network_plot.layout(built).boxes
    pools = [b for b in boxes if b.kind == "pool"]
    assert [b.volume for b in pools] == ["112x112x64", "56x56x128", "28x28x256",
                                         "14x14x512", "7x7x512"]
    stages, stage = [], []
    for b in boxes[1:]:
        if b.kind == "conv":
            stage.append(b.height)
        elif b.kind == "pool":
            stages.append(stage)
            stage = []
    assert [len(s) for s in stages] == [2, 2, 3, 3, 3]
    heights = [s[0] for s in stages] + [pools[-1].height]
    assert all(a > b for a, b in zip(heights, heights[1:], strict=False))
    # In the PNG: five red boxes, each lower than the one before.
    png = png_pixels(network_plot.write(built, tmp_path / "vgg16.png"))
    red = (png == POOL_RGB).all(axis=-1)
    columns = np.nonzero(red.sum(axis=0) >= 20)[0]  # boxes, not the legend's small patch
    runs = np.split(columns, np.nonzero(np.diff(columns) > 1)[0] + 1)
    assert len(runs) == 5
    drawn = [np.ptp(np.nonzero(red[:, run].sum(axis=1) > len(run) / 2)[0]) for run in runs]
    assert all(a > b for a, b in zip(drawn, drawn[1:], strict=False)), drawn


def test_the_drawings_kinds_of_layer_are_apart_in_grey_too():
    """Printed in grey (or seen without red and green), the colours of the kinds every
    network has keep apart; merges and others are hatched besides."""
    def grey(colour: str) -> float:
        return brightness([int(colour[i:i + 2], 16) for i in (1, 3, 5)])

    kinds = [network_plot.COLOURS[k] for k in ("input", "conv", "pool", "fc")]
    levels = sorted(grey(c) for c in kinds)
    assert min(np.diff(levels)) > 20, levels
    assert set(network_plot.HATCHES) == {"merge", "other"}


def test_googlenets_inception_branches_are_drawn_side_by_side():
    boxes = {b.name: b for b in network_plot.layout(
        builder.build_checked(spec.load("googlenet"))).boxes}
    heads = [boxes[f"inception3a_b{i}_{kind}1"]
             for i, kind in ((1, "conv"), (2, "conv"), (3, "conv"), (4, "pool"))]
    assert len({b.column for b in heads}) == 1  # the same step along the network ...
    ys = [b.y for b in heads]
    assert ys == sorted(ys, reverse=True) and len(set(ys)) == 4  # ... one above the other
    merge = boxes["inception3a_concatenate"]
    assert merge.y == 0 and merge.column > heads[0].column
    assert merge.inputs == ["inception3a_b1_conv1", "inception3a_b2_conv2",
                            "inception3a_b3_conv2", "inception3a_b4_conv1"]


def test_a_drawing_cuts_neither_its_legend_nor_its_outer_boxes(tmp_path):
    """A two-layer network is narrower than its legend (the legend ran off the left edge),
    and the last box's right edge lay on the axes' edge (it was not drawn)."""
    fc = tuple(int(network_plot.COLOURS["fc"][i:i + 2], 16) for i in (1, 3, 5))
    for name in ("linear", "mnist_net"):
        png = png_pixels(network_plot.write(builder.build_checked(spec.load(name)),
                                            tmp_path / f"{name}.png"))
        for margin in (png[:, :3], png[:, -3:], png[:3], png[-3:]):
            assert (margin == 255).all(), name  # nothing reaches the picture's edges
        green = (png == fc).all(axis=-1)
        rows = np.nonzero(green.sum(axis=1))[0]
        middle = rows[len(rows) // 2]  # the last box's middle row (the legend's is higher)
        last = np.nonzero(green[middle])[0].max()
        assert png[middle, last + 1].max() < 100, name  # its dark edge, drawn


def test_a_residual_blocks_identity_path_is_drawn_over_the_layers_it_skips(write):
    built = builder.build_checked(spec.load(write("res.yaml", """
        input: [16, 16, 3]
        classes: 4
        layers:
          - Conv2D: {filters: 8, kernel_size: 3, padding: same, activation: relu}
          - branches: [[{Conv2D: {filters: 8, kernel_size: 3, padding: same}}], []]
            merge: add
          - GlobalAveragePooling2D
          - Dense: {units: $classes, activation: softmax}
    """)))
    boxes = {b.label: b for b in network_plot.layout(built).boxes}
    first, second, add = boxes["CONV3-8 + ReLU"], boxes["CONV3-8"], boxes["ADD"]
    assert add.inputs == [second.name, first.name]
    skip = network_plot._line(first, add, list(boxes.values()))
    assert len(skip) == 4 and skip[1][1] > second.y + second.height / 2  # over it
    assert (skip[0][0], skip[-1][0]) == (first.x, add.x)
    assert network_plot._line(first, second, list(boxes.values())) == [
        (first.x + first.width / 2, first.y), (second.x - second.width / 2, second.y)]


# --------------------------------------------------------------------------- commands


@pytest.fixture(scope="module")
def bracketed(quadrant_run):
    """Two held-out images as PNG files, one with brackets in its name (rich markup would
    drop "[b]")."""
    folder = quadrant_run["folder"] / "images"
    folder.mkdir(exist_ok=True)
    x, y = quadrant_run["x"], quadrant_run["y"]
    ring, cross = int(np.argmax(y == RING)), int(np.argmax(y == CROSS))
    paths = [folder / "IMG [1] [b].png", folder / "cross.png"]
    for path, i in zip(paths, (ring, cross), strict=True):
        Image.fromarray(x[i, ..., 0]).save(path)
    return paths


def test_visualize_filters_writes_the_png_and_prints_its_path(quadrant_run, tmp_path):
    out = tmp_path / "filters.png"
    result = cli("visualize", "filters", quadrant_run["run"], "--output", out)
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == str(out)
    png = png_pixels(out)
    assert (png != 255).any(axis=-1).mean() > 0.2  # drawn, not a blank page
    data = json.loads(cli("visualize", "filters", quadrant_run["run"], "--output", out,
                          "--layer", "conv3_1", "--json").stdout)
    assert data == {"picture": str(out), "layer": "conv3_1", "filters": 32,
                    "filter_shape": [3, 3, 32], "rgb": False}


def test_filters_of_a_model_keras_saved_alone_say_nothing_of_its_preprocessing(tmp_path):
    """Filters are weights, no image is given: the guess at its preprocessing, which
    `visualize activations` warns about, does not concern them."""
    import warnings

    path = tmp_path / "own.keras"
    conv_net(input_shape=(8, 8, 1)).save(path)
    image = tmp_path / "x.png"
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(image)
    for args, expected in ((["filters", path], []), (["activations", path, image],
                                                      ["own.keras"])):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            result = cli("visualize", *args, "--output", tmp_path / "p.png")
        assert result.exit_code == 0, result.output
        said = [str(w.message) for w in caught if "has no record" in str(w.message)]
        assert [Path(s.split(" has")[0]).name for s in said] == expected


def test_explain_on_a_full_disk_leaves_no_empty_output_folder(quadrant_run, bracketed,
                                                              tmp_path, monkeypatch):
    def full_disk(panels, path, **kwargs):
        raise OSError(28, "No space left on device", str(path))

    monkeypatch.setattr(plots, "pixel_panels", full_disk)
    clf = classifier.load(str(quadrant_run["run"]))
    with pytest.raises(OSError, match="No space left"):
        explain.explain([str(bracketed[1])], clf, output=tmp_path / "new" / "maps")
    assert list(tmp_path.iterdir()) == []


def test_visualize_activations_prints_the_path_and_json_gives_volumes(quadrant_run,
                                                                      bracketed, tmp_path):
    out = tmp_path / "maps.png"
    result = cli("visualize", "activations", quadrant_run["run"], bracketed[0], "--output",
                 out, "--json", "--layers", "conv1_1,conv3_1")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["picture"] == str(out) and data["image"] == str(bracketed[0])
    assert [(d["layer"], d["volume"]) for d in data["layers"]] == [
        ("conv1_1", "32x32x16"), ("conv3_1", "8x8x32")]
    assert all(d["min"] <= d["max"] for d in data["layers"])  # each layer's grey scale
    assert data["layers"][0]["min"] == 0.0 and data["layers"][0]["max"] > 0  # (ReLU inside)
    assert (png_pixels(out) != 255).any(axis=-1).mean() > 0.2


def test_explain_writes_one_heat_map_per_image_named_after_it(quadrant_run, bracketed,
                                                              tmp_path):
    result = cli("explain", quadrant_run["run"], *bracketed, "--output", tmp_path)
    assert result.exit_code == 0, result.output
    written = [tmp_path / "gradcam_IMG [1] [b].png", tmp_path / "gradcam_cross.png"]
    assert result.stdout.splitlines() == [str(p) for p in written]  # brackets intact
    for path in written:
        png = png_pixels(path)
        (top, left), (key_top, _) = plots.panel_origins([(256, 256), (14, 256)])[0]
        assert (png[top:top + 256, left:left + 256] != 255).any(axis=-1).mean() > 0.5
        assert (png[key_top:key_top + 14, left:left + 256] == gradcam.scale_bar(256)).all()
    data = json.loads(cli("explain", quadrant_run["run"], *bracketed, "--output", tmp_path,
                          "--json", "--class", "0").stdout)
    assert [(d["image"], d["class"], d["layer"]) for d in data] == [
        (str(bracketed[0]), "0", "conv3_1"), (str(bracketed[1]), "0", "conv3_1")]
    assert data[0]["probability"] > 0.5 > data[1]["probability"]  # the ring is a ring


def test_explain_numbers_heat_maps_whose_names_a_case_insensitive_disk_sees_as_one(
        quadrant_run, bracketed, tmp_path):
    """macOS' and Windows' disks: gradcam_Cat.png and gradcam_cat.png are one file, and
    the second image's heat map would replace the first's."""
    for folder, name, source in (("day1", "Cat.png", bracketed[0]),
                                 ("day2", "cat.png", bracketed[1]),
                                 ("day3", "CAT.png", bracketed[1])):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / name).write_bytes(Path(source).read_bytes())
    images = [str(tmp_path / f) for f in ("day1/Cat.png", "day2/cat.png", "day3/CAT.png")]
    result = cli("explain", quadrant_run["run"], *images, "--output", tmp_path / "maps")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [
        str(tmp_path / "maps" / name)
        for name in ("gradcam_Cat.png", "gradcam_cat_2.png", "gradcam_CAT_3.png")]


def test_explain_titles_the_probability_predict_gives_in_each_precision(quadrant_run,
                                                                       bracketed, tmp_path):
    run, cross = quadrant_run["run"], bracketed[1]
    said = {}
    for precision in ("float32", "mixed_bfloat16"):
        cam = cli("explain", run, cross, "--output", tmp_path, "--json",  # its top class
                  "--precision", precision)
        predicted = cli("predict", cross, "--model", run, "--top", "1", "--format", "json",
                        "--precision", precision)
        assert cam.exit_code == predicted.exit_code == 0, cam.output + predicted.output
        [top] = json.loads(predicted.stdout)[0]["top"]
        said[precision] = json.loads(cam.stdout)[0]["probability"]
        assert top["class"] == "1" and said[precision] == top["probability"]
    assert said["float32"] != said["mixed_bfloat16"]  # bfloat16 really ran


def test_predict_explain_writes_heat_maps_beside_the_predictions(quadrant_run, bracketed,
                                                                 tmp_path):
    result = cli("predict", bracketed[1], "--model", quadrant_run["run"], "--top", "1",
                 "--explain", tmp_path / "cams")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("1. 1: ")  # the cross
    assert (tmp_path / "cams" / "gradcam_cross.png").is_file()


@pytest.mark.parametrize("fmt", ["json", "jsonl"])
def test_predict_explain_json_names_each_images_heat_map(quadrant_run, bracketed, tmp_path,
                                                         fmt):
    """A script reads the heat map's file from the JSON, not from stderr's lines."""
    result = cli("predict", bracketed[1], "--model", quadrant_run["run"], "--top", "1",
                 "--explain", tmp_path / "cams", "--format", fmt)
    assert result.exit_code == 0, result.output
    said = json.loads(result.stdout) if fmt == "json" else [json.loads(result.stdout)]
    assert said[0]["gradcam"] == str(tmp_path / "cams" / "gradcam_cross.png")
    plain = cli("predict", bracketed[1], "--model", quadrant_run["run"], "--format", fmt)
    assert "gradcam" not in plain.stdout  # without --explain: no such key


def test_an_image_with_a_name_as_long_as_a_file_system_allows_gets_its_heat_map(
        quadrant_run, bracketed, tmp_path):
    long = tmp_path / ("b" * 250 + ".png")  # 254 bytes: "gradcam_" + it would be 266
    long.write_bytes(bracketed[1].read_bytes())
    result = cli("explain", quadrant_run["run"], long, bracketed[1], "--output",
                 tmp_path / "cams")
    assert result.exit_code == 0, result.output
    written = sorted(p.name for p in (tmp_path / "cams").iterdir())
    assert written[1] == "gradcam_cross.png" and written[0].startswith("gradcam_bbbb")
    assert len(written) == 2 and len(written[0].encode()) <= 255


@pytest.mark.parametrize("skip_bad", [[], ["--skip-bad"]])
def test_predict_explain_failing_still_gives_one_json_document_and_its_exit_code(
        quadrant_run, bracketed, tmp_path, monkeypatch, capsys, skip_bad):
    import sys

    from cnncli.cli import app
    from cnncli.errors import ModelError
    from cnncli.viz import explain

    def fails(*args, **kwargs):  # e.g. a disk that is full by the time of the heat maps
        raise ModelError("cannot write the plot: No space left on device")

    monkeypatch.setattr(explain, "explain", fails)
    monkeypatch.setattr(sys, "argv", [
        "cnncli", "predict", str(bracketed[1]), "--model", str(quadrant_run["run"]), "--top",
        "1", "--explain", str(tmp_path / "cams"), "--format", "json", *skip_bad])
    with pytest.raises(SystemExit) as exit_:
        app.main()  # as the command line runs it: the error path prints JSON of its own
    captured = capsys.readouterr()
    [answer] = json.loads(captured.out)  # the predictions, one document
    assert answer["top"][0]["class"] == "1"
    assert exit_.value.code == 3  # the heat maps' error, --skip-bad or not
    assert "error: cannot write the plot: No space left on device" in captured.err


def test_a_picture_under_a_file_is_refused_before_the_model_is_read(tmp_path):
    (tmp_path / "afile").write_text("not a folder")
    result = cnncli("visualize", "filters", tmp_path / "no_such_run", "--output",
                    tmp_path / "afile" / "f.png")  # the model would be an error too
    assert result.returncode == 2
    assert "afile: the output folder is a file, not a folder" in result.stderr


def test_a_folder_given_as_the_picture_is_called_a_folder(tmp_path):
    result = cnncli("visualize", "filters", tmp_path / "no_such_run", "--output", tmp_path)
    assert result.returncode == 2
    assert "--output is the picture to write, and this is a folder" in result.stderr


def test_pictures_given_under_the_home_folder_are_written_there(quadrant_run, bracketed,
                                                                tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    assert cli("visualize", "filters", quadrant_run["run"], "--output",
               "~/pictures/f.png").exit_code == 0
    assert cli("explain", quadrant_run["run"], bracketed[1], "--output",
               "~/cams").exit_code == 0
    assert (tmp_path / "pictures" / "f.png").is_file()
    assert (tmp_path / "cams" / "gradcam_cross.png").is_file()
    assert not (tmp_path / "~").exists()


def test_predict_explain_into_a_file_is_refused_before_predicting(quadrant_run, bracketed,
                                                                  tmp_path):
    (tmp_path / "efile").write_text("not a folder")
    result = cnncli("predict", bracketed[1], "--model", quadrant_run["run"],
                    "--explain", tmp_path / "efile")
    assert result.returncode == 2 and result.stdout == ""
    assert "the output folder is a file, not a folder" in result.stderr


def test_predict_quiet_explain_prints_only_the_predictions(quadrant_run, bracketed,
                                                           tmp_path):
    result = cnncli("predict", bracketed[1], "--model", quadrant_run["run"], "--top", "1",
                    "-q", "--explain", tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("1. 1: ") and result.stderr == ""
    assert (tmp_path / "gradcam_cross.png").is_file()


def test_predict_explain_with_a_model_without_convolutions_is_refused_before_predicting(
        tmp_path):
    path = tmp_path / "linear.keras"
    modelfile.save_model_atomic(builder.build(spec.load("linear")), path,
                                ModelMeta(model="linear", input=(28, 28, 1)))
    image = tmp_path / "digit.png"
    Image.new("L", (28, 28)).save(image)
    result = cnncli("predict", image, "--model", path, "--explain", tmp_path / "cams")
    assert result.returncode == 3 and result.stdout == ""
    assert "no convolution layer, so it has no Grad-CAM" in result.stderr
    assert not (tmp_path / "cams").exists()  # no empty folder left behind


def test_heat_map_folders_are_made_with_the_first_picture_not_before(quadrant_run, tmp_path):
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    for args in (["predict", broken, "--model", quadrant_run["run"], "--explain",
                  tmp_path / "a" / "cams"],
                 ["explain", quadrant_run["run"], broken, "--output", tmp_path / "b" / "cams"]):
        result = cnncli(*args)
        assert result.returncode == 3 and "cut short" in result.stderr, result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken.png"]


def test_a_picture_name_of_another_format_is_refused_before_the_model_is_read(tmp_path):
    missing = tmp_path / "no-such-run"  # read first, it would be the error
    for args in (["visualize", "filters", missing, "--output", tmp_path / "f.gif"],
                 ["visualize", "activations", missing, "x.png", "--output", tmp_path / "a"],
                 ["summary", missing, "--plot", tmp_path / "net.bmp"]):
        result = cli(*args)
        assert isinstance(result.exception, ConfigError), (args, result.output)
        assert "cannot write a picture" in str(result.exception)
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_a_folder_given_as_the_picture_is_said_to_be_one_for_each_command(tmp_path):
    folder = tmp_path / "pictures"
    folder.mkdir()
    for args, option in ((["visualize", "filters", tmp_path / "no-run", "--output", folder],
                          "--output"), (["summary", "mnist_net", "--plot", folder], "--plot")):
        result = cli(*args)
        assert isinstance(result.exception, ConfigError), (args, result.output)
        assert str(result.exception) == (
            f"{folder}: {option} is the picture to write, and this is a folder. Hint: give "
            f"the picture's name, e.g. {option} {folder / 'picture.png'}")


def test_activations_with_an_empty_layers_option_is_a_usage_error(quadrant_run, bracketed):
    result = cli("visualize", "activations", quadrant_run["run"], bracketed[0], "--layers",
                 ",")
    assert result.exit_code == 2 and "--layers" in result.output


def test_explain_an_unreadable_image_is_an_error_and_the_others_are_done(quadrant_run,
                                                                         bracketed, tmp_path):
    broken, gone = tmp_path / "broken.png", tmp_path / "gone.png"  # gone: as predict says
    broken.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    pattern = tmp_path / "none*.png"  # a pattern matching nothing: one more bad input
    result = cnncli("explain", quadrant_run["run"], broken, gone, pattern, bracketed[1],
                    "--output", tmp_path)
    assert result.returncode == 1, result.stderr
    assert f"error: pattern '{pattern}' matches no images" in result.stderr
    assert f"error: {broken}: the file is the start of a PNG image, cut short" in result.stderr
    assert f"error: {gone}: the image does not exist" in result.stderr
    assert result.stdout.splitlines() == [str(tmp_path / "gradcam_cross.png")]
    assert "Traceback" not in result.stderr


def test_explain_skip_bad_warns_of_the_unreadable_images_and_exits_0(quadrant_run,
                                                                      bracketed, tmp_path):
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    result = cnncli("explain", quadrant_run["run"], broken, bracketed[1], "--output",
                    tmp_path, "--skip-bad")
    assert result.returncode == 0, result.stderr
    assert f"warning: skipped {broken}: the file is the start of a PNG image, cut short" in \
        result.stderr and "error:" not in result.stderr
    assert result.stdout.splitlines() == [str(tmp_path / "gradcam_cross.png")]


def test_explain_with_no_image_read_gives_the_error_document_exit_3(quadrant_run, tmp_path):
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    result = cnncli("explain", quadrant_run["run"], broken, "--output", tmp_path, "--json")
    doc = json.loads(result.stdout)
    assert result.returncode == 3 and doc["error"] == "DataError" and doc["exit_code"] == 3
    assert "cut short" in doc["message"] and "broken.png" in json.dumps(doc)


def test_an_unknown_layer_is_exit_2_listing_the_valid_layers(quadrant_run):
    result = cnncli("visualize", "filters", quadrant_run["run"], "--layer", "conv9_1")
    assert result.returncode == 2
    assert "no convolution layer called 'conv9_1'. Hint: did you mean 'conv3_1'? use one of: " \
           "conv1_1, conv2_1, conv3_1" in result.stderr
    assert "Traceback" not in result.stderr


def test_linear_is_refused_for_every_picture(tmp_path):
    path = tmp_path / "linear.keras"
    modelfile.save_model_atomic(builder.build(spec.load("linear")), path,
                                ModelMeta(model="linear", input=(28, 28, 1)))
    image = tmp_path / "digit.png"
    Image.new("L", (28, 28)).save(image)
    for args in (["visualize", "filters", path], ["visualize", "activations", path, image],
                 ["explain", path, image]):
        result = cli(*args)
        assert isinstance(result.exception, ModelError), args
        assert result.exception.exit_code == 3
        assert "no convolution layer" in str(result.exception)
        assert "its layers: flatten1, fc1" in str(result.exception)


def test_summary_plot_writes_the_drawing_and_says_where(tmp_path):
    out = tmp_path / "net.png"
    result = cli("summary", "mnist_net", "--plot", out)
    assert result.exit_code == 0, result.output
    assert f"Plot: {out}" in result.stdout and "CONV5-32 + ReLU" in result.stdout
    png = png_pixels(out)
    assert (png == POOL_RGB).all(axis=-1).sum() > 100
    data = json.loads(cli("summary", "mnist_net", "--plot", out, "--json").stdout)
    assert data["plot"] == str(out) and data["params"] == 3_274_634


def test_summary_plot_names_a_picture_with_a_newline_on_one_line(tmp_path):
    out = tmp_path / "n\nPlot: forged.png"
    result = cli("summary", "mnist_net", "--plot", out)
    assert result.exit_code == 0, result.output
    assert f"Plot: {tmp_path}/n\\nPlot: forged.png" in result.stdout.splitlines()


def test_explain_works_with_a_pretrained_model_and_a_local_weights_file(tmp_path):
    keras.utils.set_random_seed(0)
    weights = tmp_path / "mobilenet_v2.weights.h5"
    keras.applications.MobileNetV2(weights=None).save_weights(weights)
    photo = tmp_path / "photo.jpg"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (120, 90, 3), np.uint8)
                    ).save(photo)
    result = cli("explain", "mobilenet_v2", photo, "--weights", weights, "--output",
                 tmp_path, "--json")
    assert result.exit_code == 0, result.output
    (data,) = json.loads(result.stdout)
    assert data["layer"] == "out_relu" and data["picture"] == str(tmp_path / "gradcam_photo.png")
    assert png_pixels(tmp_path / "gradcam_photo.png").shape[0] > 224
    from cnncli.model import imagenet  # which of ImageNet's classes, as predict says it

    assert data["wordnet_id"] == imagenet.wordnet_ids(imagenet.class_names())[
        imagenet.class_names().index(data["class"])]


@pytest.mark.parametrize("command", [["explain"], ["visualize"], ["visualize", "filters"],
                                     ["visualize", "activations"]])
def test_help_of_the_picture_commands_imports_no_tensorflow(command):
    code = ("import sys\n"
            f"sys.argv = ['cnncli', *{command!r}, '--help']\n"
            "from cnncli.cli.app import main\n"
            "try:\n    main()\nexcept SystemExit:\n    pass\n"
            "print('HEAVY', [m for m in ('tensorflow', 'keras', 'numpy') if m in sys.modules])")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert "HEAVY []" in result.stdout and "Usage:" in result.stdout, result.stderr


@pytest.mark.parametrize("args", [["explain", "vgg16", "{image}", "--output", "{out}"],
                                  ["predict", "{image}", "--model", "vgg16", "--explain",
                                   "{out}"]])
def test_a_heat_map_folder_named_like_a_picture_is_refused_before_any_work(tmp_path, args):
    image = tmp_path / "x.png"
    Image.new("RGB", (8, 8)).save(image)
    out = tmp_path / "heat.png"
    result = cnncli(*(a.format(image=image, out=out) for a in args))
    assert result.returncode == 2, result.stderr
    assert "is the folder to write the pictures into (one per image), and this is a " \
           "picture's name" in result.stderr and f"--{args[-2].strip('-')} {tmp_path}/heat" \
        in result.stderr
    assert not out.exists()


def test_an_explained_probability_keeps_six_significant_digits_as_predicts_does():
    from cnncli.viz.explain import Explained

    said = Explained(Path("cam.png"), "a.png", "cat", 3.14159265e-09, "conv").to_dict()
    assert said["probability"] == 3.14159e-09  # not 0.0


def test_a_nested_model_that_cannot_be_probed_names_each_commands_own_option():
    """The hint said "with --layer", which visualize activations has not (--layers), and
    for a model whose only layer with a height and width is the nested one, following it
    came back to the same error."""
    from types import SimpleNamespace

    from cnncli.viz import probe

    error = probe._not_a_chain(SimpleNamespace(name="mobilenet_v2"), ValueError("x"))
    assert "explain --layer, visualize activations --layers" in error.hint
    assert error.hint.endswith("the layers inside it cannot be shown for this model")
