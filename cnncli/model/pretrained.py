"""Pretrained ImageNet models from ``keras.applications``, by name, and their weights.

A registry in the manner of timm: a dict, and a decorator that adds a function to it.

Weights are looked for in Keras' own cache (``$KERAS_HOME/models``, by default
``~/.keras/models``) under Keras' own file names, so a file Keras downloaded once is
used; they are downloaded (by Keras) only when missing and not ``offline``; a local
file can be given instead (``--weights``). Each model also has a no-top file (the
network without its classifier, ``include_top=False``), which fine-tuning starts from
(`cnncli.model.backbone_weights`):

>>> notop_file(get("mobilenet_v2"), 160)
'mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_160_no_top.h5'

>>> sorted(REGISTRY)[:3]
['efficientnet_b0', 'mobilenet_v2', 'resnet50']
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from cnncli.errors import ConfigError, ModelError, suggest
from cnncli.runtime import downloads_on_stderr, keras_cache_dirs, keras_home
from cnncli.text import first_line

if TYPE_CHECKING:
    import keras


@dataclass(frozen=True)
class Pretrained:
    name: str
    factory: Callable  # keras.applications constructor, called with weights=...
    size: int  # input height and width
    weights_file: str  # Keras' cache file name
    origin: str  # where Keras downloads it from
    megabytes: float  # the weights file's size, about: the model's parameters x 4 bytes (MB)
    preprocessing: str  # a cnncli.data.pipeline mode equal to the model's preprocess_input
    notop: str = ""  # Keras' cache file name of the weights without the classifier
    notop_megabytes: float = 0  # its size, as `megabytes`: the no-top model's parameters
    notop_sizes: tuple[int, ...] = ()  # input sizes with a file of their own ({size} in notop)
    min_size: int = 32  # the smallest input height and width keras.applications accepts
    keras_names: str = ""  # Keras' names for the model (a regular expression)
    first_layer: str = ""  # the name keras.applications gives its first convolution
    #: what Keras' own ImageNet build (``weights="imagenet"``) computes that a build for a
    #: weights file (``weights=None``, then the file) does not: run on the network (or
    #: the backbone without the classifier) once the file's weights are in it
    from_file: Callable | None = None

    def weights_loaded(self, model: keras.Model) -> None:
        """Make `model`, built for a weights file and filled from one, compute what Keras'
        own ImageNet build of this network computes (`from_file`)."""
        if self.from_file is not None:
            self.from_file(model)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return (self.size, self.size, 3)


REGISTRY: dict[str, Pretrained] = {}
_KERAS_APPS = "https://storage.googleapis.com/tensorflow/keras-applications/"


def register(name: str, *, size: int, weights_file: str, origin: str, megabytes: float,
             preprocessing: str, notop: str, notop_megabytes: float,
             notop_sizes: tuple[int, ...] = (), keras_names: str | None = None,
             first_layer: str, from_file: Callable | None = None):
    """Add the decorated ``f(weights, **options) -> keras.Model`` to `REGISTRY` under
    `name` (options: ``include_top``, ``input_shape``, as keras.applications takes them);
    `keras_names`: the names Keras gives the model (default: `name` without ``_``), and
    `first_layer` the name of its first convolution: together they recognise the model
    in a file Keras saved (`recognise`)."""

    def decorate(factory):
        REGISTRY[name] = Pretrained(name, factory, size, weights_file, origin, megabytes,
                                    preprocessing, notop, notop_megabytes, notop_sizes,
                                    keras_names=keras_names or re.escape(name.replace("_", "")),
                                    first_layer=first_layer, from_file=from_file)
        return factory

    return decorate


def _apps():
    from cnncli.runtime import import_keras

    return import_keras().applications


# Preprocessing: VGG and ResNet weights came from Caffe (BGR, ImageNet mean subtracted);
# MobileNetV2 expects [-1, 1]; EfficientNet rescales inside the model. The no-top file
# names are those keras/src/applications/*.py pass to get_file (Keras 3.15), in the same
# folder as the full file; MobileNetV2 has one per input size (96 ... 224).
@register("vgg16", size=224,
          first_layer="block1_conv1",
          weights_file="vgg16_weights_tf_dim_ordering_tf_kernels.h5",
          origin=_KERAS_APPS + "vgg16/", megabytes=553.4, preprocessing="caffe",
          notop="vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5", notop_megabytes=58.9)
def vgg16(weights, **options):
    return _apps().VGG16(weights=weights, **options)


@register("vgg19", size=224,
          first_layer="block1_conv1",
          weights_file="vgg19_weights_tf_dim_ordering_tf_kernels.h5",
          origin=_KERAS_APPS + "vgg19/", megabytes=574.7, preprocessing="caffe",
          notop="vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5", notop_megabytes=80.1)
def vgg19(weights, **options):
    return _apps().VGG19(weights=weights, **options)


@register("resnet50", size=224,
          first_layer="conv1_conv",
          weights_file="resnet50_weights_tf_dim_ordering_tf_kernels.h5",
          origin=_KERAS_APPS + "resnet/", megabytes=102.5, preprocessing="caffe",
          notop="resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5", notop_megabytes=94.4)
def resnet50(weights, **options):
    return _apps().ResNet50(weights=weights, **options)


@register("mobilenet_v2", size=224, first_layer="Conv1",
          weights_file="mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224.h5",
          origin=_KERAS_APPS + "mobilenet_v2/", megabytes=14.2, preprocessing="tf",
          notop="mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_{size}_no_top.h5",
          notop_megabytes=9.0, notop_sizes=(96, 128, 160, 192, 224),
          keras_names=r"mobilenetv2_1\.00_(\d+|None)")  # width 1.0 (the weights'), a size
def mobilenet_v2(weights, **options):
    return _apps().MobileNetV2(weights=weights, **options)


#: ImageNet's standard deviations of red, green and blue, as Keras' EfficientNet has them.
IMAGENET_STDDEV = (0.229, 0.224, 0.225)


def _efficientnet_scale(model: keras.Model) -> None:
    """Keras' ImageNet file of EfficientNet holds ImageNet's standard deviations as its
    Normalization layer's variance, not their squares, so the layer divides by their
    square roots; Keras' EfficientNet built for ImageNet divides once more by them, with a
    Rescaling layer it adds only when it loads the ImageNet weights itself
    (``weights="imagenet"``; tensorflow#49930). Built for a weights file, it lacks that
    layer and its features are off. The same division, folded into the variance:
    (x - mean) / sqrt(stddev x stddev), once: only a variance that is still the file's.
    """
    import numpy as np

    [norm] = [layer for layer in model._flatten_layers(include_self=False, recursive=True)
              if type(layer).__name__ == "Normalization"]
    variance = np.asarray(norm.adapt_variance.numpy(), "float32")
    stddev = np.asarray(IMAGENET_STDDEV, "float32")
    if np.allclose(variance, stddev, rtol=1e-2):  # bfloat16 keeps 3 digits
        norm.adapt_variance.assign(variance * stddev)
        norm.finalize_state()  # its mean and variance, as the layer computes with them


@register("efficientnet_b0", size=224,
          first_layer="stem_conv", from_file=_efficientnet_scale,
          weights_file="efficientnetb0.h5",
          origin="https://storage.googleapis.com/keras-applications/", megabytes=21.3,
          preprocessing="none", notop="efficientnetb0_notop.h5", notop_megabytes=16.2)
def efficientnet_b0(weights, **options):
    return _apps().EfficientNetB0(weights=weights, **options)


def recognise(keras_name: object, layers: set[str]) -> Pretrained | None:
    """The network of the registry that a model Keras saved alone is: Keras calls it
    `keras_name` (``resnet50``, ``mobilenetv2_1.00_96``) and it has that network's first
    convolution among its `layers`; None for any other model (one of your own that is
    called ``vgg16`` too).

    >>> recognise("mobilenetv2_1.00_96", {"Conv1", "out_relu"}).name
    'mobilenet_v2'
    >>> recognise("vgg16", {"conv2d", "dense"}) is None
    True
    """
    return next((e for e in REGISTRY.values() if isinstance(keras_name, str)
                 and re.fullmatch(e.keras_names, keras_name) and e.first_layer in layers),
                None)


def start_from(entry: Pretrained, path: object) -> str:
    """The hint for a file holding `entry`'s network without its classifier."""
    return (f"it is Keras' {entry.name} without its classifier: fine-tune from it with "
            f"`model: {{from: {entry.name}, weights: {path}}}`")


def get(name: str) -> Pretrained:
    try:
        return REGISTRY[name]
    except KeyError:
        raise ConfigError(f"unknown pretrained model '{name}'",
                          hint=suggest(name, sorted(REGISTRY), listing="pretrained models")
                          ) from None


def cache_dir() -> Path:
    """Keras' model cache: ``$KERAS_HOME/models``, by default ``~/.keras/models``."""
    return keras_home() / "models"


def cached(file: str) -> Path | None:
    """Keras' cached weights `file`, wherever Keras put it (`runtime.keras_cache_dirs`)."""
    return next((d / file for d in keras_cache_dirs("models") if (d / file).is_file()), None)


def cached_weights(entry: Pretrained) -> Path | None:
    return cached(entry.weights_file)


def notop_file(entry: Pretrained, size: int | None = None) -> str:
    """Keras' cache file name of `entry`'s weights without the classifier, for an input of
    `size` x `size` (MobileNetV2 has a file per input size; others one for all)."""
    if not entry.notop_sizes:
        return entry.notop
    return entry.notop.format(size=size if size in entry.notop_sizes else entry.size)


def cached_notop(entry: Pretrained, size: int | None = None) -> Path | None:
    return cached(notop_file(entry, size))


def load(name: str, *, weights: str | Path | None = None, offline: bool = False,
         precision: str = "float32"):
    """The model `name` with ImageNet weights: from `weights`, Keras' cache, or a download;
    computing in `precision` (a Keras dtype policy; `cnncli.model.precision.set_policy`),
    the weights it reads in 16 bits kept in 16 bits when they come from a file."""
    entry = get(name)
    path = Path(weights) if weights else cached_weights(entry)
    if path is None:
        if offline:
            raise _missing(entry, "offline")
        try:
            with downloads_on_stderr():
                model = entry.factory("imagenet")  # Keras downloads into its cache
        except Exception as exc:  # DNS, HTTP, a bad hash: all mean no weights
            raise _missing(entry, f"the download failed: {first_line(exc)}") \
                from None
        from cnncli.model.precision import set_policy

        return set_policy(model, precision)
    from cnncli.model.deferred import filled, unfilled
    from cnncli.model.weights import load_file

    try:  # the file gives every weight
        model = filled(lambda: entry.factory(None), lambda model: load_file(
            model, path, fits=name, expected=entry.weights_file), precision)
    except ModelError as exc:
        if _is_notop(entry, path):  # the file the README has users fetch for fine-tuning
            raise ModelError(f"this file holds {name} without its classifier (a no-top "
                             "file, for fine-tuning); predicting needs the classifier's "
                             "weights too", file=str(path),
                             hint=f"use Keras' {entry.weights_file} (`cnncli models "
                                  f"--download {name}` on a machine that is online); the "
                                  f"no-top file goes with `model: {{from: {name}, weights: "
                                  "FILE}`") from None
        raise exc from None
    missing = unfilled(model)
    if missing:
        raise ModelError(f"these weights do not fit {name}: the file has no value for "
                         f"{missing[0]}" + (f" and {len(missing) - 1} more weights"
                                            if len(missing) > 1 else ""),
                         file=str(path), hint=f"use Keras' {entry.weights_file}")
    entry.weights_loaded(model)
    return model


def _is_notop(entry: Pretrained, path: Path) -> bool:
    """Whether the weights at `path` are `entry`'s network without its classifier: they
    load into it and hold nothing more (a file with a classifier of its own, 5 classes
    not ImageNet's 1000, loads into it too, by name)."""
    from cnncli.model.weights import array_count, load_file

    try:
        notop = entry.factory(None, include_top=False)
        load_file(notop, path, fits=entry.name, expected=entry.weights_file)
    except Exception:  # anything: the error first raised is the one to show
        return False
    return array_count(path) in (None, len(notop.weights))


def download(name: str, size: int | None = None) -> list[Path]:
    """Fetch the weights of `name` into Keras' cache now (for machines that go offline):
    the full model's (prediction) and the no-top file (fine-tuning; MobileNetV2 has one
    per input `size`, the default's without it)."""
    entry = get(name)
    if size is not None and entry.notop_sizes and size not in entry.notop_sizes:
        raise ConfigError(f"{entry.name}'s weights without the classifier come for inputs of "
                          f"{', '.join(map(str, entry.notop_sizes))} pixels, not {size}",
                          hint="give one of those sizes (the config's model input)")
    sized = {"input_shape": (size, size, 3)} if size and entry.notop_sizes else {}
    for file, top, options in ((entry.weights_file, True, {}),
                               (notop_file(entry, size), False, sized)):
        try:
            with downloads_on_stderr():
                entry.factory("imagenet", include_top=top, **options)
        except Exception as exc:
            raise ModelError(
                f"could not download the ImageNet weights of {entry.name}"
                + ("" if top else " without its classifier")
                + f": {first_line(exc)}", file=str(cache_dir() / file),
                hint=f"run `{download_command(entry, size)}` on a machine that is "
                     f"online and copy {cache_dir()}/{file} here, or download "
                     f"{entry.origin}{file} into {cache_dir()}/") from None
    return [cache_dir() / entry.weights_file, cache_dir() / notop_file(entry, size)]


def download_command(entry: Pretrained, size: int | None = None) -> str:
    """The command that fetches `entry`'s weights, with the input size where its no-top
    file depends on it.

    >>> download_command(get("mobilenet_v2"), 160), download_command(get("vgg16"), 160)
    ('cnncli models --download mobilenet_v2 --input-size 160', 'cnncli models --download vgg16')
    """
    sized = entry.notop_sizes and size in entry.notop_sizes and size != entry.size
    return f"cnncli models --download {entry.name}" + (f" --input-size {size}" if sized else "")


def _missing(entry: Pretrained, why: str) -> ModelError:
    return ModelError(
        f"the ImageNet weights of {entry.name} are not on this machine ({why})",
        file=str(cache_dir() / entry.weights_file),
        hint=f"download {entry.origin}{entry.weights_file} (about {entry.megabytes:g} MB) and "
             f"put it in {cache_dir()}/, or pass --weights FILE, or run `cnncli models --download "
             f"{entry.name}` on a machine that is online")


def missing_notop(entry: Pretrained, file: str, why: str, size: int | None = None
                  ) -> ModelError:
    """The error for no-top weights (of an input of `size`) that are not on this machine:
    the file, where it goes, the command that fetches it."""
    return ModelError(
        f"the ImageNet weights of {entry.name} without its classifier are not on this "
        f"machine ({why})", file=str(cache_dir() / file),
        hint=f"download {entry.origin}{file} (about {entry.notop_megabytes:g} MB) and put it "
             f"in {cache_dir()}/, or give a weights file (`model.weights: FILE` or "
             f"--weights FILE), or run `{download_command(entry, size)}` on a machine "
             "that is online")
