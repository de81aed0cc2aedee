"""Pretrained ImageNet models from ``keras.applications``, by name, and their weights.

A registry in the manner of timm: a dict, and a decorator that adds a function to it.

Weights are looked for in Keras' own cache (``$KERAS_HOME/models``, by default
``~/.keras/models``) under Keras' own file names, so a file Keras downloaded once is
used; they are downloaded (by Keras) only when missing and not ``offline``; a local
file can be given instead (``--weights``).

>>> sorted(REGISTRY)[:3]
['efficientnet_b0', 'mobilenet_v2', 'resnet50']
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cnncli.errors import ConfigError, ModelError


@dataclass(frozen=True)
class Pretrained:
    name: str
    factory: Callable  # keras.applications constructor, called with weights=...
    size: int  # input height and width
    weights_file: str  # Keras' cache file name
    origin: str  # where Keras downloads it from
    megabytes: int
    preprocessing: str  # a cnncli.data.pipeline mode equal to the model's preprocess_input

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return (self.size, self.size, 3)


REGISTRY: dict[str, Pretrained] = {}
_KERAS_APPS = "https://storage.googleapis.com/tensorflow/keras-applications/"


def register(name: str, *, size: int, weights_file: str, origin: str, megabytes: int,
             preprocessing: str):
    """Add the decorated ``f(weights) -> keras.Model`` to `REGISTRY` under `name`."""

    def decorate(factory):
        REGISTRY[name] = Pretrained(name, factory, size, weights_file, origin, megabytes,
                                    preprocessing)
        return factory

    return decorate


def _apps():
    from cnncli.runtime import import_keras

    return import_keras().applications


# Preprocessing: VGG and ResNet weights came from Caffe (BGR, ImageNet mean subtracted);
# MobileNetV2 expects [-1, 1]; EfficientNet rescales inside the model.
@register("vgg16", size=224, weights_file="vgg16_weights_tf_dim_ordering_tf_kernels.h5",
          origin=_KERAS_APPS + "vgg16/", megabytes=528, preprocessing="caffe")
def vgg16(weights):
    return _apps().VGG16(weights=weights)


@register("vgg19", size=224, weights_file="vgg19_weights_tf_dim_ordering_tf_kernels.h5",
          origin=_KERAS_APPS + "vgg19/", megabytes=549, preprocessing="caffe")
def vgg19(weights):
    return _apps().VGG19(weights=weights)


@register("resnet50", size=224, weights_file="resnet50_weights_tf_dim_ordering_tf_kernels.h5",
          origin=_KERAS_APPS + "resnet/", megabytes=98, preprocessing="caffe")
def resnet50(weights):
    return _apps().ResNet50(weights=weights)


@register("mobilenet_v2", size=224,
          weights_file="mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224.h5",
          origin=_KERAS_APPS + "mobilenet_v2/", megabytes=14, preprocessing="tf")
def mobilenet_v2(weights):
    return _apps().MobileNetV2(weights=weights)


@register("efficientnet_b0", size=224, weights_file="efficientnetb0.h5",
          origin="https://storage.googleapis.com/keras-applications/", megabytes=21,
          preprocessing="none")
def efficientnet_b0(weights):
    return _apps().EfficientNetB0(weights=weights)


def get(name: str) -> Pretrained:
    try:
        return REGISTRY[name]
    except KeyError:
        raise ConfigError(f"unknown pretrained model '{name}'",
                          hint="use one of " + ", ".join(sorted(REGISTRY))) from None


def cache_dir() -> Path:
    """Keras' model cache: ``$KERAS_HOME/models``, by default ``~/.keras/models``."""
    home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    return Path(home) / "models"


def cached_weights(entry: Pretrained) -> Path | None:
    path = cache_dir() / entry.weights_file
    return path if path.is_file() else None


def load(name: str, *, weights: str | Path | None = None, offline: bool = False):
    """The model `name` with ImageNet weights: from `weights`, Keras' cache, or a download."""
    entry = get(name)
    path = Path(weights) if weights else cached_weights(entry)
    if weights and not path.is_file():
        raise ModelError("the weights file does not exist", file=str(weights),
                         hint=f"give the path of {entry.weights_file}")
    if path is None:
        if offline:
            raise _missing(entry, "offline")
        try:
            return entry.factory("imagenet")  # Keras downloads into its cache
        except Exception as exc:  # DNS, HTTP, a bad hash: all mean no weights
            raise _missing(entry, f"the download failed: {str(exc).splitlines()[0]}") \
                from None
    model = entry.factory(None)
    try:
        model.load_weights(str(path))
    except Exception as exc:
        raise ModelError(f"these weights do not fit {name}: {str(exc).splitlines()[0]}",
                         file=str(path), hint=f"use Keras' {entry.weights_file}") from None
    return model


def download(name: str) -> Path:
    """Fetch the weights of `name` into Keras' cache now (for machines that go offline)."""
    entry = get(name)
    try:
        entry.factory("imagenet")
    except Exception as exc:
        raise _missing(entry, f"the download failed: {str(exc).splitlines()[0]}") from None
    return cache_dir() / entry.weights_file


def _missing(entry: Pretrained, why: str) -> ModelError:
    return ModelError(
        f"the ImageNet weights of {entry.name} are not on this machine ({why})",
        file=str(cache_dir() / entry.weights_file),
        hint=f"download {entry.origin}{entry.weights_file} ({entry.megabytes} MB) and put it "
             f"in {cache_dir()}/, or pass --weights FILE, or run `cnncli models --download "
             f"{entry.name}` on a machine that is online")
