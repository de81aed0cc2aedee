"""Classifiers of exported files, each run in its own runtime.

`cnncli export` writes files that take uint8 images (NHWC, named ``image``) and give
``probabilities``, with the run's preprocessing inside. `load` opens one by its kind:

| kind | file | runtime | extra |
| --- | --- | --- | --- |
| ``onnx`` | ``model.onnx`` | ONNX Runtime | ``cnncli[onnx]`` |
| ``litert`` | ``model.tflite`` | LiteRT's interpreter (``ai_edge_litert``) | ``cnncli[litert]`` |
| ``openvino`` | ``model.xml`` (+ ``.bin``) | OpenVINO Runtime | ``cnncli[openvino]`` |
| ``saved_model`` | a folder with ``saved_model.pb`` | ``tf.saved_model.load`` | (TensorFlow) |

Class names and the input size come from the sidecar JSON (`cnncli.infer.sidecar`), else
from what the file itself says. ONNX, LiteRT and OpenVINO never import TensorFlow: that
start-up (seconds) is what those formats save. An ``.onnx`` file is checked before ONNX
Runtime opens it (`cnncli.infer.onnxscan`); a ``.tflite`` file must carry the FlatBuffer
identifier of one.

>>> clf = load("runs/mnist/latest/export/model.onnx")      # doctest: +SKIP
>>> clf.probabilities(np.zeros((2, 28, 28, 1), np.uint8)).shape   # doctest: +SKIP
(2, 10)
"""

from __future__ import annotations

import importlib
import os
import re
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cnncli.config import MAX_IMAGE_SIDE
from cnncli.errors import ConfigError, ModelError
from cnncli.infer import onnxscan, savedmodelscan, sidecar
from cnncli.infer.base import Classifier, in_parts
from cnncli.parallel import available_cpus
from cnncli.runtime import quiet_unless_debugging
from cnncli.text import as_text, dims_text

#: The exported files by their suffix (a SavedModel is a folder): `cnncli.export.formats`
#: suffixes, as a test holds them.
SUFFIXES = {".onnx": "onnx", ".tflite": "litert", ".xml": "openvino"}
_TFLITE_IDENTIFIER = b"TFL3"  # bytes 4..8 of every LiteRT FlatBuffer


def kind(path: str | os.PathLike) -> str | None:
    """``onnx``, ``litert``, ``openvino``, ``saved_model``, or None (not an exported file).

    >>> kind("m.onnx"), kind("m.tflite"), kind("m.xml"), kind("runs/mnist/1")
    ('onnx', 'litert', 'openvino', None)
    """
    p = Path(os.fspath(path))
    if p.suffix.lower() in SUFFIXES:
        return SUFFIXES[p.suffix.lower()]
    if p.is_dir() and (p / "saved_model.pb").is_file():
        return "saved_model"
    return None


def not_looked_into(what: str, name: str, option: str = "") -> ConfigError:
    """The error of `what` (Grad-CAM, a picture of filters...), which looks into a Keras
    model's layers, given the exported file `name` (`option`: the option that named it):
    a usage error (exit 2), the file is fine."""
    where = f"point {option} at" if option else "point at"
    return ConfigError(f"{what} needs the Keras model with its layers, and this is an "
                      "exported file", file=name,
                      hint=f"{where} the run folder or its .keras file instead")


def require(module: str, extra: str):
    """Import `module`, or say which extra of cnncli installs it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ModelError(
            f"{module.split('.')[0]} is not installed ({exc})",
            hint=f"pip install 'cnncli[{extra}]' installs what the {extra} format needs"
        ) from None


def import_openvino():
    """`openvino`, with its telemetry off: importing it would otherwise send usage
    events and write ``~/intel/``. Its tools fall back to their no-op stub when
    ``openvino_telemetry`` cannot be imported, which is what this arranges."""
    if "openvino" not in sys.modules:
        sys.modules.setdefault("openvino_telemetry", None)
    return require("openvino", "openvino")


def fit_images(images: np.ndarray, shape, resize: str = "stretch") -> np.ndarray:
    """uint8 images brought to `shape` (H, W, C): grey <-> RGB, then resized in the
    model's `resize` mode when the size differs (the export itself takes images at its
    size).

    >>> fit_images(np.zeros((2, 4, 4, 1), np.uint8), (4, 4, 3)).shape
    (2, 4, 4, 3)
    """
    from cnncli.data import images as imaging

    x = np.asarray(images, dtype=np.uint8)
    x = imaging.convert_channels(x[..., None] if x.ndim == 3 else x, shape[-1])
    if tuple(x.shape[1:3]) != tuple(shape[:2]):
        x = np.stack([imaging.resize(img, shape[:2], resize) for img in x])
    return np.ascontiguousarray(x)


@dataclass
class ExportedClassifier(Classifier):
    """A file `cnncli export` wrote (or one like it), run in its own runtime."""

    kind: str = ""
    runtime: str = ""  # e.g. "ONNX Runtime 1.32.0 (CPU)", the line commands print
    info: sidecar.ExportInfo | None = None
    run_batch: object = None  # uint8 (N, H, W, C) -> (N, classes)

    @property
    def precision(self) -> str:
        """What the file computes in, as it was exported (`--precision` does not change
        it): ``float32``, or its quantization (``float16``, ``dynamic``, ``int8``, as
        `cnncli export --quantize` names them); ``as exported`` for a file whose sidecar
        does not say."""
        if self.info is None:
            return "as exported"
        return {"none": "float32"}.get(self.info.quantization, self.info.quantization)

    def probabilities(self, images: np.ndarray) -> np.ndarray:
        x = fit_images(images, self.input_shape, self.meta.resize)
        if not len(x):
            return np.zeros((0, len(self.class_names)), np.float32)
        return in_parts(lambda part: np.asarray(self.run_batch(part), dtype=np.float32), x,
                        self.max_batch)

    @property
    def max_batch(self) -> int:
        """Images run at once: a larger batch runs in parts, as a Keras model's does
        (`cnncli.devices.memory.inference_chunk`), its largest layer output taken to be
        `ACTIVATION_RATIO` times the input (the file does not say)."""
        from cnncli.devices.memory import inference_chunk

        return inference_chunk(ACTIVATION_RATIO * int(np.prod(self.input_shape)))


#: An exported file's largest layer output per image, as a multiple of its input: VGG16's
#: first convolutions give 21x, the lecture's MNIST ConvNet 32x. VGG16 runs 27 images
#: at a time.
ACTIVATION_RATIO = 32


def load(path: str | os.PathLike) -> ExportedClassifier:
    """The exported file at `path` as a classifier; `ModelError` if it cannot be used."""
    path = Path(os.fspath(path))
    which = kind(path)
    if which is None:
        raise ModelError("this is not an exported model (.onnx, .tflite, .xml or a "
                         "SavedModel folder)", file=str(path))
    if not path.exists():
        raise ModelError("no such file", file=str(path),
                         hint="export one with: cnncli export RUN --format " + which)
    if which != "saved_model" and not path.is_file():
        raise ModelError("this is a folder, not a model file", file=str(path))
    if runtime := needs_utf8_path(path, which):
        raise ModelError(f"{runtime} cannot open a file whose path holds bytes that are not "
                         "UTF-8", file=str(path), hint="rename it, or the folder above it "
                         "that holds them, in UTF-8 (or copy the file to such a path)")
    beside = sidecar.read(path)
    run, runtime, shape, classes, embedded = _OPENERS[which](path)
    info = beside or embedded
    if info is not None:
        try:
            _describes(info, shape, classes, sidecar.sidecar_path(path) if beside else path)
        except ModelError:
            del run  # the runtime's model goes now, not whenever the traceback is collected
            raise
        shape, names = tuple(info.input_shape), list(info.class_names)
    else:
        names = _without_metadata(path, classes)
    if not shape or not names:
        raise ModelError("the model's input size or number of classes is unknown",
                         file=str(path), hint="keep the JSON cnncli export wrote beside it")
    meta = info.meta() if info else sidecar.ExportInfo(which, input_shape=shape,
                                                         class_names=tuple(names)).meta()
    # named by its absolute path, as a .keras model is (`artefact.resolve`)
    return ExportedClassifier(str(path.absolute()), tuple(shape), names, meta, None, kind=which,
                              runtime=runtime, info=info, run_batch=run)


def _without_metadata(path: Path, classes: int | None) -> list[str]:
    """The class names of a file that says nothing about itself and has no JSON beside it
    (a ``.tflite`` copied alone): ``labels.txt`` beside it if it names as many classes,
    else numbers. A warning says what cannot be known: the run's resize mode (stretch is
    used) and, without the labels, the names."""
    if not classes:
        return []
    labels = path.parent / sidecar.LABELS_FILE
    text = sidecar.labels_on_disk(labels)
    lines = None if text is None else text.splitlines()
    names = lines if lines is not None and len(lines) == classes else None
    said = (f"class names from {labels.name}" if names else "classes numbered"
            + (f" ({labels.name} beside it names {len(lines)}, the model gives {classes})"
               if lines is not None else ""))
    warnings.warn(
        f"{path}: the JSON cnncli export wrote beside it ({sidecar.sidecar_path(path).name}) "
        f"is not there: {said}, and images are resized by stretching, right only if the run "
        "was trained so (data.resize); keep the JSON with the file", stacklevel=3)
    return names or [str(i) for i in range(classes)]


def _describes(info: sidecar.ExportInfo, shape, classes: int | None, where: Path) -> None:
    """A `ModelError` naming `where` (the JSON beside the file, or the file whose own
    metadata it is) unless `info` agrees with what the runtime says the file takes and
    gives: a JSON edited by hand or copied from another export would make every answer
    wrong, or ask the runtime for images it cannot take."""
    problems = []
    if shape and tuple(info.input_shape) != tuple(shape):
        problems.append(f"its input is {dims_text(info.input_shape)} but the model takes "
                        f"{dims_text(shape)}")
    if classes is not None and classes > 0 and len(info.class_names) != classes:
        problems.append(f"it names {len(info.class_names)} classes but the model gives "
                        f"{classes} probabilities")
    if problems:
        raise ModelError("the metadata does not describe this model: " + "; ".join(problems),
                         file=str(where),
                         hint="use the JSON cnncli export wrote with this file, or export "
                              "the model again")


#: Where in its C++ sources a runtime's message was raised (OpenVINO's "Exception from
#: src/inference/src/cpp/core.cpp:84: Check '...' failed at src/...:900: "): noise to a user.
_SOURCE_PLACES = re.compile(r"(Exception from|Check '.*?' failed at) [\w./\\-]+:\d+:\s*")


#: The runtimes that open a file by a UTF-8 path only (OpenVINO takes any), by format.
_UTF8_PATHS = {"onnx": "ONNX Runtime", "litert": "LiteRT", "saved_model": "TensorFlow"}


def needs_utf8_path(path: str | os.PathLike, which: str) -> str | None:
    """The runtime that cannot open the exported file of format `which` at `path`, when
    the path holds bytes that are not UTF-8 (a Latin-1 folder name), else None.

    >>> needs_utf8_path(os.fsdecode(b"caf\\xe9/model.onnx"), "onnx")
    'ONNX Runtime'
    >>> needs_utf8_path("café/model.onnx", "onnx"), needs_utf8_path("a\\udce9.xml", "openvino")
    (None, None)
    """
    return _UTF8_PATHS.get(which) if as_text(os.fspath(path)) != os.fspath(path) \
        else None


def _failed(path: Path, runtime: str, exc: BaseException) -> ModelError:
    """The error for a file `runtime` refused, in the runtime's words without the places
    in its sources (OpenVINO's truncated model.bin: "Incorrect weights in bin file!")."""
    text = " ".join(str(exc).split())
    text = _SOURCE_PLACES.sub("", text).rstrip(" .!") or text
    return ModelError(f"{runtime} cannot load the model: {text[:400]}", file=str(path),
                      hint="export it again with cnncli export, or copy the whole file")


def _image_shape(dims, path: Path) -> tuple[int, ...]:
    """(H, W, C) from an NHWC input shape whose batch may be dynamic; () if unknown."""
    dims = list(dims)
    if len(dims) != 4:
        raise ModelError(f"the model's input has {len(dims)} dimensions, not 4 (images)",
                         file=str(path), hint="cnncli runs image classifiers it exported")
    rest = dims[1:]
    if isinstance(rest[-1], int | np.integer) and rest[-1] not in (1, 3):
        raise ModelError(f"the model's input is [batch, {', '.join(map(str, rest))}]: not "
                         "images with 1 or 3 channels last (NHWC)", file=str(path),
                         hint="cnncli runs the files cnncli export writes (uint8 NHWC "
                              "images in)")
    if not all(isinstance(d, int | np.integer) and d > 0 for d in rest):
        return ()
    if max(rest[:2]) > MAX_IMAGE_SIDE:  # every image would be resized to it
        raise ModelError(f"the model's input is [batch, {', '.join(map(str, rest))}]: larger "
                         f"than the {MAX_IMAGE_SIDE:,} pixels a side cnncli reads images at",
                         file=str(path), hint="export the model with the size it was trained "
                                              "at")
    return tuple(int(d) for d in rest)


def _one(items: dict, what: str, path: Path):
    """The one (name, value) of `items`: a classifier has one input and one output."""
    if len(items) != 1:
        raise ModelError(f"the model has {len(items)} {what}, not one", file=str(path),
                         hint="cnncli runs image classifiers it exported (one input "
                              "'image', one output 'probabilities')")
    return next(iter(items.items()))


def _need_uint8(ok: bool, found, path: Path) -> None:
    if not ok:
        raise ModelError(f"the model takes {found}, not uint8 images", file=str(path),
                         hint="cnncli runs the files cnncli export writes (uint8 images "
                              "in, preprocessing inside)")


def _open_onnx(path: Path):
    ort = require("onnxruntime", "onnx")
    onnxscan.check(path)  # before ONNX Runtime reads anything it names
    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.intra_op_num_threads = available_cpus()  # a container's quota, not the node's
    try:
        session = ort.InferenceSession(str(path), sess_options=options,
                                       providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime's errors derive from Exception only
        raise _failed(path, "ONNX Runtime", exc) from None
    (_, first), (_, out) = (_one({x.name: x for x in items}, what, path) for items, what in
                            ((session.get_inputs(), "inputs"),
                             (session.get_outputs(), "outputs")))
    _need_uint8(first.type == "tensor(uint8)", first.type, path)
    stored = session.get_modelmeta().custom_metadata_map.get(sidecar.EMBEDDED_KEY)
    embedded = sidecar.parse(stored, file=str(path), embedded=True) if stored else None
    classes = out.shape[-1] if out.shape and isinstance(out.shape[-1], int) else None

    def run(x):
        return session.run([out.name], {first.name: x})[0]

    return (run, f"ONNX Runtime {ort.__version__} (CPU)", _image_shape(first.shape, path),
            classes, embedded)


def _open_litert(path: Path):
    interpreter = require("ai_edge_litert.interpreter", "litert")
    with open(path, "rb") as f:
        head = f.read(8)
    if len(head) < 8 or head[4:8] != _TFLITE_IDENTIFIER:
        raise ModelError("this is not a LiteRT (.tflite) model: it lacks the FlatBuffer "
                         "identifier TFL3" + (" (the file is empty)" if not head else ""),
                         file=str(path), hint="export it again (cnncli export --format "
                         "litert) or copy the whole file")
    try:
        # the interpreter prints "INFO: Created ... XNNPACK delegate"
        with quiet_unless_debugging():
            it = interpreter.Interpreter(model_path=str(path),
                                         num_threads=available_cpus())
            runner = it.get_signature_runner()
    except Exception as exc:
        raise _failed(path, "LiteRT", exc) from None
    name, spec = _one(runner.get_input_details(), "inputs", path)
    out_name, out = _one(runner.get_output_details(), "outputs", path)
    _need_uint8(spec["dtype"] == np.uint8, np.dtype(spec["dtype"]).name, path)
    scale, zero = out["quantization"]

    def run(x):
        y = runner(**{name: x})[out_name]
        return (y.astype(np.float32) - zero) * scale if scale else y

    shape = _image_shape([int(d) for d in spec["shape_signature"]], path)
    try:
        # allocate now: Flex (TensorFlow) ops fail here, not mid-predict
        with quiet_unless_debugging():
            run(np.zeros((1, *shape), np.uint8)) if shape else it.allocate_tensors()
    except Exception as exc:
        raise _failed(path, "LiteRT", exc) from None
    return (run, f"LiteRT {_version('ai-edge-litert')} (CPU)", shape,
            int(out["shape_signature"][-1]), None)


def _open_openvino(path: Path):
    ov = import_openvino()
    if not path.with_suffix(".bin").is_file():
        raise ModelError(f"the weights file {path.with_suffix('.bin').name} is missing",
                         file=str(path), hint="keep the .bin beside the .xml")
    with open(path, "rb") as f:
        head = f.read(64).lstrip(b"\xef\xbb\xbf \t\r\n")
    if not head.startswith(b"<"):  # OpenVINO would read an ONNX file renamed .xml
        raise ModelError("this is not an OpenVINO model (.xml): it is not XML", file=str(path),
                         hint="export it again (cnncli export --format openvino) or copy "
                              "the whole file")
    core = ov.Core()
    try:
        # its C++ logs ("Error parsing text-format ...") go with the error
        with quiet_unless_debugging():
            model = core.read_model(str(path))
    except Exception as exc:
        raise _failed(path, "OpenVINO", exc) from None
    # Checked before compiling: a compiled model kept alive by an error's traceback and
    # freed later by the garbage collector, in the middle of TensorFlow's work, crashed
    # the process (seen in the test suite).
    first, out = (_one(dict(enumerate(items)), what, path)[1] for items, what in
                  ((model.inputs, "inputs"), (model.outputs, "outputs")))
    _need_uint8(first.get_element_type() == ov.Type.u8, first.get_element_type(), path)
    dims = [d.get_length() if d.is_static else None for d in first.get_partial_shape()]
    shape = _image_shape(dims, path)
    last = out.get_partial_shape()[-1]
    embedded = (sidecar.parse(model.get_rt_info([sidecar.EMBEDDED_KEY]).astype(str),
                              file=str(path), embedded=True)
                if model.has_rt_info([sidecar.EMBEDDED_KEY]) else None)
    try:
        # f32: OpenVINO's default on CPUs with bfloat16 units is bf16 (probabilities
        # differ by ~3e-4); predictions then match the check made at export time.
        compiled = core.compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    except Exception as exc:
        raise _failed(path, "OpenVINO", exc) from None

    def run(x):
        return compiled(x)[compiled.output(0)]

    return (run, f"OpenVINO {ov.__version__.split('-')[0]} (CPU)", shape,
            last.get_length() if last.is_static else None, embedded)


def _open_saved_model(path: Path):
    from cnncli.runtime import import_tf

    tf = import_tf()
    savedmodelscan.check(path)  # before TensorFlow runs any of it
    try:
        fn = tf.saved_model.load(str(path)).signatures["serving_default"]
    except Exception as exc:
        raise _failed(path, "TensorFlow", exc) from None
    name, spec = _one(fn.structured_input_signature[1], "named inputs", path)
    out_name, _ = _one(fn.structured_outputs, "outputs", path)
    _need_uint8(spec.dtype == tf.uint8, spec.dtype.name, path)

    def run(x):
        return fn(**{name: tf.constant(x)})[out_name].numpy()

    classes = fn.structured_outputs[out_name].shape[-1]
    return (run, f"TensorFlow {tf.__version__} SavedModel", _image_shape(
        [d if d is not None else None for d in spec.shape.as_list()], path), classes, None)


_OPENERS = {"onnx": _open_onnx, "litert": _open_litert, "openvino": _open_openvino,
            "saved_model": _open_saved_model}


def _version(distribution: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(distribution)
    except PackageNotFoundError:
        return "?"
