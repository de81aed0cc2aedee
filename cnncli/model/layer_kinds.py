"""What kind of layer a Keras class is, decided in one place: the lecture's CONV, POOL and
FC, and the sets of layers other modules ask about (those that drop values, those that
give their input unchanged when predicting, those that keep probabilities).

>>> kind("SeparableConv2D"), kind("MaxPooling2D"), kind("Dense"), kind("Flatten")
('conv', 'pool', 'fc', None)
>>> kind("Convolution2D"), kind("MaxPool2D"), kind("GlobalAvgPool2D")   # Keras' aliases
('conv', 'pool', 'pool')
>>> kind("ConvLSTM2D") is None    # a recurrent layer, not a convolution of the lecture's
True
"""

from __future__ import annotations

import re

#: Any convolution: Conv2D, Conv1D, Conv2DTranspose, DepthwiseConv2D, SeparableConv2D...
_CONVOLUTION = re.compile(r"Conv(olution)?\dD")

#: The layers whose `rate` is the share of values dropped.
DROPPING = {"Dropout", "SpatialDropout1D", "SpatialDropout2D", "SpatialDropout3D",
            "AlphaDropout"}

#: Layers that give their input unchanged when predicting (Grad-CAM looks through them).
UNCHANGED_WHEN_PREDICTING = {"Dropout", "SpatialDropout1D", "SpatialDropout2D",
                             "SpatialDropout3D", "GaussianNoise", "GaussianDropout",
                             "AlphaDropout", "ActivityRegularization", "Identity"}

#: Layers whose output is a probability distribution when their inputs are (the Average of
#: softmax branches: an ensemble).
KEEPS_PROBABILITIES = UNCHANGED_WHEN_PREDICTING | {"Flatten", "Reshape", "Average"}


def kind(class_name: str) -> str | None:
    """``conv``, ``pool`` or ``fc`` (the lecture's words) for a Keras class name, else
    None. Global poolings are pools too."""
    if _CONVOLUTION.search(class_name):
        return "conv"
    if "Pool" in class_name:
        return "pool"
    return "fc" if class_name == "Dense" else None
