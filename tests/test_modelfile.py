"""Tests for cnncli.model.modelfile: bad model files are refused; saves are atomic."""

from __future__ import annotations

import errno
import json
import os
import re
import zipfile

import numpy as np
import pytest
from hostile import CASES, KERAS_REFUSALS, save_small_model, small_model

from cnncli.errors import ConfigError, ModelError, WriteError
from cnncli.model import modelfile, saved_meta
from cnncli.model.meta import ModelMeta
from cnncli.model.modelfile import (
    load_model,
    read_model_config,
    save_model_atomic,
    scan_config,
    unsafe_deserialization_enabled,
)
from cnncli.runtime import import_keras

keras = import_keras()


@pytest.fixture(autouse=True)
def safe_mode_stays_on():
    """Every test must leave Keras' unsafe deserialization off (and starts with it off)."""
    assert not unsafe_deserialization_enabled()
    yield
    enabled = unsafe_deserialization_enabled()
    modelfile._disable_unsafe_deserialization()  # never leak into the next test
    assert not enabled, "a test left keras' unsafe deserialization switched on"


# --- the hostile catalogue --------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(CASES))
def test_hostile_file_is_refused_with_a_clear_message(tmp_path, name):
    case = CASES[name]
    marker = tmp_path / "MARKER"
    path = case.build(tmp_path, marker)
    with pytest.raises(ModelError, match=case.message) as err:
        load_model(path)
    assert err.value.file == path
    assert not marker.exists()
    assert not unsafe_deserialization_enabled()


@pytest.mark.parametrize("name", sorted(KERAS_REFUSALS))
def test_keras_safe_mode_alone_also_refuses_code_bearing_files(tmp_path, name):
    marker = tmp_path / "MARKER"
    path = CASES[name].build(tmp_path, marker)
    with pytest.raises(ModelError, match="Keras cannot load the model") as err:
        modelfile._keras_load(path)  # Keras' loader without cnncli's own checks
    assert re.search(KERAS_REFUSALS[name], err.value.message)
    assert not marker.exists()


@pytest.mark.parametrize("name", [n for n in sorted(CASES) if CASES[n].runs_code])
def test_lambda_fixtures_really_run_code_when_loaded_unsafely(tmp_path, name):
    """Proves the hostile files are hostile: without safe mode the marker appears."""
    marker = tmp_path / "MARKER"
    path = CASES[name].build(tmp_path, marker)
    keras.saving.load_model(path, safe_mode=False, compile=False)
    assert marker.exists()


def test_legacy_h5_message_says_how_to_convert(tmp_path):
    path = CASES["legacy_h5"].build(tmp_path, tmp_path / "MARKER")
    with pytest.raises(ModelError) as err:
        load_model(path)
    assert "model.save('model.keras')" in err.value.hint


def test_weights_only_file_gets_its_own_message(tmp_path):
    model = small_model()
    path = tmp_path / "model.weights.h5"
    model.save_weights(path)
    with pytest.raises(ModelError, match="holds only weights"):
        load_model(path)


def test_other_suffix_holding_a_keras_zip_gets_a_rename_hint(tmp_path):
    path = tmp_path / "model.zip"
    save_small_model(tmp_path / "m.keras").rename(path)
    with pytest.raises(ModelError, match="not a .keras model file") as err:
        load_model(path)
    assert "rename" in err.value.hint


def test_unsafe_mode_switched_on_beforehand_is_refused_and_switched_off(tmp_path):
    path = save_small_model(tmp_path / "m.keras")
    keras.config.enable_unsafe_deserialization()
    assert unsafe_deserialization_enabled()
    with pytest.raises(ModelError, match="switched on before"):
        load_model(path)
    assert not unsafe_deserialization_enabled()


# --- archive limits ---------------------------------------------------------------------


def test_total_unpacked_size_is_capped(tmp_path):
    path = save_small_model(tmp_path / "m.keras")
    with pytest.raises(ModelError, match="zip bomb"):
        read_model_config(path, max_total_bytes=1000)


def test_archive_member_with_unsafe_path_is_refused(tmp_path):
    path = tmp_path / "escape.keras"
    with zipfile.ZipFile(save_small_model(tmp_path / "m.keras")) as src, \
            zipfile.ZipFile(path, "w") as dst:
        for info in src.infolist():
            dst.writestr(info, src.read(info.filename))
        dst.writestr("../../evil.txt", b"x")
    with pytest.raises(ModelError, match="unsafe path"):
        load_model(path)


def test_archive_with_two_config_members_is_refused(tmp_path):
    path = tmp_path / "twice.keras"
    with zipfile.ZipFile(save_small_model(tmp_path / "m.keras")) as src, \
            zipfile.ZipFile(path, "w") as dst:
        for info in src.infolist():
            dst.writestr(info, src.read(info.filename))
        with pytest.warns(UserWarning, match="Duplicate name"):
            dst.writestr("config.json", b"{}")
    with pytest.raises(ModelError, match="same name"):
        load_model(path)


def test_upper_case_suffix_gets_a_rename_hint(tmp_path):
    path = tmp_path / "MODEL.KERAS"
    save_small_model(tmp_path / "m.keras").rename(path)
    with pytest.raises(ModelError, match="lower-case .keras"):
        load_model(path)


def test_config_that_is_not_json_is_refused(tmp_path):
    path = tmp_path / "bad.keras"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("config.json", b"{not json")
    with pytest.raises(ModelError, match="not valid JSON"):
        load_model(path)


def test_a_layer_config_instead_of_a_model_is_refused(tmp_path):
    layer = keras.layers.Dense(2)
    layer.build((None, 3))
    path = tmp_path / "layer.keras"
    with zipfile.ZipFile(save_small_model(tmp_path / "m.keras")) as src, \
            zipfile.ZipFile(path, "w") as dst:
        for info in src.infolist():
            data = src.read(info.filename)
            if info.filename == "config.json":
                data = json.dumps(keras.saving.serialize_keras_object(layer)).encode()
            dst.writestr(info, data)
    with pytest.raises(ModelError, match=str(path)):
        load_model(path)


# --- scan_config ------------------------------------------------------------------------


def test_scan_finds_nothing_in_a_real_model(tmp_path):
    model = small_model()
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    path = save_small_model(tmp_path / "m.keras")
    assert scan_config(read_model_config(path)) == []


def test_scan_accepts_activation_functions_saved_by_name():
    node = {"module": "builtins", "class_name": "function", "config": "relu",
            "registered_name": "function"}
    assert scan_config(node) == []


def test_scan_reports_where_the_problem_is():
    config = {"config": {"layers": [{}, {"class_name": "Lambda", "config": {"name": "x"}}]}}
    assert scan_config(config) == [
        "a Lambda layer 'x' (Lambda layers hold Python code) at config.layers[1]"
    ]


def test_scan_refuses_keras_utilities_that_are_not_model_parts():
    node = {"module": "keras.utils", "class_name": "function", "config": "get_file"}
    assert "keras.utils.get_file" in scan_config(node)[0]


# --- loading and saving -----------------------------------------------------------------


def test_model_round_trips_with_identical_predictions(tmp_path):
    model = small_model()
    x = np.random.default_rng(0).normal(size=(6, 4)).astype("float32")
    path = tmp_path / "model.keras"
    save_model_atomic(model, path)
    loaded = load_model(path)
    assert isinstance(loaded, keras.Model)
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))


def test_save_leaves_no_temporary_file(tmp_path):
    save_model_atomic(small_model(), tmp_path / "model.keras")
    assert sorted(os.listdir(tmp_path)) == ["model.keras"]


def test_save_replaces_an_existing_model(tmp_path):
    path = tmp_path / "model.keras"
    path.write_bytes(b"old")
    save_model_atomic(small_model(), path)
    assert zipfile.is_zipfile(path)


class DiskFullModel:
    """Stands in for a model whose save dies half way, as on a full disk."""

    def save(self, path):
        with open(path, "wb") as f:
            f.write(b"PK\x03\x04 half a zip")
        raise OSError(errno.ENOSPC, "No space left on device")


def test_failed_save_keeps_the_old_file_and_removes_the_temporary(tmp_path):
    path = tmp_path / "model.keras"
    save_small_model(path)
    before = path.read_bytes()
    with pytest.raises(WriteError, match="No space left on device"):
        save_model_atomic(DiskFullModel(), path)
    assert path.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["model.keras"]


def test_save_needs_the_keras_suffix(tmp_path):
    with pytest.raises(ModelError, match=r"must end in \.keras"):
        save_model_atomic(small_model(), tmp_path / "model.h5")


def test_save_into_a_missing_folder_is_a_model_error(tmp_path):
    with pytest.raises(ModelError, match="does not exist"):
        save_model_atomic(small_model(), tmp_path / "nope" / "model.keras")


@pytest.mark.parametrize("key, value, expected", [
    ("resize", "bogus", "stretch, center_crop or pad"),
    ("image_channels", 2, "1 or 3"),
    ("image_channels", True, "1 or 3"),
    ("preprocessing", "evil", "scale, none, tf, caffe, torch"),
])
def test_a_bad_value_in_the_models_metadata_is_a_model_error(key, value, expected):
    """Found when the file is read, naming the file, not later as an unknown resize mode
    without a file."""
    from cnncli.model.meta import ModelMeta

    with pytest.raises(ModelError, match=f"bad `{key}`.*expected {expected}") as caught:
        ModelMeta.from_json({key: value}, file="m.keras")
    assert caught.value.file == "m.keras"
    assert ModelMeta.from_json({"resize": "pad", "image_channels": 1}).image_channels == 1


def test_a_keras_application_saved_by_keras_alone_is_read_with_its_own_preprocessing(tmp_path):
    """A MobileNetV2 that Keras saved (no cnncli record) wants pixels in [-1, 1] and
    gives ImageNet's classes: not the defaults (pixels in [0, 1], classes 0..999)."""
    from cnncli.infer import classifier
    from cnncli.model import imagenet

    path = tmp_path / "mobilenet.keras"
    keras.applications.MobileNetV2(weights=None, input_shape=(32, 32, 3)).save(path)
    with pytest.warns(UserWarning, match="read as Keras' mobilenet_v2, its images "
                                         r"preprocessed as mobilenet_v2's \(`tf`\)"):
        meta = saved_meta.read(path)
    assert meta.preprocessing == "tf" and list(meta.class_names) == imagenet.class_names()
    with pytest.warns(UserWarning):
        loaded = classifier.load(str(path))
    assert loaded.preprocessing == "tf" and loaded.class_names[1] == imagenet.class_names()[1]


def test_a_model_taking_images_larger_than_cnncli_reads_is_refused(tmp_path):
    from cnncli.errors import ModelError
    from cnncli.infer import classifier

    inputs = keras.Input((20_000, 8, 1))
    out = keras.layers.Dense(2, activation="softmax")(
        keras.layers.GlobalAveragePooling2D()(inputs))
    path = tmp_path / "tall.keras"
    save_model_atomic(keras.Model(inputs, out), path, ModelMeta(input=(20_000, 8, 1)))
    with pytest.raises(ModelError, match="takes images of 20000x8: larger than the 16,384 "
                                         "pixels a side"):
        classifier.load(str(path))


def test_outputs_beyond_the_recorded_class_names_are_numbered_and_the_names_kept(tmp_path):
    """A network given more classes than its data had (a run of an older cnncli)."""
    from cnncli.infer import classifier

    inputs = keras.Input((8, 8, 1))
    out = keras.layers.Dense(4, activation="softmax")(keras.layers.Flatten()(inputs))
    path = tmp_path / "four.keras"
    save_model_atomic(keras.Model(inputs, out), path,
                      ModelMeta(input=(8, 8, 1), class_names=("cat", "dog")))
    assert classifier.load(str(path)).class_names == ["cat", "dog", "2", "3"]


@pytest.mark.parametrize("name", ["own", "vgg16"])  # a model of one's own called vgg16 too
def test_a_model_of_ones_own_saved_by_keras_alone_is_said_to_get_the_defaults(tmp_path, name):
    path = tmp_path / f"{name}.keras"
    small = small_model()
    keras.Model(small.inputs, small.outputs, name=name).save(path)
    with pytest.warns(UserWarning, match=r"has no record of how it was trained \(Keras saved "
                                         r"it, not cnncli\): its images are given scaled"):
        assert saved_meta.read(path) == ModelMeta()


def test_a_file_that_is_no_model_gets_no_word_about_its_record(tmp_path):
    """Loading it says what is wrong; a warning about how it was trained would mislead."""
    import warnings

    garbage = tmp_path / "garbage.keras"
    garbage.write_bytes(b"not a zip")
    with_code = tmp_path / "lambda.keras"  # refused when loaded: it holds Python code
    inputs = keras.Input((4,))
    keras.Model(inputs, keras.layers.Lambda(lambda x: x * 2)(inputs)).save(with_code)
    for path in (garbage, with_code):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            assert saved_meta.read(path) == ModelMeta()


@pytest.mark.parametrize("pooling, shape", [(None, (32, 32, 3)), ("avg", (32, 32, 3)),
                                            (None, None)])  # None: takes any image size
def test_a_network_without_its_classifier_is_refused_for_predicting_with_the_way_to_use_it(
        tmp_path, pooling, shape):
    """Its feature maps (or pooled features) would be read as class scores."""
    from cnncli.errors import ModelError
    from cnncli.infer import classifier

    path = tmp_path / "notop.keras"
    keras.applications.MobileNetV2(weights=None, include_top=False, pooling=pooling,
                                   input_shape=shape).save(path)
    said = "not one score per class: it has no classifier"
    with pytest.warns(UserWarning), pytest.raises(ModelError, match=said) as e:
        classifier.load(str(path))
    assert e.value.hint == ("it is Keras' mobilenet_v2 without its classifier: fine-tune from "
                            f"it with `model: {{from: mobilenet_v2, weights: {path}}}`")
    if pooling or not shape:  # (cut by default at its pooling; no size to build with)
        return
    from cnncli import config
    from cnncli.model import spec

    cfg = config.parse({"model": {"from": str(path)}})  # fine-tuning from it: the same hint
    with pytest.warns(UserWarning), pytest.raises(ConfigError, match="no Dense layer") as e:
        spec.from_run_config(cfg, classes=3)
    assert e.value.hint == ("it is Keras' mobilenet_v2 without its classifier: fine-tune from "
                            f"it with `model: {{from: mobilenet_v2, weights: {path}}}`")
