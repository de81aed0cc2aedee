"""Batch normalisation trained as one fused operation (TensorFlow's FusedBatchNormV3).

Keras 3's BatchNormalization trains as a dozen small operations (a cast to float32, the
batch's mean and variance, the normalisation, a cast back) and their gradients, each a
pass over the activations. TensorFlow's fused kernel (oneDNN's on a CPU) does the
forward pass in one and the backward pass in one, in bfloat16 too. Measured on 2 cores
with bfloat16 units (bench/NETWORKS_RESULTS.md): the CIFAR VGG trains 1.23-1.38x as
fast, ResNet50 1.47x.

`fuse_batch_norm` switches a model's BatchNormalization layers to it for training only:
the same weights, the same moving statistics (Keras 3's: the batch's biased variance),
the model saved exactly as before (the layers stay Keras' own). Evaluation, prediction,
export, a frozen layer (``trainable=False``) and anything but 4-D channels-last inputs
take Keras' own path, as does a layer with an epsilon under `MIN_EPSILON` or
renormalisation.

>>> fuse_batch_norm(model)        # doctest: +SKIP
53
"""

from __future__ import annotations

import types

from cnncli.model.precision import all_layers
from cnncli.runtime import import_keras, import_tf

keras = import_keras()
tf = import_tf()


#: The smallest epsilon the fused kernel takes on every device (cuDNN's limit).
MIN_EPSILON = 1.001e-5


def fuse_batch_norm(model: keras.Model) -> int:
    """Train `model`'s BatchNormalization layers (nested models' too) with the fused
    kernel; how many layers were switched. Calling it again changes nothing."""
    count = 0
    for layer in all_layers(model):
        if type(layer) is keras.layers.BatchNormalization and _fusable(layer):
            if getattr(layer.call, "__func__", None) is not _fused_call:
                layer.call = types.MethodType(_fused_call, layer)
            count += 1
    return count


def fused_layers(model: keras.Model) -> int:
    """How many of `model`'s layers `fuse_batch_norm` switched (what a run records)."""
    return sum(getattr(layer.call, "__func__", None) is _fused_call
               for layer in all_layers(model))


def _fusable(layer) -> bool:
    return (not layer.renorm and not getattr(layer, "synchronized", False)
            and layer.axis in (-1, 3) and layer.epsilon >= MIN_EPSILON)


def _fused_call(self, inputs, training=None, mask=None):
    """BatchNormalization's `call` with the fused kernel when it trains (see the module)."""
    if not (training and self.trainable) or mask is not None or inputs.shape.rank != 4:
        return type(self).call(self, inputs, training=training, mask=mask)
    channels = inputs.shape[-1]
    scale = tf.cast(self.gamma, tf.float32) if self.scale else tf.ones([channels])
    offset = tf.cast(self.beta, tf.float32) if self.center else tf.zeros([channels])
    y, mean, variance, _, _, _ = tf.raw_ops.FusedBatchNormV3(
        x=inputs, scale=scale, offset=offset, mean=tf.constant([], tf.float32),
        variance=tf.constant([], tf.float32), epsilon=self.epsilon,
        exponential_avg_factor=1.0, data_format="NHWC", is_training=True)
    # the kernel returns the unbiased variance; Keras 3 keeps the biased one
    n = tf.cast(tf.reduce_prod(tf.shape(inputs)[:-1]), tf.float32)
    variance = variance * (n - 1.0) / n
    m = self.momentum
    self.moving_mean.assign(self.moving_mean * m + mean * (1.0 - m))
    self.moving_variance.assign(self.moving_variance * m + variance * (1.0 - m))
    return tf.cast(y, self.compute_dtype)
