"""The graph every export holds: what a deployed client has in, probabilities out.

    uint8 image (N, H, W, C) -> float32 -> grey <-> RGB -> the run's preprocessing
        -> the trained network in inference mode -> {"probabilities": (N, classes)}

The preprocessing is the training pipeline's own (`cnncli.data.preprocessing`, written
with constants the exporters keep as constants). The network is called with
``training=False``: dropout and augmentation layers (Keras' ``Random*``) pass images
through, so no format gets them (they break the ONNX
export, keras-team/keras#21346, and make a SavedModel's answers random). A network
saved in mixed precision is rebuilt in float32 first: exporters write bfloat16
convolutions that ONNX Runtime, LiteRT and OpenVINO cannot run.

>>> wrapper = serving_model(model, (28, 28, 1), "scale")   # doctest: +SKIP
>>> wrapper.export("m.onnx", format="onnx",
...                input_signature=signature((28, 28, 1)))       # doctest: +SKIP
"""

from __future__ import annotations

from cnncli.data import preprocessing as preprocessing_ops
from cnncli.infer.sidecar import INPUT_NAME, OUTPUT_NAME
from cnncli.model.precision import with_policy
from cnncli.runtime import import_keras

keras = import_keras()

def signature(shape) -> list:
    """The input signature of every export: a batch (any size) of uint8 NHWC images."""
    return [keras.InputSpec(shape=(None, *shape), dtype="uint8", name=INPUT_NAME)]


def serving_model(model: keras.Model, shape, preprocessing: str):
    """`model` behind uint8 input of `shape` (H, W, C) and `preprocessing`, in float32."""
    network = with_policy(model, "float32")
    inputs = keras.Input(tuple(shape), dtype="uint8", name=INPUT_NAME)
    x = keras.ops.cast(inputs, "float32")
    x = preprocessing_ops.channels(x, shape[-1], network.input_shape[-1])
    x = preprocessing_ops.normalise(x, preprocessing)
    probabilities = network(x, training=False)
    return keras.Model(inputs, {OUTPUT_NAME: probabilities}, name="cnncli_export")
