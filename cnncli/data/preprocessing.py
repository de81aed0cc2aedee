"""How uint8 pixels become a network's inputs: the one implementation, used by the
training pipeline, prediction, and inside every exported file.

Written with Keras ops and NumPy constants, so the same code runs in tf.data, in a
Keras model and in the graphs exporters write (a ``keras.ops.convert_to_tensor``
constant would become an extra ONNX input).

>>> import numpy as np
>>> normalise(np.full((1, 1, 1, 3), 255.0, np.float32), "tf").tolist()
[[[[1.0, 1.0, 1.0]]]]
"""

from __future__ import annotations

import numpy as np

from cnncli.config import PREPROCESSING_MODES
from cnncli.data.images import GREY_WEIGHTS
from cnncli.errors import ConfigError

#: keras.applications.imagenet_utils.preprocess_input's constants.
CAFFE_MEAN_BGR = np.array([103.939, 116.779, 123.68], np.float32)
TORCH_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
TORCH_STD = np.array([0.229, 0.224, 0.225], np.float32)
#: RGB -> grey: ITU-R 601-2 luma, the decoder's (`images.GREY_WEIGHTS`, Pillow's).
RGB_TO_GREY = GREY_WEIGHTS


def check_mode(mode: str) -> None:
    """A `ConfigError` unless `mode` is one of `PREPROCESSING_MODES` (said before a data
    pipeline is built, not when its first batch is made)."""
    if mode not in PREPROCESSING_MODES:
        raise ConfigError(f"unknown preprocessing '{mode}'",
                          hint=f"use one of {', '.join(PREPROCESSING_MODES)}")


def normalise(x, mode: str):
    """float 0..255 (N, H, W, C) -> the value range `mode` asks for (`PREPROCESSING_MODES`):
    scale x/255; none; tf [-1, 1]; caffe RGB->BGR minus the ImageNet mean; torch x/255
    then the ImageNet mean and std per channel.

    Divisions are written as products with the reciprocal (`_INVERSE_255`, as Keras'
    Rescaling layer scales): TensorFlow's graph optimizer turns a division by a constant
    into that product in a `tf.function` (prediction, exported files) but not in tf.data
    (training), so a division gave the two different bits for half of the 256 pixel
    values. A product is the same everywhere."""
    check_mode(mode)
    if mode in ("caffe", "torch") and x.shape[-1] != 3:
        raise ConfigError(f"preprocessing '{mode}' uses per-channel ImageNet statistics "
                          "and needs a model with 3 input channels",
                          hint="use preprocessing 'scale' or 'tf' for grey models")
    if mode == "scale":
        return x * _INVERSE_255
    if mode == "none":
        return x
    if mode == "tf":
        return x * _INVERSE_127_5 - np.float32(1.0)
    if mode == "caffe":
        return flip_channels(x) - CAFFE_MEAN_BGR
    return (x * _INVERSE_255 - TORCH_MEAN) * _INVERSE_TORCH_STD


#: The reciprocals `normalise` multiplies by, rounded to float32 once.
_INVERSE_255 = np.float32(1 / 255)
_INVERSE_127_5 = np.float32(1 / 127.5)
_INVERSE_TORCH_STD = (1 / TORCH_STD.astype(np.float64)).astype(np.float32)


def flip_channels(x):
    """RGB <-> BGR. A reverse (TensorFlow's ReverseV2), not ``x[..., ::-1]``: that becomes a
    StridedSlice with a negative stride, 10x slower on a batch of 16 photos at 224x224
    (14 ms against 1.5 ms, 2 cores); it was 4% of a ResNet50 training step's work."""
    from cnncli.runtime import import_keras

    return import_keras().ops.flip(x, axis=-1)


def channels(x, have: int, want: int):
    """float images (N, H, W, `have`) -> `want` channels: grey repeated into RGB, RGB to
    grey by the decoder's weights (`images.convert_channels`, unrounded here)."""
    from cnncli.runtime import import_keras

    ops = import_keras().ops
    if have == want:
        return x
    if have == 1 and want == 3:
        return ops.concatenate([x, x, x], axis=-1)
    if have == 3 and want == 1:
        return ops.sum(x * RGB_TO_GREY, axis=-1, keepdims=True)
    raise ConfigError(f"cannot feed {have}-channel images to a {want}-channel model",
                      hint="cnncli feeds grey (1) or RGB (3) images")
