"""The graph every export holds: what a deployed client has in, probabilities out.

    uint8 image (N, H, W, C) -> float32 -> grey <-> RGB -> the run's preprocessing
        -> the trained network in inference mode -> {"probabilities": (N, classes)}

The preprocessing is `cnncli.data.pipeline`'s, written with constants the exporters
keep as constants (a ``keras.ops.convert_to_tensor`` constant becomes an extra ONNX
input). The network is called with ``training=False``: dropout and augmentation layers
(Keras' ``Random*``) pass images through, so no format gets them (they break the ONNX
export, keras-team/keras#21346, and make a SavedModel's answers random). A network
saved in mixed precision is rebuilt in float32 first: exporters write bfloat16
convolutions that ONNX Runtime, LiteRT and OpenVINO cannot run.

>>> wrapper = serving_model(model, (28, 28, 1), "scale")   # doctest: +SKIP
>>> wrapper.export("m.onnx", format="onnx",
...                input_signature=signature((28, 28, 1)))       # doctest: +SKIP
"""

from __future__ import annotations

import numpy as np

from cnncli.errors import ConfigError
from cnncli.infer.sidecar import INPUT_NAME, OUTPUT_NAME
from cnncli.runtime import import_keras

keras = import_keras()

# keras.applications.imagenet_utils.preprocess_input's constants (the pipeline uses it).
CAFFE_MEAN_BGR = np.array([103.939, 116.779, 123.68], np.float32)
TORCH_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
TORCH_STD = np.array([0.229, 0.224, 0.225], np.float32)
RGB_TO_GREY = np.array([0.2989, 0.5870, 0.1140], np.float32)  # tf.image.rgb_to_grayscale's


def signature(shape) -> list:
    """The input signature of every export: a batch (any size) of uint8 NHWC images."""
    return [keras.InputSpec(shape=(None, *shape), dtype="uint8", name=INPUT_NAME)]


def serving_model(model, shape, preprocessing: str):
    """`model` behind uint8 input of `shape` (H, W, C) and `preprocessing`, in float32."""
    network = float32_copy(model)
    inputs = keras.Input(tuple(shape), dtype="uint8", name=INPUT_NAME)
    x = keras.ops.cast(inputs, "float32")
    x = _channels(x, shape[-1], network.input_shape[-1])
    x = _preprocess(x, preprocessing)
    probabilities = network(x, training=False)
    return keras.Model(inputs, {OUTPUT_NAME: probabilities}, name="cnncli_export")


def _channels(x, have: int, want: int):
    """Grey <-> RGB as the training pipeline does (tf.image's conversions)."""
    if have == want:
        return x
    if have == 1 and want == 3:
        return keras.ops.concatenate([x, x, x], axis=-1)
    if have == 3 and want == 1:
        return keras.ops.sum(x * RGB_TO_GREY, axis=-1, keepdims=True)
    raise ConfigError(f"cannot feed {have}-channel images to a {want}-channel model",
                      hint="cnncli exports models of 1 or 3 channels")


def _preprocess(x, mode: str):
    """float 0..255 -> what the network was trained on (`PREPROCESSING_MODES`)."""
    if mode == "scale":
        return x / np.float32(255.0)
    if mode == "none":
        return x
    if mode == "tf":
        return x / np.float32(127.5) - np.float32(1.0)
    if mode == "caffe":
        return x[..., ::-1] - CAFFE_MEAN_BGR  # RGB -> BGR, minus the ImageNet mean
    if mode == "torch":
        return (x / np.float32(255.0) - TORCH_MEAN) / TORCH_STD
    raise ConfigError(f"unknown preprocessing '{mode}'",
                      hint="the model file names one of scale, none, tf, caffe, torch")


def float32_copy(model):
    """`model` itself when every layer computes in float32, else a float32 clone with
    its weights (mixed_bfloat16 and mixed_float16 models)."""
    if all(_policy(layer) == "float32" for layer in _layers(model)):
        return model
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("float32")
    try:
        clone = keras.models.clone_model(model, clone_function=_float32_layer,
                                         recursive=True)
        clone.set_weights(model.get_weights())
    finally:
        keras.config.set_dtype_policy(previous)
    return clone


def _float32_layer(layer):
    config = layer.get_config()
    config["dtype"] = "float32"
    return layer.__class__.from_config(config)


def _policy(layer) -> str:
    policy = getattr(layer, "dtype_policy", None)
    return getattr(policy, "name", "float32")


def _layers(model):
    for layer in model.layers:
        yield layer
        if hasattr(layer, "layers"):
            yield from _layers(layer)


def all_layers(model) -> list:
    """Every layer of `model`, nested models' layers included (outermost first)."""
    return list(_layers(model))
