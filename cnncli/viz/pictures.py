"""The pictures `cnncli visualize` writes: a layer's filters, an image's activation maps.

Each is computed by its module (`filters`, `activations`) and written by
`cnncli.plots.pixel_panels`, atomically, pixel for pixel.

>>> clf = classifier.load("runs/mnist/latest")                          # doctest: +SKIP
>>> write_filters(clf, None, "filters.png").to_dict()["layer"]          # doctest: +SKIP
'conv1_1'
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

from cnncli import plots, text
from cnncli.data.images import convert_channels
from cnncli.text import as_list, dims_text
from cnncli.viz import activations, conv_layers, filters, model_input, mosaic


@dataclass
class FiltersPicture:
    png: Path
    grid: filters.FilterGrid

    def to_dict(self) -> dict:
        h, w, c, n = self.grid.kernel.shape
        return {"picture": str(self.png), "layer": self.grid.layer, "filters": n,
                "filter_shape": [h, w, c], "rgb": self.grid.rgb}


@dataclass
class ActivationsPicture:
    png: Path
    image: str
    layers: list[activations.LayerMaps] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"picture": str(self.png), "image": self.image, "warnings": self.warnings,
                "layers": [{"layer": m.layer, "volume": m.volume,
                            "min": text.significant(float(m.maps.min())),
                            "max": text.significant(float(m.maps.max())),
                            **({"shown_at": m.shown, "after": list(m.after)} if m.shown
                               else {})} for m in self.layers]}


#: Bytes of a name part `file_name` keeps: a file name has at most 255 on most file
#: systems, and ``gradcam_``, ``_2`` and ``.png`` go around it.
NAME_BYTES = 200


def file_name(text: str) -> str:
    """`text` (a layer path, an image name) as a safe part of a file name; a long one is
    cut to `NAME_BYTES` and ends with a digest of the whole (names stay apart).

    >>> file_name("vgg16/block1_conv1")
    'vgg16_block1_conv1'
    >>> len(file_name("b" * 250).encode()), file_name("b" * 250)[-9:]
    (200, '~4b6864de')
    >>> len(file_name("é" * 150).encode()), file_name("é" * 150)[-10:-9]
    (199, 'é')
    """
    safe = "".join("_" if ch in '/\\:\0' else ch for ch in text)
    raw = safe.encode(errors="surrogateescape")
    if len(raw) <= NAME_BYTES:
        return safe
    digest = hashlib.sha256(raw).hexdigest()[:8]
    cut = NAME_BYTES - 9
    while cut and 0x80 <= raw[cut] < 0xC0:  # not in the middle of a UTF-8 character
        cut -= 1
    return f"{raw[:cut].decode(errors='surrogateescape')}~{digest}"


def write_filters(clf, layer: str | None, output: str | Path | None = None) -> FiltersPicture:
    """The filters of `layer` (default: the first convolution) of `clf`'s model as a PNG
    (default name: ``filters_<layer>.png`` in the current folder)."""
    model = conv_layers.keras_model(clf, "a picture of its filters")
    grid = filters.filter_grid(model, layer, preprocessing=clf.preprocessing,
                               model_name=clf.name)
    png = Path(output) if output else Path(f"filters_{file_name(grid.layer)}.png")
    key = ("each tile on its own scale: its smallest weight black, its largest white",
           mosaic.grey_bar(grid.grid.image.shape[1]))
    return FiltersPicture(plots.pixel_panels([(grid.title, grid.grid.image), key], png),
                          grid)


#: A picture of activation maps taller than this (pixels) is said to be too tall to view.
TALL = 20_000


def write_activations(clf, image: str, layers: list[str] | None = None,
                      output: str | Path | None = None) -> ActivationsPicture:
    """The image as the model sees it, then the activation maps of each chosen convolution
    layer (default: all), as one PNG (default: ``activations_<image>.png``)."""
    layers = None if layers is None else as_list(layers)  # ("conv1_1" alone: one layer)
    model = conv_layers.keras_model(clf, "a picture of its activation maps")
    refs = activations.choose(model, layers, clf.name)
    seen = model_input.read(image, clf)
    maps = activations.activation_maps(model, seen.x, refs)
    volume = dims_text(seen.pixels.shape)
    panels = [(f"input: {volume}", mosaic.enlarged(convert_channels(seen.pixels, 3)))]
    panels += [(m.title, m.grid().image) for m in maps]
    panels.append(("each layer on its own scale: its smallest value black, its largest "
                   "white (the values: --json)", mosaic.grey_bar(max(
                       image.shape[1] for _, image in panels))))
    png = Path(output) if output else Path(
        f"activations_{file_name(model_input.stem(image))}.png")
    _, height, _ = plots.panel_origins([image.shape[:2] for _, image in panels])
    tall = [f"the maps of {text.count(len(maps), 'convolution')} make a picture {height:,} "
            f"pixels tall, more than image viewers open; --layers picks some (e.g. --layers "
            f"{','.join(dict.fromkeys([maps[0].layer, maps[-1].layer]))})"] \
        if layers is None and height > TALL else []
    return ActivationsPicture(plots.pixel_panels(panels, png), image, maps, tall)
