"""Writing the serving graph (`cnncli.export.graph`) in each format, float or quantized.

One function per format, each taking a `Job` and writing ``job.path``:

- ``saved_model``: Keras' ``model.export(format="tf_saved_model")``.
- ``onnx``: Keras' ``model.export(format="onnx")`` (through tf2onnx: its own
  ``from_keras`` is broken on TensorFlow >= 2.16, tf2onnx#2329); quantized with ONNX
  Runtime's tools: ``float16`` (weights and arithmetic), ``dynamic`` (int8 weights,
  activations quantized on the fly), ``int8`` (static, calibrated, QDQ).
- ``litert``: Keras' ``model.export(format="litert")`` with LiteRT's builtin operations
  only (Keras would also allow TensorFlow "Flex" ops, which LiteRT's interpreter cannot
  run); ``float16``, ``dynamic`` and ``int8`` (calibrated; input stays uint8, output
  float32) are the converter's own.
- ``openvino``: ``openvino.convert_model`` of a SavedModel of the same graph (Keras'
  own OpenVINO exporter needs SciPy); ``float16`` stores the weights in float16.

Converters print pages of C++ logs; they are hidden unless ``--debug``. TensorFlow's
LiteRT converter leaks memory per conversion (tensorflow#122598): the command runs in a
short-lived process, which is where conversions belong.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cnncli import files
from cnncli.errors import CnnError, ModelError
from cnncli.export import graph, unsupported
from cnncli.infer import sidecar
from cnncli.infer.sidecar import INPUT_NAME
from cnncli.runtime import import_tf, stderr_silenced
from cnncli.text import first_line


@dataclass
class Job:
    """One file to write.

    Args:
        wrapper: the serving graph (`graph.serving_model`).
        shape: (H, W, C) of the uint8 images it takes.
        path: where to write it (in the staging folder).
        quantization: ``none``, ``float16``, ``dynamic`` or ``int8``.
        calibration: uint8 training images at `shape` (``int8`` only).
        scratch: a folder for intermediate files.
        metadata: the sidecar's JSON, stored inside the file where the converter has a
            place for it (OpenVINO's ``rt_info``; ONNX's is added after, `metadata`).
    """

    wrapper: object
    shape: tuple[int, int, int]
    path: Path
    quantization: str = "none"
    calibration: np.ndarray | None = None
    scratch: Path | None = None
    metadata: str | None = None


def saved_model(job: Job) -> None:
    """A SavedModel with one ``serving_default`` signature (``image`` in, ``probabilities``
    out) and a ``serve`` function, as Keras' ``model.export`` writes it, but with each weight
    stored once: Keras' exporter tracks the Keras variables and, through the traced function,
    the TensorFlow variables inside them, and writes both (keras-team/keras#23553: twice the
    file and twice the memory in TensorFlow Serving). Here the module tracks the TensorFlow
    variables themselves, which TensorFlow's checkpoint then writes once."""
    from cnncli.runtime import import_tf

    tf = import_tf()
    with _converting("saved_model", job):
        wrapper = job.wrapper
        spec = tf.TensorSpec((None, *job.shape), tf.uint8, name=graph.INPUT_NAME)

        @tf.function(input_signature=[spec])
        def serve(image):
            # A request of another shape is an error to its client, not a crash: oneDNN's
            # convolution aborted the process (TensorFlow Serving with it) on (N, H, W).
            image = tf.ensure_shape(image, (None, *job.shape))
            return wrapper(image, training=False)

        module = tf.Module()
        module.weights = [getattr(v, "value", v) for v in wrapper.variables]
        module.serve = serve
        tf.saved_model.save(module, str(job.path), signatures={"serving_default": serve})


def onnx(job: Job) -> None:
    import onnx as onnxlib

    with _converting("onnx", job), _lean_tf2onnx():
        logging.getLogger("tf2onnx").setLevel(logging.CRITICAL)  # we report failures
        job.wrapper.export(str(job.path), format="onnx",
                           input_signature=graph.signature(job.shape), verbose=False)
    model = _from_large_model_zip(job.path)
    missing = [n.name for n in _all_nodes(model.graph)
               if not onnxlib.defs.has(n.op_type, n.domain)]
    if missing:  # tf2onnx keeps what it cannot convert as a node no runtime knows
        ops = sorted({n.op_type for n in _all_nodes(model.graph) if n.name in missing})
        raise unsupported.cannot_convert(
            "onnx", job.wrapper, f"No conversion rule found for operations: {', '.join(ops)}",
            nodes=missing)
    for value in (*model.graph.input, *model.graph.output):  # "unk__37" -> "batch"
        value.type.tensor_type.shape.dim[0].dim_param = "batch"
    onnxlib.save(model, str(job.path))
    if job.quantization != "none":
        _quantize_onnx(job)


@contextlib.contextmanager
def _lean_tf2onnx():
    """tf2onnx as Keras calls it, in memory a 2-core machine has: VGG16 took more than
    24 GB (killed) and now takes 6.4 GB. Two changes, both inside tf2onnx's own
    options: its ``large_model`` freezing (the default one, TensorFlow's
    ``convert_variables_to_constants_v2`` with grappler, peaks at 13 GB for VGG16; the
    result is a zip of the graph and its tensors, unpacked by `_from_large_model_zip`),
    and no re-serialising of every node after each of its optimizer passes (with
    protobuf's upb runtime each pass kept another copy of the weights; the graph is
    serialised once at the end, as before)."""
    import tf2onnx.convert
    from tf2onnx.optimizer import optimizer_base

    convert_function = tf2onnx.convert.from_function
    optimize = optimizer_base.GraphOptimizerBase.optimize

    def from_function(*args, **kwargs):
        return convert_function(*args, **{**kwargs, "large_model": True})

    def optimize_without_serialising(self, g, iteration):
        self.opt_iteration = iteration
        g = self._optimize(g)
        g.delete_unused_nodes(g.outputs)
        return g

    tf2onnx.convert.from_function = from_function
    optimizer_base.GraphOptimizerBase.optimize = optimize_without_serialising
    try:
        yield
    finally:
        tf2onnx.convert.from_function = convert_function
        optimizer_base.GraphOptimizerBase.optimize = optimize


def _from_large_model_zip(path: Path):
    """The ONNX model in tf2onnx's large-model zip at `path` (graph + one file per
    tensor), loaded whole; `path` is then rewritten as one ordinary .onnx file."""
    import shutil
    import zipfile

    import onnx as onnxlib

    parts = path.with_name(path.name + ".parts")
    with zipfile.ZipFile(path) as archive:  # written by tf2onnx just now
        archive.extractall(parts)
    model = onnxlib.load(str(parts / "__MODEL_PROTO.onnx"))
    shutil.rmtree(parts)
    if model.ByteSize() > 2**31 - 1:
        raise ModelError("the model is over 2 GB, more than one .onnx file can hold",
                         hint="export it to saved_model, litert or openvino")
    return model


def _all_nodes(g):
    for node in g.node:
        yield node
        for attribute in node.attribute:
            for sub in (*([attribute.g] if attribute.HasField("g") else []), *attribute.graphs):
                yield from _all_nodes(sub)


def _quantize_onnx(job: Job) -> None:
    import onnx as onnxlib

    float_path = job.path.with_name("float-" + job.path.name)
    os.replace(job.path, float_path)
    if job.quantization == "float16":
        from onnxruntime.transformers.float16 import convert_float_to_float16

        with _quiet():
            half = convert_float_to_float16(onnxlib.load(str(float_path)), keep_io_types=True)
        onnxlib.save(half, str(job.path))
        return
    from onnxruntime import quantization as q

    prepared = job.path.with_name("prepared-" + job.path.name)
    with _quiet():  # shape inference and graph clean-up, as ONNX Runtime recommends
        q.quant_pre_process(str(float_path), str(prepared), skip_symbolic_shape=True)
        if job.quantization == "dynamic":
            q.quantize_dynamic(str(prepared), str(job.path), weight_type=q.QuantType.QInt8)
        else:
            q.quantize_static(str(prepared), str(job.path), _Calibration(job.calibration),
                              quant_format=q.QuantFormat.QDQ, per_channel=True,
                              activation_type=q.QuantType.QInt8,
                              weight_type=q.QuantType.QInt8,
                              calibrate_method=q.CalibrationMethod.MinMax)


class _Calibration:
    """ONNX Runtime's calibration reader: one training image at a time."""

    def __init__(self, images: np.ndarray):
        self.images = iter(images)

    def get_next(self):
        image = next(self.images, None)
        return None if image is None else {INPUT_NAME: image[None]}

    def rewind(self):  # not needed by MinMax; part of the reader interface
        pass


def litert(job: Job) -> None:
    tf = import_tf()
    ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    options: dict = {}
    if job.quantization != "none":
        options["optimizations"] = [tf.lite.Optimize.DEFAULT]
    if job.quantization == "float16":
        options["target_spec"] = {"supported_types": [tf.float16], "supported_ops": ops}
    elif job.quantization == "int8":
        images = job.calibration
        options["representative_dataset"] = lambda: ([img[None]] for img in images)
        options["target_spec"] = {"supported_ops": [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]}
    else:
        options["target_spec"] = {"supported_ops": ops}
    with _converting("litert", job):
        job.wrapper.export(str(job.path), format="litert",
                           input_signature=graph.signature(job.shape), verbose=False,
                           **options)


def openvino(job: Job) -> None:
    from cnncli.infer.exported import import_openvino

    ov = import_openvino()
    source = job.scratch / "saved_model_for_openvino"
    if not source.exists():
        saved_model(Job(job.wrapper, job.shape, source))
    with _converting("openvino", job):
        model = ov.convert_model(str(source))
    info = model.get_rt_info()  # its `input_model` names the temporary SavedModel: this
    if "conversion_parameters" in info:  # machine's folders, another name each export
        del info["conversion_parameters"]
    if job.metadata:  # read back with `model.get_rt_info([EMBEDDED_KEY])`
        model.set_rt_info(job.metadata, [sidecar.EMBEDDED_KEY])
    try:
        ov.save_model(model, str(job.path), compress_to_fp16=job.quantization == "float16")
    except RuntimeError as exc:  # "basic_ios::clear: iostream error" on a full disk
        if files.disk_full(exc, job.path):
            raise OSError(errno.ENOSPC, f"{os.strerror(errno.ENOSPC)} (OpenVINO could not "
                          f"write {job.path.name})") from None
        raise OSError(errno.EIO, f"OpenVINO could not write {job.path.name}: "
                      f"{first_line(exc)}") from None


@contextlib.contextmanager
def _converting(fmt: str, job: Job):
    """Quiet, and a converter's failure turned into an error naming the layer (a full
    disk is not the layer's fault: it goes up as it is)."""
    try:
        with _quiet():
            yield
    except CnnError:
        raise
    except Exception as exc:
        if files.disk_full(exc, job.path):  # TensorFlow says it in its own error type
            code = errno.EDQUOT if os.strerror(errno.EDQUOT) in str(exc) else errno.ENOSPC
            raise OSError(code, os.strerror(code)) from None
        raise unsupported.cannot_convert(fmt, job.wrapper, str(exc)) from None


@contextlib.contextmanager
def _quiet():
    if os.environ.get("CNNCLI_DEBUG"):
        yield
        return
    with warnings.catch_warnings(), stderr_silenced():
        warnings.simplefilter("ignore")  # tf2onnx's np.object FutureWarning and the like
        yield


CONVERTERS = {"saved_model": saved_model, "onnx": onnx, "litert": litert,
              "openvino": openvino}
