"""`cnncli predict`: pretrained and trained models, the lecture's output, many inputs, bad files.

ImageNet weights cannot be downloaded here, so the weights files are made from
`keras.applications.VGG16(weights=None)`: in Keras' legacy .h5 layout (the layout of
the real ImageNet files) for the cache, and as .weights.h5 for --weights.
"""

import functools
import http.server
import json
import subprocess
import sys
import threading

import h5py
import numpy as np
import pytest
from imagenetkit import imagenet_like_efficientnet, keras_imagenet_normalisation, normalised
from keras.src.legacy.saving import legacy_h5_format
from PIL import Image

from cnncli import parallel
from cnncli.errors import ManyErrors, ModelError
from cnncli.infer import classifier
from cnncli.infer import predict as prediction
from cnncli.model import builder, deferred, imagenet, pretrained, spec, weights
from cnncli.runtime import import_keras

keras = import_keras()


@pytest.fixture(scope="module")
def vgg16_files(tmp_path_factory):
    """A VGG16 with (random, seeded) weights, saved as Keras' cache file and as .weights.h5."""
    folder = tmp_path_factory.mktemp("vgg16")
    keras.utils.set_random_seed(0)
    model = keras.applications.VGG16(weights=None)
    cache = folder / "keras_home" / "models"
    cache.mkdir(parents=True)
    with h5py.File(cache / pretrained.get("vgg16").weights_file, "w") as f:
        legacy_h5_format.save_weights_to_hdf5_group(f, model)
    model.save_weights(folder / "vgg16.weights.h5")
    return {"model": model, "home": folder / "keras_home",
            "weights": folder / "vgg16.weights.h5"}


@pytest.fixture
def photos(tmp_path):
    rng = np.random.default_rng(0)
    paths = []
    for i, size in enumerate([(300, 200), (64, 64), (500, 375)]):
        path = tmp_path / f"photo{i}.jpg"
        Image.fromarray(rng.integers(0, 255, (*size[::-1], 3), dtype=np.uint8)).save(path)
        paths.append(path)
    return paths


def cnncli(*args, env=None, **kw):
    import os

    return subprocess.run([sys.executable, "-m", "cnncli", *args], capture_output=True,
                          text=True, env={**os.environ, **(env or {})}, **kw)


def test_a_pretrained_model_evaluates_imagenet_folders_named_by_wordnet_id(vgg16_files,
                                                                         tmp_path):
    """The README's `cnncli evaluate vgg16 --data val/ --all-images --output eval/`."""
    val = tmp_path / "val"
    rng = np.random.default_rng(0)
    for folder in ("n01440764", "crane"):  # tench by WordNet ID; a name two classes share
        (val / folder).mkdir(parents=True)
        for k in range(2):
            Image.fromarray(rng.integers(0, 255, (64, 64, 3), np.uint8)).save(
                val / folder / f"{k}.png")
    result = cnncli("evaluate", "vgg16", "--data", str(val), "--all-images", "--output",
                    str(tmp_path / "eval"), "--offline", "--json",
                    env={"KERAS_HOME": str(vgg16_files["home"])})
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["count"] == 4
    assert "'crane' names 2 of the model's classes (134, 517): read as class 134; name its " \
        "folder by WordNet ID (n02012849, n03126707) to choose" in report["notes"]


def test_a_pretrained_model_evaluates_from_a_weights_file_as_its_hint_says(vgg16_files,
                                                                          tmp_path):
    """Offline without Keras' cached file, the hint says "pass --weights FILE": evaluate
    had no such option."""
    val = tmp_path / "val" / "n01440764"
    val.mkdir(parents=True)
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(val / "0.png")
    missing = cnncli("evaluate", "vgg16", "--data", str(val.parent), "--all-images",
                     "--offline", env={"KERAS_HOME": str(tmp_path / "empty")})
    assert missing.returncode == 3 and "--weights FILE" in missing.stderr
    result = cnncli("evaluate", "vgg16", "--data", str(val.parent), "--all-images",
                    "--offline", "--weights", str(vgg16_files["weights"]), "--json",
                    env={"KERAS_HOME": str(tmp_path / "empty")})
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["count"] == 1


def test_prints_the_lectures_lines(vgg16_files, photos):
    result = cnncli("predict", str(photos[0]), "--model", "vgg16", "--weights",
                    str(vgg16_files["weights"]))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 5
    assert all(line.startswith(f"{i + 1}. ") and line.endswith("%") for i, line in
               enumerate(lines))
    assert "[INFO] classifying image with 'vgg16'..." in result.stderr


def test_uses_keras_cache_offline(vgg16_files, photos):
    result = cnncli("predict", str(photos[1]), "--model", "vgg16", "--offline", "--top", "2",
                    env={"KERAS_HOME": str(vgg16_files["home"])})
    assert result.returncode == 0, result.stderr
    assert len(result.stdout.splitlines()) == 2


def test_offline_without_weights_names_the_file_to_fetch(tmp_path, photos):
    result = cnncli("predict", str(photos[0]), "--model", "resnet50", "--offline",
                    env={"KERAS_HOME": str(tmp_path)})
    assert result.returncode == 3
    assert "resnet50_weights_tf_dim_ordering_tf_kernels.h5" in result.stderr
    assert str(tmp_path / "models") in result.stderr and "Traceback" not in result.stderr


def test_equals_keras_applications_own_prediction(vgg16_files, photos):
    """Same image, Keras' own loading (bilinear resize) and preprocess_input: same output."""
    model = vgg16_files["model"]
    names = [f"{i}" for i in range(1000)]
    loaded = classifier.keras_classifier("vgg16", model, (224, 224, 3), "caffe", names)
    ours = prediction.predict([str(photos[0])], model=loaded, top=1000).images[0].top
    img = keras.utils.load_img(photos[0], target_size=(224, 224), interpolation="bilinear")
    x = keras.applications.vgg16.preprocess_input(keras.utils.img_to_array(img)[None])
    expected = model.predict(x, verbose=0)[0]
    got = np.zeros(1000)
    for name, p in ours:
        got[int(name)] = p
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-7)


def test_our_vgg16_spec_with_those_weights_predicts_the_same(vgg16_files, photos):
    theirs = vgg16_files["model"]
    ours = builder.build(spec.load("vgg16"))
    weights.transfer(theirs, ours)
    names = imagenet.class_names()
    a, b = (prediction.predict([str(p) for p in photos], top=5, model=classifier.keras_classifier(
        name, net, (224, 224, 3), "caffe", names)) for name, net in (("ours", ours), ("k", theirs)))
    for x, y in zip(a.images, b.images, strict=True):
        assert [n for n, _ in x.top] == [n for n, _ in y.top]
        np.testing.assert_allclose([p for _, p in x.top], [p for _, p in y.top], rtol=1e-4)


@pytest.mark.parametrize("where", ["weights file", "Keras' cache (legacy .h5)"])
def test_a_pretrained_name_loaded_from_a_weights_file_has_every_weight_of_the_file(
        vgg16_files, where, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(vgg16_files["home"]))
    net = pretrained.load("vgg16", weights=vgg16_files["weights"]
                          if where == "weights file" else None, offline=True)
    for mine, theirs in zip(net.weights, vgg16_files["model"].weights, strict=True):
        np.testing.assert_array_equal(mine.numpy(), theirs.numpy())


@pytest.mark.parametrize("where", ["weights file", "Keras' cache (legacy .h5)"])
def test_a_pretrained_name_loaded_in_bfloat16_keeps_the_weights_it_casts_in_bfloat16(
        vgg16_files, where, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(vgg16_files["home"]))
    net = pretrained.load("vgg16", weights=vgg16_files["weights"] if where == "weights file"
                          else None, offline=True, precision="mixed_bfloat16")
    theirs = vgg16_files["model"].weights
    assert [w.dtype for w in net.weights] == ["bfloat16"] * 30 + ["float32"] * 2  # softmax
    for mine, file in zip(net.weights, theirs, strict=True):
        np.testing.assert_array_equal(mine.numpy(), file.numpy().astype(mine.dtype))


def counted(calls):
    """`small_conv_model` whose weights' initializers count their calls."""
    class Counting(keras.initializers.Initializer):
        def __call__(self, shape, dtype=None):
            calls.append(shape)
            return keras.ops.ones(shape, dtype)

    def build():
        return keras.Sequential([
            keras.Input((8, 8, 3)),
            keras.layers.Conv2D(8, 3, activation="relu", kernel_initializer=Counting(),
                                bias_initializer=Counting()),
            keras.layers.Flatten(),
            keras.layers.Dense(3, activation="softmax", kernel_initializer=Counting(),
                               bias_initializer=Counting())])
    return build


def test_a_network_filled_from_a_file_makes_each_weight_from_the_file_not_an_initializer():
    source = small_conv_model()
    calls = []
    model = deferred.filled(counted(calls), lambda m: m.set_weights(source.get_weights()))
    assert calls == []
    for mine, theirs in zip(model.weights, source.weights, strict=True):
        np.testing.assert_array_equal(mine.numpy(), theirs.numpy())
    x = np.random.default_rng(0).random((2, 8, 8, 3), "float32")
    np.testing.assert_array_equal(model(x), source(x))  # a working model


def test_a_network_filled_in_bfloat16_makes_the_weights_its_layers_cast_in_bfloat16():
    source = small_conv_model()
    model = deferred.filled(counted([]), lambda m: m.set_weights(source.get_weights()),
                            "mixed_bfloat16")
    assert [w.dtype for w in model.weights] == ["bfloat16", "bfloat16", "float32", "float32"]
    assert model.layers[0].compute_dtype == "bfloat16"
    np.testing.assert_array_equal(model.weights[0].numpy(),
                                  source.weights[0].numpy().astype("bfloat16"))


def test_a_filled_network_with_dropout_has_its_random_seed_and_trains():
    source = small_conv_model()

    def build():
        return keras.Sequential([
            keras.Input((8, 8, 3)), keras.layers.Conv2D(8, 3, activation="relu"),
            keras.layers.Dropout(0.5, seed=1), keras.layers.Flatten(),
            keras.layers.Dense(3, activation="softmax")])

    model = deferred.filled(build, lambda m: m.set_weights(source.get_weights()))
    model.compile("adam", "sparse_categorical_crossentropy")
    x = np.random.default_rng(0).random((4, 8, 8, 3), "float32")
    assert np.isfinite(model.train_on_batch(x, np.array([0, 1, 2, 0])))


def test_weights_a_fill_gives_no_value_are_named_as_unfilled():
    source = small_conv_model()
    model = deferred.filled(counted([]), lambda m: m.layers[0].set_weights(
        source.layers[0].get_weights()))
    dense = model.layers[-1]
    assert deferred.unfilled(model) == [dense.kernel.path, dense.bias.path]


def test_keras_adds_efficientnets_imagenet_scaling_only_when_it_loads_imagenet_itself():
    """Held to Keras 3.15: cnncli folds that Rescaling into the variance (from_file)."""
    import inspect

    from keras.src.applications import efficientnet

    source = inspect.getsource(efficientnet.EfficientNet)
    assert 'if weights == "imagenet":\n        # Note that the normalization' in source
    assert "1.0 / math.sqrt(stddev) for stddev in IMAGENET_STDDEV_RGB" in source
    assert tuple(efficientnet.IMAGENET_STDDEV_RGB) == pretrained.IMAGENET_STDDEV


@pytest.mark.parametrize("precision", ["float32", "mixed_bfloat16"])
def test_efficientnet_from_a_weights_file_normalises_as_keras_imagenet_build(tmp_path,
                                                                          precision):
    file = tmp_path / "efficientnetb0.weights.h5"
    imagenet_like_efficientnet().save_weights(file)
    net = pretrained.load("efficientnet_b0", weights=file, precision=precision)
    x = np.random.default_rng(0).uniform(0, 255, (2, 224, 224, 3)).astype("float32")
    expected = keras_imagenet_normalisation(x)
    # bfloat16 keeps 8 bits of x / 255 before the mean is taken away: up to 0.05 off
    tolerance = 1e-5 if precision == "float32" else 0.1
    np.testing.assert_allclose(normalised(net, x), expected, rtol=tolerance, atol=tolerance)


def test_efficientnet_weights_saved_after_the_fold_are_not_folded_again(tmp_path):
    file, again = tmp_path / "imagenet.weights.h5", tmp_path / "folded.weights.h5"
    imagenet_like_efficientnet().save_weights(file)
    pretrained.load("efficientnet_b0", weights=file).save_weights(again)
    net = pretrained.load("efficientnet_b0", weights=again)
    x = np.random.default_rng(0).uniform(0, 255, (2, 224, 224, 3)).astype("float32")
    np.testing.assert_allclose(normalised(net, x), keras_imagenet_normalisation(x),
                               rtol=1e-5, atol=1e-5)


def test_a_pretrained_file_that_leaves_weights_without_values_is_refused(vgg16_files,
                                                                          monkeypatch):
    def first_layer_only(model, path, **_):  # as a loader skipping layers quietly would
        model.layers[1].set_weights(vgg16_files["model"].layers[1].get_weights())

    monkeypatch.setattr(weights, "load_file", first_layer_only)
    with pytest.raises(ModelError, match="the file has no value for .*block1_conv2/kernel "
                                         "and 29 more weights"):
        pretrained.load("vgg16", weights=vgg16_files["weights"])


class CountingModel:
    def __init__(self, classes=3):
        self.calls, self.classes = [], classes

    def predict_on_batch(self, x):
        self.calls.append(len(x))
        return np.full((len(x), self.classes), 1 / self.classes, "float32")


def tiny(model):
    return classifier.keras_classifier("tiny", model, (8, 8, 3), "scale", ["a", "b", "c"])


class ScoringModel(CountingModel):
    def predict_on_batch(self, x):  # a last layer without softmax: raw scores
        return np.tile(np.array([[2.5, -1.0, 0.3]], "float32"), (len(x), 1))


def test_a_model_giving_scores_not_probabilities_is_said_once(tmp_path):
    for i in range(3):
        Image.new("RGB", (8, 8)).save(tmp_path / f"{i}.png")
    files = [str(tmp_path / f"{i}.png") for i in range(3)]
    result = prediction.predict(files, model=tiny(ScoringModel()), batch_size=1)
    assert len(result.images) == 3
    assert result.warnings == ["tiny does not give probabilities (its last layer has no "
                               "softmax): the figures shown are its raw scores (`score`), not "
                               "percentages of confidence; end the model with `activation: "
                               "softmax`"]
    assert prediction.predict(files, model=tiny(CountingModel())).warnings == []


def test_results_given_to_each_come_a_batch_at_a_time_and_are_not_kept(tmp_path):
    """A folder of a million images held every result until the last (2-9 KB each)."""
    for i in range(5):
        Image.new("RGB", (8, 8)).save(tmp_path / f"{i}.png")
    model, seen = CountingModel(), []
    result = prediction.predict([str(tmp_path)], model=tiny(model), batch_size=2,
                                each=lambda r, found: seen.append((len(found), len(model.calls),
                                                                   r.predicted)))
    assert seen == [(2, 1, 2), (2, 2, 4), (1, 3, 5)]  # each batch before the next is read
    assert result.images == [] and (result.predicted, result.inputs) == (5, 5)


def test_predict_prints_each_batchs_results_before_classifying_the_next(tmp_path,
                                                                         monkeypatch):
    """`cnncli predict ... --format jsonl | head` waited for every image; an interrupted
    one lost all it had classified."""
    from typer.testing import CliRunner

    from cnncli.cli.app import app

    for i in range(5):
        Image.new("RGB", (8, 8)).save(tmp_path / f"{i}.png")

    class Watching(CountingModel):  # how many lines stdout holds as each batch starts
        def predict_on_batch(self, x):
            self.calls.append(sys.stdout.buffer.getvalue().count(b"\n"))
            return super().predict_on_batch(x)

    for fmt, lines in (("jsonl", [0, 6, 12]), ("csv", [0, 7, 13]), ("text", [0, 8, 16])):
        model = Watching()
        monkeypatch.setattr(classifier, "load", lambda *a, m=model, **k: tiny(m))
        result = CliRunner().invoke(app, ["predict", str(tmp_path), "--model", "x.keras",
                                          "--top", "3", "--batch-size", "2", "--format", fmt])
        assert result.exit_code == 0, result.output
        assert model.calls[::2] == lines  # (after each batch's count: its size)
        assert len(result.stdout.splitlines()) == lines[-1] + lines[1] // 2


class LateScoringModel(CountingModel):
    def predict_on_batch(self, x):  # probabilities-like for the first batch, scores after
        out = [0.6, 0.3, 0.1] if not self.calls else [2.5, -1.0, 0.3]
        self.calls.append(len(x))
        return np.tile(np.array([out], "float32"), (len(x), 1))


def _predict_cli(model, monkeypatch, *args):
    from typer.testing import CliRunner

    from cnncli.cli.app import app

    monkeypatch.setattr(classifier, "load", lambda *a, **k: tiny(model))
    return CliRunner().invoke(app, ["predict", *args, "--model", "x.keras", "--top", "1",
                                    "--batch-size", "2"])


def test_scores_shown_only_by_a_later_batch_keep_the_columns_and_are_said(tmp_path,
                                                                          monkeypatch):
    """The CSV's `probability` column was left empty for the rows of later batches, and
    JSON said `probability` for some images and `score` for others."""
    for i in range(4):
        Image.new("RGB", (8, 8)).save(tmp_path / f"{i}.png")
    result = _predict_cli(LateScoringModel(), monkeypatch, str(tmp_path), "--format", "csv")
    assert result.exit_code == 0, result.output
    rows = result.stdout.splitlines()
    assert rows[0] == "file,rank,class,probability" and [r.split(",")[-1] for r in rows[1:]] \
        == ["0.6", "0.6", "2.5", "2.5"]
    assert "outputs showed they are not probabilities only after the first results were " \
           "written" in result.stderr
    doc = json.loads(_predict_cli(LateScoringModel(), monkeypatch, str(tmp_path), "--format",
                                  "json").stdout)
    assert [list(image["top"][0]) for image in doc] == [["class", "score"]] * 4


def test_warnings_known_before_the_results_are_said_before_them(tmp_path, monkeypatch):
    """`| head` ended the command before the warnings said after every result."""
    for i in range(3):
        Image.new("RGB", (8, 8)).save(tmp_path / f"{i}.png")
    result = _predict_cli(ScoringModel(), monkeypatch, str(tmp_path))
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    said = next(i for i, line in enumerate(lines) if "does not give probabilities" in line)
    assert said < next(i for i, line in enumerate(lines) if line.startswith("  1. "))
    assert result.output.count("does not give probabilities") == 1


class NanModel(CountingModel):
    def predict_on_batch(self, x):  # weights gone to NaN: NaN for every image but the first
        out = np.full((len(x), self.classes), np.nan, "float32")
        out[0] = [0.2, 0.7, 0.1]
        return out


def test_an_image_the_model_gives_nan_for_is_its_own_error_not_a_nan_probability(tmp_path):
    """It was "1. a: nan%", and "probability": NaN in JSON (which no strict parser reads),
    exit 0."""
    for i in range(3):
        Image.new("RGB", (8, 8)).save(tmp_path / f"{i}.png")
    files = [str(tmp_path / f"{i}.png") for i in range(3)]
    result = prediction.predict(files, model=tiny(NanModel()), batch_size=3)
    assert [r.file for r in result.images] == files[:1] and result.images[0].top[0][0] == "b"
    assert [e.file for e in result.errors] == files[1:]
    assert result.errors[0].message == "tiny gives NaN or infinite outputs for this image"
    assert "not finite" in result.errors[0].hint and result.errors[0].exit_code == 3


def test_a_model_giving_nan_for_every_image_of_the_first_batch_is_one_error(tmp_path):
    """Not a paragraph per image (thousands for a folder): the model is what is wrong."""
    from cnncli.errors import ModelError

    class AllNan(CountingModel):
        def predict_on_batch(self, x):
            return np.full((len(x), self.classes), np.nan, "float32")

    for i in range(3):
        Image.new("RGB", (8, 8)).save(tmp_path / f"{i}.png")
    files = [str(tmp_path / f"{i}.png") for i in range(3)]
    with pytest.raises(ModelError, match="tiny gives NaN or infinite outputs for every "
                                         "image") as err:
        prediction.predict(files, model=tiny(AllNan()), batch_size=3)
    assert "not finite" in err.value.hint


def test_nan_outputs_in_float16_suggest_float32_before_blaming_the_weights(tmp_path):
    # auto is mixed_float16 on a GPU of compute capability 7.x: activations over 65,504
    # become infinite there, in a model whose weights are fine
    from cnncli.errors import ModelError

    class AllNan(CountingModel):
        def predict_on_batch(self, x):
            return np.full((len(x), self.classes), np.inf, "float32")

    Image.new("RGB", (8, 8)).save(tmp_path / "0.png")
    loaded = classifier.keras_classifier("tiny", AllNan(), (8, 8, 3), "scale",
                                         ["a", "b", "c"], precision="mixed_float16")
    with pytest.raises(ModelError) as err:
        prediction.predict([str(tmp_path / "0.png")], model=loaded)
    assert err.value.hint.startswith("it computed in mixed_float16, where an activation "
                                     "over 65,504 (float16's largest number) becomes "
                                     "infinite: try --precision float32; if the outputs "
                                     "are still not numbers, its weights are probably")


def test_json_output_holds_no_nan_a_strict_parser_refuses(capsys):
    from cnncli.cli import render

    render.print_json({"loss": float("nan"), "rows": [{"p": float("-inf")}, 0.5]})
    assert json.loads(capsys.readouterr().out, parse_constant=pytest.fail) == {
        "loss": None, "rows": [{"p": None}, 0.5]}


def test_raw_scores_are_printed_as_scores_not_percentages_nor_probabilities(tmp_path,
                                                                           capsys):
    from cnncli.cli import render

    Image.new("RGB", (8, 8)).save(tmp_path / "0.png")
    for model, text, key in ((ScoringModel(), "1. a: 2.5\n2. c: 0.3\n3. b: -1\n", "score"),
                             (CountingModel(), "1. a: 33.33%\n", "probability")):
        result = prediction.predict([str(tmp_path / "0.png")], model=tiny(model), top=3)
        render.predictions(result, "text")
        assert capsys.readouterr().out.startswith(text)
        render.predictions(result, "json")
        assert key in json.loads(capsys.readouterr().out)[0]["top"][0]


class CraneModel(CountingModel):
    """ImageNet's 1000 outputs, surest of the machine crane (517), then the bird (134)."""

    def predict_on_batch(self, x):
        p = np.full((len(x), imagenet.NUM_CLASSES), 0.1 / 998, "float32")
        p[:, 517], p[:, 134] = 0.6, 0.3
        return p


def test_an_imagenet_models_classes_carry_their_wordnet_ids_and_shared_names_show_them(
        tmp_path, capsys):
    from cnncli.cli import render

    Image.new("RGB", (8, 8)).save(tmp_path / "0.png")
    loaded = classifier.keras_classifier("imagenet-like", CraneModel(), (8, 8, 3), "scale",
                                         imagenet.class_names())
    result = prediction.predict([str(tmp_path / "0.png")], model=loaded, top=3)
    assert result.images[0].wordnet_ids == ["n03126707", "n02012849", "n01440764"]
    render.predictions(result, "text")  # the two cranes told apart; tench needs no ID
    assert capsys.readouterr().out.splitlines() == [
        "1. crane (n03126707): 60.00%", "2. crane (n02012849): 30.00%", "3. tench: 0.01%"]
    render.predictions(result, "json")
    assert json.loads(capsys.readouterr().out)[0]["top"][0] == {
        "class": "crane", "wordnet_id": "n03126707", "probability": 0.6}
    render.predictions(result, "csv")
    assert capsys.readouterr().out.splitlines()[:2] == [
        "file,rank,class,wordnet_id,probability",
        f"{tmp_path / '0.png'},1,crane,n03126707,0.6"]


def test_a_resize_other_than_the_trainings_is_said(tmp_path):
    from cnncli.model.meta import ModelMeta

    Image.new("RGB", (16, 8)).save(tmp_path / "0.png")
    trained = classifier.keras_classifier("tiny", CountingModel(), (8, 8, 3), "scale",
                                          ["a", "b", "c"], ModelMeta(dataset="photos/"))
    result = prediction.predict([str(tmp_path / "0.png")], model=trained,
                                resize="center_crop")
    assert result.warnings == ["tiny was trained on images resized by stretch; --resize "
                               "center_crop gives it images shaped otherwise (its answers "
                               "may differ from what its training's figures promise)"]
    assert prediction.predict([str(tmp_path / "0.png")], model=trained,
                              resize="stretch").warnings == []


def test_the_csv_columns_are_the_models_not_those_of_the_images_read(capsys):
    from cnncli.cli import render

    render.predictions(prediction.Result(model="vgg16", wordnet=True), "csv")  # none read
    assert capsys.readouterr().out.splitlines() == ["file,rank,class,wordnet_id,probability"]


def test_a_trained_models_classes_have_no_wordnet_ids(tmp_path, capsys):
    from cnncli.cli import render

    Image.new("RGB", (8, 8)).save(tmp_path / "0.png")
    result = prediction.predict([str(tmp_path / "0.png")], model=tiny(CountingModel()))
    assert result.images[0].wordnet_ids is None
    render.predictions(result, "csv")
    assert capsys.readouterr().out.splitlines()[0] == "file,rank,class,probability"


def test_near_certainties_are_not_rounded_to_certainties_in_text_nor_json(capsys):
    from cnncli.cli import render

    result = prediction.Result(model="m", images=[prediction.ImageResult(
        "x.png", [("Trouser", 0.999996), ("Dress", 3e-9)])])
    render.predictions(result, "text")
    assert capsys.readouterr().out == "1. Trouser: >99.99%\n2. Dress: <0.01%\n"
    render.predictions(result, "json")
    top = json.loads(capsys.readouterr().out)[0]["top"]
    assert [t["probability"] for t in top] == [0.999996, 3e-9]  # not 0.0


def test_a_mistyped_pretrained_name_gets_a_did_you_mean(tmp_path, monkeypatch):
    from cnncli.errors import ConfigError

    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match="no pretrained model, run or model file is "
                                          "called 'resnet5'") as caught:
        classifier.load("resnet5")
    assert caught.value.hint == "did you mean 'resnet50'?"
    (tmp_path / "resnet5").mkdir()  # a folder of that name is read as the run it names
    with pytest.raises(Exception, match="not a cnncli run folder"):
        classifier.load("resnet5")


def test_a_folder_is_predicted_in_batches(tmp_path):
    for i in range(10):
        Image.new("RGB", (16, 16), (i, i, i)).save(tmp_path / f"{i}.png")
    model = CountingModel()
    result = prediction.predict([str(tmp_path)], model=tiny(model), batch_size=4)
    assert model.calls == [4, 4, 2] and len(result.images) == 10


def test_a_bad_file_gets_its_own_error_and_the_rest_are_predicted(tmp_path, photos):
    bad = tmp_path / "broken.jpg"
    bad.write_text("not an image")
    result = prediction.predict([str(photos[0]), str(bad), str(photos[1])],
                                model=tiny(CountingModel()))
    assert [r.file for r in result.images] == [str(photos[0]), str(photos[1])]
    assert len(result.errors) == 1 and "broken.jpg" in str(result.errors[0])


def test_a_pattern_or_folder_with_no_images_is_one_error_and_the_rest_are_predicted(
        tmp_path, photos):
    """As a missing path: ``img[1].png`` (a name with a pattern's characters) or an
    empty folder among others gets its own error; the batch goes on."""
    (tmp_path / "empty").mkdir()
    sources = [str(photos[0]), str(tmp_path / "img[1].png"), str(tmp_path / "empty"),
               str(photos[1])]
    result = prediction.predict(sources, model=tiny(CountingModel()))
    assert [r.file for r in result.images] == [str(photos[0]), str(photos[1])]
    assert [e.message for e in result.errors] == [
        f"pattern '{tmp_path / 'img[1].png'}' matches no images",
        f"folder '{tmp_path / 'empty'}' holds no images"]
    with pytest.raises(ManyErrors) as nothing:  # no image at all: no batch, every one said
        prediction.predict([*sources[1:3], str(tmp_path / "gone.png")],
                           model=tiny(CountingModel()))
    assert [e.message for e in nothing.value.errors] == [
        f"pattern '{tmp_path / 'img[1].png'}' matches no images",
        f"folder '{tmp_path / 'empty'}' holds no images", "no such file or folder"]
    assert nothing.value.exit_code == 3


def test_some_bad_files_exit_1_unless_skip_bad_warns_and_none_read_exits_3(tmp_path):
    run = _trained_run(tmp_path)
    good, bad = tmp_path / "good.png", tmp_path / "bad.png"
    Image.new("L", (8, 8), 200).save(good)
    bad.write_bytes(b"")
    gone = tmp_path / "gone.png"  # a path that does not exist is one more bad image
    args = ["predict", str(good), str(bad), str(gone), "--model", str(run)]
    result = cnncli(*args)
    assert result.returncode == 1 and "bad.png" in result.stderr
    assert f"error: {gone}: the image does not exist" in result.stderr
    assert result.stdout.count("1. ") == 1
    skipped = cnncli(*args, "--skip-bad")
    assert skipped.returncode == 0 and "error:" not in skipped.stderr
    assert "warning: skipped" in skipped.stderr and "bad.png" in skipped.stderr
    assert f"warning: skipped {gone}" in skipped.stderr
    # --skip-bad excuses some bad images, not all: no image read is still exit 3
    nothing = cnncli("predict", str(bad), "--model", str(run), "--skip-bad")
    assert nothing.returncode == 3 and "bad.png" in nothing.stderr


def test_one_image_given_as_a_string_is_that_image_not_its_characters(tmp_path,
                                                                      monkeypatch):
    """`predict("7.png", ...)` from Python read '7', '.', 'p'...: '.' is every image
    below the current folder."""
    from cnncli.data import inputs

    image = tmp_path / "7.png"
    Image.new("L", (8, 8), 200).save(image)
    Image.new("L", (8, 8), 10).save(tmp_path / "other.png")
    monkeypatch.chdir(tmp_path)
    assert inputs.expand_inputs("7.png") == ["7.png"]
    assert inputs.expand_inputs(image) == [str(image)]


def test_a_batch_of_no_images_is_a_config_error_from_python_too():
    from cnncli.errors import ConfigError

    with pytest.raises(ConfigError, match="--batch-size must be at least 1, not 0"):
        prediction.predict(["7.png"], model="unused", batch_size=0)


def test_a_precision_given_from_python_is_checked_and_auto_decided(tmp_path):
    from cnncli.errors import ConfigError
    from cnncli.infer import classifier

    run = _trained_run(tmp_path)
    with pytest.raises(ConfigError, match="'fp8' is not a precision cnncli knows"):
        classifier.load(str(run), precision="fp8")
    image = tmp_path / "7.png"
    Image.new("L", (8, 8), 200).save(image)
    [done] = prediction.predict([str(image)], model=classifier.load(str(run),
                                                                    precision="auto")).images
    assert done.top and 0 < done.top[0][1] <= 1  # (a probability: it ran)


def test_no_image_read_is_an_error_document_in_json_not_an_empty_list(tmp_path):
    """Exit 3 has one shape on stdout: the error's JSON, as a missing file's is."""
    run = _trained_run(tmp_path)
    bad, empty = tmp_path / "bad.png", tmp_path / "empty.png"
    bad.write_bytes(b"not a picture")
    empty.write_bytes(b"")
    for images, error in (([bad], "DataError"), ([bad, empty], "ManyErrors")):
        result = cnncli("predict", *map(str, images), "--model", str(run), "--json")
        doc = json.loads(result.stdout)
        assert result.returncode == 3 and doc["error"] == error and doc["exit_code"] == 3
        assert "bad.png" in json.dumps(doc) and result.stderr.count("error:") == len(images)
    lines = cnncli("predict", str(bad), "--model", str(run), "--format", "jsonl").stdout
    assert json.loads(lines)["error"] == "DataError"


def test_a_model_loaded_in_auto_precision_leaves_the_processs_dtype_policy(tmp_path,
                                                                           monkeypatch):
    """A notebook's own layers computed in bfloat16 after a prediction or evaluation."""
    from cnncli.devices import tf_layer

    run = _trained_run(tmp_path)
    monkeypatch.setattr(tf_layer, "cpu_bf16_units", lambda: True)  # auto: bfloat16
    keras.config.set_dtype_policy("float32")
    loaded = classifier.load(str(run), precision="auto")
    assert loaded.precision == "mixed_bfloat16"
    assert keras.config.dtype_policy().name == "float32"


def test_a_command_leaves_no_file_of_tensorflow_in_the_temporary_folder(tmp_path):
    """It ends at once (os._exit), and TensorFlow's files of the functions it converted
    (AutoGraph), removed as Python exits, were left: 9 a prediction."""
    run, temporary = _trained_run(tmp_path), tmp_path / "tmp"
    temporary.mkdir()
    Image.new("L", (8, 8), 200).save(tmp_path / "7.png")
    result = cnncli("predict", str(tmp_path / "7.png"), "--model", str(run),
                    env={"TMPDIR": str(temporary)})
    assert result.returncode == 0, result.stderr
    assert list(temporary.iterdir()) == []
    # a home folder matplotlib cannot write to: its configuration folder in TMPDIR
    result = cnncli("evaluate", str(run), env={"TMPDIR": str(temporary), "MPLCONFIGDIR": "",
                                               "HOME": "/proc/no-home"})  # (not for root)
    assert result.returncode == 0, result.stderr
    assert list(temporary.iterdir()) == []


def _trained_run(tmp_path):
    from trainkit import write_config

    from cnncli import config
    from cnncli.run import train as training

    path = write_config(tmp_path, epochs=1)
    return training.train(config.load(path), config_file=str(path)).run


def test_a_trained_run_gives_its_class_names_and_preprocessing(tmp_path):
    run = _trained_run(tmp_path)
    img = tmp_path / "row.png"
    pixels = np.zeros((8, 8), np.uint8)
    pixels[1:3] = 250
    Image.fromarray(pixels).save(img)
    loaded = classifier.load(str(run))
    assert loaded.preprocessing == "scale" and loaded.class_names == ["0", "1", "2"]
    assert loaded.input_shape == (8, 8, 1)
    result = cnncli("predict", str(img), "--model", str(run), "--format", "jsonl")
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["rank"] for r in rows] == [1, 2, 3]
    assert {"file", "rank", "class", "probability"} == set(rows[0])
    best = run / "best.keras"  # which of the run's models: said, as evaluate says it
    assert f"[INFO] classifying image with '{best}'..." in result.stderr


def test_csv_and_json_formats(tmp_path, photos):
    result = prediction.predict([str(photos[0])], model=tiny(CountingModel()), top=2)
    import contextlib
    import io

    from cnncli.cli import render as report

    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        report.predictions(result, "csv")
    assert buffer.getvalue().splitlines()[0] == "file,rank,class,probability"
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        report.predictions(result, "json")
    assert json.loads(buffer.getvalue())[0]["top"][0]["class"] == "a"


def test_csv_cells_a_spreadsheet_would_run_as_formulas_are_quoted(tmp_path, monkeypatch):
    """Class names come from the model file: whoever made it chose them; file names from
    whoever named the files."""
    import contextlib
    import io

    from cnncli.cli import render as report

    monkeypatch.chdir(tmp_path)
    photo = "=HYPERLINK(1).png"
    Image.new("RGB", (8, 8)).save(photo)
    model = classifier.keras_classifier("tiny", CountingModel(), (8, 8, 3), "scale",
                                        ["=cmd|' /C calc'!A0", "@SUM(A1)", "\t=1+2"])
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        report.predictions(prediction.predict([str(photo)], model=model, top=3), "csv")
    cells = [row.split(",")[:3] for row in buffer.getvalue().splitlines()[1:]]
    assert sorted(c[2] for c in cells) == ["'\t=1+2", "'=cmd|' /C calc'!A0", "'@SUM(A1)"]
    assert cells[0][0] == "'=HYPERLINK(1).png"


def test_urls_are_fetched(tmp_path):
    Image.new("RGB", (20, 20), (10, 200, 30)).save(tmp_path / "served.png")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/served.png"
        result = prediction.predict([url], model=tiny(CountingModel()))
        assert [r.file for r in result.images] == [url]
    finally:
        server.shutdown()


class InterruptedModel(CountingModel):
    def predict_on_batch(self, x):
        raise KeyboardInterrupt  # Ctrl-C while the first batch is predicted


def test_ctrl_c_stops_predict_without_waiting_for_the_next_batchs_reads(tmp_path,
                                                                         monkeypatch):
    import time

    for i in range(8):
        Image.new("RGB", (8, 8)).save(tmp_path / f"{i}.png")
    real = prediction._read

    def slow(source, loaded, resize):  # e.g. URLs of a slow server
        if not source.endswith(("0.png", "1.png")):
            time.sleep(2)
        return real(source, loaded, resize)

    monkeypatch.setattr(prediction, "_read", slow)
    started = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        prediction.predict([str(tmp_path / f"{i}.png") for i in range(8)], batch_size=2,
                           model=tiny(InterruptedModel()))
    assert time.monotonic() - started < 2  # the queued reads (6 x 2 s, 4 threads) dropped


def test_ctrl_c_in_predict_drops_the_reads_still_queued(tmp_path, monkeypatch):
    import time

    for i in range(16):
        Image.new("RGB", (8, 8)).save(tmp_path / f"{i}.png")
    files = [str(tmp_path / f"{i}.png") for i in range(16)]
    real, started = prediction._read, []

    def slow(source, loaded, resize):  # the second batch's reads take 0.4 s each
        if source in files[8:]:
            started.append(source)
            time.sleep(0.4)
        return real(source, loaded, resize)

    monkeypatch.setattr(prediction, "_read", slow)
    with pytest.raises(KeyboardInterrupt):  # while the first batch of 8 is predicted
        prediction.predict(files, batch_size=8, model=tiny(InterruptedModel()))
    time.sleep(1.0)  # past the reads in flight: queued ones would have started by now
    assert len(started) <= parallel.DECODE_THREADS  # the ones in flight; 8 if queued ran


def test_a_malformed_url_is_its_own_error_and_the_other_images_are_predicted(tmp_path):
    Image.new("RGB", (20, 20), (10, 200, 30)).save(tmp_path / "good.png")
    result = prediction.predict([str(tmp_path / "good.png"), "http://[::1"],
                                model=tiny(CountingModel()))
    assert [r.file for r in result.images] == [str(tmp_path / "good.png")]
    [(name, error)] = [(e.file, e.message) for e in result.errors]
    assert name == "http://[::1" and error.startswith("this is not a valid URL")


def small_conv_model():
    keras.utils.set_random_seed(0)
    return keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Conv2D(8, 3, activation="relu"),
                             keras.layers.Flatten(), keras.layers.Dense(3, activation="softmax")])


def test_bfloat16_inference_computes_in_bfloat16_with_the_same_weights_and_float32_output():
    images = np.random.default_rng(0).integers(0, 255, (16, 8, 8, 3), np.uint8)
    exact = tiny(small_conv_model()).probabilities(images)
    model = small_conv_model()
    kernel = model.layers[0].kernel
    fast = classifier.keras_classifier("tiny", model, (8, 8, 3), "scale", ["a", "b", "c"],
                                       precision="mixed_bfloat16")
    assert [layer.dtype_policy.name for layer in fast.model.layers] == [
        "mixed_bfloat16", "mixed_bfloat16", "float32"]
    assert fast.model.layers[0].kernel is kernel  # switched in place, not copied
    got = fast.probabilities(images)
    assert got.dtype == np.float32
    difference = np.abs(got - exact).max()
    assert 0 < difference < 0.05  # bfloat16 arithmetic really ran, and stayed close
    np.testing.assert_array_equal(got.argmax(1), exact.argmax(1))


def normalised_conv_model():
    keras.utils.set_random_seed(1)
    layers = keras.layers
    model = keras.Sequential([
        keras.Input((8, 8, 3)), layers.Conv2D(8, 3, name="conv"),
        layers.BatchNormalization(name="bn"), layers.ReLU(),
        layers.DepthwiseConv2D(3, name="depthwise"), layers.GlobalAveragePooling2D(),
        layers.Dense(6, activation="relu", name="hidden"),
        layers.Dense(3, activation="softmax", name="out")])
    bn = model.layers[1]  # statistics of its own, so that BatchNorm changes the numbers
    bn.moving_mean.assign(np.linspace(-0.3, 0.3, 8).astype("float32"))
    bn.moving_variance.assign(np.linspace(0.5, 2.0, 8).astype("float32"))
    bn.gamma.assign(np.linspace(0.7, 1.3, 8).astype("float32") + 1e-3)
    return model


def normalising_model(policy):
    """A model whose Normalization holds a mean and variance set as a file would (adapted
    state), built under `policy`."""
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(policy)
    try:
        norm = keras.layers.Normalization()
        model = keras.Sequential([keras.Input((4,)), norm, keras.layers.Dense(2)])
    finally:
        keras.config.set_dtype_policy(previous)
    norm.adapt_mean.assign([100.3, -7.1, 0.5, 3.3])
    norm.adapt_variance.assign([4.0, 0.25, 9.0, 1.0])
    norm.finalize_state()
    return model, norm


def test_a_bfloat16_trained_normalization_computes_in_float32_when_switched_to_float32():
    from cnncli.model.precision import set_policy

    model, norm = normalising_model("mixed_bfloat16")
    set_policy(model, "float32")
    x = np.array([[101.7, -7.0, 2.0, 3.0]], "float32")
    expected = (x - np.array([100.3, -7.1, 0.5, 3.3])) / np.sqrt([4.0, 0.25, 9.0, 1.0])
    np.testing.assert_allclose(norm(x), expected, atol=1e-5)  # bfloat16: 0.1 off


def test_a_copy_in_another_precision_keeps_its_normalization():
    from cnncli.model.precision import with_policy

    model, norm = normalising_model("float32")
    copy = with_policy(model, "mixed_bfloat16")
    x = np.array([[100.5, -7.0, 2.0, 3.0]], "float32")
    # bfloat16 holds the mean 100.3 as 100.5 (0.1 off); without its mean and variance
    # the copy's layer would pass x on as it is
    np.testing.assert_allclose(np.asarray(copy.layers[0](x), "float32"), norm(x), atol=0.15)


def test_16_bit_inference_keeps_the_weights_it_casts_in_16_bits_with_the_same_outputs():
    """Keras casts mixed precision's float32 weights at every call; the classifier casts
    them once: the same bits out, BatchNorm's weights (read in float32) and the float32
    output layer's left as they were."""
    from cnncli.data import pipeline
    from cnncli.model.precision import set_policy
    from cnncli.runtime import import_tf

    tf = import_tf()

    images = np.random.default_rng(0).integers(0, 255, (16, 8, 8, 3), np.uint8)
    cast_per_call = set_policy(normalised_conv_model(), "mixed_bfloat16")
    x = pipeline.preprocess_batch(images, (8, 8, 3), "scale")
    expected = tf.function(lambda x: cast_per_call(x, training=False))(x).numpy()
    fast = classifier.keras_classifier("tiny", normalised_conv_model(), (8, 8, 3), "scale",
                                       ["a", "b", "c"], precision="mixed_bfloat16")
    dtypes = {"/".join(v.path.split("/")[-2:]): v.dtype for v in fast.model.weights}
    assert {p for p, d in dtypes.items() if d == "bfloat16"} == {
        "conv/kernel", "conv/bias", "depthwise/kernel", "depthwise/bias", "hidden/kernel",
        "hidden/bias"}
    assert {p for p, d in dtypes.items() if d == "float32"} == {
        "bn/gamma", "bn/beta", "bn/moving_mean", "bn/moving_variance", "out/kernel",
        "out/bias"}
    np.testing.assert_array_equal(fast.probabilities(images), expected)


def test_16_bit_inference_leaves_a_float32_layer_inside_another_layer_as_it_is():
    """TimeDistributed switched to bfloat16 keeps its Dense, saved in float32, computing
    in float32: that Dense's weights stay float32 and the outputs are the same bits."""
    from cnncli.data import pipeline
    from cnncli.model.precision import set_policy
    from cnncli.runtime import import_tf

    tf = import_tf()

    def model():
        keras.utils.set_random_seed(2)
        return keras.Sequential([
            keras.Input((8, 8, 3)), keras.layers.Conv2D(4, 3, name="conv"),
            keras.layers.TimeDistributed(keras.layers.Dense(5, name="inner"), name="td"),
            keras.layers.Flatten(), keras.layers.Dense(3, activation="softmax")])

    images = np.random.default_rng(0).integers(0, 255, (8, 8, 8, 3), np.uint8)
    cast_per_call = set_policy(model(), "mixed_bfloat16")
    x = pipeline.preprocess_batch(images, (8, 8, 3), "scale")
    expected = tf.function(lambda x: cast_per_call(x, training=False))(x).numpy()
    fast = classifier.keras_classifier("tiny", model(), (8, 8, 3), "scale", ["a", "b", "c"],
                                       precision="mixed_bfloat16")
    dtypes = {"/".join(v.path.split("/")[-2:]): v.dtype for v in fast.model.weights}
    assert dtypes["conv/kernel"] == "bfloat16" and dtypes["inner/kernel"] == "float32"
    np.testing.assert_array_equal(fast.probabilities(images), expected)


def test_16_bit_inference_runs_twice_the_images_at_once_in_the_same_memory(monkeypatch):
    from cnncli.devices import memory

    # the largest layer output: 6 x 6 x 8 = 288 values per image; 10 images' worth in float32
    monkeypatch.setattr(memory, "INFERENCE_LAYER_BUDGET", 10 * 2 * 4 * 288)
    fast = classifier.keras_classifier("tiny", small_conv_model(), (8, 8, 3), "scale",
                                       ["a", "b", "c"], precision="mixed_bfloat16")
    assert (tiny(small_conv_model()).max_batch, fast.max_batch) == (10, 20)


def test_16_bit_inference_with_batch_normalisation_counts_its_float32_activations(
        monkeypatch):
    """Keras' BatchNormalization computes in float32 inside a bfloat16 model: its
    activations take 4 bytes a value, so the parts are not made larger."""
    from cnncli.devices import memory

    # the largest layer output: 6 x 6 x 8 = 288 values per image; 10 images' worth in float32
    monkeypatch.setattr(memory, "INFERENCE_LAYER_BUDGET", 10 * 2 * 4 * 288)
    fast = classifier.keras_classifier("tiny", normalised_conv_model(), (8, 8, 3), "scale",
                                       ["a", "b", "c"], precision="mixed_bfloat16")
    assert fast.max_batch == 10


def test_an_image_alone_gets_the_very_probabilities_it_gets_among_others():
    """oneDNN computes a batch of one with other kernels: its last bits differed (predict
    one.png against the folder; a last part of one image in evaluate)."""
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((16, 16, 3)),
                              keras.layers.Conv2D(32, 3, activation="relu"),
                              keras.layers.Conv2D(32, 3, activation="relu"),
                              keras.layers.Flatten(), keras.layers.Dense(3, activation="softmax")])
    clf = classifier.keras_classifier("conv", model, (16, 16, 3), "scale", ["a", "b", "c"])
    images = np.random.default_rng(0).integers(0, 255, (8, 16, 16, 3), np.uint8)
    together = clf.probabilities(images)
    for k in range(len(images)):
        np.testing.assert_array_equal(clf.probabilities(images[k:k + 1]), together[k:k + 1])


def test_a_large_batch_runs_in_parts_that_keep_a_layers_activations_in_budget(monkeypatch):
    """VGG16 at 224x224 took batch 256 in one go and TensorFlow died (std::bad_alloc):
    a batch larger than the memory budget allows runs in parts, with the same result."""
    from cnncli.devices import memory

    images = np.random.default_rng(0).integers(0, 255, (23, 8, 8, 3), np.uint8)
    exact = np.concatenate([tiny(small_conv_model()).probabilities(im[None]) for im in images])
    # the largest layer output is the convolution's 6 x 6 x 8 = 288 values per image: a
    # budget of 10 images of it (input and output, float32)
    monkeypatch.setattr(memory, "INFERENCE_LAYER_BUDGET", 10 * 2 * 4 * 288)
    clf = tiny(small_conv_model())
    seen = []
    real = clf._compile

    def counting(channels):
        infer = real(channels)
        return lambda batch: (seen.append(len(batch)), infer(batch))[1]

    monkeypatch.setattr(clf, "_compile", counting)
    np.testing.assert_allclose(clf.probabilities(images), exact, rtol=1e-5, atol=1e-7)
    assert clf.max_batch == 10 and seen == [10, 10, 3]


def test_largest_activation_looks_inside_a_nested_backbone():
    from cnncli.devices.memory import largest_activation

    inner = keras.Sequential([keras.Input((16, 16, 3)), keras.layers.Conv2D(32, 3),
                              keras.layers.GlobalAveragePooling2D()], name="backbone")
    inputs = keras.Input((16, 16, 3))
    model = keras.Model(inputs, keras.layers.Dense(2)(inner(inputs)))
    assert largest_activation(model) == 14 * 14 * 32  # not the backbone's 32 outputs


def test_predict_json_is_format_json_as_every_command_has_it(tmp_path):
    run = _trained_run(tmp_path)
    img = tmp_path / "row.png"
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(img)
    both = [cnncli("predict", str(img), "--model", str(run), *how)
            for how in (["--json"], ["--format", "json"])]
    assert both[0].returncode == 0, both[0].stderr
    assert json.loads(both[0].stdout) == json.loads(both[1].stdout)
    clash = cnncli("predict", str(img), "--model", str(run), "--json", "--format", "csv")
    assert clash.returncode == 2 and "--json is --format json" in clash.stderr


def test_a_notebook_predicting_with_many_models_gets_no_retracing_warning():
    """Each loaded model traces its own inference function once: TensorFlow's warning about
    functions "retraced" in a loop (after five) is about code that retraces one function,
    and told a notebook that loads models one after another it was doing something wrong."""
    import logging

    import keras

    said = []
    handler = logging.Handler()
    handler.emit = lambda record: said.append(record.getMessage())
    logging.getLogger("tensorflow").addHandler(handler)
    try:
        for _ in range(7):
            model = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Flatten(),
                                      keras.layers.Dense(3, activation="softmax")])
            probabilities = tiny(model).probabilities(np.zeros((2, 8, 8, 3), np.uint8))
            assert probabilities.shape == (2, 3)
    finally:
        logging.getLogger("tensorflow").removeHandler(handler)
    assert not [text for text in said if "retracing" in text]


@pytest.mark.parametrize("name", sorted(pretrained.REGISTRY))
def test_a_pretrained_networks_download_sizes_are_its_weights_in_megabytes(name):
    """`cnncli models` and the offline hint give both files' sizes in one unit: the
    parameters at 4 bytes each, in megabytes of 10^6 bytes (Keras' table gives the full
    files in MiB: VGG16's 553 MB read as 528 beside its no-top file's 58.9 MB)."""
    entry = pretrained.get(name)
    full = entry.factory(None).count_params()
    notop = entry.factory(None, include_top=False).count_params()
    assert entry.megabytes == round(full * 4 / 1e6, 1)
    assert entry.notop_megabytes == round(notop * 4 / 1e6, 1)
