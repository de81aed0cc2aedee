"""How to use a model file: the record cnncli wrote into it, else what can be known.

A model that cnncli trained carries its `ModelMeta` (class names, preprocessing, input
size); one that Keras saved alone carries none. For those, Keras' own name for the model
and a layer of its own tell a keras.applications network (``resnet50`` with a layer
``conv1_conv``) from any other: the former gets its own preprocessing and ImageNet's
class names.

>>> read("runs/mnist/1/best.keras").class_names[:2]    # doctest: +SKIP
('0', '1')
"""

from __future__ import annotations

import os
import warnings

from cnncli.model import imagenet, modelfile, pretrained
from cnncli.model.meta import ModelMeta


class NoRecordWarning(UserWarning):
    """A model file without cnncli's record: how its images are given is a guess. A
    command that gives it no images (`cnncli visualize filters`) ignores it."""


def read(path: str | os.PathLike) -> ModelMeta:
    """How to use the model file at `path`: the `ModelMeta` cnncli stored in it, else, for
    a file saved by Keras alone, what its name says: a keras.applications network of the
    registry (``resnet50``) gets its own preprocessing and ImageNet's class names, any
    other model the defaults (pixels scaled to [0, 1]); a warning says which."""
    meta = modelfile.read_meta(path)
    if meta is not None:
        return meta
    found = modelfile.outline(path)
    if found is None:  # not a Keras model: loading it says what is wrong
        return ModelMeta()
    entry = pretrained.recognise(*found)
    if entry is None:
        warnings.warn(f"{os.fspath(path)} has no record of how it was trained (Keras saved "
                      "it, not cnncli): its images are given scaled to [0, 1] (`scale`), as "
                      "cnncli trains; fine-tuning from a model trained on other values, set "
                      "`data.preprocessing` to them",
                      NoRecordWarning, stacklevel=1)
        return ModelMeta()
    warnings.warn(f"{os.fspath(path)} has no record of how it was trained (Keras saved it, "
                  f"not cnncli): read as Keras' {entry.name}, its images preprocessed as "
                  f"{entry.name}'s (`{entry.preprocessing}`)", NoRecordWarning,
                  stacklevel=1)
    return ModelMeta(model=entry.name, preprocessing=entry.preprocessing,
                     class_names=tuple(imagenet.class_names()))
