"""Moving weights between models layer for layer, e.g. ImageNet weights into a spec.

Our built-in ``vgg16`` has the same layers in the same order as
``keras.applications.VGG16``, so its pretrained weights carry over:

>>> ours = builder.build(spec.load("vgg16"))                       # doctest: +SKIP
>>> transfer(keras.applications.VGG16(weights="imagenet"), ours)   # doctest: +SKIP
"""

from __future__ import annotations

from cnncli.errors import ModelError


def weighted_layers(model) -> list:
    """The layers of `model` that hold weights, in order."""
    return [layer for layer in model.layers if layer.weights]


def transfer(source, target) -> int:
    """Copy every weight of `source` into `target`, layer for layer; return the layer count.

    Raises `ModelError` naming the first layer whose weights do not fit.
    """
    src, dst = weighted_layers(source), weighted_layers(target)
    if len(src) != len(dst):
        raise ModelError(
            f"{source.name} has {len(src)} layers with weights, {target.name} has {len(dst)}",
            hint="weights carry over only between models with the same layers")
    for a, b in zip(src, dst, strict=True):
        shapes_a = [tuple(w.shape) for w in a.weights]
        shapes_b = [tuple(w.shape) for w in b.weights]
        if shapes_a != shapes_b:
            raise ModelError(
                f"the weights of '{a.name}' {shapes_a} do not fit '{b.name}' {shapes_b}",
                hint="check the number of classes and the input size")
        b.set_weights(a.get_weights())
    return len(dst)
