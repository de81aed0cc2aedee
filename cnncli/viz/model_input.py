"""An image as the model sees it: read with cnncli's one decoder, brought to the model's
size with the model's resize mode, preprocessed as in training.

This is the path prediction takes (`cnncli.infer.predict`): `cnncli.data.images.load_image`,
`cnncli.data.images.resize`, then `cnncli.data.pipeline.preprocess_batch`.

>>> seen = read("digit.png", classifier.load("runs/mnist/latest"))   # doctest: +SKIP
>>> seen.pixels.shape, seen.x.shape                                   # doctest: +SKIP
((28, 28, 1), TensorShape([1, 28, 28, 1]))
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import PurePosixPath
from urllib.parse import urlparse

import numpy as np

from cnncli.data import images, inputs, pipeline


@dataclass
class ModelInput:
    """One image: where it came from, its uint8 pixels at the model's size, the model input."""

    source: str
    pixels: np.ndarray  # (H, W, C) uint8, C = the channels the model was trained on
    x: object  # (1, H, W, C) float32 tensor, preprocessed


def read(source: str, clf, *, resize: str | None = None) -> ModelInput:
    """The image at `source` (a path or an http(s) URL) as `clf` sees it.

    `resize` overrides the model's resize mode (``predict --resize``).

    Raises:
        DataError: the image cannot be read.
    """
    mode = images.resize_mode(resize or clf.meta.resize)
    pixels = inputs.read_image(source, clf.input_shape, mode)
    x = pipeline.preprocess_batch(pixels[np.newaxis], clf.network_input, clf.preprocessing)
    return ModelInput(source, pixels, x)


def stem(source: str) -> str:
    """The file name of `source` without its extension, for naming pictures of it.

    >>> stem("photos/IMG [1].png"), stem("https://example.com/a/cat.jpg?s=2")
    ('IMG [1]', 'cat')
    """
    path = urlparse(source).path if inputs.is_url(source) else source
    return PurePosixPath(path.replace("\\", "/")).stem or "image"
