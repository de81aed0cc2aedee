"""The 1000 ImageNet classes, offline, and top-k decoding of a model's probabilities.

``resources/imagenet_class_index.json`` is Keras' own file, byte for byte (the one
``keras.applications.imagenet_utils.decode_predictions`` downloads; its MD5 is
`KERAS_FILE_MD5`), so nothing here touches the network.

>>> class_index()[817]
('n04285008', 'sports_car')
>>> decode([0.1, 0.7, 0.2] + [0.0] * 997, top=2)
[(1, 'n01443537', 'goldfish', 0.7), (2, 'n01484850', 'great_white_shark', 0.2)]
"""

from __future__ import annotations

import functools
import heapq
import json
from importlib import resources

from cnncli.errors import ModelError

NUM_CLASSES = 1000

#: The ``file_hash`` Keras checks the downloaded file against.
KERAS_FILE_MD5 = "c2c37ea517e94d9795004a39431a14cb"

_RESOURCE = "resources/imagenet_class_index.json"


def resource_bytes() -> bytes:
    """The class-index file as shipped with cnncli."""
    return resources.files("cnncli").joinpath(_RESOURCE).read_bytes()


@functools.cache
def _class_index() -> tuple[tuple[str, str], ...]:
    raw = json.loads(resource_bytes())
    return tuple((raw[str(i)][0], raw[str(i)][1]) for i in range(NUM_CLASSES))


def class_index() -> list[tuple[str, str]]:
    """``(wordnet_id, name)`` of each class, by class number: ``class_index()[0]`` is
    ``('n01440764', 'tench')``. Names are Keras' (``sports_car``, ``convertible``)."""
    return list(_class_index())


def class_names() -> list[str]:
    """The 1000 class names, by class number."""
    return [name for _, name in _class_index()]


def decode(probs, top: int = 5) -> list[tuple[int, str, str, float]]:
    """The `top` most probable classes of one prediction, most probable first.

    Args:
        probs: the 1000 scores of one image (a list, or a 1-D NumPy array or tensor).
        top: how many to return.

    Returns:
        ``(class number, wordnet id, name, score)`` tuples; equal scores keep class order.

    Raises:
        ModelError: if there are not 1000 scores (the model is not an ImageNet classifier).
    """
    values = probs.tolist() if hasattr(probs, "tolist") else list(probs)
    if values and isinstance(values[0], list):
        raise ValueError("decode takes the scores of one image (1-D), not a batch")
    scores = [float(p) for p in values]
    if len(scores) != NUM_CLASSES:
        raise ModelError(
            f"the model gives {len(scores)} scores per image, not the {NUM_CLASSES} "
            "ImageNet classes", hint="ImageNet class names only fit ImageNet classifiers",
        )
    index = _class_index()
    best = heapq.nlargest(top, range(NUM_CLASSES), key=lambda i: (scores[i], -i))
    return [(i, index[i][0], index[i][1], scores[i]) for i in best]
