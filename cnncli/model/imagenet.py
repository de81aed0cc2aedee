"""The 1000 ImageNet classes, offline.

``resources/imagenet_class_index.json`` is Keras' own file, byte for byte (the one
``keras.applications.imagenet_utils.decode_predictions`` downloads; its MD5 is
`KERAS_FILE_MD5`), so nothing here touches the network.

>>> class_index()[817]
('n04285008', 'sports_car')
>>> class_names()[1:3]
['goldfish', 'great_white_shark']
"""

from __future__ import annotations

import functools
import json
from importlib import resources

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


def wordnet_ids(names: list[str]) -> list[str] | None:
    """The WordNet IDs of a model's classes `names` when they are ImageNet's 1000 in Keras'
    order (a pretrained network's), else None: what tells apart the classes two share.

    >>> wordnet_ids(class_names())[517], wordnet_ids(["cat", "dog"])
    ('n03126707', None)
    """
    return [wordnet_id for wordnet_id, _ in _class_index()] \
        if list(names) == class_names() else None


@functools.cache
def shared_names() -> frozenset[str]:
    """The names two ImageNet classes share (a bird and a machine are both ``crane``).

    >>> sorted(shared_names())
    ['crane', 'maillot']
    """
    from collections import Counter

    return frozenset(name for name, n in Counter(class_names()).items() if n > 1)
