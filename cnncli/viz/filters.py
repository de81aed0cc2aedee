"""The filters of a convolution layer as a grid of tiles, one tile per filter.

A filter that looks at the model's RGB input is one colour tile (the lecture's figure of
Krizhevsky's 96 11x11x3 filters); any other filter shows each of its input channels as a
grey slice, side by side in its tile. Each tile is scaled to its own range (its smallest
weight black, its largest white), so weak filters are as visible as strong ones.

>>> kernel = np.zeros((3, 3, 1, 2)); kernel[:, 2, 0, 1] = 1   # filter 1: a vertical line
>>> tiles = filter_tiles(kernel, rgb=False)
>>> len(tiles), tiles[1][:, :, 0].tolist()
(2, [[0, 0, 255], [0, 0, 255], [0, 0, 255]])
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from cnncli.viz import conv_layers, mosaic

if TYPE_CHECKING:
    import keras

#: At most this many input channels are shown per filter (the first ones).
MAX_CHANNELS = 64


@dataclass
class FilterGrid:
    """The filters of one layer: the kernel, and the grid of its tiles."""

    layer: str
    kernel: np.ndarray  # (height, width, input channels, filters)
    rgb: bool  # one colour tile per filter (it looks at the RGB image)
    grid: mosaic.Mosaic
    channels_shown: int

    @property
    def title(self) -> str:
        """The layer name and shape, as the lecture says it: "64 3x3x3 filters"."""
        h, w, c, n = self.kernel.shape
        text = f"{self.layer}: {n} filters of {h}x{w}x{c}"
        if self.channels_shown < c:
            text += f" (first {self.channels_shown} input channels shown)"
        return text


def kernel_of(layer) -> np.ndarray:
    """The layer's weights as (height, width, input channels, filters), whatever the kind
    of convolution: a depthwise one has one single-channel filter per output map; a
    separable one (depthwise, then a 1x1 convolution, nothing between) is the plain
    convolution it equals, one filter per output map over every input channel."""
    keras = conv_layers.keras
    weights = np.asarray(layer.get_weights()[0], dtype=np.float32)
    if isinstance(layer, keras.layers.SeparableConv2D):
        h, w, c, m = weights.shape  # depthwise map c * m + j feeds the 1x1 convolution
        pointwise = np.asarray(layer.get_weights()[1], dtype=np.float32)
        return np.einsum("hwcm,cmn->hwcn", weights, pointwise.reshape(c, m, -1))
    if isinstance(layer, keras.layers.DepthwiseConv2D):
        h, w, c, m = weights.shape  # depthwise kernel: output map c * m + j
        return weights.reshape(h, w, 1, c * m)
    if isinstance(layer, keras.layers.Conv2DTranspose):
        return weights.transpose(0, 1, 3, 2)  # stored as (h, w, filters, input channels)
    return weights


def filter_tiles(kernel: np.ndarray, *, rgb: bool, bgr: bool = False,
                 max_channels: int = MAX_CHANNELS) -> list[np.ndarray]:
    """One uint8 RGB tile per filter of `kernel` (height, width, input channels, filters).

    `rgb`: show the 3 input channels as one colour image (`bgr`: they are in BGR order,
    as for VGG's Caffe weights, so they are turned round).
    """
    tiles = []
    for i in range(kernel.shape[-1]):
        values = mosaic.scale01(kernel[..., i])
        if rgb:
            tiles.append(mosaic.to_rgb(values[..., ::-1] if bgr else values))
        else:
            tiles.append(mosaic.to_rgb(mosaic.slices(values, limit=max_channels)))
    return tiles


def filter_grid(model: keras.Model, layer: str | None = None, *, preprocessing: str = "scale",
                model_name: str = "") -> FilterGrid:
    """The filters of `layer` (default: the model's first convolution layer)."""
    refs = conv_layers.require_convolutions(model, "filters to show", model_name)
    ref = conv_layers.pick(refs, layer, model=model) if layer is not None else refs[0]
    kernel = kernel_of(ref.layer)
    rgb = kernel.shape[2] == 3 and ref is refs[0] and model.inputs[0].shape[-1] == 3
    tiles = filter_tiles(kernel, rgb=rgb, bgr=preprocessing == "caffe")
    grid = mosaic.grid(tiles, sliced=not rgb and kernel.shape[2] > 1)
    return FilterGrid(ref.name, kernel, rgb, grid, min(kernel.shape[2], MAX_CHANNELS))
