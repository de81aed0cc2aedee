"""The activation maps of chosen convolution layers for one image: one map per filter,
stacked along the depth into the layer's output volume (``conv1_1: 28x28x32``). By
default each convolution's maps are shown as the network goes on with them: after the
batch norm and activation layers that follow it (`conv_layers.as_used`), said in the
title (``Conv1: 112x112x32, after batch norm, ReLU6``); a layer named is shown as it is.

The maps of a layer share one grey scale (black: the layer's smallest value, white: its
largest), so after a ReLU a filter that does not respond to the image shows dark.

>>> maps = activation_maps(model, x, choose(model, None))    # doctest: +SKIP
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
    after: tuple[str, ...] = ()  # what was applied to the layer's maps (`as_used`)
    shown: str | None = None  # the layer whose output they are, when not `layer`

    @property
    def volume(self) -> str:
        """The output volume as the lecture's tables write it.

        >>> LayerMaps("conv1_1", np.zeros((28, 28, 32))).volume
        '28x28x32'
        """
        return dims_text(self.maps.shape)

    @property
    def title(self) -> str:
        """``conv1_1: 28x28x32``; ``Conv1: 112x112x32, after batch norm, ReLU6``."""
        return f"{self.layer}: {self.volume}" + (
            f", after {', '.join(self.after)}" if self.after else "")

    def grid(self) -> mosaic.Mosaic:
        """The maps as a grid of grey tiles, one per filter, on the layer's common scale;
        a layer where nothing responds (every value the same: 0 after a ReLU) is dark."""
        values = mosaic.scale01(self.maps, constant=0.0)
        return mosaic.grid([mosaic.to_rgb(values[..., i]) for i in range(values.shape[-1])])


@dataclass(frozen=True)
class Shown:
    """A layer chosen (`ref`), and the layer whose output shows its maps (`at`), after
    `after` (`conv_layers.as_used`)."""

    ref: conv_layers.LayerRef
    at: conv_layers.LayerRef
    after: tuple[str, ...] = ()


def choose(model: keras.Model, names: list[str] | None,
           model_name: str = "") -> list[Shown]:
    """The layers called `names`, as they are, in the model's order: any layer with an
    HxWxD output (a pooling layer's maps too); default: every convolution, as the
    network goes on with its maps (`conv_layers.as_used`)."""
    refs = conv_layers.require_convolutions(model, "activation maps", model_name)
    if names is None:
        every = conv_layers.walk(model)
        at = {id(r.layer): i for i, r in enumerate(every)}
        used = [conv_layers.as_used(every, at[id(r.layer)]) for r in refs]
        return [Shown(r, shown, tuple(after)) for r, (shown, after) in zip(refs, used,
                                                                           strict=True)]
    volumes = conv_layers.volumes(model)
    chosen, errors = set(), []
    for name in names:  # every unknown name is reported, not the first only
        try:
            chosen.add(id(conv_layers.pick(volumes, name, listed=refs, model=model,
                                           kind="layer with an HxWxD output")))
        except ConfigError as exc:
            errors.append(exc)
    raise_all(errors)
    return [Shown(r, r) for r in volumes if id(r) in chosen]


def activation_maps(model: keras.Model, x, shown: list[Shown]) -> list[LayerMaps]:
    """The maps of each of `shown` for the one preprocessed image `x` (1, H, W, C)."""
    outputs = probe(model, [s.at for s in shown])(x, training=False)
    if not isinstance(outputs, (list, tuple)):
        outputs = [outputs]
    return [LayerMaps(s.ref.name, np.asarray(out, dtype=np.float32)[0], s.after,
                      s.at.name if s.at is not s.ref else None)
            for s, out in zip(shown, outputs, strict=True)]
