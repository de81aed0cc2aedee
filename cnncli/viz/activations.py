"""The activation maps of chosen convolution layers for one image: one map per filter,
stacked along the depth into the layer's output volume (``conv1_1: 28x28x32``).

The maps of a layer share one grey scale (black: the layer's smallest value, white: its
largest), so a filter that does not respond to the image shows dark, as it is.

>>> maps = activation_maps(model, x, convolutions(model))   # doctest: +SKIP
>>> maps[0].title                                            # doctest: +SKIP
'conv1_1: 28x28x32'
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from cnncli.errors import ConfigError, raise_all
from cnncli.text import dims_text
from cnncli.viz import conv_layers, mosaic
from cnncli.viz.probe import probe

if TYPE_CHECKING:
    import keras


@dataclass
class LayerMaps:
    """One layer's output for one image."""

    layer: str
    maps: np.ndarray  # (height, width, filters)

    @property
    def volume(self) -> str:
        """The output volume as the lecture's tables write it.

        >>> LayerMaps("conv1_1", np.zeros((28, 28, 32))).volume
        '28x28x32'
        """
        return dims_text(self.maps.shape)

    @property
    def title(self) -> str:
        return f"{self.layer}: {self.volume}"

    def grid(self) -> mosaic.Mosaic:
        """The maps as a grid of grey tiles, one per filter, on the layer's common scale;
        a layer where nothing responds (every value the same: 0 after a ReLU) is dark."""
        values = mosaic.scale01(self.maps, constant=0.0)
        return mosaic.grid([mosaic.to_rgb(values[..., i]) for i in range(values.shape[-1])])


def choose(model: keras.Model, names: list[str] | None,
           model_name: str = "") -> list[conv_layers.LayerRef]:
    """The layers called `names` (default: every convolution), in the model's order: any
    layer with an HxWxD output (a pooling layer's maps too)."""
    refs = conv_layers.require_convolutions(model, "activation maps", model_name)
    if names is None:
        return refs
    volumes = conv_layers.volumes(model)
    chosen, errors = set(), []
    for name in names:  # every unknown name is reported, not the first only
        try:
            chosen.add(id(conv_layers.pick(volumes, name, listed=refs, model=model,
                                           kind="layer with an HxWxD output")))
        except ConfigError as exc:
            errors.append(exc)
    raise_all(errors)
    return [r for r in volumes if id(r) in chosen]


def activation_maps(model: keras.Model, x, refs: list[conv_layers.LayerRef]) -> list[LayerMaps]:
    """The output of each of `refs` for the one preprocessed image `x` (1, H, W, C)."""
    outputs = probe(model, refs)(x, training=False)
    if not isinstance(outputs, (list, tuple)):
        outputs = [outputs]
    return [LayerMaps(r.name, np.asarray(out, dtype=np.float32)[0])
            for r, out in zip(refs, outputs, strict=True)]
