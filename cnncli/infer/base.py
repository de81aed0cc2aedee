"""The one interface prediction and evaluation use: a `Classifier` of uint8 images.

Keras models (`cnncli.infer.classifier`) and exported files (`cnncli.infer.exported`)
both implement it, so every kind of model is treated the same way. It lives in its own
module so that neither of those two has to import the other.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from cnncli.infer.artefact import Artefact
from cnncli.model.meta import ModelMeta


@dataclass
class Classifier:
    """What every model gives prediction and evaluation.

    Args:
        name: how messages name the model (``vgg16``, a file path).
        input_shape: (height, width, channels) of the images it takes.
        class_names: the name of each output.
        meta: how it was trained (preprocessing, resize mode, dataset).
        artefact: the file and run it came from (None for a pretrained model).
    """

    name: str
    input_shape: tuple[int, int, int]
    class_names: list[str]
    meta: ModelMeta = field(default_factory=ModelMeta)
    artefact: Artefact | None = None

    def probabilities(self, images: np.ndarray) -> np.ndarray:
        """Class probabilities (N, classes) of uint8 images (N, H, W, C) at `input_shape`."""
        raise NotImplementedError


def in_parts(run, images: np.ndarray, size: int) -> np.ndarray:
    """`run` (images -> an array of rows) on `images` `size` at a time, the rows joined:
    how a large batch keeps within memory. A part of one image is run as two (the image
    twice): oneDNN computes a batch of one with other kernels, whose last bits differ,
    and an image alone gets what it gets among others (`size` 1 aside: all parts alike).

    >>> in_parts(lambda x: x * 2, np.arange(5), 2).tolist()
    [0, 2, 4, 6, 8]
    >>> in_parts(lambda x: np.full(len(x), len(x)), np.arange(3), 2).tolist()  # as run
    [2, 2, 2]
    """
    def one_part(part: np.ndarray) -> np.ndarray:
        if len(part) == 1 and size > 1:
            return run(np.concatenate([part, part]))[:1]
        return run(part)

    if len(images) <= size:
        return one_part(images)
    return np.concatenate([one_part(images[i:i + size]) for i in range(0, len(images), size)])


def check_batch_size(batch_size: int) -> None:
    """Refuse a batch of no images (predict's and evaluate's `batch_size`, as given to
    the library: the command line refuses it itself)."""
    if batch_size < 1:
        from cnncli.errors import ConfigError

        raise ConfigError(f"--batch-size must be at least 1, not {batch_size}",
                          hint="e.g. --batch-size 256")
