"""Running exported files: without TensorFlow for ONNX, LiteRT and OpenVINO; hostile and
broken files refused with a clear error before any runtime loads them."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import onnx
import pytest
from exportkit import sample_images, train_run
from onnx import TensorProto, helper
from PIL import Image

from cnncli.errors import ConfigError, ModelError
from cnncli.export import exporter
from cnncli.infer import evaluate, exported, onnxscan, sidecar


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A trained run exported to ONNX, LiteRT and OpenVINO, and a picture of class 0."""
    folder = tmp_path_factory.mktemp("exported")
    run = train_run(folder / "data")
    exporter.export(run, formats=["onnx,litert,openvino"], output=folder / "export")
    pixels = np.zeros((8, 8), np.uint8)
    pixels[1:3] = 250  # a bright top row: class 0
    Image.fromarray(pixels).save(folder / "row.png")
    return {"run": run, "export": folder / "export", "image": folder / "row.png"}


#: Runs the CLI's entry point, then says which heavy modules were imported.
NO_TF_SCRIPT = textwrap.dedent("""
    import sys
    from cnncli.cli.app import main
    sys.argv = ["cnncli", *sys.argv[1:]]
    try:
        main()
    except SystemExit as exc:
        code = exc.code
    print("IMPORTED", sorted(m for m in ("tensorflow", "keras", "onnx") if m in sys.modules))
    sys.exit(code)
""")


@pytest.mark.parametrize("name", ["model.onnx", "model.tflite", "model.xml"])
def test_predicting_from_an_export_never_imports_tensorflow(files, name, tmp_path):
    env = {**os.environ, "HOME": str(tmp_path)}  # OpenVINO would write ~/intel/
    done = subprocess.run([sys.executable, "-c", NO_TF_SCRIPT, "predict", str(files["image"]),
                           "--model", str(files["export"] / name), "--top", "1"],
                          capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "IMPORTED []" in done.stdout  # not even the onnx package: onnxscan reads it
    assert done.stdout.startswith("1. 0: ")
    assert "Runtime: " in done.stderr and "Device:" not in done.stderr
    assert "XNNPACK" not in done.stderr  # LiteRT's C++ notice is hidden
    assert not (tmp_path / "intel").exists()  # OpenVINO's telemetry stayed off


def test_evaluating_an_onnx_file_never_imports_tensorflow(files):
    done = subprocess.run([sys.executable, "-c", NO_TF_SCRIPT, "evaluate",
                           str(files["export"] / "model.onnx"), "--json"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.rstrip().endswith("IMPORTED []")
    assert '"accuracy": 1.0' in done.stdout and '"count": 60' in done.stdout


def test_the_openvino_export_writes_no_telemetry(files, tmp_path):
    done = subprocess.run([sys.executable, "-m", "cnncli", "export", str(files["run"]),
                           "--format", "openvino", "--output", str(tmp_path / "out")],
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, "HOME": str(tmp_path)})
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "out" / "model.xml").is_file() and not (tmp_path / "intel").exists()


def test_an_export_without_its_json_still_runs(files, tmp_path):
    for name in ("model.onnx", "model.tflite"):
        (tmp_path / name).write_bytes((files["export"] / name).read_bytes())
    from_metadata = exported.load(tmp_path / "model.onnx")  # class names from metadata_props
    with pytest.warns(UserWarning, match="model.tflite.json\\) is not there: classes "
                      "numbered"):  # from the file's own shapes, saying so
        bare = exported.load(tmp_path / "model.tflite")
    assert from_metadata.info.class_names == ("0", "1", "2")
    assert bare.info is None and bare.class_names == ["0", "1", "2"]
    assert bare.input_shape == (8, 8, 1)
    images = sample_images(files["run"])
    np.testing.assert_allclose(bare.probabilities(images),
                               from_metadata.probabilities(images), atol=1e-5)


def test_a_file_whose_path_is_not_utf8_is_said_so_where_its_runtime_cannot_open_it(
        files, tmp_path):
    """ONNX Runtime, LiteRT and TensorFlow take UTF-8 paths only: "incompatible constructor
    arguments... export it again" sent the user to export into the same folder."""
    import shutil

    latin = Path(os.fsdecode(bytes(tmp_path / "caf") + b"\xe9"))
    shutil.copytree(files["export"], latin)
    for name in ("model.onnx", "model.tflite"):
        with pytest.raises(ModelError, match="cannot open a file whose path holds bytes that "
                                             "are not UTF-8") as e:
            exported.load(latin / name)
        assert e.value.hint.startswith("rename it")
    assert exported.load(latin / "model.xml").class_names == ["0", "1", "2"]  # OpenVINO can
    with pytest.raises(ConfigError, match="so the export could not be checked"):
        exporter.export(files["run"], formats=["onnx"], output=latin / "again")
    assert not (latin / "again").exists()


def test_a_damaged_json_beside_the_model_is_a_model_error(files, tmp_path):
    (tmp_path / "model.onnx").write_bytes((files["export"] / "model.onnx").read_bytes())
    (tmp_path / "model.onnx.json").write_text('{"format": "onnx", "input": {"shape": [1]}}')
    with pytest.raises(ModelError, match="input.shape"):
        exported.load(tmp_path / "model.onnx")


def test_a_json_nested_too_deeply_is_a_model_error_not_a_bug(files, tmp_path):
    (tmp_path / "model.onnx").write_bytes((files["export"] / "model.onnx").read_bytes())
    (tmp_path / "model.onnx.json").write_text('{"check": ' + "[" * 100_000)
    with pytest.raises(ModelError, match="the export's JSON cannot be read: it is nested too "
                                         "deeply to be read"):
        exported.load(tmp_path / "model.onnx")


def test_the_scan_sees_what_the_onnx_package_sees(files):
    path = files["export"] / "model.onnx"
    model = onnx.load(str(path))
    found = onnxscan.check(path)
    assert found.domains == {n.domain for n in model.graph.node}
    assert found.nodes == len(model.graph.node) and found.external == []


# --- hostile and broken .onnx files: refused before ONNX Runtime opens them -----------


@pytest.fixture
def sessions(monkeypatch):
    """Every ONNX Runtime session opened during the test (there should be none)."""
    import onnxruntime

    opened = []
    real = onnxruntime.InferenceSession

    def spy(*args, **kwargs):
        opened.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(onnxruntime, "InferenceSession", spy)
    return opened


def _custom_op_model(path, *, in_subgraph=False):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])
    evil = helper.make_node("RunMyCode", ["x"], ["y"], domain="com.example.evil")
    if in_subgraph:
        branch = helper.make_graph([helper.make_node("RunMyCode", ["x"], ["y"],
                                                     domain="com.example.evil")],
                                   "then", [], [y])
        plain = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "else",
                                  [], [y])
        cond = helper.make_tensor_value_info("c", TensorProto.BOOL, [])
        node = helper.make_node("If", ["c"], ["y"], then_branch=branch, else_branch=plain)
        graph = helper.make_graph([node], "g", [cond, x], [y])
    else:
        graph = helper.make_graph([evil], "g", [x], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.save(model, str(path))
    return path


def _with_external_data(files, folder, location):
    """The exported model with its weights in an external file, named by `location`."""
    folder.mkdir(exist_ok=True)
    model = onnx.load(str(files["export"] / "model.onnx"))
    path = folder / "ext.onnx"
    onnx.save_model(model, str(path), save_as_external_data=True, location="ext.onnx.data",
                    size_threshold=1024)
    if location != "ext.onnx.data":
        edited = onnx.load(str(path), load_external_data=False)
        for tensor in edited.graph.initializer:
            for entry in tensor.external_data:
                if entry.key == "location":
                    entry.value = location
        path.write_bytes(edited.SerializeToString())
    return path


HOSTILE_ONNX = {
    "text": (lambda f, d: _write(d / "m.onnx", b"hello, this is not a model\n"),
             "not an ONNX model"),
    "empty": (lambda f, d: _write(d / "m.onnx", b""), "not an ONNX model"),
    "truncated": (lambda f, d: _write(d / "m.onnx", (f["export"] / "model.onnx")
                                      .read_bytes()[:2000]), "not an ONNX model"),
    "a tflite file": (lambda f, d: _write(d / "m.onnx", (f["export"] / "model.tflite")
                                          .read_bytes()), "not an ONNX model"),
    "protobuf without a graph": (lambda f, d: _write(d / "m.onnx", b"\x08\x08"),
                                 "no graph"),
    "a graph field that is a number": (lambda f, d: _write(d / "m.onnx", b"\x08\x08\x38\x01"),
                                       "field 7 has the wrong type"),
    "a group (no ONNX field is one)": (lambda f, d: _write(d / "m.onnx", b"\x08\x08\x3b"),
                                       "wire type 3"),
    "a graph without nodes": (lambda f, d: _write(d / "m.onnx", helper.make_model(
        helper.make_graph([], "g", [], [])).SerializeToString()), "no nodes"),
    "custom op": (lambda f, d: _custom_op_model(d / "m.onnx"), "custom domain"),
    "custom op in a subgraph": (lambda f, d: _custom_op_model(d / "m.onnx", in_subgraph=True),
                                "com.example.evil"),
    "external data in ..": (lambda f, d: _with_external_data(f, d / "in", "../secret.bin"),
                            "points outside its folder"),
    "absolute external data": (lambda f, d: _with_external_data(f, d / "in", "/etc/passwd"),
                               "points outside its folder"),
    "missing external data": (lambda f, d: _with_external_data(f, d / "in", "gone.bin"),
                              "missing"),
}


def _write(path, data: bytes):
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("case", list(HOSTILE_ONNX))
def test_hostile_onnx_files_are_refused_before_loading(files, tmp_path, sessions, case):
    build, message = HOSTILE_ONNX[case]
    (tmp_path / "secret.bin").write_bytes(b"\0" * 100_000)
    path = build(files, tmp_path)
    with pytest.raises(ModelError, match=message) as refused:
        exported.load(path)
    assert str(path) in str(refused.value) and sessions == []


def test_external_data_through_a_symlink_out_of_the_folder_is_refused(files, tmp_path,
                                                                      sessions):
    path = _with_external_data(files, tmp_path / "in", "ext.onnx.data")
    (tmp_path / "outside.bin").write_bytes((tmp_path / "in" / "ext.onnx.data").read_bytes())
    (tmp_path / "in" / "ext.onnx.data").unlink()
    (tmp_path / "in" / "ext.onnx.data").symlink_to(tmp_path / "outside.bin")
    with pytest.raises(ModelError, match="points outside its folder"):
        exported.load(path)
    assert sessions == []


def test_external_data_inside_the_folder_is_fine(files, tmp_path):
    path = _with_external_data(files, tmp_path / "in", "ext.onnx.data")
    assert onnxscan.check(path).external == ["ext.onnx.data"]
    images = sample_images(files["run"])
    np.testing.assert_allclose(exported.load(path).probabilities(images),
                               exported.load(files["export"] / "model.onnx")
                               .probabilities(images), atol=1e-6)


# --- broken .tflite and OpenVINO files --------------------------------------------------


@pytest.mark.parametrize("content, message", [
    (b"hello, this is not a model\n", "not a LiteRT"),
    (b"", "the file is empty"),
    ("onnx", "not a LiteRT"),
    ("truncated", "LiteRT cannot load the model"),
])
def test_a_tflite_that_is_not_one_is_refused(files, tmp_path, content, message):
    real = (files["export"] / "model.tflite").read_bytes()
    data = {"onnx": (files["export"] / "model.onnx").read_bytes(),
            "truncated": real[:len(real) // 2]}.get(content, content)
    (tmp_path / "m.tflite").write_bytes(data)
    with pytest.raises(ModelError, match=message):
        exported.load(tmp_path / "m.tflite")


def test_openvino_needs_its_weights_file(files, tmp_path):
    (tmp_path / "model.xml").write_bytes((files["export"] / "model.xml").read_bytes())
    with pytest.raises(ModelError, match=r"model.bin is missing"):
        exported.load(tmp_path / "model.xml")
    (tmp_path / "model.bin").write_bytes(b"")
    (tmp_path / "model.xml").write_text("<net>not openvino</net>")
    with pytest.raises(ModelError, match="OpenVINO cannot load the model"):
        exported.load(tmp_path / "model.xml")


def test_a_truncated_openvino_weights_file_is_said_without_openvino_source_places(
        files, tmp_path):
    (tmp_path / "model.xml").write_bytes((files["export"] / "model.xml").read_bytes())
    (tmp_path / "model.bin").write_bytes((files["export"] / "model.bin").read_bytes()[:100])
    with pytest.raises(ModelError, match="OpenVINO cannot load the model: Incorrect weights"
                       ) as err:
        exported.load(tmp_path / "model.xml")
    assert "src/" not in err.value.message and "Check '" not in err.value.message


def test_the_cli_refuses_a_hostile_file_with_exit_3_and_no_traceback(files, tmp_path):
    path = _custom_op_model(tmp_path / "evil.onnx")
    done = subprocess.run([sys.executable, "-m", "cnncli", "predict", str(files["image"]),
                           "--model", str(path)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 3
    assert "custom domain(s) 'com.example.evil'" in done.stderr
    assert "Traceback" not in done.stderr and done.stdout == ""


def test_images_of_another_size_or_channels_are_fitted_to_the_export():
    from cnncli.data import images as imaging

    grey = np.random.default_rng(0).integers(0, 256, (2, 16, 16, 1), dtype=np.uint8)
    fitted = exported.fit_images(grey, (8, 8, 3))
    small = np.stack([imaging.resize(np.repeat(g, 3, axis=-1), (8, 8)) for g in grey])
    np.testing.assert_array_equal(fitted, small)
    rgb = np.zeros((1, 8, 8, 3), np.uint8)
    rgb[..., 0] = 200  # pure red: 0.299 * 200
    assert exported.fit_images(rgb, (8, 8, 1))[0, 0, 0, 0] == 60


def test_an_exported_model_fits_images_of_another_size_in_its_own_resize_mode():
    from cnncli.data import images as imaging
    from cnncli.model.meta import ModelMeta

    wide = np.random.default_rng(1).integers(0, 256, (1, 8, 16, 1), dtype=np.uint8)
    clf = exported.ExportedClassifier("m.onnx", (8, 8, 1), [str(i) for i in range(64)],
                                      meta=ModelMeta(resize="center_crop"),
                                      run_batch=lambda x: x.reshape(len(x), -1))
    cropped = imaging.resize(wide[0], (8, 8), "center_crop").reshape(1, -1)
    assert not np.array_equal(cropped, imaging.resize(wide[0], (8, 8)).reshape(1, -1))
    np.testing.assert_array_equal(clf.probabilities(wide), cropped)


def test_sidecar_names_follow_the_model_file():
    assert sidecar.sidecar_path("out/model.int8.onnx").name == "model.int8.onnx.json"
    assert exported.kind("x.TFLITE") == "litert" and exported.kind("notes.txt") is None


def test_a_large_batch_runs_in_parts_within_the_memory_budget(monkeypatch):
    from cnncli.devices import memory

    seen = []

    def run(x):
        seen.append(len(x))
        return np.stack([x.reshape(len(x), -1).mean(1), -x.reshape(len(x), -1).mean(1)], 1)

    from cnncli.model.meta import ModelMeta

    clf = exported.ExportedClassifier("m.onnx", (4, 4, 1), ["a", "b"], ModelMeta(), None,
                                      kind="onnx", run_batch=run)
    # 32 x 16 input values per image, input and output in float32: 5 images a part
    monkeypatch.setattr(memory, "INFERENCE_LAYER_BUDGET", 5 * 2 * 4 * 32 * 16)
    images = np.arange(12 * 16, dtype=np.uint8).reshape(12, 4, 4, 1)
    got = clf.probabilities(images)
    assert seen == [5, 5, 2] and clf.max_batch == 5
    np.testing.assert_allclose(got[:, 0], images.reshape(12, -1).mean(1))


def _copy_with_json(files, folder, name: str, edit):
    """`name` copied from the export into `folder` with its JSON changed by `edit`."""
    import json

    (folder / name).write_bytes((files["export"] / name).read_bytes())
    if name.endswith(".xml"):
        (folder / "model.bin").write_bytes((files["export"] / "model.bin").read_bytes())
    data = json.loads((files["export"] / f"{name}.json").read_text())
    edit(data)
    (folder / f"{name}.json").write_text(json.dumps(data))
    return folder / name


@pytest.mark.parametrize("name", ["model.onnx", "model.tflite", "model.xml"])
@pytest.mark.parametrize("edit, message", [
    (lambda d: d.update(class_names=["a", "b"]), "names 2 classes but the model gives 3"),
    (lambda d: d.update(class_names=[]), "names 0 classes but the model gives 3"),
    (lambda d: d["input"].update(shape=[None, 32, 32, 1]), "input is 32x32x1 but the model "
                                                           "takes 8x8x1"),
    (lambda d: d["input"].update(shape=[None, 100000, 100000, 1]), r"bad `input.shape` "
     r"\(expected \[null, height, width, 1 or 3 channels\], sides up to 16,384\)"),
])
def test_a_json_that_does_not_describe_its_model_is_refused(files, tmp_path, name, edit,
                                                            message):
    """Hand-edited or copied from another export: every answer would be wrong, or the
    runtime asked for images it cannot take (it crashed, or ran out of memory)."""
    path = _copy_with_json(files, tmp_path, name, edit)
    with pytest.raises(ModelError, match=message) as caught:
        exported.load(path)
    assert caught.value.file == str(path) + ".json"  # the JSON is named, not the model


def test_a_json_with_an_unknown_resize_mode_is_refused(files, tmp_path):
    path = _copy_with_json(files, tmp_path, "model.onnx", lambda d: d.update(resize="bogus"))
    with pytest.raises(ModelError, match=r"`resize` \('bogus'; expected stretch"):
        exported.load(path)


def _identity_onnx(path, dims: list) -> None:
    """An ONNX file whose uint8 input of `dims` is its output (not one cnncli wrote)."""
    x = helper.make_tensor_value_info("image", TensorProto.UINT8, dims)
    y = helper.make_tensor_value_info("probabilities", TensorProto.UINT8, dims)
    graph = helper.make_graph([helper.make_node("Identity", ["image"], ["probabilities"])],
                              "g", [x], [y])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)


def test_an_input_that_is_not_nhwc_images_is_refused(tmp_path):
    """An NCHW uint8 model (not one cnncli wrote): refused when loading, not mid-predict."""
    _identity_onnx(tmp_path / "nchw.onnx", ["batch", 1, 28, 28])
    with pytest.raises(ModelError, match=r"\[batch, 1, 28, 28\]: not images with 1 or 3 "
                                         "channels last"):
        exported.load(tmp_path / "nchw.onnx")


def test_an_input_larger_than_cnncli_reads_images_at_is_refused(tmp_path):
    """Every image would have been resized to it (7.5 GB an image, then a MemoryError)."""
    _identity_onnx(tmp_path / "tall.onnx", ["batch", 50_000, 8, 3])
    with pytest.raises(ModelError, match=r"\[batch, 50000, 8, 3\]: larger than the 16,384 "
                                         "pixels a side"):
        exported.load(tmp_path / "tall.onnx")


@pytest.mark.parametrize("content", ["onnx", "tflite", "garbage"])
def test_an_xml_that_is_not_openvino_ir_is_refused_quietly(files, tmp_path, content):
    """OpenVINO reads an ONNX file renamed .xml (past cnncli's ONNX scan), and logs C++
    lines about garbage: neither happens."""
    data = {"onnx": (files["export"] / "model.onnx").read_bytes(),
            "tflite": (files["export"] / "model.tflite").read_bytes(),
            "garbage": b"\x00\x01not xml at all"}[content]
    (tmp_path / "m.xml").write_bytes(data)
    (tmp_path / "m.bin").write_bytes(b"")
    done = subprocess.run([sys.executable, "-m", "cnncli", "predict", str(files["image"]),
                           "--model", str(tmp_path / "m.xml")], capture_output=True, text=True,
                          timeout=120, env={**os.environ, "HOME": str(tmp_path)})
    assert done.returncode == 3 and "this is not an OpenVINO model (.xml): it is not XML" in \
        done.stderr
    assert done.stderr.count("\n") <= 3, done.stderr  # the error paragraph, nothing else


@pytest.mark.parametrize("option, value, code, message", [
    ("--precision", "bogus", 2, "--precision 'bogus' is not a precision cnncli knows"),
    ("--device", "tpu", 2, "--device 'tpu' is not one of auto, cpu, gpu or gpu:N"),
    ("--device", "gpu:7", 0, "--device gpu:7 does not apply to onnx files: they run on the "
                             "CPU"),  # only what was asked for is named
    ("--precision", "mixed_bfloat16", 0, "--precision mixed_bfloat16 does not apply to onnx "
                                         "files"),
])
def test_device_and_precision_are_checked_for_exported_files(files, option, value, code,
                                                             message):
    for command in (["predict", str(files["image"])], ["evaluate"]):
        at = 2 if command[0] == "predict" else 1
        args = [*command[:at], *(["--model"] if command[0] == "predict" else []),
                str(files["export"] / "model.onnx"), *command[at:], option, value]
        done = subprocess.run([sys.executable, "-m", "cnncli", *args], capture_output=True,
                              text=True, timeout=120)
        assert done.returncode == code, done.stderr
        assert message in " ".join(done.stderr.split())


def test_a_saved_model_runs_in_the_precision_it_was_exported_in_and_says_so(files, tmp_path):
    exporter.export(files["run"], formats=["saved_model"], output=tmp_path / "export")
    done = subprocess.run([sys.executable, "-m", "cnncli", "predict", str(files["image"]),
                           "--model", str(tmp_path / "export" / "saved_model"),
                           "--precision", "mixed_bfloat16"], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    said = " ".join(done.stderr.split())
    assert "--precision mixed_bfloat16 does not apply to saved_model files: they run in the " \
        "precision they were exported in" in said
    assert "bfloat16" not in said.split("Device: ")[1], said  # float32 is not written


def _hostile_saved_model(folder, written):
    """A SavedModel that writes the file `written` each time it classifies (a
    `tf.io.write_file` in its serving function, as a downloaded one could have)."""
    import tensorflow as tf

    class Hostile(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, 8, 8, 1], tf.uint8, "image")])
        def serve(self, image):
            tf.io.write_file(str(written), "pwned")
            return {"probabilities": tf.ones([tf.shape(image)[0], 3]) / 3}

    module = Hostile()
    tf.saved_model.save(module, str(folder), signatures={"serving_default": module.serve})
    return folder


def test_a_saved_model_that_writes_files_is_refused_before_it_runs(files, tmp_path):
    written = tmp_path / "pwned.txt"
    model = _hostile_saved_model(tmp_path / "sm", written)
    with pytest.raises(ModelError, match="the SavedModel runs WriteFile: operations that "
                                         "reach files, the network or other processes"):
        exported.load(model)
    assert not written.exists()


def test_a_saved_model_reading_a_file_by_an_operation_named_otherwise_is_refused(
        tmp_path):
    """GenerateVocabRemapping reads the two files it is given; its name says nothing of
    files (security review: a prediction followed the lines of a file of the user's)."""
    import tensorflow as tf

    secret = tmp_path / "secret.txt"
    secret.write_text("a\nb\n")

    class Reading(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, 8, 8, 1], tf.uint8, "image")])
        def serve(self, image):
            remapping, found = tf.raw_ops.GenerateVocabRemapping(
                new_vocab_file=str(secret), old_vocab_file=str(secret), new_vocab_offset=0,
                num_new_vocab=2)
            score = tf.cast(found, tf.float32)
            return {"probabilities": tf.ones([tf.shape(image)[0], 3]) * score / 3}

    module = Reading()
    tf.saved_model.save(module, str(tmp_path / "sm"),
                        signatures={"serving_default": module.serve})
    with pytest.raises(ModelError, match="the SavedModel runs GenerateVocabRemapping"):
        exported.load(tmp_path / "sm")


def test_a_saved_model_that_writes_files_as_it_is_loaded_is_refused(tmp_path):
    """A resource's initialiser runs when TensorFlow loads the model, before any
    prediction: outside the serving function, yet scanned."""
    import tensorflow as tf

    written = tmp_path / "pwned.txt"

    class Resource(tf.saved_model.experimental.TrackableResource):
        def _create_resource(self):
            return tf.raw_ops.VarHandleOp(dtype=tf.float32, shape=[])

        def _initialize(self):
            tf.io.write_file(str(written), "pwned")

    class Classifier(tf.Module):
        def __init__(self):
            self.resource = Resource()

        @tf.function(input_signature=[tf.TensorSpec([None, 8, 8, 1], tf.uint8, "image")])
        def serve(self, image):
            return {"probabilities": tf.ones([tf.shape(image)[0], 3]) / 3}

    module = Classifier()
    tf.saved_model.save(module, str(tmp_path / "sm"),
                        signatures={"serving_default": module.serve})
    written.unlink(missing_ok=True)  # (saving ran it too)
    with pytest.raises(ModelError, match="the SavedModel runs WriteFile"):
        exported.load(tmp_path / "sm")
    assert not written.exists()


def test_a_keras_export_passes_the_scan_and_one_without_a_serving_signature_is_said_so(
        tmp_path):
    import keras
    import tensorflow as tf

    from cnncli.infer import savedmodelscan

    model = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Conv2D(2, 3),
                              keras.layers.GlobalAveragePooling2D(),
                              keras.layers.Dense(3, activation="softmax")])
    model.export(str(tmp_path / "keras"))
    savedmodelscan.check(tmp_path / "keras")
    tf.saved_model.save(tf.Module(), str(tmp_path / "bare"))
    with pytest.raises(ModelError, match="the SavedModel has no serving_default signature "
                                         r"\(it has: none\)"):
        savedmodelscan.check(tmp_path / "bare")


def test_cnncli_exported_saved_models_reach_no_outside_operation(files, tmp_path):
    from cnncli.infer import savedmodelscan

    exporter.export(files["run"], formats=["saved_model"], output=tmp_path / "export")
    ops = savedmodelscan.reached_ops(tmp_path / "export" / "saved_model")
    assert {"Conv2D", "Softmax", "EnsureShape"} <= ops  # the network is walked
    savedmodelscan.check(tmp_path / "export" / "saved_model")


def test_explain_with_an_exported_file_is_refused_before_predicting(files, tmp_path):
    done = subprocess.run([sys.executable, "-m", "cnncli", "predict", str(files["image"]),
                           "--model", str(files["export"] / "model.onnx"), "--explain",
                           str(tmp_path / "cams")], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 2 and done.stdout == ""  # options that do not go together
    assert "--explain (Grad-CAM) needs the Keras model" in done.stderr  # as explain says it
    assert not (tmp_path / "cams").exists()


def test_evaluate_names_a_quantized_exports_precision_not_float32(files, tmp_path):
    """An int8 file computes in int8 whatever --precision says: evaluate's line and its
    JSON say so, as its JSON records it (it said "computing in float32")."""
    model = _copy_with_json(files, tmp_path, "model.onnx",
                            lambda d: d.update(quantization="int8"))
    done = subprocess.run([sys.executable, "-m", "cnncli", "evaluate", str(model)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert f"Model: {model} (computing in int8, quantized when exported)" in done.stdout
    report = evaluate.evaluate(model, model=exported.load(model), output=tmp_path / "eval")
    assert report.precision == "int8"
    assert '"precision": "int8"' in (tmp_path / "eval" / "evaluation.json").read_text()
