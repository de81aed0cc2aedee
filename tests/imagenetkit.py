"""Pretrained networks as the ImageNet files make them, without the files (offline)."""

import numpy as np

from cnncli.model import pretrained
from cnncli.runtime import import_keras

keras = import_keras()

#: ImageNet's mean of red, green and blue (0-1), as Keras' EfficientNet file holds it.
IMAGENET_MEAN = (0.485, 0.456, 0.406)


def imagenet_like_efficientnet(**options):
    """An EfficientNetB0 built for a weights file, its input normalisation holding what
    the ImageNet file holds: ImageNet's mean, and its standard deviations as the variance
    (not their squares: tensorflow#49930)."""
    keras.utils.set_random_seed(0)
    model = keras.applications.EfficientNetB0(weights=None, **options)
    [norm] = [layer for layer in model.layers if isinstance(layer, keras.layers.Normalization)]
    norm.adapt_mean.assign(IMAGENET_MEAN)
    norm.adapt_variance.assign(pretrained.IMAGENET_STDDEV)
    return model


def normalised(model, x):
    """What `model`'s input normalisation passes on, for images `x` (0-255)."""
    [norm] = [layer for layer in model._flatten_layers(include_self=False)
              if isinstance(layer, keras.layers.Normalization)]
    return keras.Model(model.inputs, norm.output)([x]).numpy()


def keras_imagenet_normalisation(x):
    """What Keras' EfficientNet built for ImageNet makes of images `x` (0-255) before its
    first convolution: ImageNet's normalisation, (x - mean) / stddev."""
    return (x / 255 - np.array(IMAGENET_MEAN)) / np.array(pretrained.IMAGENET_STDDEV)
