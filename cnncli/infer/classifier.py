"""A model ready to classify uint8 images, whatever it is made of.

`load` turns what ``--model`` names (a pretrained name such as ``vgg16``, a run folder,
a ``.keras`` file) into a `Classifier`: its input size, class names, and
`Classifier.probabilities`, which takes uint8 images at the input size and gives class
probabilities. Prediction and evaluation use only that, so every kind of model is
treated the same way.

>>> clf = load("runs/mnist/latest")                     # doctest: +SKIP
>>> clf.probabilities(np.zeros((2, 28, 28, 1), np.uint8)).shape   # doctest: +SKIP
(2, 10)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cnncli.errors import ConfigError
from cnncli.infer import exported
from cnncli.infer.artefact import Artefact, image_input, resolve
from cnncli.infer.base import Classifier
from cnncli.model import imagenet, pretrained
from cnncli.model.meta import ModelMeta

# TensorFlow is imported only by the Keras paths below (pipeline, modelfile): predicting
# from an .onnx or .tflite file never loads it (tests/test_exported.py checks).
__all__ = ["Classifier", "KerasClassifier", "keras_classifier", "load"]


@dataclass
class KerasClassifier(Classifier):
    """A Keras model; images are preprocessed as in training (`pipeline.preprocess_batch`)."""

    model: object = None
    preprocessing: str = "scale"

    def probabilities(self, images: np.ndarray) -> np.ndarray:
        from cnncli.data import pipeline

        x = pipeline.preprocess_batch(images, self.input_shape, self.preprocessing)
        return np.asarray(self.model.predict_on_batch(x), dtype=np.float32)


def keras_classifier(name: str, model, input_shape, preprocessing: str,
                     class_names: list[str], meta: ModelMeta | None = None,
                     artefact: Artefact | None = None) -> KerasClassifier:
    """A `KerasClassifier` from its parts (tests and the pretrained models use this)."""
    return KerasClassifier(name, tuple(input_shape), list(class_names),
                           meta or ModelMeta(), artefact, model=model,
                           preprocessing=preprocessing)


def load(model: str, *, weights: str | None = None, offline: bool = False,
         preprocessing: str | None = None) -> Classifier:
    """A pretrained name (``vgg16``), a run folder, a ``.keras`` file, or an exported
    file (``.onnx``, ``.tflite``, ``.xml``, a SavedModel folder; `cnncli.infer.exported`)."""
    if exported.kind(model):
        if weights or preprocessing:
            raise ConfigError("--weights and another preprocessing do not apply to an "
                              "exported model: its preprocessing is inside it", file=model)
        return exported.load(model)
    if model in pretrained.REGISTRY:
        entry = pretrained.get(model)
        net = pretrained.load(model, weights=weights, offline=offline)
        return keras_classifier(model, net, entry.input_shape,
                                preprocessing or entry.preprocessing, imagenet.class_names())
    if weights:
        raise ConfigError("--weights goes with a pretrained model name",
                          hint="use one of " + ", ".join(sorted(pretrained.REGISTRY)))
    from cnncli.model import modelfile

    art = resolve(model)
    net = modelfile.load_model(art.model_path)
    shape = image_input(net, art.model_path)
    classes = net.output_shape[-1]
    names = list(art.meta.class_names)
    if len(names) != classes:
        names = [str(i) for i in range(classes)]
    return keras_classifier(str(art.model_path), net, shape,
                            preprocessing or art.meta.preprocessing, names, art.meta, art)
