"""A pretrained backbone (`model.from: mobilenet_v2`, `- pretrained:` in a spec): its
no-top weights file found, checked and loaded, its summary row, frozen training.

ImageNet weights cannot be downloaded here: the files are written from
`keras.applications.MobileNetV2(weights=None, include_top=False)` in Keras' legacy .h5
layout (that of the real files), under Keras' cache file name. MobileNetV2 on 32x32
inputs keeps the tests fast.
"""

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
from imagenetkit import imagenet_like_efficientnet, keras_imagenet_normalisation, normalised
from keras.src.legacy.saving import legacy_h5_format
from trainkit import make_npz

from cnncli import config
from cnncli.errors import ConfigError, ModelError
from cnncli.model import backbone, backbone_weights, builder, modelfile, pretrained, spec
from cnncli.model import summary as summaries
from cnncli.model.expand import expand
from cnncli.run import checking, finetune, transfer
from cnncli.run import train as training
from cnncli.runtime import import_keras

keras = import_keras()
SHAPE = (32, 32, 3)
NOTOP = "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5"


def save_legacy(model, path):
    """Weights as Keras' ImageNet files hold them (the legacy .h5 layout)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        legacy_h5_format.save_weights_to_hdf5_group(f, model)
    return path


@pytest.fixture(scope="module")
def weights_files(tmp_path_factory):
    """A MobileNetV2 without its classifier, with moved batch-norm statistics, saved as
    Keras' cached no-top file, as a .weights.h5, as a whole .keras model and as sharded
    weights (.weights.json and its shards)."""
    folder = tmp_path_factory.mktemp("mobilenet")
    keras.utils.set_random_seed(0)
    model = keras.applications.MobileNetV2(weights=None, include_top=False,
                                           input_shape=SHAPE)
    rng = np.random.default_rng(0)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.moving_mean.assign(rng.normal(0, 0.1, layer.moving_mean.shape))
            layer.moving_variance.assign(rng.uniform(0.5, 1.5, layer.moving_variance.shape))
    home = folder / "keras_home"
    cache = save_legacy(model, home / "models" / NOTOP)
    model.save_weights(folder / "mine.weights.h5")
    model.save(folder / "whole.keras")
    model.save_weights(folder / "sharded.weights.json", max_shard_size=0.004)  # GB: shards
    return {"model": model, "home": home, "cache": cache, "mine": folder / "mine.weights.h5",
            "whole": folder / "whole.keras", "sharded": folder / "sharded.weights.json"}


@pytest.fixture
def keras_home(weights_files, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(weights_files["home"]))
    return weights_files


def head_spec(weights="imagenet"):
    return spec.parse({"input": list(SHAPE), "classes": 3, "layers": [
        {"pretrained": {"name": "mobilenet_v2", "weights": weights}},
        "GlobalAveragePooling2D", {"Dense": {"units": "$classes", "activation": "softmax"}}]})


def backbone_outputs(sub, x):
    return keras.ops.convert_to_numpy(sub(x, training=False))


# ---------------------------------------------------------------- weights files


def test_the_cache_file_name_is_keras_own():
    assert backbone_weights.expected_file("mobilenet_v2", SHAPE) == NOTOP
    assert backbone_weights.expected_file("resnet50", (224, 224, 3)) == \
        "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5"
    assert backbone_weights.expected_file("mobilenet_v2", (160, 160, 3)).endswith(
        "_1.0_160_no_top.h5")


def test_weights_and_datasets_are_looked_for_where_keras_downloads_them(monkeypatch,
                                                                       tmp_path):
    from cnncli.data import known

    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("KERAS_HOME", "~/kh")  # get_file expands it
    assert pretrained.cache_dir() == tmp_path / "kh" / "models"
    assert known.keras_dataset_dirs()[0] == tmp_path / "kh" / "datasets"
    monkeypatch.delenv("KERAS_HOME")
    assert pretrained.cache_dir() == tmp_path / ".keras" / "models"
    with monkeypatch.context() as m:  # a home that cannot be written to: /tmp/.keras
        m.setattr("os.access", lambda path, mode: Path(path) != tmp_path)
        assert pretrained.cache_dir() == Path("/tmp/.keras/models")


def test_weights_keras_put_in_tmp_beside_a_keras_home_it_cannot_write_are_found(
        monkeypatch, tmp_path):
    import uuid

    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    monkeypatch.setattr("os.access", lambda path, mode: Path(path) != tmp_path)
    file = Path("/tmp/.keras/models") / f"test-{uuid.uuid4().hex}.h5"  # get_file's fallback
    file.parent.mkdir(parents=True, exist_ok=True)
    file.write_bytes(b"weights")
    try:
        assert pretrained.cached(file.name) == file
    finally:
        file.unlink()
    assert pretrained.cached(file.name) is None


@pytest.mark.parametrize("source", ["cache", "mine", "whole", "sharded"])
def test_notop_weights_load_into_the_backbone_and_give_that_models_outputs(keras_home,
                                                                          source):
    built = builder.build_checked(head_spec("imagenet" if source == "cache"
                                            else str(keras_home[source])))
    node = built.expanded.nodes[0]
    sub = built.model.get_layer(node.name)
    path = backbone_weights.locate("mobilenet_v2", node.args["weights"], SHAPE, offline=True)
    assert path == keras_home[source]
    x = np.random.default_rng(1).uniform(-1, 1, (2, *SHAPE)).astype("float32")
    assert not np.allclose(backbone_outputs(sub, x), backbone_outputs(keras_home["model"], x))
    backbone_weights.load(sub, "mobilenet_v2", path)
    np.testing.assert_array_equal(backbone_outputs(sub, x),
                                  backbone_outputs(keras_home["model"], x))


def test_a_file_with_the_classifier_is_refused_saying_a_notop_file_is_needed(tmp_path):
    full = keras.applications.MobileNetV2(weights=None, input_shape=SHAPE, classes=10)
    path = save_legacy(full, tmp_path / "full.h5")
    sub = builder.build_checked(head_spec()).model.get_layer("mobilenet_v2")
    with pytest.raises(ModelError, match=r"1 layer with weights more than mobilenet_v2 "
                                         r"without its classifier, from 'predictions' on.*"
                                         r"no-top file \(Keras' " + NOTOP):
        backbone_weights.load(sub, "mobilenet_v2", path)


def test_a_file_of_another_network_names_the_layer_that_differs(tmp_path):
    other = keras.applications.MobileNetV2(weights=None, include_top=False,
                                           input_shape=SHAPE, alpha=0.35)
    path = save_legacy(other, tmp_path / "small.h5")
    sub = builder.build_checked(head_spec()).model.get_layer("mobilenet_v2")
    with pytest.raises(ModelError, match="layer 1 with weights does not fit: the file's "
                                         "'Conv1' holds 3x3x3x16, mobilenet_v2's 'Conv1' "
                                         "needs 3x3x3x32"):
        backbone_weights.load(sub, "mobilenet_v2", path)


def test_a_keras3_weights_file_of_another_network_is_refused_by_check_quietly(tmp_path,
                                                                              recwarn):
    other = keras.applications.MobileNetV2(weights=None, include_top=False,
                                           input_shape=SHAPE, alpha=0.35)
    other.save_weights(tmp_path / "small.weights.h5")
    path = write_config(tmp_path, model=f"{{from: mobilenet_v2, weights: "
                                        f"{tmp_path}/small.weights.h5}}")
    recwarn.clear()
    with pytest.raises(ModelError) as caught:
        checking.check(str(path))
    assert caught.value.message == (
        f"`model.weights` ({tmp_path}/small.weights.h5): these weights do not fit "
        "mobilenet_v2 without its classifier: 103 layers could not be loaded; the first, "
        "'Conv1', needs (3, 3, 3, 32), the file holds (3, 3, 3, 16)")
    assert NOTOP in caught.value.hint
    assert [str(w.message) for w in recwarn] == []  # Keras' one warning per variable


def test_a_runs_model_given_as_a_backbones_weights_says_how_to_go_on_from_the_run(tmp_path):
    """A natural mistake: `--weights runs/ft/1/model.keras` to go on from a run."""
    run = tmp_path / "runs" / "ft" / "1"
    run.mkdir(parents=True)
    (run / "config.yaml").write_text("model: linear\n")
    keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)]).save(run / "model.keras")
    sub = builder.build_checked(head_spec()).model.get_layer("mobilenet_v2")
    with pytest.raises(ModelError) as caught:
        backbone_weights.load(sub, "mobilenet_v2", run / "model.keras")
    assert caught.value.hint.startswith("this is a trained run's whole model (not weights for "
                                        f"mobilenet_v2 without its classifier): to go on from "
                                        f"it, write `model: {{from: {run}}}` (the run folder)")


def test_a_keras3_weights_file_that_fits_passes_check_and_loads(weights_files, tmp_path):
    path = write_config(tmp_path, model=f"{{from: mobilenet_v2, weights: "
                                        f"{weights_files['mine']}}}")
    assert checking.check(str(path)).warnings == []


@pytest.mark.parametrize("name", ["cut.h5", "cut.weights.h5"])
def test_a_weights_file_cut_short_cannot_be_read_not_does_not_fit(weights_files, tmp_path,
                                                                  name):
    cut = tmp_path / name
    cut.write_bytes(weights_files["mine"].read_bytes()[:4000])
    sub = builder.build_checked(head_spec()).model.get_layer("mobilenet_v2")
    with pytest.raises(ModelError, match=r"cannot read the weights file \(not an HDF5 file, "
                                         r"or cut short\)"):
        backbone_weights.load(sub, "mobilenet_v2", cut)
    with pytest.raises(ModelError, match=r"cannot read the weights file \(not an HDF5"):
        pretrained.load("mobilenet_v2", weights=cut)


def test_a_notop_file_given_to_predict_with_is_called_a_notop_file(weights_files):
    with pytest.raises(ModelError, match="this file holds mobilenet_v2 without its "
                                         "classifier \\(a no-top file, for fine-tuning\\)") as err:
        pretrained.load("mobilenet_v2", weights=weights_files["mine"])
    assert err.value.hint.startswith("use Keras' mobilenet_v2_weights_tf_dim_ordering_tf_"
                                     "kernels_1.0_224.h5 (`cnncli models --download "
                                     "mobilenet_v2` on a machine that is online)")


def test_a_file_with_a_classifier_of_other_classes_is_not_called_a_notop_file(tmp_path):
    model = keras.applications.MobileNetV2(weights=None, input_shape=SHAPE, classes=5)
    model.save_weights(tmp_path / "five.weights.h5")  # loads into the no-top one by name
    with pytest.raises(ModelError, match="these weights do not fit mobilenet_v2: layer "
                       "'predictions' could not be loaded, needs \\(1280, 1000\\), the file "
                       "holds \\(1280, 5\\)"):
        pretrained.load("mobilenet_v2", weights=tmp_path / "five.weights.h5")


def test_a_keras_model_file_given_as_weights_passes_check(weights_files, tmp_path):
    path = write_config(tmp_path, model=f"{{from: mobilenet_v2, weights: "
                                        f"{weights_files['whole']}}}")
    assert checking.check(str(path)).warnings == []


def test_a_keras_model_file_cut_short_cannot_be_read(weights_files, tmp_path):
    cut = tmp_path / "cut.keras"
    cut.write_bytes(weights_files["whole"].read_bytes()[:4000])
    sub = builder.build_checked(head_spec()).model.get_layer("mobilenet_v2")
    with pytest.raises(ModelError, match=r"the model file is truncated or damaged"):
        backbone_weights.load(sub, "mobilenet_v2", cut)


def test_a_zip_named_keras_without_weights_is_refused_as_holding_none(weights_files,
                                                                     tmp_path):
    import zipfile

    empty = tmp_path / "no_weights.keras"
    with zipfile.ZipFile(weights_files["whole"]) as whole, zipfile.ZipFile(empty, "w") as z:
        z.writestr("config.json", whole.read("config.json"))
    with pytest.raises(ModelError, match=r"the .keras file holds no weights \(no "
                                         r"model.weights.h5\)"):
        pretrained.load("vgg16", weights=empty)


def test_a_weights_file_of_a_kind_keras_does_not_read_is_refused_by_its_ending(tmp_path):
    other = tmp_path / "weights.pth"
    other.write_bytes(b"torch")
    with pytest.raises(ModelError, match=r"Keras reads weights from .weights.h5, "
                                         r".weights.json, .h5, .hdf5, .keras files, not "
                                         r"'.pth'"):
        pretrained.load("vgg16", weights=other)


def test_a_weights_file_ending_in_upper_case_is_asked_to_be_renamed(weights_files,
                                                                    tmp_path):
    upper = tmp_path / "Mine.WEIGHTS.H5"
    upper.write_bytes(weights_files["mine"].read_bytes())
    with pytest.raises(ModelError, match="Keras reads a weights file by its ending in lower "
                                         "case, not '.WEIGHTS.H5'") as caught:
        pretrained.load("vgg16", weights=upper)
    assert caught.value.hint == "rename it to Mine.weights.h5"


def test_a_folder_given_as_the_weights_file_is_called_a_folder(tmp_path):
    folder = tmp_path / "weights.h5"
    folder.mkdir()
    path = write_config(tmp_path, model=f"{{from: mobilenet_v2, weights: {folder}}}")
    with pytest.raises(ModelError, match="the weights file is a folder"):
        checking.check(str(path))
    with pytest.raises(ModelError, match="the weights file is a folder"):
        pretrained.load("vgg16", weights=folder)


def cnncli(*args, env=None):
    import os

    return subprocess.run([sys.executable, "-m", "cnncli", *args], capture_output=True,
                          text=True, env={**os.environ, **(env or {})}, timeout=300)


def write_config(folder, *, model="{from: mobilenet_v2}", train=""):
    data = make_npz(folder)  # 8x8 grey images of 3 classes
    path = folder / "transfer.yaml"
    path.write_text(f"model: {model}\n"
                    f"data: {{name: {data}, validation_split: 0, image_size: [32, 32]}}\n"
                    "train:\n  epochs: 2\n  batch_size: 32\n  seed: 0\n"
                    "  optimizer: {name: adam, learning_rate: 0.01}\n"
                    + "".join(f"  {line}\n" for line in train.splitlines())
                    + f"output: {{dir: {folder / 'runs'}, name: transfer}}\n")
    return path


def test_offline_without_weights_names_the_file_and_where_to_put_it(tmp_path):
    path = write_config(tmp_path)
    home = tmp_path / "empty_home"
    result = cnncli("train", str(path), "--offline", env={"KERAS_HOME": str(home)})
    assert result.returncode == 3, result.stderr
    assert "not on this machine (offline)" in result.stderr  # no download was tried
    assert f"{home / 'models'}/{NOTOP}" in result.stderr
    assert f"put it in {home / 'models'}/" in result.stderr and "--weights FILE" in result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.splitlines()) == 1
    assert not (tmp_path / "runs").exists()


def test_check_passes_offline_without_weights_and_says_training_needs_them(tmp_path,
                                                                          monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path)  # where no data/photos was made (README's steps make one)
    checked = checking.check(str(Path(__file__).parents[1] / "configs" / "transfer.yaml"))
    photos, note = checked.warnings  # the photos are the user's to make
    assert "`data.name` 'data/photos' is neither a dataset cnncli knows" in photos
    assert "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_160_no_top.h5" in note
    assert "`cnncli train` downloads them" in note


def test_a_missing_weights_file_of_your_own_is_an_error(tmp_path):
    path = write_config(tmp_path, model=f"{{from: mobilenet_v2, weights: {tmp_path}/no.h5}}")
    with pytest.raises(ModelError, match="the weights file does not exist"):
        checking.check(str(path))


def test_a_weights_file_beside_the_config_but_not_here_is_said_at_its_line_with_where_it_is(
        tmp_path, monkeypatch):
    (tmp_path / "mine.weights.h5").touch()
    path = write_config(tmp_path, model="{from: mobilenet_v2, weights: mine.weights.h5}")
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    with pytest.raises(ModelError) as caught:
        checking.check(str(path))
    error = caught.value
    assert (error.file, error.line) == (str(path), 1)
    assert error.message == "`model.weights` (mine.weights.h5): the weights file does not exist"
    assert error.hint.startswith(f"'mine.weights.h5' is there from the config's folder "
                                 f"({tmp_path / 'mine.weights.h5'}); paths in a config are "
                                 "read from the folder cnncli runs in: write "
                                 "'../mine.weights.h5'")


# ---------------------------------------------------------------- bad configs


def test_an_unknown_backbone_gets_a_did_you_mean(tmp_path):
    path = write_config(tmp_path, model="{from: resnet5}")
    with pytest.raises(ConfigError, match="'resnet5' is not a built-in architecture, a "
                                          "pretrained network.*did you mean 'resnet50'"):
        checking.check(str(path))
    with pytest.raises(ConfigError, match="unknown pretrained model 'mobilenet'. Hint: did "
                                          "you mean 'mobilenet_v2'"):
        expand(spec.parse({"input": [32, 32, 3], "layers": [
            {"pretrained": {"name": "mobilenet"}}, "Flatten", {"Dense": {"units": 2}}]}))


@pytest.mark.parametrize("weights,message", [
    ("imagenett", r"`model.weights`: should be imagenet, none or a weights file .*, got "
                  r"'imagenett'. Hint: did you mean 'imagenet'\?$"),
    ("''", r"`model.weights` is empty. Hint: give imagenet, none or a weights file"),
])
def test_a_weights_word_that_is_neither_a_word_nor_a_file_name_is_a_config_error(
        tmp_path, weights, message):
    path = write_config(tmp_path, model=f"{{from: mobilenet_v2, weights: {weights}}}")
    with pytest.raises(ConfigError, match=f"transfer.yaml:1: {message}"):
        checking.check(str(path))


@pytest.mark.parametrize("weights, meant", [("imagenett", "imagenet"), ("Imagenet", None),
                                            ("NONE", None), ("mine", None), ("   ", None)])
def test_a_specs_pretrained_weights_are_checked_as_model_weights_are(weights, meant):
    doc = {"input": [32, 32, 3], "layers": [
        {"pretrained": {"name": "mobilenet_v2", "weights": weights}}, "Flatten"]}
    if weights.lower() in config.WEIGHTS_WORDS:
        [node] = [n for n in expand(spec.parse(doc)).nodes if n.layer == "Pretrained"]
        assert node.args["weights"] == weights.lower()
        return
    said = "is empty" if not weights.strip() else "should be imagenet, none or a weights file"
    with pytest.raises(ConfigError, match="layer 1 \\(pretrained\\): `weights` of pretrained "
                                          + said) as e:
        expand(spec.parse(doc))
    assert (e.value.hint == f"did you mean '{meant}'?") == (meant is not None)


def test_weights_words_are_read_in_any_case(tmp_path):
    path = write_config(tmp_path, model="{from: mobilenet_v2, weights: None}")
    warnings = checking.check(str(path)).warnings  # random weights, not a file named None
    assert any("has `weights: none` (random)" in w for w in warnings), warnings


@pytest.mark.parametrize("source", ["mobilenet_v2, weights: none", "lenet5"])
def test_a_model_input_and_an_image_size_that_differ_are_refused(tmp_path, source):
    """A pretrained network or a built-in spec alike: neither size is dropped silently."""
    path = write_config(tmp_path, model=f"{{from: {source}, input: [64, 64, 3]}}")  # 32x32
    with pytest.raises(ConfigError, match=r"`model.input` \[64, 64, 3\] and `data.image_size` "
                                          r"\[32, 32\] give the network two sizes"):
        checking.check(str(path))


def test_freezing_every_layer_with_weights_is_refused(tmp_path):
    path = write_config(tmp_path, model="{from: mobilenet_v2, weights: none}",
                        train="freeze: 155")  # the backbone's layers and the new Dense
    with pytest.raises(ConfigError, match="`train.freeze` freezes every layer with weights "
                                          r"\(155 layers\), the new classifier too"):
        checking.check(str(path))
    path = write_config(tmp_path, model="{from: mobilenet_v2, weights: none}",
                        train="freeze: 154")  # the new Dense learns
    checking.check(str(path))


def test_weights_on_a_config_without_a_network_to_start_from_says_what_it_goes_with():
    with pytest.raises(ConfigError, match="--weights w.h5: `model` in the config is "
                                          "'mnist_net', not a section with `weights`") as err:
        config.load(str(Path(__file__).parents[1] / "configs" / "mnist.yaml"),
                    ["model.weights=w.h5"], {"model.weights": "--weights w.h5"})
    assert err.value.hint.startswith("--weights goes with a pretrained network")


def test_an_input_smaller_than_the_backbone_allows_says_the_minimum(tmp_path):
    path = write_config(tmp_path, model="{from: resnet50}")
    path.write_text(path.read_text().replace("[32, 32]", "[28, 28]"))
    with pytest.raises(ConfigError, match=r"`data.image_size` \[28, 28\] is too small for "
                                          r"resnet50: .* the 28x28 input is smaller than "
                                          r"resnet50 allows \(at least 32x32\). Hint: resnet50 "
                                          r"fits 32x32 or larger \(e.g. `image_size: \[32, "
                                          r"32\]`\)") as err:
        checking.check(str(path))
    assert err.value.line == 2  # data.image_size's


def test_a_pretrained_entry_must_come_first():
    with pytest.raises(ConfigError, match="can only be the first layer"):
        expand(spec.parse({"input": [32, 32, 3], "layers": [
            "Identity", {"pretrained": "mobilenet_v2"}, "Flatten", {"Dense": {"units": 2}}]}))


def test_cut_and_dropout_belong_to_their_kind_of_source(tmp_path):
    path = write_config(tmp_path, model="{from: mobilenet_v2, cut: block_1_pad}")
    with pytest.raises(ConfigError, match="`model.cut` applies to a model of your own"):
        checking.check(str(path))
    path = write_config(tmp_path, model="{from: mnist_net, dropout: 0.2}")
    with pytest.raises(ConfigError, match="`model.dropout` applies to a pretrained network"):
        checking.check(str(path))


# ---------------------------------------------------------------- the summary


def test_a_spec_with_a_pretrained_entry_takes_the_networks_input_and_preprocessing():
    s = spec.parse({"layers": [{"pretrained": "resnet50"}, "GlobalAveragePooling2D",
                               {"Dense": {"units": 2, "activation": "softmax"}}]})
    assert (s.input, s.preprocessing) == ([224, 224, 3], "caffe")


def test_summary_shows_the_backbone_as_one_row_or_expanded():
    built = builder.build_checked(head_spec())
    s = summaries.summarize(built)
    assert [(r.layer, r.volume, r.params) for r in s.rows[:3]] == [
        ("INPUT", "32x32x3", 0), ("MOBILENET_V2", "1x1x1280", 2_257_984),
        ("GLOBAL AVGPOOL", "1280", 0)]
    assert "153 layers, ImageNet weights" in s.rows[1].description
    inner = backbone.top_layers(built.model.get_layer("mobilenet_v2"))
    expanded = summaries.summarize(built, expand=True)
    assert len(expanded.rows) == len(s.rows) - 1 + len(inner)
    assert expanded.rows[1].name == "mobilenet_v2/Conv1"
    assert sum(r.params for r in expanded.rows) == s.params == built.model.count_params()
    assert expanded.macs == s.macs and expanded.forward_bytes == s.forward_bytes


def test_summary_of_a_run_config_shows_frozen_parameters_per_row_and_in_total(tmp_path):
    path = write_config(tmp_path)
    result = cnncli("summary", str(path), env={"KERAS_HOME": str(tmp_path)})
    assert result.returncode == 0, result.stderr
    row = next(line for line in result.stdout.splitlines() if "MOBILENET_V2" in line)
    assert row.split("│")[-3:-1] == ["  2,257,984 ", " 2,257,984 "]
    assert "Parameters: 2,270,794 (2.27M; trainable 12,810, frozen 2,257,984)" in result.stdout


def test_summary_expanded_names_each_layer_by_the_path_layer_options_take(tmp_path):
    path = write_config(tmp_path)
    result = cnncli("summary", str(path), "--expand", env={"KERAS_HOME": str(tmp_path),
                                                          "COLUMNS": "200"})
    assert result.returncode == 0, result.stderr
    cells = [[cell.strip() for cell in line.split("│" if "│" in line else "┃")[1:3]]
             for line in result.stdout.splitlines()]
    assert ["Name", "Layer"] in cells and ["mobilenet_v2/Conv1", "CONV3-32"] in cells


# ---------------------------------------------------------------- training


class Watcher(training.Reporter):
    def begin(self, plan, run, resumed):
        self.plan = plan


@pytest.mark.slow  # tests/test_finetune.py checks the same, fast, on a network of its own
def test_training_loads_keeps_frozen_and_fine_tunes_the_backbone(keras_home, tmp_path,
                                                                  monkeypatch):
    """Stage 1: the backbone, batch-norm statistics included, is bit-identical to the
    file, the head learned; stage 2: the backbone learns, its statistics stay."""
    seen = {}
    real = finetune._switch

    def switch(p, model):
        seen["stage 1"] = [np.array(w) for w in model.get_layer("mobilenet_v2").weights]
        seen["head"] = model.get_layer("fc1").get_weights()
        real(p, model)

    monkeypatch.setattr(finetune, "_switch", switch)
    path = write_config(tmp_path, train="fine_tune: {after_epochs: 1, learning_rate: 1e-3}")
    watcher = Watcher()
    result = training.train(config.load(path), config_file=str(path), reporter=watcher)
    loaded = keras_home["model"]
    stats = {id(v) for layer in loaded.layers
             if isinstance(layer, keras.layers.BatchNormalization)
             for v in (layer.moving_mean, layer.moving_variance)}
    for got, want in zip(seen["stage 1"], loaded.weights, strict=True):
        np.testing.assert_array_equal(got, np.array(want))
    keras.utils.set_random_seed(0)  # the head as the run built it, before training
    fresh = builder.build(watcher.plan.spec).get_layer("fc1").get_weights()
    assert all(not np.array_equal(a, b) for a, b in zip(seen["head"], fresh, strict=True))
    end = modelfile.load_model(result.run / "model.keras").get_layer("mobilenet_v2")
    changed = [not np.array_equal(np.array(a), np.array(b))
               for a, b in zip(end.weights, loaded.weights, strict=True)]
    moved_stats = [c for c, w in zip(changed, loaded.weights, strict=True) if id(w) in stats]
    kernels = [c for c, w in zip(changed, loaded.weights, strict=True)
               if w.path.endswith("kernel")]
    assert not any(moved_stats) and len(moved_stats) == 2 * 52
    # Stage 2 trained the whole backbone: its kernels moved, from the first to the last
    # (a kernel behind ReLU6 units that stay at 0 on these few grey images gets no
    # gradient: on some machines' arithmetic one of the 52 does not move).
    assert kernels[0] and kernels[-1] and sum(kernels) >= len(kernels) - 2, kernels
    found = result.metrics.transfer
    assert found["freeze"] == "backbone" and found["backbone"] == "mobilenet_v2"
    [record] = found["weights"]
    assert record["file"] == str(keras_home["cache"]) and record["weights"] == "imagenet"
    assert record["sha256"] == hashlib.sha256(keras_home["cache"].read_bytes()).hexdigest()
    assert "grey images, converted to RGB for the model" in watcher.plan.data_notes
    meta = modelfile.read_meta(result.run / "model.keras")
    assert (meta.backbone, meta.preprocessing, meta.input) == ("mobilenet_v2", "tf",
                                                               (32, 32, 3))


def test_models_download_fetches_the_notop_file_too(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    calls = []

    def factory(weights, **options):
        calls.append((weights, options))
        name = entry.weights_file if options.get("include_top", True) else \
            pretrained.notop_file(entry)
        (tmp_path / "models").mkdir(exist_ok=True)
        (tmp_path / "models" / name).write_bytes(b"weights")

    import dataclasses

    entry = dataclasses.replace(pretrained.REGISTRY["mobilenet_v2"], factory=factory)
    monkeypatch.setitem(pretrained.REGISTRY, "mobilenet_v2", entry)
    paths = pretrained.download("mobilenet_v2")
    assert calls == [("imagenet", {"include_top": True}), ("imagenet", {"include_top": False})]
    assert [p.name for p in paths] == [entry.weights_file, NOTOP]
    assert all(p.is_file() for p in paths)
    assert pretrained.cached_notop(entry) == paths[1]


def test_a_failed_download_says_it_on_stderr_and_how_to_bring_the_file(monkeypatch, capsys):
    import dataclasses

    def factory(weights, **options):
        print("Downloading data from https://storage.example/x.h5")  # as Keras' get_file
        raise OSError("[Errno -2] Name or service not known")

    entry = dataclasses.replace(pretrained.REGISTRY["vgg16"], factory=factory)
    monkeypatch.setitem(pretrained.REGISTRY, "vgg16", entry)
    with pytest.raises(ModelError, match="could not download the ImageNet weights of vgg16: "
                                         r"\[Errno -2\] Name or service not known") as e:
        pretrained.download("vgg16")
    assert e.value.hint.startswith("run `cnncli models --download vgg16` on a machine that is "
                                   f"online and copy {pretrained.cache_dir()}/")
    out, err = capsys.readouterr()  # stdout holds results only; the error says it all
    assert out == "" and "Downloading data from" not in err


def test_transfer_plan_is_none_for_a_plain_network(tmp_path):
    cfg = config.parse({"model": "mnist_net"})
    built = builder.build_checked(spec.load("mnist_net"))
    assert transfer.plan(cfg, built, 3) is None


@pytest.mark.slow
def test_a_fine_tuned_backbone_exports_and_is_explained_through_its_nested_layers(
        keras_home, tmp_path):
    """The backbone is a model inside the model: export, Grad-CAM and filters reach in."""
    from PIL import Image

    path = write_config(tmp_path)
    run = training.train(config.load(path), config_file=str(path)).run
    env = {"KERAS_HOME": str(keras_home["home"])}
    done = cnncli("export", str(run), "--format", "onnx", "--output", str(tmp_path / "out"),
                  "--json", env=env)
    assert done.returncode == 0, done.stderr
    [result] = json.loads(done.stdout)["exports"]
    assert result["kept"] and result["check"]["agreement"] >= 0.995
    image = tmp_path / "seven.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (8, 8), np.uint8)).save(image)
    done = cnncli("explain", str(run), str(image), "--output", str(tmp_path / "cam"), "--json",
                  env=env)
    assert done.returncode == 0, done.stderr
    [picture] = json.loads(done.stdout)
    assert picture["layer"].startswith("mobilenet_v2/")  # the last convolution is inside it
    assert Path(picture["picture"]).is_file()
    done = cnncli("visualize", "filters", str(run), "--output", str(tmp_path / "f.png"),
                  "--json", env=env)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["layer"].startswith("mobilenet_v2/")


def test_a_random_backbone_frozen_by_default_is_warned_about(tmp_path):
    """`weights: none` with the default `freeze: backbone`: only the head would learn."""
    path = write_config(tmp_path, model="{from: mobilenet_v2, weights: none}")
    [note] = checking.check(str(path)).warnings
    assert "mobilenet_v2 has `weights: none` (random) and is frozen" in note
    assert "`train.freeze: none`" in note
    (tmp_path / "chosen").mkdir()
    chosen = write_config(tmp_path / "chosen", model="{from: mobilenet_v2, weights: none}",
                          train="freeze: none")
    assert checking.check(str(chosen)).warnings == []


def test_a_from_that_names_nothing_lists_each_built_in_and_pretrained_name_once():
    with pytest.raises(ConfigError, match="is not a built-in architecture") as err:
        spec.from_run_config(config.parse({"model": {"from": "nonexist_run"}}), classes=3)
    names = err.value.hint.split(": ", 1)[1].split(", ")
    assert "vgg16" in names and len(names) == len(set(names)), err.value.hint


@pytest.mark.parametrize("key,value,applies,takes", [
    ("dropout", 0.3, "a pretrained network", "efficientnet_b0"),
    ("cut", "fc1", "a trained model of your own", "a run folder or a .keras file")])
def test_a_setting_a_spec_cannot_take_says_what_can_take_it(key, value, applies, takes):
    """`dropout` of a spec said to use a run folder, which then refused it ("applies to a
    pretrained network"); `cut` of a spec listed the pretrained networks, which refuse
    it too."""
    with pytest.raises(ConfigError) as err:
        spec.from_run_config(config.parse({"model": {"from": "mnist_net", key: value}}),
                             classes=3)
    assert err.value.message == f"`model.{key}` applies to {applies}, and 'mnist_net' is a spec"
    assert err.value.hint.startswith("use `from:` with ") and takes in err.value.hint
    assert ("a run folder" in err.value.hint) == (key == "cut")


def test_dry_run_refuses_a_weights_file_that_is_not_there_as_check_does(tmp_path):
    path = write_config(tmp_path)
    result = cnncli("train", str(path), "--weights", str(tmp_path / "gone.h5"), "--dry-run")
    assert result.returncode == 3, result.stdout
    assert f"error: --weights {tmp_path / 'gone.h5'}: `model.weights`: the weights file does " \
        "not exist. Hint: give the path of a weights file of mobilenet_v2" in " ".join(
            result.stderr.split())
    assert result.stdout == "" and not (tmp_path / "runs").exists()


def test_an_unreadable_weights_file_is_said_at_the_config_line_naming_it_by_check_and_train(
        tmp_path):
    """Not only the file: where it was given, so the user sees which setting to change;
    training (the plan, after the data is read) says it as `check` does."""
    weights = tmp_path / "corrupt.weights.h5"
    weights.write_bytes(b"garbage")
    path = write_config(tmp_path, model=f"{{from: mobilenet_v2, weights: {weights}}}")
    with pytest.raises(ModelError) as caught:
        checking.check(str(path))
    said = f"{path}:1: `model.weights` ({weights}): cannot read the weights file"
    assert str(caught.value).startswith(said), caught.value
    result = cnncli("train", str(path))
    assert result.returncode == 3 and result.stderr.startswith(f"error: {said}"), result.stderr
    assert not (tmp_path / "runs").exists()


def test_a_weights_file_written_with_a_leading_dot_slash_is_said_at_its_line_too(
        tmp_path, monkeypatch):
    """`./w.h5` in the config, `w.h5` in the loader's error: the same file."""
    (tmp_path / "corrupt.weights.h5").write_bytes(b"garbage")
    path = write_config(tmp_path, model="{from: mobilenet_v2, weights: ./corrupt.weights.h5}")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ModelError) as caught:
        checking.check(str(path))
    assert (caught.value.file, caught.value.line) == (str(path), 1)
    assert caught.value.message.startswith("`model.weights` (./corrupt.weights.h5): cannot "
                                           "read the weights file")


def test_a_weights_files_error_names_it_for_a_config_made_in_python():
    """No config file, so no line: the message still says which file."""
    from cnncli.run import transfer

    cfg = config.parse({"model": {"from": "mobilenet_v2", "weights": "w.h5"}})
    error = transfer.given_at(ModelError("cannot read the weights file", file="w.h5"), cfg,
                              None)
    assert (error.file, error.message) == (None, "`model.weights` (w.h5): cannot read the "
                                                 "weights file")


def test_dry_run_says_a_weights_file_that_is_no_weights_file_with_the_freezings_problems(
        tmp_path):
    """As check does: every problem at once, the unreadable file's exit code (3)."""
    from cnncli.errors import ManyErrors

    (tmp_path / "corrupt.weights.h5").write_bytes(b"garbage")
    path = write_config(tmp_path, model=f"{{from: mobilenet_v2, weights: "
                                        f"{tmp_path / 'corrupt.weights.h5'}}}",
                        train="freeze: [nosuch]")
    with pytest.raises(ManyErrors) as caught:
        checking.dry_run(config.load(path), str(path))
    messages = [e.message for e in caught.value.errors]
    assert any("no layer is named 'nosuch'" in m for m in messages), messages
    assert any("weights file" in m for m in messages), messages
    assert caught.value.exit_code == 3


def test_a_random_backbone_frozen_on_purpose_is_warned_about_in_check_and_dry_run(tmp_path):
    """`weights: none` with `freeze: backbone` said: only the head would learn all the
    same; the dry run (`build_config`) says it as `check` does."""
    path = write_config(tmp_path, model="{from: mobilenet_v2, weights: none}",
                        train="freeze: backbone")
    [note] = checking.check(str(path)).warnings
    assert "is frozen (`train.freeze: backbone`): only the head will learn" in note
    cfg = config.load(path)
    assert note in checking.build_config(cfg, str(path)).warnings


def test_the_download_fetches_mobilenet_v2s_file_for_the_input_size_asked(tmp_path,
                                                                         monkeypatch):
    """configs/transfer.yaml fine-tunes at 160x160: its file is not the default size's,
    and the offline error says the command that fetches it."""
    import dataclasses

    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    calls = []

    def factory(weights, **options):
        calls.append(options)
        size = options.get("input_shape", (224,))[0]
        name = entry.weights_file if options.get("include_top", True) else \
            pretrained.notop_file(entry, size)
        (tmp_path / "models").mkdir(exist_ok=True)
        (tmp_path / "models" / name).write_bytes(b"weights")

    entry = dataclasses.replace(pretrained.REGISTRY["mobilenet_v2"], factory=factory)
    monkeypatch.setitem(pretrained.REGISTRY, "mobilenet_v2", entry)
    paths = pretrained.download("mobilenet_v2", 160)
    assert calls[1] == {"include_top": False, "input_shape": (160, 160, 3)}
    assert paths[1].name == "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_160_no_top.h5"
    assert paths[1].is_file()
    with pytest.raises(ConfigError, match="come for inputs of 96, 128, 160, 192, 224 pixels, "
                                          "not 150"):
        pretrained.download("mobilenet_v2", 150)
    from cnncli.model import backbone_weights

    (tmp_path / "models" / paths[1].name).unlink()
    with pytest.raises(ModelError) as missing:
        backbone_weights.locate("mobilenet_v2", "imagenet", (160, 160, 3), offline=True)
    assert "`cnncli models --download mobilenet_v2 --input-size 160`" in missing.value.hint


def test_from_a_name_both_spec_and_pretrained_without_weights_is_noted_as_trained_anew(
        tmp_path):
    """`from: vgg16` is the lecture's network, new weights; `from: resnet50` ImageNet's:
    the same line means two things, so check and training say which."""
    from cnncli.run import plan as planning

    path = write_config(tmp_path, model="{from: vgg16, classes: 3}")
    note = "`from: vgg16` without `weights` is the lecture's vgg16, trained from new " \
           "(random) weights, every layer; to fine-tune ImageNet's, add `weights: imagenet`"
    assert any(w.startswith(note) for w in checking.check(str(path)).warnings)
    assert any(w.startswith(note) for w in planning.plan(config.load(path)).warnings)
    path.write_text(path.read_text().replace("{from: vgg16, classes: 3}", "vgg16"))
    assert not any("without `weights`" in w for w in checking.check(str(path)).warnings)


def test_an_efficientnet_backbone_from_a_weights_file_normalises_as_keras_imagenet_build(
        tmp_path):
    file = tmp_path / "efficientnetb0_notop.weights.h5"
    imagenet_like_efficientnet(include_top=False, input_shape=SHAPE).save_weights(file)
    sub = pretrained.get("efficientnet_b0").factory(None, include_top=False,
                                                     input_shape=SHAPE, name="efficientnet_b0")
    backbone_weights.load(sub, "efficientnet_b0", file)
    x = np.random.default_rng(0).uniform(0, 255, (2, *SHAPE)).astype("float32")
    np.testing.assert_allclose(normalised(sub, x), keras_imagenet_normalisation(x),
                               rtol=1e-5, atol=1e-5)
