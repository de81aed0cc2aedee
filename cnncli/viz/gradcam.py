"""Grad-CAM (Selvaraju et al. 2017): where in an image a network found a class.

For class c and a convolution layer's output A (h x w x K): the gradient of the class
score y^c (before the softmax) with respect to A, averaged over the h x w positions,
weighs each of the K activation maps; their weighted sum, through a ReLU, is the map of
where evidence for c lies. It is scaled to [0, 1] and upsampled (bilinear) to the image.
The layer is the model's last convolution layer, after the batch norm and ReLU that
follow it (or, in a branched network, where its branches join) unless another is named
(`conv_layers.last_volume`); layers of
nested models (a ``keras.applications`` backbone) work too (`cnncli.viz.probe`).

>>> cam = GradCam(model)                                  # doctest: +SKIP
>>> [m.heatmap.shape for m in cam(x)]                     # doctest: +SKIP
[(28, 28)]
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from cnncli import plots
from cnncli.data.images import convert_channels
from cnncli.runtime import import_tf
from cnncli.viz import conv_layers
from cnncli.viz.probe import probe

if TYPE_CHECKING:
    import keras

tf = import_tf()


@dataclass
class Heatmap:
    """Grad-CAM of one image for one class."""

    heatmap: np.ndarray  # (H, W) in [0, 1] at the model's input size
    coarse: np.ndarray  # (h, w) in [0, 1] at the layer's resolution
    class_index: int
    probability: float  # the model's probability of that class (here, in the eager run
    # the gradient needs; `cnncli.viz.explain` gives the one `predict` computes instead)
    layer: str

    def peak(self) -> tuple[int, int]:
        """(row, column) of the heat map's maximum."""
        return tuple(int(i) for i in np.unravel_index(np.argmax(self.heatmap),
                                                      self.heatmap.shape))


class GradCam:
    """Grad-CAM for one model and layer, applied to batches of preprocessed images.

    Args:
        model: a Keras image classifier.
        layer: a layer whose output is a volume (by name; see `conv_layers.pick`);
            default: the last convolution layer after its batch norm and ReLU, or where
            the branches join when it is one branch of several (`conv_layers.last_volume`).
        model_name: how errors name the model.
    """

    def __init__(self, model: keras.Model, layer: str | None = None, model_name: str = ""):
        convolutions = conv_layers.require_convolutions(model, "Grad-CAM", model_name)
        default = conv_layers.last_volume(model)
        self.ref = (conv_layers.pick(conv_layers.volumes(model), layer, listed=convolutions,
                                     kind="layer with an HxWxD output", model=model)
                    if layer is not None else default)
        self.probe = probe(model, [self.ref], scores=True)
        self.warnings: list[str] = []  # about the layer looked at
        if conv_layers.one_value(self.ref):  # (the default only when every layer's is)
            other = "" if conv_layers.one_value(default) else \
                f"; a layer with larger maps can, such as {default.name}"
            self.warnings.append(f"the maps of {self.ref.name} are 1x1: its Grad-CAM is one "
                                 "value, the whole image coloured the same, and cannot say "
                                 "where" + other)

    def __call__(self, x, class_indices=None) -> list[Heatmap]:
        """Heat maps of the images `x` (N, H, W, C), each for its class in
        `class_indices` (default: the class the model predicts)."""
        x = tf.convert_to_tensor(x, dtype=tf.float32)
        # Watching the input records every operation after it, so the gradient reaches
        # the layer's output even where the layers are frozen (not trainable).
        with tf.GradientTape(watch_accessed_variables=False) as tape:
            tape.watch(x)
            volume, scores, probabilities = self.probe(x, training=False)
            if class_indices is None:
                class_indices = tf.argmax(probabilities, axis=-1)
            chosen = tf.constant(np.asarray(class_indices), dtype=tf.int64)[:, tf.newaxis]
            score = tf.reduce_sum(tf.gather(tf.cast(scores, tf.float32), chosen,
                                            batch_dims=1))
        grads = tf.cast(tape.gradient(score, volume), tf.float32)
        volume = tf.cast(volume, tf.float32)
        weights = tf.reduce_mean(grads, axis=(1, 2))  # (N, K): one weight per map
        cams = tf.nn.relu(tf.einsum("nhwk,nk->nhw", volume, weights)).numpy()
        size = tuple(x.shape[1:3])
        probs = np.asarray(probabilities, dtype=np.float32)
        maps = []
        for cam, c, p in zip(cams, np.asarray(chosen)[:, 0], probs, strict=True):
            peak = cam.max()
            coarse = cam / peak if peak > 0 else np.zeros_like(cam)
            fine = tf.image.resize(coarse[..., np.newaxis], size, method="bilinear")
            maps.append(Heatmap(np.clip(fine.numpy()[..., 0], 0, 1), coarse, int(c),
                                float(p[c]), self.ref.name))
        return maps


def overlay(pixels: np.ndarray, heatmap: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    """The image (H, W, 1 or 3 uint8) with the heat map over it in `plots.colormap`'s
    colours (dark: nothing found, pale yellow: the most evidence), as uint8 RGB.

    >>> overlay(np.zeros((2, 2, 1), np.uint8), np.ones((2, 2)))[0, 0].tolist()
    [113, 114, 74]
    """
    image = convert_channels(np.asarray(pixels), 3).astype(np.float64)
    heat = plots.colormap(heatmap).astype(np.float64)
    return np.round((1 - alpha) * image + alpha * heat).astype(np.uint8)


def scale_bar(width: int, height: int = 14) -> np.ndarray:
    """The heat map's colours from no evidence (left) to the most (right), as a uint8
    RGB strip to print under a picture: its key.

    >>> bar = scale_bar(100)
    >>> bar.shape, bar[0, 0].tolist(), bar[0, -1].tolist()
    ((14, 100, 3), [0, 0, 3], [252, 254, 164])
    """
    return np.repeat(plots.colormap(np.linspace(0, 1, width))[np.newaxis], height, axis=0)
