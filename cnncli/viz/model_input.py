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
from pathlib import Path, PurePosixPath
from urllib.parse import urlparse

import numpy as np

from cnncli.data import images, inputs, pipeline
from cnncli.errors import ModelError

#: ModelMeta.resize values that are not `images.RESIZE_MODES` names, and the mode doing it.
_MODE_OF = {"stretch": "bilinear"}


@dataclass
class ModelInput:
    """One image: where it came from, its uint8 pixels at the model's size, the model input."""

    source: str
    pixels: np.ndarray  # (H, W, C) uint8, C = the model's channels
    x: object  # (1, H, W, C) float32 tensor, preprocessed


def resize_mode(meta_resize: str, *, model: str = "") -> str:
    """The `images.resize` mode for a model's `ModelMeta.resize`.

    >>> resize_mode("stretch"), resize_mode("center_crop")
    ('bilinear', 'center_crop')
    """
    mode = _MODE_OF.get(meta_resize, meta_resize)
    if mode not in images.RESIZE_MODES:
        raise ModelError(f"the model was trained with resize mode '{meta_resize}', which "
                         "this cnncli cannot apply to images", file=model or None,
                         hint="bring the images to the model's input size yourself")
    return mode


def read(source: str, clf, *, resize: str | None = None) -> ModelInput:
    """The image at `source` (a path or an http(s) URL) as `clf` sees it.

    `resize` overrides the model's resize mode (``predict --resize``).

    Raises:
        DataError: the image cannot be read.
    """
    mode = resize or resize_mode(clf.meta.resize, model=clf.name)
    data = inputs.fetch_url(source) if inputs.is_url(source) else Path(source)
    channels = clf.input_shape[-1]
    image = images.load_image(data, name=source, channels=1 if channels == 1 else 3)
    pixels = images.resize(image, clf.input_shape[:2], mode)
    x = pipeline.preprocess_batch(pixels[np.newaxis], clf.input_shape, clf.preprocessing)
    return ModelInput(source, pixels, x)


def stem(source: str) -> str:
    """The file name of `source` without its extension, for naming pictures of it.

    >>> stem("photos/IMG [1].png"), stem("https://example.com/a/cat.jpg?s=2")
    ('IMG [1]', 'cat')
    """
    path = urlparse(source).path if inputs.is_url(source) else source
    return PurePosixPath(path.replace("\\", "/")).stem or "image"
