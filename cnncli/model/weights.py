"""Weights into a model: from a file (`load_file`), or from another model layer for
layer (`transfer`), e.g. ImageNet weights into a spec.

Our built-in ``vgg16`` has the same layers in the same order as
``keras.applications.VGG16``, so its pretrained weights carry over:

>>> ours = builder.build(spec.load("vgg16"))                       # doctest: +SKIP
>>> transfer(keras.applications.VGG16(weights="imagenet"), ours)   # doctest: +SKIP
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import TYPE_CHECKING

from cnncli import runfolder
from cnncli.errors import ModelError

if TYPE_CHECKING:
    import keras


def load_file(model: keras.Model, path: str | Path, *, fits: str, expected: str) -> None:
    """Load the weights file at `path` (Keras' legacy ``.h5``, a Keras 3 ``.weights.h5``
    or a whole ``.keras`` model) into `model`, or raise a `ModelError` naming the file:
    not there, a folder, a kind Keras does not read, cut short, or weights that do not
    fit `fits` (the hint names the `expected` file). Keras' warnings, one per variable,
    are kept quiet.
    """
    from cnncli.model.keras_messages import keras_reason

    path = Path(path)
    hint = f"give the path of Keras' {expected}"
    if path.is_dir():
        raise ModelError("the weights file is a folder", file=str(path), hint=hint)
    if not path.is_file():
        raise ModelError("the weights file does not exist", file=str(path), hint=hint)
    _check_readable(path, hint)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model.load_weights(str(path))
    except Exception as exc:  # h5py, Keras' ValueError on shapes or layer counts
        run = path.parent
        hint = (f"this is a trained run's whole model (not weights for {fits}): to go on from "
                f"it, write `model: {{from: {run}}}` (the run folder) instead; or use "
                f"Keras' {expected}") if path.name in runfolder.MODELS and \
            runfolder.is_run(run) else f"use Keras' {expected}"
        raise ModelError(f"these weights do not fit {fits}: {keras_reason(exc)}",
                         file=str(path), hint=hint) from None


def array_count(path: str | Path) -> int | None:
    """How many weight arrays the HDF5 weights file at `path` holds (None: another kind
    of file, or one that cannot be read)."""
    import h5py

    found = []
    try:
        with h5py.File(path, "r") as f:
            f.visititems(lambda name, item: found.append(name)
                         if isinstance(item, h5py.Dataset) else None)
    except (OSError, ValueError):
        return None
    return len(found)


def _check_readable(path: Path, hint: str) -> None:
    """Raise a `ModelError` if Keras cannot read `path` as weights. Keras goes by the
    name's ending, in lower case (``.keras``: a model archive, checked as `modelfile`
    checks one; ``.h5``, ``.hdf5``, ``.weights.h5``: HDF5), so do we."""
    import zipfile

    import h5py

    from cnncli.model.keras_messages import keras_reason
    from cnncli.model.modelfile import read_model_config

    name = path.name
    if not name.endswith(KERAS_ENDINGS):
        ending = next((e for e in KERAS_ENDINGS if name.lower().endswith(e)), None)
        if ending:
            raise ModelError(f"Keras reads a weights file by its ending in lower case, not "
                             f"'{name[-len(ending):]}'", file=str(path),
                             hint=f"rename it to {name[:-len(ending)]}{ending}")
        raise ModelError(f"Keras reads weights from {', '.join(KERAS_ENDINGS)} files, not "
                         f"'{path.suffix or name}'", file=str(path), hint=hint)
    if name.endswith(".weights.json"):  # the index of sharded weights: Keras reads on
        return  # (its messages name the shard that is missing or does not fit)
    if name.endswith(".keras"):
        read_model_config(path)  # empty, cut short, damaged, not Keras': said by name
        with zipfile.ZipFile(path) as archive:
            if "model.weights.h5" not in archive.namelist():
                raise ModelError("the .keras file holds no weights (no model.weights.h5)",
                                 file=str(path), hint=hint)
        return
    try:
        with h5py.File(path, "r"):
            pass
    except OSError as exc:
        raise ModelError(f"cannot read the weights file (not an HDF5 file, or cut short): "
                         f"{keras_reason(exc)}", file=str(path),
                         hint=f"copy it again, or {hint}") from None


#: The endings of the weights files Keras' ``load_weights`` reads.
KERAS_ENDINGS = (".weights.h5", ".weights.json", ".h5", ".hdf5", ".keras")


def weighted_layers(model: keras.Model) -> list:
    """The layers of `model` that hold weights, in order."""
    return [layer for layer in model.layers if layer.weights]


def transfer(source, target) -> int:
    """Copy every weight of `source` into `target`, layer for layer; return the layer count.

    Raises `ModelError` naming the first layer whose weights do not fit.
    """
    src, dst = weighted_layers(source), weighted_layers(target)
    if len(src) != len(dst):
        raise ModelError(
            f"{source.name} has {len(src)} layers with weights, {target.name} has {len(dst)}",
            hint="weights carry over only between models with the same layers")
    for a, b in zip(src, dst, strict=True):
        shapes_a = [tuple(w.shape) for w in a.weights]
        shapes_b = [tuple(w.shape) for w in b.weights]
        if shapes_a != shapes_b:
            raise ModelError(
                f"the weights of '{a.name}' {shapes_a} do not fit '{b.name}' {shapes_b}",
                hint="check the number of classes and the input size")
        b.set_weights(a.get_weights())
    return len(dst)
