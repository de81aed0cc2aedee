"""The weights of a pretrained backbone: which file, whether it fits, loading it.

ImageNet weights without the classifier are Keras' no-top files, looked for in Keras'
cache under Keras' own names (`cnncli.model.pretrained.notop_file`) and downloaded by
Keras when missing and not offline; or a file of your own (``weights: FILE``): Keras'
legacy ``.h5`` layout (that of the ImageNet files), a Keras 3 ``.weights.h5`` or a whole
``.keras`` model (Keras matches these by layer name: the classifier's weights in one are
not used).

A legacy ``.h5`` file is compared with the backbone layer by layer before loading, so a
file with the classifier, or of another network, is refused with the layer that differs:

>>> print(fit_problem([("conv1", [(3, 3, 3, 8)]), ("predictions", [(8, 1000), (1000,)])],
...                   [("conv1", [(3, 3, 3, 8)])], "resnet50", "x_notop.h5"))
... # doctest: +NORMALIZE_WHITESPACE
the file holds 1 layer with weights more than resnet50 without its classifier, from
'predictions' on: it is the full network's file, with the classifier. Hint: use the
no-top file (Keras' x_notop.h5)
"""

from __future__ import annotations

import hashlib
import warnings
from dataclasses import dataclass
from pathlib import Path

from cnncli.errors import ModelError
from cnncli.model import pretrained
from cnncli.model.backbone import NO_WEIGHTS
from cnncli.runtime import downloads_on_stderr
from cnncli.text import count, first_line


@dataclass(frozen=True)
class WeightsFile:
    """The weights file of one backbone, as a run records it (metrics.json)."""

    layer: str  # the backbone's layer (sub-model) in the model
    backbone: str  # the pretrained network's name
    source: str  # what the config said: imagenet or a path
    path: str
    sha256: str

    def to_json(self) -> dict:
        return {"backbone": self.backbone, "weights": self.source, "file": self.path,
                "sha256": self.sha256}


def expected_file(name: str, input_shape) -> str:
    """Keras' cache file name of the no-top weights of `name` for `input_shape`."""
    return pretrained.notop_file(pretrained.get(name), _side(input_shape))


def _side(input_shape) -> int | None:
    """The side of a square input (MobileNetV2's no-top files are per side), else None."""
    return input_shape[0] if input_shape[0] == input_shape[1] else None


def locate(name: str, weights: str, input_shape, *, offline: bool,
           download: bool = True) -> Path | None:
    """The weights file for a backbone: None for ``weights: none``; Keras' cached no-top
    file for ``imagenet`` (downloaded by Keras when missing, unless `offline` or not
    `download`); else the file `weights` names. Raises `ModelError` naming the file and
    where to put it when it is not there."""
    if weights == NO_WEIGHTS:
        return None
    entry = pretrained.get(name)
    if weights != "imagenet":
        path = Path(weights)
        if not path.is_file():
            what = "is a folder" if path.is_dir() else "does not exist"
            raise ModelError(
                f"the weights file {what}", file=weights,
                hint=f"give the path of a weights file of {entry.name}: Keras' no-top file "
                     f"({expected_file(name, input_shape)}), or a .weights.h5 or .keras file "
                     "of the network (its classifier's weights are not used); or "
                     "`weights: imagenet`")
        return path
    file = expected_file(name, input_shape)
    path = pretrained.cached(file)
    if path is not None:
        return path
    if offline or not download:
        raise pretrained.missing_notop(entry, file, "offline" if offline else "not cached",
                                       _side(input_shape))
    try:  # Keras downloads it into its cache, checking its hash
        with warnings.catch_warnings(), downloads_on_stderr():
            warnings.simplefilter("ignore")  # MobileNetV2's note on sizes it has no file for
            entry.factory("imagenet", include_top=False, input_shape=tuple(input_shape))
    except Exception as exc:  # DNS, HTTP, a bad hash: all mean no weights
        raise pretrained.missing_notop(
            entry, file, f"the download failed: {first_line(exc)}", _side(input_shape)) \
            from None
    path = pretrained.cached(file)
    if path is None:
        raise pretrained.missing_notop(entry, file, "Keras stored it elsewhere")
    return path


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def record(layer: str, name: str, weights: str, path: Path) -> WeightsFile:
    """What a run records of the weights file at `path` (its SHA-256 included)."""
    return WeightsFile(layer, name, weights, str(path), sha256(path))


def check_fit(backbone, name: str, path: Path) -> None:
    """Raise `ModelError` when the weights file at `path` does not fit the `backbone`
    sub-model. A legacy ``.h5`` file is compared layer for layer (Keras' loader matches
    its layers by order, and names only the count when they differ); a Keras 3
    ``.weights.h5`` file, whose layers Keras names by kind and number, is loaded into a
    twin of the backbone, and Keras' reason is cut to the first layer that does not fit.
    """
    if _keras3(path):  # tried on a twin: `backbone` may have no values (`weightless`)
        from cnncli.runtime import import_keras

        _load_file(import_keras().models.clone_model(backbone), name, path)
        return
    saved = _saved_layers(path)
    if saved is None:
        return
    ours = [(layer.name, [tuple(w.shape) for w in _legacy_order(layer)])
            for layer in backbone.layers if layer.weights]
    problem = fit_problem(saved, ours, name, expected_file(name, backbone.input_shape[1:]))
    if problem:
        raise ModelError(problem, file=str(path))


def fit_problem(saved: list, ours: list, name: str, notop: str) -> str | None:
    """Why weights of layers `saved` do not fit the layers `ours` (both lists of
    ``(layer name, [weight shapes])`` in order), as a message with a hint; None if they fit.
    """
    hint = f"use the no-top file (Keras' {notop})"
    for i, ((a, shapes_a), (b, shapes_b)) in enumerate(zip(saved, ours, strict=False)):
        if shapes_a != shapes_b:
            return (f"layer {i + 1} with weights does not fit: the file's '{a}' holds "
                    f"{_shapes(shapes_a)}, {name}'s '{b}' needs {_shapes(shapes_b)}; the file "
                    f"is for another network or size. Hint: {hint} of {name}")
    if len(saved) > len(ours):
        extra = saved[len(ours)][0]
        return (f"the file holds {count(len(saved) - len(ours), 'layer')} with weights more than "
                f"{name} without its classifier, from '{extra}' on: it is the full "
                f"network's file, with the classifier. Hint: {hint}")
    if len(saved) < len(ours):
        return (f"the file holds {len(saved)} layers with weights, {name} without its "
                f"classifier has {len(ours)}: the file is for another network. Hint: {hint}")
    return None


def load(backbone, name: str, path: Path) -> None:
    """Load the weights file into the backbone sub-model (checked by `check_fit` first),
    computing then as Keras' own ImageNet build of it (`Pretrained.weights_loaded`)."""
    if not _keras3(path):  # Keras names the layer that does not fit in a Keras 3 file
        check_fit(backbone, name, path)
    _load_file(backbone, name, path)
    pretrained.get(name).weights_loaded(backbone)


def _keras3(path: Path) -> bool:
    return path.name.endswith(".weights.h5") or path.suffix not in (".h5", ".hdf5")


def _load_file(backbone, name: str, path: Path) -> None:
    from cnncli.model.weights import load_file

    load_file(backbone, path, fits=f"{name} without its classifier",
              expected=f"{expected_file(name, backbone.input_shape[1:])} (the no-top file)")


def _saved_layers(path: Path) -> list | None:
    """``(layer name, [weight shapes])`` of the layers with weights in a legacy file."""
    import h5py

    try:
        with h5py.File(path, "r") as f:
            group = f["model_weights"] if "model_weights" in f else f
            if "layer_names" not in group.attrs:
                return None
            out = []
            for name in map(_text, group.attrs["layer_names"]):
                names = [_text(w) for w in group[name].attrs.get("weight_names", [])]
                if names:
                    out.append((name, [tuple(group[name][w].shape) for w in names]))
            return out
    except (OSError, KeyError) as exc:
        raise ModelError(f"cannot read the weights file (not an HDF5 file, or cut short): "
                         f"{exc}", file=str(path), hint="copy it again") from None


def _legacy_order(layer) -> list:
    """A layer's weights in the order Keras' legacy .h5 files store them."""
    return list(layer.trainable_weights) + list(layer.non_trainable_weights)


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _shapes(shapes: list) -> str:
    """Weight shapes as a message shows them.

    >>> _shapes([(3, 3, 3, 32)]), _shapes([(3,), (3,), ()]), _shapes([])
    ('3x3x3x32', '3, 3, a scalar', 'nothing')
    """
    return ", ".join("x".join(map(str, s)) if s else "a scalar" for s in shapes) or "nothing"
