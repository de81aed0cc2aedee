"""`cnncli export`: files that give the Keras model's probabilities in their own runtimes,
with the preprocessing inside, metadata beside, each checked, written safely."""

import dataclasses
import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from exportkit import QUANTIZABLE, RGB_CAFFE_AUGMENTED, sample_images, train_run

from cnncli import files
from cnncli.errors import CnnError, ConfigError, DataError, ModelError
from cnncli.export import exporter, graph, verify
from cnncli.infer import classifier, exported, sidecar
from cnncli.runtime import import_keras, import_tf

keras = import_keras()
tf = import_tf()

ALL = "saved_model,onnx,litert,openvino"
FILES = {"saved_model": "saved_model", "onnx": "model.onnx", "litert": "model.tflite",
         "openvino": "model.xml"}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return train_run(tmp_path_factory.mktemp("export") / "data", QUANTIZABLE)


@pytest.fixture(scope="module")
def exports(run, tmp_path_factory):
    """Every format, float32, exported once for the tests that only read the files."""
    folder = tmp_path_factory.mktemp("exports")
    report = exporter.export(run, formats=[ALL], output=folder)
    return folder, report


@pytest.fixture(scope="module")
def keras_model(run):
    return classifier.load(str(run))


def cnncli(*args, **kw):
    return subprocess.run([sys.executable, "-m", "cnncli", *args], capture_output=True,
                          text=True, **kw)


@pytest.mark.parametrize("fmt", list(FILES))
def test_each_format_gives_the_keras_probabilities(exports, keras_model, run, fmt):
    folder, _ = exports
    images = sample_images(run)
    clf = exported.load(folder / FILES[fmt])
    assert clf.kind == fmt and clf.input_shape == (8, 8, 1)
    np.testing.assert_allclose(clf.probabilities(images), keras_model.probabilities(images),
                               atol=1e-5)


@pytest.mark.parametrize("fmt", list(FILES))
def test_an_image_alone_gets_from_each_format_what_it_gets_among_others(exports, run, fmt):
    """A SavedModel gave one image alone other last bits than among others (TensorFlow's
    kernels for a batch of one)."""
    folder, _ = exports
    images = sample_images(run)
    clf = exported.load(folder / FILES[fmt])
    together = clf.probabilities(images)
    for k in range(len(images)):
        np.testing.assert_array_equal(clf.probabilities(images[k:k + 1]), together[k:k + 1])


def test_the_files_answer_under_the_documented_names(exports, keras_model, run):
    """What a client without cnncli does: input 'image' (uint8 NHWC), output 'probabilities'."""
    import onnxruntime as ort
    import openvino as ov
    from ai_edge_litert.interpreter import Interpreter

    folder, _ = exports
    images = sample_images(run)
    expected = keras_model.probabilities(images)
    onnx_session = ort.InferenceSession(str(folder / "model.onnx"))
    serving = tf.saved_model.load(str(folder / "saved_model")).signatures["serving_default"]
    runner = Interpreter(model_path=str(folder / "model.tflite")).get_signature_runner()
    compiled = ov.Core().compile_model(str(folder / "model.xml"), "CPU",
                                       {"INFERENCE_PRECISION_HINT": "f32"})
    answers = {
        "onnx": onnx_session.run(["probabilities"], {"image": images})[0],
        "saved_model": serving(image=tf.constant(images))["probabilities"].numpy(),
        "litert": runner(image=images)["probabilities"],
        "openvino": compiled({"image": images})["probabilities"],
    }
    for fmt, got in answers.items():
        np.testing.assert_allclose(got, expected, atol=1e-5, err_msg=fmt)


def test_the_saved_model_stores_each_weight_once(exports, keras_model):
    """Keras' own exporter writes every weight twice (keras-team/keras#23553)."""
    folder, _ = exports
    stored = tf.train.list_variables(str(folder / "saved_model" / "variables" / "variables"))
    values = sum(int(np.prod(shape)) for name, shape in stored if "OBJECT_GRAPH" not in name)
    model = keras_model.model
    assert values == sum(int(np.prod(v.shape)) for v in model.variables)  # seeds included
    assert values < 2 * model.count_params()


def test_the_batch_dimension_is_dynamic(exports, run):
    import onnxruntime as ort
    import openvino as ov

    folder, _ = exports
    assert ort.InferenceSession(str(folder / "model.onnx")).get_inputs()[0].shape == \
        ["batch", 8, 8, 1]
    serving = tf.saved_model.load(str(folder / "saved_model")).signatures["serving_default"]
    assert serving.structured_input_signature[1]["image"].shape.as_list() == [None, 8, 8, 1]
    assert ov.Core().read_model(str(folder / "model.xml")).inputs[0].get_partial_shape()[0] \
        .is_dynamic
    images = sample_images(run, n=7)
    for fmt, name in FILES.items():  # LiteRT: resized to each batch by the classifier
        clf = exported.load(folder / name)
        assert clf.probabilities(images).shape == (14, 3), fmt
        assert clf.probabilities(images[:1]).shape == (1, 3), fmt


def test_metadata_is_in_the_files_and_beside_them(exports):
    import onnxruntime as ort

    folder, _ = exports
    assert (folder / "labels.txt").read_text() == "0\n1\n2\n"
    props = ort.InferenceSession(str(folder / "model.onnx")).get_modelmeta() \
        .custom_metadata_map
    assert json.loads(props["class_names"]) == ["0", "1", "2"]
    assert props["preprocessing"].startswith("scale")
    assert json.loads(props["cnncli"])["input"]["name"] == "image"
    assert "check" not in json.loads(props["cnncli"])  # made after: in the JSON beside
    xml = (folder / "model.xml").read_text()
    assert "cnncli-export" not in xml and "conversion_parameters" not in xml  # no temp path
    assets = folder / "saved_model" / "assets"
    assert (assets / "labels.txt").read_text() == "0\n1\n2\n"
    assert json.loads((assets / "cnncli.json").read_text())["format"] == "saved_model"
    for fmt, name in FILES.items():
        data = json.loads(sidecar.sidecar_path(folder / name).read_text())
        assert data["format"] == fmt and data["quantization"] == "none"
        assert data["input"] == {"name": "image", "dtype": "uint8", "layout": "NHWC",
                                 "shape": [None, 8, 8, 1]}
        assert data["output"]["name"] == "probabilities" and data["class_names"] == \
            ["0", "1", "2"]
        assert data["preprocessing"] == "scale" and data["check"]["agreement"] == 1.0


def test_an_openvino_file_copied_without_its_json_still_knows_itself(exports, run,
                                                                     tmp_path):
    folder, _ = exports
    for name in ("model.xml", "model.bin"):  # no model.xml.json, no labels.txt
        shutil.copy(folder / name, tmp_path / name)
    images = sample_images(run)
    # one OpenVINO model alive at a time: with two, a later Ctrl-C in the same process
    # crashed it (SIGSEGV, OpenVINO 2026.4); cnncli never holds two
    beside = exported.load(folder / "model.xml")
    info, meta, expected = beside.info, beside.meta, beside.probabilities(images)
    del beside
    alone = exported.load(tmp_path / "model.xml")
    assert alone.info.to_json() | {"check": {}} == info.to_json() | {"check": {}}
    assert alone.class_names == ["0", "1", "2"] and alone.meta == meta
    assert np.array_equal(alone.probabilities(images), expected)


def test_damaged_metadata_inside_an_openvino_file_says_so(exports, tmp_path):
    from cnncli.infer.exported import import_openvino

    ov = import_openvino()
    folder, _ = exports
    model = ov.Core().read_model(str(folder / "model.xml"))
    model.set_rt_info('{"format": "openvino", cut', ["cnncli"])
    ov.save_model(model, str(tmp_path / "model.xml"))
    del model
    with pytest.raises(ModelError, match="the metadata inside the file cannot be read") as err:
        exported.load(tmp_path / "model.xml")
    assert err.value.hint == "export the model again"  # there is no JSON to remove


def test_a_litert_file_copied_without_its_json_says_what_it_cannot_know(exports, tmp_path):
    """LiteRT files hold no metadata: names from labels.txt beside it, else numbers, and a
    warning that the resize mode is a guess (it was silent)."""
    folder, _ = exports
    shutil.copy(folder / "model.tflite", tmp_path / "model.tflite")
    (tmp_path / "labels.txt").write_text("cat\ndog\nemu\n")
    with pytest.warns(UserWarning, match=r"model.tflite: the JSON cnncli export wrote beside "
                      r"it \(model.tflite.json\) is not there: class names from labels.txt, "
                      "and images are resized by stretching"):
        assert exported.load(tmp_path / "model.tflite").class_names == ["cat", "dog", "emu"]
    (tmp_path / "labels.txt").write_text("cat\ndog\n")  # another model's: not used
    with pytest.warns(UserWarning, match=r"is not there: classes numbered \(labels.txt "
                      r"beside it names 2, the model gives 3\)"):
        assert exported.load(tmp_path / "model.tflite").class_names == ["0", "1", "2"]


def test_the_report_has_sizes_differences_and_agreement(exports):
    folder, report = exports
    assert [r.format for r in report.results] == list(FILES)
    for r in report.results:
        assert r.kept and r.size > 1000 and r.check.images == 60
        assert r.check.agreement == 1.0 and r.check.max_difference < 1e-5
        assert r.check.keras_accuracy == r.check.accuracy
    assert not list(folder.glob(".cnncli-export-*"))  # no staging folder left


@pytest.mark.parametrize("mode, have, want", [
    *[(mode, 3, 3) for mode in ("scale", "tf", "caffe", "torch", "none")],
    ("caffe", 1, 3), ("scale", 1, 3), ("scale", 3, 1)])
def test_the_graph_preprocesses_as_the_training_pipeline(mode, have, want):
    """uint8 images with `have` channels into a network of `want` channels."""
    from cnncli.data import pipeline

    keras.utils.set_random_seed(0)
    inputs = keras.Input((6, 6, want))
    net = keras.Model(inputs, keras.layers.Dense(4, activation="softmax")(
        keras.layers.Flatten()(keras.layers.Conv2D(2, 3)(inputs))))
    images = np.random.default_rng(1).integers(0, 256, (5, 6, 6, have), dtype=np.uint8)
    wrapper = graph.serving_model(net, (6, 6, have), mode)
    got = wrapper.predict(images, verbose=0)["probabilities"]
    expected = net.predict(pipeline.preprocess_batch(images, (6, 6, want), mode), verbose=0)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


@pytest.fixture(scope="module")
def caffe_run(tmp_path_factory):
    return train_run(tmp_path_factory.mktemp("caffe") / "data", RGB_CAFFE_AUGMENTED, lr=0.001)


def test_caffe_and_grey_to_rgb_are_inside_the_exports(caffe_run, tmp_path):
    report = exporter.export(caffe_run, formats=["onnx,litert"], output=tmp_path)
    assert all(r.kept for r in report.results)
    reference = classifier.load(str(caffe_run))
    assert reference.preprocessing == "caffe" and reference.network_input == (8, 8, 3)
    assert reference.input_shape == (8, 8, 1)  # it takes grey images, as trained on
    images = sample_images(caffe_run)
    for name in ("model.onnx", "model.tflite"):
        clf = exported.load(tmp_path / name)
        assert clf.input_shape == (8, 8, 1)  # the client's grey images, as trained on
        np.testing.assert_allclose(clf.probabilities(images), reference.probabilities(images),
                                   atol=1e-5)


def test_grey_arrays_resized_into_an_rgb_network_export_taking_grey_images(tmp_path):
    """README: a client gives the channels the training images had (1 for MNIST, also
    into an RGB network); the 8x8 grey images resized to a 12x12x3 network did not."""
    spec = QUANTIZABLE.replace("input: [8, 8, 1]", "input: [12, 12, 3]")
    assert spec != QUANTIZABLE
    run = train_run(tmp_path / "data", spec, epochs=1)
    reference = classifier.load(str(run))
    assert reference.input_shape == (12, 12, 1) and reference.network_input == (12, 12, 3)
    exporter.export(run, formats=["onnx"], output=tmp_path / "out")
    clf = exported.load(tmp_path / "out" / "model.onnx")
    assert clf.input_shape == (12, 12, 1)
    images = np.random.default_rng(0).integers(0, 256, (4, 12, 12, 1), dtype=np.uint8)
    np.testing.assert_allclose(clf.probabilities(images), reference.probabilities(images),
                               atol=1e-5)


def _colour_pngs(folder, n: int = 6):
    from PIL import Image

    folder.mkdir()
    rng = np.random.default_rng(7)
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    return folder


def test_colour_images_reach_keras_and_the_export_alike(caffe_run, tmp_path):
    """An RGB network trained on grey images: a colour photo is made grey as in training,
    by `cnncli predict` with the run and with its export alike."""
    from cnncli.infer import predict as prediction

    exporter.export(caffe_run, formats=["onnx"], output=tmp_path / "out")
    photos = [str(p) for p in sorted(_colour_pngs(tmp_path / "photos").iterdir())]
    keras_top, onnx_top = ([r.top for r in prediction.predict(photos, model=model, top=3).images]
                           for model in (str(caffe_run), str(tmp_path / "out" / "model.onnx")))
    for k, o in zip(keras_top, onnx_top, strict=True):  # (two classes within 1e-5 may
        assert sorted(dict(k)) == sorted(dict(o))    # come in either order)
        np.testing.assert_allclose([p for _, p in sorted(k)], [p for _, p in sorted(o)],
                                   atol=1e-5)


def test_the_check_images_do_not_change_the_exported_input(caffe_run, run, tmp_path):
    """--images and --data only check: the file takes the channels trained on."""
    photos = _colour_pngs(tmp_path / "photos")
    colour = tmp_path / "colour.npz"
    with np.load(caffe_run.parent.parent.parent / "toy.npz") as d:
        np.savez(colour, **{k: np.repeat(v, 3, -1) if k.startswith("x") else v
                            for k, v in d.items()})
    exporter.export(caffe_run, formats=["onnx"], output=tmp_path / "a", images=[str(photos)])
    exporter.export(run, formats=["onnx"], output=tmp_path / "b", data=str(colour))
    for folder in ("a", "b"):
        assert exported.load(tmp_path / folder / "model.onnx").input_shape == (8, 8, 1)


def test_augmentation_and_dropout_are_off_in_the_export(caffe_run, tmp_path):
    report = exporter.export(caffe_run, formats=["saved_model"], output=tmp_path)
    assert report.results[0].kept
    serving = tf.saved_model.load(str(tmp_path / "saved_model")).signatures["serving_default"]
    images = tf.constant(sample_images(caffe_run))
    first, second = (serving(image=images)["probabilities"].numpy() for _ in range(2))
    np.testing.assert_array_equal(first, second)  # the same answer every time
    wrapper = graph.serving_model(classifier.load(str(caffe_run)).model, (8, 8, 1), "caffe")
    keras.utils.set_random_seed(5)
    training = wrapper(images, training=True)["probabilities"].numpy()
    assert np.abs(training - first).max() > 1e-3  # the layers would change the answers


def _two_class_probabilities(right: int, n: int = 100):
    """One-hot probabilities of `n` images of class 0, the first `right` of them right."""
    top = np.where(np.arange(n) < right, 0, 1)
    return np.eye(2)[top]


def test_a_quantized_export_losing_exactly_max_drop_points_is_kept():
    keras_side, export_side = _two_class_probabilities(38), _two_class_probabilities(37)
    labels = np.zeros(100, int)
    check = verify.compare(keras_side, export_side, labels, quantized=True, max_drop=1)
    assert check.drop == 1.0 and check.passed, check.problem  # 100*(0.38-0.37) > 1.0
    assert not verify.compare(keras_side, export_side, labels, quantized=True,
                              max_drop=0.99).passed
    assert verify.compare(keras_side, export_side, None, quantized=True, max_drop=1).passed


def test_quantized_variants_stay_within_the_margin_and_report_accuracy(run, tmp_path):
    report = exporter.export(run, formats=["onnx,litert,openvino"],
                             quantize=["float16,dynamic,int8"], output=tmp_path)
    variants = [(r.format, r.quantization) for r in report.results]
    assert variants == [("onnx", "float16"), ("onnx", "dynamic"), ("onnx", "int8"),
                        ("litert", "float16"), ("litert", "dynamic"), ("litert", "int8"),
                        ("openvino", "float16")]
    assert report.notes[:2] == ["openvino has no dynamic variant (it has: none, float16); "
                                "skipped", "openvino has no int8 variant (it has: none, "
                                "float16); skipped"]  # then: the toy run's 60 images are few
    stored = {"float16": "float16", "dynamic": "int8", "int8": "int8"}
    for r in report.results:
        c = r.check
        assert r.kept and c.quantized and c.drop is not None and c.drop <= 1.0
        assert c.keras_accuracy > 0.8 and c.accuracy is not None
        assert stored[r.quantization] in _weight_types(r.path)  # really quantized
        assert json.loads(sidecar.sidecar_path(r.path).read_text())["quantization"] == \
            r.quantization


def _weight_types(path) -> set[str]:
    """The element types of a file's stored tensors (weights), as numpy names."""
    if path.suffix == ".onnx":
        import onnx

        return {onnx.helper.tensor_dtype_to_np_dtype(t.data_type).name
                for t in onnx.load(str(path)).graph.initializer}
    if path.suffix == ".tflite":
        from ai_edge_litert.interpreter import Interpreter

        return {np.dtype(d["dtype"]).name
                for d in Interpreter(model_path=str(path)).get_tensor_details()}
    import openvino as ov

    return {np.dtype(op.get_element_type().to_dtype()).name
            for op in ov.Core().read_model(str(path)).get_ops()
            if op.get_type_name() == "Constant"}


def test_the_check_images_are_the_same_with_or_without_calibration(run, keras_model):
    plain, calibrated = (exporter._samples(keras_model, None, None, None, False, 30, c)
                         for c in (False, True))
    assert plain.calibration is None
    assert len(calibrated.calibration) == exporter.CALIBRATION_IMAGES  # of 320
    np.testing.assert_array_equal(plain.images, calibrated.images)
    np.testing.assert_array_equal(plain.labels, calibrated.labels)
    assert len(plain.images) == 30


def test_images_that_cannot_be_decoded_are_neither_checked_nor_calibrated_on(keras_model,
                                                                            tmp_path):
    """A PNG cut short passes the listing's look at its first bytes and fails to decode:
    scored as a black image it would count as a mistake of the export's check."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, n in (("train", 6), ("test", 5)):
        for label in "012":
            folder = tmp_path / "photos" / split / label
            folder.mkdir(parents=True)
            for i in range(n):
                pixels = rng.integers(0, 60, (8, 8), dtype=np.uint8)
                pixels[1 + 3 * int(label): 3 + 3 * int(label)] += 180
                Image.fromarray(pixels).save(folder / f"{i}.png")
            (folder / "cut.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    samples = exporter._samples(keras_model, None, str(tmp_path / "photos"), None, False, 0,
                                True)
    assert len(samples.images) == len(samples.labels) == 15
    assert samples.source.endswith("3 unreadable left out)")
    assert len(samples.calibration) == 18
    for images in (samples.images, samples.calibration):  # no black image among them
        assert images.reshape(len(images), -1).max(axis=1).min() > 0


def test_int8_calibrated_on_fewer_images_than_it_takes_says_how_many(run, tmp_path,
                                                                     monkeypatch):
    from PIL import Image

    from cnncli.export import convert

    for label in "012":
        (tmp_path / "photos" / label).mkdir(parents=True)
        for i in range(5):
            Image.new("L", (8, 8), 40 * i).save(tmp_path / "photos" / label / f"{i}.png")

    def stop(job):  # what the note says is known before any file is made
        raise ModelError("not converted in this test")

    monkeypatch.setitem(convert.CONVERTERS, "onnx", stop)
    report = exporter.export(run, formats=["onnx"], quantize=["int8"],
                             data=str(tmp_path / "photos"), output=tmp_path / "out")
    assert "int8 calibrated on 12 training images only (300 when there are that many): " \
           "its ranges may not fit other images" in report.notes


def test_test_images_of_which_none_can_be_decoded_are_refused_for_the_check(keras_model,
                                                                           tmp_path):
    from PIL import Image

    for split in ("train", "test"):
        for label in "012":
            folder = tmp_path / "photos" / split / label
            folder.mkdir(parents=True)
            if split == "train":
                Image.new("L", (8, 8), 99).save(folder / "0.png")
            (folder / "cut.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    with pytest.raises(DataError, match="none of the 3 test images of photos could be "
                                        "decoded: the exports cannot be checked on them"):
        exporter._samples(keras_model, None, str(tmp_path / "photos"), None, False, 0, False)
    for label in "012":  # and int8 calibration on training images none of which decodes
        (tmp_path / "photos" / "train" / label / "0.png").write_bytes(b"\x89PNG\r\n\x1a\nno")
    with pytest.raises(DataError, match="none of the 6 training images picked to calibrate "
                                        "the int8 export could be decoded"):
        exporter._samples(keras_model, None, str(tmp_path / "photos"), None, False, 0, True)


def test_int8_needs_training_images(run, tmp_path):
    model = run / "best.keras"
    bare = tmp_path / "bare.keras"
    from cnncli.model import modelfile

    modelfile.save_model_atomic(modelfile.load_model(model), bare)  # no dataset recorded
    image = tmp_path / "img.png"
    from PIL import Image

    Image.new("L", (8, 8), 99).save(image)
    with pytest.raises(ConfigError, match="int8 calibrates on training images"):
        exporter.export(bare, formats=["litert"], quantize=["int8"], images=[str(image)],
                        output=tmp_path / "out")
    report = exporter.export(bare, formats=["onnx"], images=[str(image)],
                             output=tmp_path / "out")
    assert report.results[0].kept and report.results[0].check.accuracy is None


def test_an_unreadable_check_image_is_left_out_and_said_and_none_readable_refused(
        run, tmp_path):
    from PIL import Image

    good, broken = tmp_path / "good.png", tmp_path / "broken.png"
    Image.new("L", (8, 8), 99).save(good)
    broken.write_bytes(b"\x89PNG\r\n\x1a\n cut short")
    report = exporter.export(run, formats=["onnx"], images=[str(good), str(broken)],
                             output=tmp_path / "out")
    assert report.results[0].kept
    assert report.images.startswith("1 of the 2 images given with --images (no labels; "
                                    f"1 unreadable left out, e.g. {broken}: ")
    with pytest.raises(DataError, match="none of the 1 images of --images could be read"):
        exporter.export(run, formats=["onnx"], images=[str(broken)], output=tmp_path / "no")



def _answers_wrongly(self, images):
    """`ExportedClassifier.probabilities` of a runtime that answers wrongly."""
    p = exported.fit_images(images, self.input_shape)
    return np.asarray(self.run_batch(p))[:, ::-1]


def test_a_failed_check_exits_1_and_keeps_no_file(run, tmp_path, monkeypatch, capsys):
    from cnncli.cli import app as cli

    monkeypatch.setattr(exported.ExportedClassifier, "probabilities", _answers_wrongly)
    monkeypatch.setattr(sys, "argv", ["cnncli", "export", str(run), "--format", "onnx",
                                      "--output", str(tmp_path)])
    with pytest.raises(SystemExit) as exit_:
        cli.main()
    err = capsys.readouterr().err
    assert exit_.value.code == 1
    assert "FAIL:" in err and "agrees with the Keras model on" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # nothing kept, no staging
    assert err.rstrip().endswith("; the file was not kept")


def test_a_failed_check_with_force_says_the_file_made_before_is_still_there(
        run, tmp_path, monkeypatch, capsys):
    from cnncli.cli import app as cli

    exporter.export(run, formats=["onnx"], output=tmp_path)
    before = (tmp_path / "model.onnx").read_bytes()
    monkeypatch.setattr(exported.ExportedClassifier, "probabilities", _answers_wrongly)
    monkeypatch.setattr(sys, "argv", ["cnncli", "export", str(run), "--format", "onnx",
                                      "--output", str(tmp_path), "--force"])
    with pytest.raises(SystemExit):
        cli.main()
    assert "the new file was not kept (the one made before is still there)" in \
        capsys.readouterr().err
    assert (tmp_path / "model.onnx").read_bytes() == before


def test_a_failed_checks_line_escapes_a_newline_in_the_output_folders_name(
        run, tmp_path, monkeypatch, capsys):
    from cnncli.cli import app as cli

    monkeypatch.setattr(exported.ExportedClassifier, "probabilities", _answers_wrongly)
    monkeypatch.setattr(sys, "argv", ["cnncli", "export", str(run), "--format", "onnx",
                                      "--output", str(tmp_path / "out\nFAIL: forged")])
    with pytest.raises(SystemExit):
        cli.main()
    lines = capsys.readouterr().err.splitlines()
    assert [line for line in lines if line.startswith("FAIL: forged")] == []
    assert any("out\\nFAIL: forged" in line for line in lines)


def test_existing_output_is_refused_unless_force(run, tmp_path, monkeypatch):
    from cnncli.export import convert

    exporter.export(run, formats=["onnx,saved_model"], output=tmp_path)
    before = (tmp_path / "model.onnx").stat().st_mtime_ns
    again = cnncli("export", str(run), "--format", "onnx", "--output", str(tmp_path))
    assert again.returncode == 2 and "the outputs exist already" in again.stderr  # + json
    assert "--force" in again.stderr and "Traceback" not in again.stderr
    assert (tmp_path / "model.onnx").stat().st_mtime_ns == before
    with monkeypatch.context() as m:  # refused before any conversion starts
        m.setitem(convert.CONVERTERS, "saved_model", lambda job: pytest.fail("converted"))
        with pytest.raises(ConfigError, match="exist already"):
            exporter.export(run, formats=["saved_model"], output=tmp_path)
    exporter.export(run, formats=["onnx,saved_model"], output=tmp_path, force=True)
    assert (tmp_path / "model.onnx").stat().st_mtime_ns != before
    assert exported.load(tmp_path / "saved_model").probabilities(sample_images(run)).shape \
        == (24, 3)
    assert not list(tmp_path.glob(".cnncli-export-*"))


def test_an_output_that_is_a_saved_model_names_that_saved_model_not_a_folder_for_it(
        run, tmp_path):
    """`--output serving/1/saved_model` once made: again, it is that SavedModel (refused
    without --force, replaced with it), never a second one nested inside."""
    exporter.export(run, formats=["saved_model"], output=tmp_path)
    made = tmp_path / "saved_model"
    with pytest.raises(ConfigError, match="the outputs exist already: .*saved_model"):
        exporter.export(run, formats=["saved_model"], output=made)
    with pytest.raises(ConfigError, match="is a SavedModel folder, not a folder to export"):
        exporter.export(run, formats=["saved_model,onnx"], output=made, force=True)
    exporter.export(run, formats=["saved_model"], output=made, force=True)
    assert sorted(p.name for p in made.iterdir()) == ["assets", "fingerprint.pb",
                                                      "saved_model.pb", "variables"]
    assert exported.load(made).probabilities(sample_images(run)).shape == (24, 3)
    inside = cnncli("export", str(run), "--format", "saved_model", "--output", ".",
                    "--force", cwd=made)  # `.` has no name of its own
    assert inside.returncode == 0, inside.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["labels.txt", "saved_model",
                                                         "saved_model.json"]


def test_a_new_numbered_output_folder_is_the_saved_model_tensorflow_serving_serves(
        run, tmp_path):
    """`--output serving/toy/1`: TensorFlow Serving's version folder holds the SavedModel
    itself (saved_model.pb directly inside), its JSON and labels beside it."""
    version = tmp_path / "serving" / "toy" / "1"
    report = exporter.export(run, formats=["saved_model"], output=version)
    assert report.results[0].kept and report.results[0].path == version
    assert (version / "saved_model.pb").is_file() and (version / "assets" / "labels.txt").is_file()
    assert sorted(p.name for p in version.parent.iterdir()) == ["1", "1.json", "labels.txt"]
    assert exported.load(version).probabilities(sample_images(run)).shape == (24, 3)
    exporter.export(run, formats=["saved_model"], output=tmp_path / "v2")  # not a number:
    assert (tmp_path / "v2" / "saved_model" / "saved_model.pb").is_file()  # a folder for it
    exporter.export(run, formats=["onnx,saved_model"], output=tmp_path / "3")  # two: a folder
    assert (tmp_path / "3" / "saved_model" / "saved_model.pb").is_file()


def test_force_never_replaces_a_folder_of_the_users(run, tmp_path):
    for output, folder in ((tmp_path / "important.onnx", tmp_path / "important.onnx"),
                           (tmp_path, tmp_path / "saved_model")):
        folder.mkdir(exist_ok=True)
        (folder / "data.txt").write_text("precious")
        fmt = "onnx" if folder.suffix else "saved_model"
        with pytest.raises(ConfigError, match="is a folder.*not replaced, even with --force"):
            exporter.export(run, formats=[fmt], output=output, force=True)
        assert (folder / "data.txt").read_text() == "precious"


def test_a_folder_named_labels_txt_is_never_replaced(run, tmp_path):
    (tmp_path / "labels.txt").mkdir()
    (tmp_path / "labels.txt" / "important.doc").write_text("precious")
    for force in (False, True):
        with pytest.raises(ConfigError, match="a folder, where the export writes a file"):
            exporter.export(run, formats=["onnx"], output=tmp_path, force=force)
    assert (tmp_path / "labels.txt" / "important.doc").read_text() == "precious"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["labels.txt"]


def test_a_dangling_link_at_the_output_is_refused_before_any_work(run, tmp_path,
                                                                  monkeypatch):
    from cnncli.export import convert

    (tmp_path / "model.onnx").symlink_to(tmp_path / "nowhere")
    monkeypatch.setitem(convert.CONVERTERS, "onnx", lambda job: pytest.fail("converted"))
    with pytest.raises(ConfigError, match="exists already"):
        exporter.export(run, formats=["onnx"], output=tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx"]  # no orphan JSON


@pytest.mark.parametrize("fmt,quant,hint", [
    ("onx", "none", "did you mean 'onnx'? use saved_model, onnx, litert, openvino"),
    ("tflit", "none", "did you mean 'tflite'? use saved_model, onnx, litert, openvino"),
    ("zzz", "none", "use saved_model, onnx, litert, openvino"),
    ("onnx", "int9", "did you mean 'int8'? use none, float16, dynamic, int8"),
])
def test_an_unknown_format_or_quantization_names_the_closest_one_aliases_too(fmt, quant, hint):
    from cnncli.export import formats

    with pytest.raises(ConfigError, match="unknown value") as err:
        formats.plan([fmt], [quant])
    assert err.value.hint == hint


def test_every_format_has_a_converter_a_runtime_and_fallbacks_that_exist():
    """A format added to FORMATS alone would be written by nothing and opened by nothing."""
    from cnncli.export import convert, formats

    assert set(convert.CONVERTERS) == set(formats.FORMATS) == set(exported._OPENERS)
    for fmt in formats.FORMATS.values():
        assert fmt.fallbacks and set(fmt.fallbacks) <= set(formats.FORMATS) - {fmt.name}
        if fmt.suffix:  # a file: predict knows it by its suffix
            assert exported.kind(f"model{fmt.suffix}") == fmt.name


def test_a_failed_export_leaves_no_folder_it_made(run, tmp_path):
    with pytest.raises(DataError, match="no_such_data"):
        exporter.export(run, formats=["onnx"], output=tmp_path / "out" / "a" / "b",
                        data="no_such_data")
    assert list(tmp_path.iterdir()) == []  # out/a/b, out/a and out: all made, all removed


@pytest.mark.parametrize("given", ["data", "images"])
def test_an_export_into_the_data_folder_is_refused_before_any_work(run, tmp_path, given):
    photos = tmp_path / "photos"
    for name in ("cat", "dog"):
        (photos / name).mkdir(parents=True)
        tf.keras.utils.save_img(photos / name / "1.png", np.zeros((8, 8, 1), np.uint8))
    before = sorted(photos.rglob("*"))
    with pytest.raises(ConfigError, match="the output folder .* is inside the data folder"):
        exporter.export(run, formats=["onnx"], output=photos / "cat" / "out",
                        **{given: str(photos) if given == "data" else [str(photos)]})
    assert sorted(photos.rglob("*")) == before  # nothing made, not even the folder


def test_an_export_checked_on_images_may_go_into_the_data_it_does_not_read(run, tmp_path):
    """With --images (no int8 calibration) the run's data is not read: a folder inside it
    is no class folder of anything this export reads."""
    photos = tmp_path / "photos"
    for name in ("cat", "dog"):
        (photos / name).mkdir(parents=True)
        tf.keras.utils.save_img(photos / name / "1.png", np.zeros((8, 8, 1), np.uint8))
    report = exporter.export(run, formats=["onnx"], output=photos / "cat" / "out",
                             data=str(photos), images=[str(photos / "dog")])
    assert (photos / "cat" / "out").is_dir() and report.results[0].kept
    with pytest.raises(ConfigError, match="the output folder .* is inside the data folder"):
        exporter.export(run, formats=["onnx"], quantize=["int8"], output=photos / "dog" / "q",
                        data=str(photos), images=[str(photos / "cat" / "1.png")])


def test_exporting_a_run_that_has_not_finished_says_so(run, tmp_path):
    stopped = shutil.copytree(run, tmp_path / "runs" / "toy" / "1", symlinks=True)
    files.write_json(stopped / "state.json", {"status": "interrupted"})
    report = exporter.export(stopped, formats=["onnx"], check_images=20)
    assert "the run has not finished (it is interrupted after 3 epochs): this exports the " \
           "model it had then, best.keras" in report.notes[0]
    done = exporter.export(run, formats=["onnx"], output=tmp_path / "done", check_images=20)
    assert not any("not finished" in note for note in done.notes)


def test_an_output_naming_openvinos_bin_is_refused_naming_the_xml(run, tmp_path):
    with pytest.raises(ConfigError, match="names OpenVINO's weights file") as err:
        exporter.export(run, formats=["openvino"], output=tmp_path / "ov" / "foo.bin")
    assert err.value.hint.startswith(f"give --output {tmp_path / 'ov' / 'foo.xml'}")
    assert not (tmp_path / "ov").exists()
    exporter.export(run, formats=["onnx"], output=tmp_path / "ov" / "foo.bin",
                    check_images=20)  # no OpenVINO export: a folder's name like another
    assert (tmp_path / "ov" / "foo.bin" / "model.onnx").is_file()


def test_force_does_not_replace_labels_that_other_exports_beside_it_use(run, tmp_path):
    (tmp_path / "model.tflite").write_bytes(b"another model's file")
    (tmp_path / "labels.txt").write_text("cat\ndog\n")  # its classes, not the run's
    with pytest.raises(ConfigError, match="labels.txt there names other classes, those of "
                       "model.tflite: it is not replaced, even with --force"):
        exporter.export(run, formats=["onnx"], output=tmp_path, force=True)
    assert (tmp_path / "labels.txt").read_text() == "cat\ndog\n"
    assert not (tmp_path / "model.onnx").exists()
    (tmp_path / "model.tflite").unlink()  # nothing else uses them: --force replaces them
    exporter.export(run, formats=["onnx"], output=tmp_path, force=True, check_images=20)
    assert (tmp_path / "labels.txt").read_text() != "cat\ndog\n"


def test_labels_with_accents_are_ours_in_a_locale_that_is_not_utf8(tmp_path):
    """labels.txt is written in UTF-8: read in an ASCII locale's encoding, `café` was
    another run's class, and the export beside another model was refused."""
    (tmp_path / "other.tflite").write_bytes(b"another export of the same run")
    (tmp_path / "labels.txt").write_bytes("café\nthé\n".encode())
    code = ("import sys; from pathlib import Path; from cnncli.export import exporter; "
            "exporter._refuse_existing({}, Path(sys.argv[1]), "
            "['caf\\u00e9', 'th\\u00e9'], True)")  # (escaped: argv is ASCII there)
    env = {**os.environ, "LC_ALL": "C", "PYTHONUTF8": "0", "PYTHONCOERCECLOCALE": "0"}
    done = subprocess.run([sys.executable, "-c", code, str(tmp_path)], env=env,
                          capture_output=True, text=True, encoding="utf-8")
    assert done.returncode == 0, done.stderr


def test_a_second_export_into_a_folder_another_is_writing_into_is_refused(run, tmp_path,
                                                                        monkeypatch):
    """Two exports into one folder together each found it empty and both wrote: one
    model ended beside the other's labels.txt. The second one is refused; what the first
    wrote is found by the checks made under the folder's lock (here: another model's
    labels, written while this export waited for nothing)."""
    import fcntl

    folder = tmp_path / "deploy"
    folder.mkdir()
    other = os.open(folder, os.O_RDONLY)
    fcntl.flock(other, fcntl.LOCK_EX)  # another export, writing now
    try:
        with pytest.raises(ConfigError, match="another cnncli export is writing into this "
                                              "folder now"):
            exporter.export(run, formats=["onnx"], output=folder)
    finally:
        os.close(other)
    assert list(folder.iterdir()) == []
    refuse = exporter._refuse_existing

    def the_other_finishes_first(targets, where, class_names, force):
        if not (folder / "labels.txt").exists():  # (the check before the lock)
            (folder / "model.tflite").write_bytes(b"the other run's model")
            (folder / "labels.txt").write_text("cat\ndog\n")
            return None
        return refuse(targets, where, class_names, force)

    monkeypatch.setattr(exporter, "_refuse_existing", the_other_finishes_first)
    with pytest.raises(ConfigError, match="labels.txt there names other classes"):
        exporter.export(run, formats=["onnx"], output=folder)
    assert not (folder / "model.onnx").exists()


def test_check_images_caps_the_images_given_with_a_seeded_sample(run, tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    for i, image in enumerate(sample_images(run, n=12)):  # 24 images
        tf.keras.utils.save_img(photos / f"{i:02d}.png", image)
    report = exporter.export(run, formats=["onnx"], output=tmp_path / "out",
                             images=[str(photos)], check_images=5)
    assert report.images == "5 of the 24 images given with --images (no labels)"
    assert report.results[0].check.images == 5
    again = exporter.export(run, formats=["onnx"], output=tmp_path / "again",
                            images=[str(photos)], check_images=5)
    assert again.results[0].check == report.results[0].check  # the same five: seeded
    every = exporter.export(run, formats=["onnx"], output=tmp_path / "all",
                            images=[str(photos)], check_images=0)
    assert every.images == "24 images given with --images (no labels)"


def test_an_output_under_the_home_folder_is_written_there(run, tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    exporter.export(run, formats=["onnx"], output="~/exports", check_images=20)
    assert (tmp_path / "home" / "exports" / "model.onnx").is_file()
    assert not (tmp_path / "~").exists()  # not a folder named ~ here


def test_a_full_disk_is_said_plainly(run, tmp_path, monkeypatch):
    from cnncli.export import convert

    def full(job):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setitem(convert.CONVERTERS, "onnx", full)
    with pytest.raises(exporter.ExportStopped,
                       match="cannot write the export: No space left") as caught:
        exporter.export(run, formats=["onnx"], output=tmp_path)
    assert "free some disk space" in caught.value.hint
    assert list(tmp_path.iterdir()) == []  # no staging folder left
    with pytest.raises(exporter.ExportStopped, match="cannot write the export: No space left"):
        exporter.export(run, formats=["onnx"], output=tmp_path / "out")  # through _converting
    assert not (tmp_path / "out").exists()


def test_a_disk_that_fills_up_half_way_keeps_the_files_made_and_says_which(run, tmp_path,
                                                                          monkeypatch):
    from cnncli.export import convert

    def full(job):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setitem(convert.CONVERTERS, "onnx", full)
    with pytest.raises(exporter.ExportStopped) as caught:
        exporter.export(run, formats=["litert", "onnx"], output=tmp_path / "out",
                        check_images=20)
    error = caught.value
    assert error.message == ("cannot write the export: No space left on device; kept: "
                             "model.tflite (checked); not made: onnx")
    assert error.hint.startswith("free some disk space, or give another --output; export "
                                 "the ones not made: the same command with --format onnx "
                                 f"--output {tmp_path / 'out'};")
    assert error.exit_code == 3 and [r.path.name for r in error.report.results] == \
        ["model.tflite"]
    assert error.to_dict()["report"]["exports"][0]["kept"]  # --json has the report too
    assert {p.name for p in (tmp_path / "out").iterdir()} == {
        "model.tflite", "model.tflite.json", "labels.txt"}


def test_a_full_disk_in_tensorflows_words_is_said_plainly_not_blamed_on_a_layer(
        run, tmp_path, monkeypatch):
    def full(*args, **kwargs):  # what SavedModel's writer raises on a full disk
        raise tf.errors.ResourceExhaustedError(
            None, None, "{{function_node __wrapped__SaveV2_dtypes_2_device_/job:localhost}} "
            "model/variables/variables_temp/part-00000-of-00001.data-00000-of-00001.tempstate"
            "123; No space left on device [Op:SaveV2]")

    monkeypatch.setattr(tf.saved_model, "save", full)
    with pytest.raises(exporter.ExportStopped,
                       match="cannot write the export: No space left") as caught:
        exporter.export(run, formats=["saved_model"], output=tmp_path / "out")
    assert "free some disk space" in caught.value.hint and not (tmp_path / "out").exists()


def test_openvino_failing_to_write_on_a_full_disk_is_said_plainly(run, tmp_path, monkeypatch):
    from cnncli.infer.exported import import_openvino

    def iostream(*args, **kwargs):  # all OpenVINO says when its file cannot be written
        raise RuntimeError("basic_ios::clear: iostream error")

    monkeypatch.setattr(import_openvino(), "save_model", iostream)
    with pytest.raises(exporter.ExportStopped, match="cannot write the export: OpenVINO could "
                       "not write model.xml: basic_ios::clear: iostream error"):  # not the disk
        exporter.export(run, formats=["openvino"], output=tmp_path / "a")
    monkeypatch.setattr(files, "NEARLY_FULL", 1 << 62)  # as if the disk had no room left
    with pytest.raises(exporter.ExportStopped, match="cannot write the export: No space left "
                       r"on device \(OpenVINO could not write model.xml\)"):
        exporter.export(run, formats=["openvino"], output=tmp_path / "b")
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_json_output_is_one_document_when_a_format_fails(run, tmp_path, monkeypatch, capsys):
    from cnncli.cli import app as cli

    def broken(path):
        raise ModelError("ONNX Runtime cannot load the model: boom", file=str(path))

    monkeypatch.setitem(exported._OPENERS, "onnx", broken)
    monkeypatch.setattr(sys, "argv", ["cnncli", "export", str(run), "--format", "onnx,litert",
                                      "--output", str(tmp_path), "--json"])
    with pytest.raises(SystemExit) as exit_:
        cli.main()
    captured = capsys.readouterr()
    report = json.loads(captured.out)  # one document
    assert exit_.value.code == 3 and len(report["errors"]) == 1
    assert "not kept: ONNX Runtime cannot load the model: boom" in captured.err


def test_a_check_on_a_few_images_says_they_are_few(run, tmp_path, monkeypatch):
    from PIL import Image

    Image.new("L", (8, 8), 50).save(tmp_path / "img.png")
    report = exporter.export(run, formats=["onnx"], output=tmp_path / "out",
                             images=[str(tmp_path / "img.png")])
    assert any("the check ran on 1 image only" in note for note in report.notes)
    monkeypatch.setattr(exporter, "FEW_CHECK_IMAGES", 60)  # the toy run has 60 test images
    full = exporter.export(run, formats=["onnx"], output=tmp_path / "all")
    assert not any("only" in note for note in full.notes)


def test_check_images_are_resized_as_the_model_was_trained(run, tmp_path, monkeypatch):
    """--images are read as `cnncli predict` reads them, in the run's resize mode."""
    from PIL import Image

    from cnncli.data import inputs

    Image.new("L", (16, 8), 50).save(tmp_path / "wide.png")
    modes = []
    real = inputs.read_image
    monkeypatch.setattr(inputs, "read_image",
                        lambda source, shape, resize="stretch": modes.append(resize) or
                        real(source, shape, resize))
    real_load = classifier.load

    def padded(target, **kw):  # the run as if trained with data.resize: pad
        clf = real_load(target, **kw)
        clf.meta = dataclasses.replace(clf.meta, resize="pad")
        return clf

    monkeypatch.setattr(classifier, "load", padded)
    exporter.export(run, formats=["onnx"], output=tmp_path / "out",
                    images=[str(tmp_path / "wide.png")])
    assert modes == ["pad"]
    # and the export says so: predict and evaluate on the file pad photos as training did
    assert json.loads((tmp_path / "out" / "model.onnx.json").read_text())["resize"] == "pad"
    assert exported.load(tmp_path / "out" / "model.onnx").meta.resize == "pad"


def test_output_can_name_the_one_file(run, tmp_path):
    report = exporter.export(run, formats=["onnx"], output=tmp_path / "digits.onnx")
    assert report.results[0].path == tmp_path / "digits.onnx"
    assert {p.name for p in tmp_path.iterdir()} == {"digits.onnx", "digits.onnx.json",
                                                   "labels.txt"}
    with pytest.raises(ConfigError, match="names one onnx file, but 2 exports were asked"):
        exporter.export(run, formats=["onnx,litert"], output=tmp_path / "two.onnx")
    with pytest.raises(ConfigError, match="names an onnx file, but the export asked for is "
                                          "litert") as caught:
        exporter.export(run, formats=["litert"], output=tmp_path / "other.onnx")
    assert "a name ending in .tflite" in caught.value.hint


def test_an_output_folder_that_cannot_be_written_is_a_usage_error(run, tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")  # (permissions would not stop root)
    result = cnncli("export", str(run), "--format", "onnx", "--output", str(blocker / "out"))
    assert result.returncode == 2, result.stderr
    assert "the output folder cannot be made" in result.stderr
    assert f"'{blocker}' is a file" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_run_without_a_finished_model_says_what_to_do(run, tmp_path):
    unfinished = tmp_path / "unfinished"
    shutil.copytree(run, unfinished, ignore=shutil.ignore_patterns("*.keras", "state.json"))
    result = cnncli("export", str(unfinished), "--format", "onnx")
    assert result.returncode == 3
    assert "no model file yet" in result.stderr and "Hint:" in result.stderr


def _resizing_model(path, interpolation):
    from cnncli.model import modelfile
    from cnncli.model.meta import ModelMeta

    inputs = keras.Input((8, 8, 1))
    x = keras.layers.Conv2D(2, 3, padding="same", name="conv1_1")(inputs)
    x = keras.layers.Resizing(6, 6, interpolation=interpolation, name="smooth_resize")(x)
    x = keras.layers.Dense(3, activation="softmax", name="fc1")(keras.layers.Flatten()(x))
    modelfile.save_model_atomic(keras.Model(inputs, x, name="resizer"), path,
                                ModelMeta(model="resizer", input=(8, 8, 1),
                                          class_names=("a", "b", "c")))
    return path


@pytest.mark.parametrize("fmt, interpolation, op", [
    ("onnx", "lanczos3", "ScaleAndTranslate"), ("litert", "lanczos3", "ScaleAndTranslate"),
    ("openvino", "lanczos3", "ScaleAndTranslate"),
    ("litert", "bicubic", "ResizeBicubic")])  # TensorFlow (Flex) has it, LiteRT not
def test_a_layer_the_format_cannot_convert_is_named(tmp_path, fmt, interpolation, op):
    from PIL import Image

    model = _resizing_model(tmp_path / "resizer.keras", interpolation)
    Image.new("L", (8, 8), 50).save(tmp_path / "img.png")
    result = cnncli("export", str(model), "--format", fmt, "--images",
                    str(tmp_path / "img.png"))
    assert result.returncode == 3, result.stderr
    assert f"the {fmt} format cannot convert layer 'smooth_resize' (Resizing)" in \
        result.stderr
    assert op in result.stderr and "--format saved_model" in result.stderr
    assert not (tmp_path / "export" / FILES[fmt]).exists()
    assert not list((tmp_path / "export").glob(".cnncli-export-*"))


def test_a_conversion_failing_in_two_formats_is_said_once_each_naming_neither_as_the_way_out(
        run, tmp_path, monkeypatch):
    from cnncli.export import convert, unsupported

    def cannot(fmt):
        def convert_(job):
            raise unsupported.cannot_convert(fmt, job.wrapper, "No conversion rule found for "
                                                               "operations: ScaleAndTranslate")
        return convert_

    for fmt in ("onnx", "litert"):
        monkeypatch.setitem(convert.CONVERTERS, fmt, cannot(fmt))
    report = exporter.export(run, formats=["onnx,litert"], quantize=["none,float16"],
                             output=tmp_path)
    assert [e.message.split(" cannot")[0] for e in report.errors] == [
        "the onnx format", "the litert format"]  # not once per quantization
    assert [e.hint for e in report.errors] == [
        "export to another format (--format saved_model), or replace that layer in the spec"
    ] * 2  # not onnx nor litert: both failed


def test_a_format_with_a_file_kept_is_still_named_as_the_way_out():
    from cnncli.errors import ModelError
    from cnncli.export import unsupported

    hint = unsupported.another_format("onnx") + ", or replace that layer in the spec"
    failures = [("onnx", ModelError("onnx cannot", hint=hint)),
                ("litert", ModelError("int8 litert cannot"))]  # its float32 file was kept
    [onnx, _] = unsupported.said_once(failures, kept={"litert"})
    assert onnx.hint == hint  # litert converts the model: it is still a way out


def test_onnx_runtime_runs_as_many_threads_as_the_cpus_available(exports, monkeypatch):
    import onnxruntime

    folder, _ = exports
    seen, real = [], onnxruntime.InferenceSession

    def session(path, sess_options=None, **kw):
        seen.append(sess_options.intra_op_num_threads)
        return real(path, sess_options=sess_options, **kw)

    monkeypatch.setattr(exported, "available_cpus", lambda: 1)  # a container's quota
    monkeypatch.setattr(onnxruntime, "InferenceSession", session)
    exported.load(folder / FILES["onnx"])
    assert seen == [1]


def test_a_file_its_runtime_cannot_run_is_an_error_and_not_kept(run, tmp_path, monkeypatch):
    def broken(path):
        raise ModelError("ONNX Runtime cannot load the model: boom", file=str(path))

    monkeypatch.setitem(exported._OPENERS, "onnx", broken)
    report = exporter.export(run, formats=["onnx,litert"], output=tmp_path)
    assert [r.format for r in report.results if r.kept] == ["litert"]
    (error,) = report.errors
    assert error.file == str(tmp_path / "model.onnx") and "not kept: ONNX Runtime" in str(error)
    assert not (tmp_path / "model.onnx").exists()


def test_ctrl_c_during_an_export_leaves_nothing_half_written(run, tmp_path, monkeypatch):
    from cnncli.export import convert

    def interrupted(job):
        job.path.write_bytes(b"half a model")
        raise KeyboardInterrupt

    monkeypatch.setitem(convert.CONVERTERS, "litert", interrupted)
    with pytest.raises(exporter.ExportInterrupted) as err:
        exporter.export(run, formats=["onnx,litert,openvino"], output=tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["labels.txt", "model.onnx",
                                                         "model.onnx.json"]
    assert exported.load(tmp_path / "model.onnx").probabilities(sample_images(run)).shape \
        == (24, 3)  # the one finished before Ctrl-C is whole, with its labels
    # and the error says so: what was kept, what was not made, exit 130 as for any Ctrl-C
    assert ("Ctrl-C: the export stopped; kept: model.onnx (checked); "
            "not made: litert, openvino") in str(err.value)
    assert err.value.hint.startswith("export the ones not made: the same command with "
                                     f"--format litert,openvino --output {tmp_path};")
    assert err.value.exit_code == 130
    # with --json, the error's JSON carries what was done, named as any command's Ctrl-C
    said = err.value.to_dict()
    assert [e["kept"] for e in said["report"]["exports"]] == [True]
    assert (said["error"], said["exit_code"]) == ("Interrupted", 130)


def test_the_hint_after_an_interrupted_export_makes_the_rest_and_nothing_made(
        run, tmp_path, monkeypatch):
    """Its options asked again for files kept before (refused: they exist)."""
    from cnncli.export import convert

    real = convert.CONVERTERS["onnx"]

    def interrupted_at_float16(job):
        if job.quantization == "float16":
            raise KeyboardInterrupt
        real(job)

    monkeypatch.setitem(convert.CONVERTERS, "onnx", interrupted_at_float16)
    with pytest.raises(exporter.ExportInterrupted) as err:
        exporter.export(run, formats=["onnx,openvino"], quantize=["none,float16"],
                        output=tmp_path)
    monkeypatch.setitem(convert.CONVERTERS, "onnx", real)
    hint = err.value.hint.removeprefix("export the ones not made: the same command with ")
    hint = hint.split(";")[0]
    assert hint == f"--format onnx --quantize float16 --output {tmp_path}, then --format " \
                   f"openvino --quantize none,float16 --output {tmp_path}"
    for flags in hint.split(", then "):  # as a user types them
        words = flags.split()
        exporter.export(run, formats=[words[1]], quantize=[words[3]], output=words[5])
    assert {p.name for p in tmp_path.iterdir()} >= {
        "model.onnx", "model.float16.onnx", "model.xml", "model.float16.xml"}



def _signal_during_the_first_rename(monkeypatch, signum):
    """Send `signum` to this process as the first staged file is renamed into place."""
    from cnncli.export import staging

    real, sent = staging._sync, []

    def sync(path):
        if not sent:
            sent.append(signum)
            os.kill(os.getpid(), signum)
        real(path)

    monkeypatch.setattr(staging, "_sync", sync)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_while_files_are_renamed_into_place_waits_until_all_are(tmp_path,
                                                                         monkeypatch, signum):
    # a model never lands without its sidecar (nor a sidecar without its model)
    from cnncli.export.staging import Staging

    _signal_during_the_first_rename(monkeypatch, signum)
    with Staging(tmp_path) as stage:
        for name in ("model.onnx.json", "model.onnx"):
            (stage.path / name).write_text(name)
        stage.publish([(stage.path / n, tmp_path / n) for n in ("model.onnx.json",
                                                                "model.onnx")],
                      replace=False)
        assert stage.interrupted and stage.terminated == (signum == signal.SIGTERM)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx", "model.onnx.json"]


def test_staging_puts_back_the_sigterm_handler_it_found(tmp_path):
    from cnncli.export.staging import Staging

    def mine(signum, frame):
        pass

    before = signal.signal(signal.SIGTERM, mine)
    try:
        with Staging(tmp_path):
            assert signal.getsignal(signal.SIGTERM) is not mine  # its own, meanwhile
        assert signal.getsignal(signal.SIGTERM) is mine
    finally:
        signal.signal(signal.SIGTERM, before)


def test_staging_puts_back_the_sigint_handler_it_found(tmp_path):
    from cnncli.export.staging import Staging

    before = signal.getsignal(signal.SIGINT)
    with Staging(tmp_path) as stage:
        (stage.path / "model.onnx").write_text("model")
        stage.publish([(stage.path / "model.onnx", tmp_path / "model.onnx")], replace=False)
    assert signal.getsignal(signal.SIGINT) is before


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_a_converter_swallowed_still_stops_the_export_after_that_format(
        run, tmp_path, monkeypatch, signum):
    """A Ctrl-C or SIGTERM half a second into LiteRT's conversion was lost (swallowed
    there), and the export went on to make every format, exit 0."""
    from cnncli.export import convert

    real = convert.CONVERTERS["litert"]

    def swallowing(job):
        try:
            os.kill(os.getpid(), signum)
            time.sleep(1)  # (the handler runs here)
        except BaseException:  # noqa: BLE001 - as the library does
            pass
        real(job)

    monkeypatch.setitem(convert.CONVERTERS, "litert", swallowing)
    with pytest.raises(exporter.ExportInterrupted) as err:
        exporter.export(run, formats=["onnx,litert,saved_model"], output=tmp_path)
    assert "kept: model.onnx, model.tflite (checked); not made: saved_model" in str(err.value)
    assert err.value.exit_code == (143 if signum == signal.SIGTERM else 130)
    assert err.value.to_dict()["error"] == ("Terminated" if signum == signal.SIGTERM
                                            else "Interrupted")


def test_a_swallowed_signal_then_a_failed_format_still_stops_the_export(run, tmp_path,
                                                                         monkeypatch):
    from cnncli.export import convert

    def swallowing_then_failing(job):
        try:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(1)
        except BaseException:  # noqa: BLE001 - as the library does
            pass
        raise ModelError("cannot convert: boom")

    monkeypatch.setitem(convert.CONVERTERS, "litert", swallowing_then_failing)
    with pytest.raises(exporter.ExportInterrupted) as err:
        exporter.export(run, formats=["onnx,litert,saved_model"], output=tmp_path)
    assert "not made: saved_model" in str(err.value)


def test_an_export_started_with_sigint_ignored_keeps_it_ignored(tmp_path):
    """A script's `cnncli export ... &` ignores Ctrl-C (the shell set it so): the export
    is not stopped by the script's Ctrl-C."""
    from cnncli.export.staging import Staging

    before = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        with Staging(tmp_path):
            assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, before)


def test_sigterm_while_the_last_export_lands_still_exits_143_saying_all_was_made(
        run, tmp_path, monkeypatch):
    _signal_during_the_first_rename(monkeypatch, signal.SIGTERM)
    with pytest.raises(exporter.ExportInterrupted) as err:
        exporter.export(run, formats=["onnx"], output=tmp_path)
    assert err.value.exit_code == 143  # it was ignored: exit 0
    assert "SIGTERM: the export stopped; kept: model.onnx (checked); every export was " \
        "made" in str(err.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["labels.txt", "model.onnx",
                                                         "model.onnx.json"]


def test_a_signal_while_the_labels_are_written_waits_for_them(run, tmp_path, monkeypatch):
    """The first kept file's labels.txt lands with it (a SIGTERM there left the model
    without its labels, and no report)."""
    real = files.write_atomic

    def write_atomic(path, data):
        if Path(path).name == "labels.txt":
            os.kill(os.getpid(), signal.SIGTERM)
        return real(path, data)

    monkeypatch.setattr(files, "write_atomic", write_atomic)
    with pytest.raises(exporter.ExportInterrupted) as err:
        exporter.export(run, formats=["onnx,litert"], output=tmp_path)
    assert "kept: model.onnx (checked); not made: litert" in str(err.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["labels.txt", "model.onnx",
                                                         "model.onnx.json"]


def test_sigterm_during_an_export_says_what_was_kept_and_exits_143(run, tmp_path):
    """As Ctrl-C does (it exited 143 silently, even with --json)."""
    script = ("import os, signal, sys\nfrom cnncli.export import convert\n"
              "real = convert.CONVERTERS['litert']\n"
              "def litert(job):\n    os.kill(os.getpid(), signal.SIGTERM)\n"
              "    return real(job)\n"
              "convert.CONVERTERS['litert'] = litert\n"
              "from cnncli.cli.app import main\nsys.argv[0] = 'cnncli'\nmain()\n")
    for json_asked in (False, True):
        out = tmp_path / f"json-{json_asked}"
        done = subprocess.run(
            [sys.executable, "-c", script, "export", str(run), "--format", "onnx,litert",
             "--output", str(out)] + ["--json"] * json_asked,
            capture_output=True, text=True, timeout=300)
        assert done.returncode == 143, done.stderr
        said = "SIGTERM: the export stopped; kept: model.onnx (checked); not made: litert"
        assert said in " ".join(done.stderr.split())
        if json_asked:
            error = json.loads(done.stdout)
            assert error["exit_code"] == 143 and error["message"].startswith(said)
        assert sorted(p.name for p in out.iterdir()) == ["labels.txt", "model.onnx",
                                                         "model.onnx.json"]


def test_ctrl_c_while_the_first_export_is_renamed_stops_after_it_with_its_labels(
        run, tmp_path, monkeypatch):
    _signal_during_the_first_rename(monkeypatch, signal.SIGINT)
    with pytest.raises(exporter.ExportInterrupted) as err:
        exporter.export(run, formats=["onnx,litert"], output=tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["labels.txt", "model.onnx",
                                                         "model.onnx.json"]
    assert "kept: model.onnx (checked); not made: litert" in str(err.value)


def test_an_interrupted_export_still_shows_what_failed_before_it(run, tmp_path, monkeypatch,
                                                                 capsys):
    from cnncli.cli import app as cli
    from cnncli.export import convert

    def broken(path):
        raise ModelError("ONNX Runtime cannot load the model: boom", file=str(path))

    def interrupted(job):
        raise KeyboardInterrupt

    def leave(code):  # the command leaves with os._exit after Ctrl-C: not in a test
        raise SystemExit(code)

    monkeypatch.setitem(exported._OPENERS, "onnx", broken)
    monkeypatch.setitem(convert.CONVERTERS, "litert", interrupted)
    monkeypatch.setattr(cli.os, "_exit", leave)
    monkeypatch.setattr(sys, "argv", ["cnncli", "export", str(run), "--format", "onnx,litert",
                                      "--output", str(tmp_path)])
    with pytest.raises(SystemExit) as exit_:
        cli.main()
    err = " ".join(capsys.readouterr().err.split())
    assert exit_.value.code == 130
    assert "not kept: ONNX Runtime cannot load the model: boom" in err
    assert "Ctrl-C: the export stopped; no file was kept; not made: litert" in err


def test_sigterm_during_an_export_leaves_no_staging_folder(tmp_path):
    script = ("import sys, time\nfrom pathlib import Path\n"
              "from cnncli.errors import Terminated\n"
              "from cnncli.export.staging import Staging\n"
              "try:\n"
              "    with Staging(Path(sys.argv[1])) as stage:\n"
              "        (stage.path / 'half.onnx').write_bytes(b'x' * 1000)\n"
              "        print(stage.path, flush=True)\n        time.sleep(60)\n"
              "except Terminated:\n    sys.exit(143)\n")
    proc = subprocess.Popen([sys.executable, "-c", script, str(tmp_path)],
                            stdout=subprocess.PIPE, text=True)
    staged = Path(proc.stdout.readline().strip())
    assert staged.is_dir()
    proc.terminate()
    assert proc.wait(timeout=30) == 143
    assert list(tmp_path.iterdir()) == []


def test_a_killed_exports_staging_folder_goes_with_the_next_export(tmp_path):
    from cnncli import files
    from cnncli.export import staging

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    for name, pid in (("deadxxxx", dead.pid), ("nopidxxx", None),
                      ("reusedxx", os.getpid()),  # a running process's number, no lock
                      ("dead-but-not-named-by-mkdtemp", dead.pid)):
        folder = tmp_path / f"{staging.PREFIX}{name}"
        folder.mkdir()
        if pid:
            (folder / staging.PID_FILE).write_text(str(pid))
    alive = files.staging_folder(tmp_path, staging.PREFIX)  # held by this process
    older = tmp_path / f"{staging.PREFIX}olderxxx"  # an older cnncli's marker: no lock
    older.mkdir()
    (older / "pid").write_text(str(os.getpid()))
    piped = tmp_path / f"{staging.PREFIX}fifoxxxx"
    piped.mkdir()
    os.mkfifo(piped / staging.PID_FILE)  # a pipe for a marker: not waited on, left alone
    with staging.Staging(tmp_path):
        pass
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([
        alive.name, f"{staging.PREFIX}dead-but-not-named-by-mkdtemp",
        f"{staging.PREFIX}fifoxxxx", f"{staging.PREFIX}nopidxxx", older.name])


def test_a_staging_folder_in_use_by_a_process_of_another_container_is_left_alone(tmp_path):
    """A CI job in another container (its own process numbers) shares the folder: its
    process number means nothing here, and its live staging folder was removed mid-export.
    The folder's marker is held locked by the process using it: that is seen anywhere."""
    from cnncli import files
    from cnncli.export import staging

    script = ("import sys, time; from cnncli import files; "
              f"print(files.staging_folder({str(tmp_path)!r}, {staging.PREFIX!r}), "
              "flush=True); time.sleep(120)")
    other = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        folder = Path(other.stdout.readline().strip())
        dead = subprocess.Popen([sys.executable, "-c", "pass"])
        dead.wait()
        with open(folder / staging.PID_FILE, "w") as marker:  # as numbered in its container
            marker.write(str(dead.pid))
        files.remove_dead_staging(tmp_path, staging.PREFIX)
        assert folder.is_dir()
    finally:
        other.kill()
        other.wait()
    files.remove_dead_staging(tmp_path, staging.PREFIX)  # its process ended: it goes
    assert not folder.exists()


def test_an_export_folder_that_is_a_link_out_of_the_run_is_not_written_through(run,
                                                                             tmp_path):
    from cnncli.errors import WriteError

    theirs = tmp_path / "models"
    theirs.mkdir()
    (theirs / "labels.txt").write_text("mine")
    (run / "export").symlink_to(theirs)
    try:
        with pytest.raises(WriteError, match="export is a link"):
            exporter.export(run, formats=["onnx"])
    finally:
        (run / "export").unlink()
    assert [p.name for p in theirs.iterdir()] == ["labels.txt"]


def test_one_format_given_as_a_string_is_that_format(monkeypatch, run, tmp_path):
    """From Python, `formats="onnx"` was read letter by letter: "unknown value 'o'"."""
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # (stops before any work)
    with pytest.raises(ModelError, match=r"pip install 'cnncli\[onnx\]'"):
        exporter.export(run, formats="onnx", output=tmp_path)


def test_a_missing_extra_is_named(monkeypatch, run, tmp_path):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(ModelError, match=r"pip install 'cnncli\[onnx\]'"):
        exporter.export(run, formats=["onnx"], output=tmp_path)
    assert list(tmp_path.iterdir()) == []  # found out before any work
    (tmp_path / "m.onnx").write_bytes(b"")
    with pytest.raises(ModelError, match=r"onnxruntime is not installed.*cnncli\[onnx\]"):
        exported.load(tmp_path / "m.onnx")


def test_every_missing_extra_is_named_at_once(monkeypatch, run, tmp_path):
    """Not one per try: the user installs both, once."""
    from cnncli.errors import ManyErrors

    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    monkeypatch.setitem(sys.modules, "ai_edge_litert.interpreter", None)
    with pytest.raises(ManyErrors) as caught:
        exporter.export(run, formats=["onnx,litert"], output=tmp_path)
    assert [e.hint.split(" installs")[0] for e in caught.value.errors] == [
        "pip install 'cnncli[onnx]'", "pip install 'cnncli[litert]'"]


@pytest.mark.parametrize("option,value,said", [
    ("--max-drop", "-3", "--max-drop is in accuracy points (0 to 100), not -3"),
    ("--max-drop", "101", "--max-drop is in accuracy points (0 to 100), not 101"),
    ("--check-images", "-1", "--check-images must be 0 (all) or more")])
def test_a_max_drop_or_check_images_out_of_range_is_refused_before_tensorflow_loads(
        option, value, said):
    code = ("import sys\nfrom cnncli.cli.app import main\n"
            f"sys.argv = ['cnncli', 'export', 'runs/nothing', '--format', 'onnx', '{option}', "
            f"'{value}']\ntry:\n    main()\nexcept SystemExit as e:\n"
            "    print(e.code, 'tensorflow' in sys.modules)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.stdout.split() == ["2", "False"], done.stderr
    assert said in done.stderr


def test_mixed_precision_models_are_exported_and_checked_in_float32(tmp_path):
    """The model file keeps its bfloat16 layers; the reference the exports are checked
    against computes in float32 like them (in bfloat16, VGG-sized models disagreed on
    0.7% of the check images and every export was refused)."""
    from cnncli.model import modelfile

    run = train_run(tmp_path / "data", QUANTIZABLE, precision="mixed_bfloat16", epochs=1)
    saved = modelfile.load_model(run / "model.keras")
    assert saved.layers[1].dtype_policy.name == "mixed_bfloat16"
    reference = classifier.load(str(run))
    assert {layer.dtype_policy.name for layer in reference.model.layers} == {"float32"}
    report = exporter.export(run, formats=["onnx,litert"], output=tmp_path / "out")
    assert all(r.kept for r in report.results)
    images = sample_images(run)
    for name in ("model.onnx", "model.tflite"):
        np.testing.assert_allclose(exported.load(tmp_path / "out" / name).probabilities(images),
                                   reference.probabilities(images), atol=1e-5)


def test_predict_and_evaluate_give_the_same_classes_from_every_format(exports, run, tmp_path):
    from PIL import Image

    from cnncli.infer import evaluate as evaluation
    from cnncli.infer import predict as prediction

    folder, _ = exports
    images = sample_images(run, n=4)
    paths = []
    for i, img in enumerate(images):
        paths.append(str(tmp_path / f"{i}.png"))
        Image.fromarray(img[..., 0]).save(paths[-1])
    keras_top = [[c for c, _ in r.top] for r in prediction.predict(
        paths, model=str(run), top=3).images]
    keras_eval = evaluation.evaluate(run, output=tmp_path / "eval")
    for fmt, name in FILES.items():
        got = prediction.predict(paths, model=str(folder / name), top=3)
        assert [[c for c, _ in r.top] for r in got.images] == keras_top, fmt
        rep = evaluation.evaluate(folder / name)
        assert rep.result.accuracy == keras_eval.result.accuracy, fmt
        assert rep.result.confusion == keras_eval.result.confusion, fmt


def test_export_help_imports_no_tensorflow():
    code = ("import sys; sys.argv = ['cnncli', 'export', '--help']\n"
            "from cnncli.cli.app import main\n"
            "try:\n    main()\nexcept SystemExit:\n    pass\n"
            "print('HEAVY', [m for m in ('tensorflow', 'keras', 'numpy') if m in sys.modules])")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env={**os.environ})
    assert "HEAVY []" in result.stdout, result.stdout + result.stderr
    assert "--quantize" in result.stdout


@pytest.mark.slow
def test_vgg16_exports_to_every_format_in_16_gb_of_address_space(tmp_path):
    """VGG16 (138 million weights): tf2onnx as Keras calls it needed more than 24 GB."""
    import resource

    from PIL import Image

    from cnncli.model import imagenet, modelfile
    from cnncli.model.meta import ModelMeta

    keras.utils.set_random_seed(0)
    model = tmp_path / "vgg16.keras"
    modelfile.save_model_atomic(keras.applications.VGG16(weights=None), model, ModelMeta(
        model="vgg16", input=(224, 224, 3), preprocessing="caffe",
        class_names=tuple(imagenet.class_names())))
    rng = np.random.default_rng(0)
    (tmp_path / "images").mkdir()
    for i in range(2):
        Image.fromarray(rng.integers(0, 256, (224, 224, 3), dtype=np.uint8)).save(
            tmp_path / "images" / f"{i}.png")

    def limit():
        resource.setrlimit(resource.RLIMIT_AS, (16 * 10**9, 16 * 10**9))

    try:
        done = subprocess.run(
            [sys.executable, "-m", "cnncli", "export", str(model), "--format", ALL,
             "--images", str(tmp_path / "images"), "--output", str(tmp_path / "out")],
            capture_output=True, text=True, timeout=1800,
            preexec_fn=limit)
        assert done.returncode == 0, done.stderr[-3000:]
        images = np.stack([np.asarray(Image.open(tmp_path / "images" / f"{i}.png"))
                           for i in range(2)])
        expected = classifier.load(str(model)).probabilities(images)
        for fmt, name in FILES.items():
            got = exported.load(tmp_path / "out" / name).probabilities(images)
            np.testing.assert_allclose(got, expected, atol=1e-6, err_msg=fmt)
    finally:
        shutil.rmtree(tmp_path)  # 3 GB of files


def test_a_run_whose_data_is_gone_says_so_and_how_to_check_without_it(tmp_path):
    run = train_run(tmp_path / "data", epochs=1)
    for npz in (tmp_path / "data").glob("*.npz"):
        npz.unlink()  # the data it was trained on, moved or deleted since
    with pytest.raises(CnnError, match="the data this model was trained on cannot be read: ") \
            as err:
        exporter.export(run, formats=["onnx"], output=tmp_path / "out")
    assert err.value.hint.endswith("give the data with --data NAME_OR_PATH, or check on "
                                   "image files with --images FILES")
    assert not (tmp_path / "out").exists()


@pytest.fixture(scope="module")
def run_without_its_data(tmp_path_factory):
    """A run whose training data was moved or deleted since, and the error reading it gives."""
    from cnncli.data import datasets

    folder = tmp_path_factory.mktemp("gone") / "data"
    trained = train_run(folder, epochs=1)
    [npz] = folder.glob("*.npz")
    npz.unlink()
    with pytest.raises(CnnError) as own:
        datasets.load(str(npz))
    return trained, own.value


def test_the_users_own_data_error_is_not_called_the_runs_data(run, tmp_path):
    from cnncli.data import datasets

    mine = str(tmp_path / "mine.npz")
    with pytest.raises(CnnError) as own:
        datasets.load(mine)
    with pytest.raises(CnnError) as err:
        exporter.export(run, formats=["onnx"], output=tmp_path / "out", data=mine)
    assert (err.value.message, err.value.hint) == (own.value.message, own.value.hint)


def test_a_run_whose_data_is_gone_keeps_the_data_errors_own_hint_first(run_without_its_data,
                                                                       tmp_path):
    run, own = run_without_its_data
    assert own.hint  # the test needs a hint to keep
    with pytest.raises(CnnError) as err:
        exporter.export(run, formats=["onnx"], output=tmp_path / "out")
    assert err.value.hint == (f"{own.hint}; or give the data with --data NAME_OR_PATH, or "
                              "check on image files with --images FILES")


def test_an_int8_export_of_a_run_whose_data_is_gone_asks_for_data_not_images(
        run_without_its_data, tmp_path):
    # int8 calibrates on training images: image files to check on would not do
    run, own = run_without_its_data
    with pytest.raises(CnnError, match="the data this model was trained on cannot be read") \
            as err:
        exporter.export(run, formats=["onnx"], quantize=["int8"], output=tmp_path / "out")
    assert err.value.hint == f"{own.hint}; or give the data with --data NAME_OR_PATH"


def _gpus(*capabilities):
    from cnncli.devices import GpuInfo

    return [GpuInfo(f"gpu{i}", None, cc, i) for i, cc in enumerate(capabilities)]


@pytest.mark.parametrize("gpus, bf16_units, said", [
    ([], True, "mixed_bfloat16"), ([], False, None),
    (_gpus((8, 0), (6, 0)), False, "mixed_bfloat16"),  # predict runs on the first alone
    (_gpus((7, 5)), True, "mixed_float16")])
def test_an_export_says_when_the_runs_own_predict_computes_in_another_precision_here(
        monkeypatch, gpus, bf16_units, said):
    from cnncli import devices

    monkeypatch.setattr(devices, "visible_gpus", lambda: gpus)
    monkeypatch.setattr(devices, "cpu_bf16_units", lambda: bf16_units)
    notes = exporter._precision_here()
    if said:
        [note] = notes
        assert f"compute in {said} on this machine" in note
        assert "--precision float32 gives the files' numbers" in note
    else:
        assert notes == []


def test_the_precision_note_is_among_an_exports_notes(run, tmp_path, monkeypatch):
    from cnncli import devices

    monkeypatch.setattr(devices, "visible_gpus", lambda: [])
    monkeypatch.setattr(devices, "cpu_bf16_units", lambda: True)
    report = exporter.export(run, formats=["onnx"], output=tmp_path, check_images=20)
    assert any("the check compares in float32" in note for note in report.notes)


@pytest.mark.parametrize("names, said", [(["model.onnx"], "the output exists already: "),
                                         (["model.onnx", "model.tflite"],
                                          "the outputs exist already: ")])
def test_existing_outputs_are_refused_in_words_that_count_them(tmp_path, names, said):
    paths = [tmp_path / name for name in names]
    for path in paths:
        path.write_bytes(b"made before")
    from collections import namedtuple

    variant, kind = namedtuple("Variant", "format"), namedtuple("Format", "suffix")
    variants = [variant(kind(p.suffix)) for p in paths]
    with pytest.raises(ConfigError) as err:
        exporter._refuse_existing({v: [p] for v, p in zip(variants, paths, strict=True)},
                                  tmp_path, ["a", "b"], force=False)
    assert err.value.message.startswith(said + str(paths[0]))
    assert err.value.hint.startswith("pass --force to replace " + ("them" if len(names) > 1
                                                                   else "it"))


def test_the_example_client_gives_the_probabilities_cnncli_predict_gives(exports, run,
                                                                        tmp_path):
    """examples/client.py (no cnncli in it) on each exported file, against `cnncli predict`
    of the run, on images of another size and kind than the model's input."""
    from PIL import Image

    folder, _ = exports
    paths = []
    for i, image in enumerate(sample_images(run, n=3)):
        paths.append(tmp_path / f"{i}.png")
        Image.fromarray(image[..., 0]).resize((40, 30)).convert("RGBA").save(paths[-1])
    said = cnncli("predict", *map(str, paths), "--model", str(run), "--precision", "float32",
                  "--format", "json", "--top", "5")
    assert said.returncode == 0, said.stderr
    expected = {r["file"]: r["top"] for r in json.loads(said.stdout)}
    root = Path(__file__).resolve().parents[1]
    for model in ("model.onnx", "model.tflite", "model.xml"):
        done = subprocess.run([sys.executable, str(root / "examples" / "client.py"),
                               str(folder / model), *map(str, paths), "--json"],
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        for image in json.loads(done.stdout):
            want = expected[image["file"]]
            assert [g["class"] for g in image["top"]] == [g["class"] for g in want], model
            np.testing.assert_allclose([g["probability"] for g in image["top"]],
                                       [g["probability"] for g in want], atol=1e-5)


def test_a_saved_model_refuses_a_request_of_another_shape_without_crashing(exports):
    """A (2, 8, 8) batch aborted the process in oneDNN's convolution (exit 134): in
    TensorFlow Serving, one bad request took the server down."""
    folder, _ = exports
    code = ("import sys, numpy as np, tensorflow as tf\n"
            f"serve = tf.saved_model.load({str(folder / 'saved_model')!r})"
            ".signatures['serving_default']\n"
            "for shape in [(2, 8, 8), (2, 8, 8, 3), (2, 9, 8, 1)]:\n"
            "    try:\n"
            "        serve(image=tf.constant(np.zeros(shape, np.uint8)))\n"
            "    except (tf.errors.InvalidArgumentError, ValueError) as e:\n"
            "        print('refused', shape)\n"
            "print(serve(image=tf.constant(np.zeros((2, 8, 8, 1), np.uint8)))"
            "['probabilities'].shape)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.splitlines() == ["refused (2, 8, 8)", "refused (2, 8, 8, 3)",
                                        "refused (2, 9, 8, 1)", "(2, 3)"]


def test_what_reading_the_data_warned_about_is_in_the_reports_notes(run, tmp_path,
                                                                   monkeypatch):
    """The data's warnings (the MNIST sample for the full set, files skipped) go into the
    report, so `--json`'s notes hold them too, as evaluate's do."""
    import warnings

    from cnncli.data import datasets
    from cnncli.data.dataset import DataWarning

    load = datasets.load

    def warning_load(*args, **kwargs):
        warnings.warn("2 files skipped: not images", DataWarning, stacklevel=2)
        return load(*args, **kwargs)

    monkeypatch.setattr(datasets, "load", warning_load)
    report = exporter.export(run, formats=["onnx"], output=tmp_path)
    assert report.results[0].kept
    assert "2 files skipped: not images" in report.notes


def test_a_model_without_softmax_exports_its_scores_saying_so(tmp_path):
    """Its last layer has no softmax: the output named `probabilities` holds raw scores.
    A client written from the README would take them as probabilities: the export says
    so in its notes, and every file's JSON (and the ONNX file itself) in output.values."""
    import onnx

    spec = QUANTIZABLE.replace("{units: $classes, activation: softmax}", "{units: $classes}")
    assert spec != QUANTIZABLE
    logits = train_run(tmp_path / "data", spec, epochs=1)
    report = exporter.export(logits, formats=["onnx"], output=tmp_path / "out")
    assert report.results[0].kept
    assert any("does not give probabilities (its last layer has no softmax)" in n
               for n in report.notes)
    info = json.loads((tmp_path / "out" / "model.onnx.json").read_text())
    assert info["output"]["values"] == "scores"
    embedded = {p.key: p.value for p in onnx.load(str(tmp_path / "out" / "model.onnx"))
                .metadata_props}
    assert json.loads(embedded["cnncli"])["output"]["values"] == "scores"
    assert sidecar.ExportInfo.from_json(info).scores


def test_a_model_with_softmax_says_its_outputs_are_probabilities(exports):
    folder, _ = exports
    info = json.loads((folder / "model.onnx.json").read_text())
    assert info["output"]["values"] == "probabilities"


def test_a_quantized_file_keeping_the_accuracy_but_not_the_answers_is_kept_with_a_warning():
    """A weak model: right and wrong answers traded, the accuracy the same. It passes the
    accuracy rule, but a client should know its answers are not the Keras model's."""
    reference = np.eye(3)[[0, 1, 2, 0, 1, 2, 0, 1, 2, 0]] * 0.8 + 0.1
    labels = np.array([0, 0, 0, 0, 0, 0, 0, 0, 0, 0])  # Keras is right on 4 of 10
    swapped = reference.copy()
    swapped[[1, 2, 3]] = reference[[3, 1, 2]]  # one right answer lost, one gained
    check = verify.compare(reference, swapped, labels, quantized=True)
    assert check.passed and check.drop == 0.0
    assert check.warning.startswith("the top class changes on 30.00% of the images, "
                                    "although accuracy does not drop (40.00% -> 40.00%)")
    assert verify.compare(reference, reference, labels, quantized=True).warning == ""
    assert not verify.compare(reference, swapped, None, quantized=True).passed  # no labels


def test_a_kept_files_check_warning_is_among_the_reports_notes(run, tmp_path, monkeypatch):
    monkeypatch.setattr(verify, "WARN_CHANGES", -1.0)  # every quantized check warns
    report = exporter.export(run, formats=["onnx"], quantize=["dynamic"], output=tmp_path)
    assert report.results[0].kept and report.results[0].check.warning
    assert [n for n in report.notes if n.startswith("model.dynamic.onnx: the top class "
                                                    "changes on")]


def test_a_class_name_labels_txt_cannot_hold_is_said():
    said = exporter._labels_on_one_line(["round", "sq\nuare"])
    assert said == ["the class name 'sq\\nuare' has a line break: labels.txt has it on one "
                    "line, as 'sq uare' (the JSON's class_names as it is)"]


def test_the_json_beside_and_inside_a_file_is_strict_for_names_that_are_not_utf8(tmp_path):
    """A class folder or a path with a Latin-1 byte: Python holds it as a lone surrogate,
    which json.dumps writes as "\\udce9" and serde or Go refuse."""
    import os

    from cnncli.export import metadata

    name = os.fsdecode(b"caf\xe9")
    info = sidecar.ExportInfo("onnx", input_shape=(8, 8, 1), class_names=(name, "tea"),
                              source=f"/data/{name}/best.keras")
    path = metadata.write_sidecars(tmp_path / "model.onnx", info)
    written = path.read_bytes().decode("utf-8")  # strict UTF-8 throughout
    assert "\\udc" not in written and json.loads(written)["class_names"][0] == "caf\\xe9"
    assert "\\udc" not in metadata.embedded(info)


def test_an_export_with_a_failed_check_and_an_error_exits_with_the_errors_code(
        tmp_path, monkeypatch):
    """A check below the threshold is exit 1, a format that could not be made exit 3: with
    both, 3 (CI must read "broken", not "quality gate missed")."""
    from typer.testing import CliRunner

    from cnncli.cli.app import app

    failed = verify.Check(images=10, agreement=0.5, max_difference=0.9, quantized=True,
                          max_drop=1.0, passed=False, problem="top-1 agreement 50%")
    report = exporter.Report("m.keras", "10 images", results=[exporter.Exported(
        "onnx", "int8", tmp_path / "m.onnx", check=failed)], errors=[ModelError("no litert")])
    monkeypatch.setattr(exporter, "export", lambda *a, **k: report)
    done = CliRunner().invoke(app, ["export", str(tmp_path), "--format", "onnx,litert"])
    assert done.exit_code == 3, done.output
    assert "FAIL: " in done.stderr and "no litert" in done.stderr
