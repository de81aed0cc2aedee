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

from cnncli.errors import ConfigError, suggest
from cnncli.infer import exported
from cnncli.infer.artefact import Artefact, check_class_scores, image_input, resolve
from cnncli.infer.base import Classifier, in_parts
from cnncli.model import imagenet, pretrained
from cnncli.model.meta import ModelMeta, output_names

# TensorFlow is imported only by the Keras paths below (pipeline, modelfile): predicting
# from an .onnx or .tflite file never loads it (tests/test_exported.py checks).
__all__ = ["Classifier", "KerasClassifier", "keras_classifier", "load"]


@dataclass
class KerasClassifier(Classifier):
    """A Keras model; images are preprocessed as in training (`pipeline.preprocess_batch`),
    inside one compiled TensorFlow function (traced once, for any batch size).

    Its `input_shape` has the channels of the images it was trained on, which may differ
    from the network's own input, `network_input` (grey MNIST into an RGB network takes
    grey images, converted inside the graph as in training)."""

    model: object = None
    preprocessing: str = "scale"
    precision: str = "float32"
    network_input: tuple[int, int, int] = ()

    def probabilities(self, images: np.ndarray) -> np.ndarray:
        from cnncli.runtime import import_keras

        if not isinstance(self.model, import_keras().Model):  # e.g. a stand-in in tests
            from cnncli.data import pipeline

            x = pipeline.preprocess_batch(images, self.network_input, self.preprocessing)
            return np.asarray(self.model.predict_on_batch(x), dtype=np.float32)
        images = np.asarray(images, np.uint8)
        # One function per channel count: grey images reach an RGB model as in training.
        compiled = self.__dict__.setdefault("_compiled", {})
        if images.shape[-1] not in compiled:
            compiled[images.shape[-1]] = self._compile(images.shape[-1])
        infer = compiled[images.shape[-1]]
        return in_parts(lambda x: infer(x).numpy(), images, self.max_batch)

    @property
    def max_batch(self) -> int:
        """Images run at once: a larger batch runs in parts, so a layer's activations
        stay within `cnncli.devices.memory.INFERENCE_LAYER_BUDGET` whatever batch size a
        command is given (VGG16 at 224x224: 41 in float32, 83 in 16 bits)."""
        if "_max_batch" not in self.__dict__:
            from cnncli.devices.memory import inference_chunk, largest_activation
            from cnncli.model.precision import activation_bytes

            size = activation_bytes(self.model, self.precision)
            self.__dict__["_max_batch"] = inference_chunk(largest_activation(self.model),
                                                          bytes_per_value=size)
        return self.__dict__["_max_batch"]

    def _compile(self, channels: int):
        from cnncli.data import pipeline
        from cnncli.runtime import import_tf

        tf = import_tf()
        spec = tf.TensorSpec((None, *self.input_shape[:2], channels), tf.uint8)

        @tf.function(input_signature=[spec])
        def infer(images):
            x = pipeline.preprocess_batch(images, self.network_input, self.preprocessing)
            return tf.cast(self.model(x, training=False), tf.float32)

        # traced now, once (its signature is fixed), and called as the traced function: a
        # `tf.function` called counts its tracings across instances, and after five models
        # loaded in one process (a notebook) TensorFlow warned of "retracing" in a loop
        return infer.get_concrete_function()


def keras_classifier(name: str, model, input_shape, preprocessing: str,
                     class_names: list[str], meta: ModelMeta | None = None,
                     artefact: Artefact | None = None,
                     precision: str = "float32") -> KerasClassifier:
    """A `KerasClassifier` from its parts (`input_shape`: the network's), computing in
    `precision` (its last layer and the probabilities stay float32), whatever precision
    it was saved in. `model` becomes the classifier's: its policy is switched in place,
    and in 16 bits its weights are kept in 16 bits (`precision.compact_weights`: the
    same outputs, faster)."""
    if model is not None and hasattr(model, "layers"):
        from cnncli.model.precision import compact_weights, set_policy

        model = set_policy(model, precision)  # the model was loaded for this classifier
        compact_weights(model)
    meta = meta or ModelMeta()
    network = tuple(input_shape)
    taken = (*network[:2], meta.image_channels) if meta.image_channels else network
    return KerasClassifier(name, taken, list(class_names), meta, artefact, model=model,
                           preprocessing=preprocessing, precision=precision,
                           network_input=network)


def _mistyped_name(model: str) -> None:
    """A `ConfigError` with a did-you-mean for a bare name close to a pretrained one
    (``vgg17``) that is no file or folder either; else nothing."""
    import os

    if os.sep in model or "." in model or os.path.lexists(model):
        return
    close = suggest(model, sorted(pretrained.REGISTRY))
    if close:
        raise ConfigError(f"no pretrained model, run or model file is called '{model}'",
                          hint=close)


def _precision(precision: str) -> str:
    """`precision` checked, ``auto`` decided for this machine (as ``--precision auto``:
    the command line decides it itself; from Python it reached Keras as a policy name)."""
    from cnncli import devices
    from cnncli.devices.placement import parse_precision

    precision = parse_precision(precision)
    if precision != "auto":
        return precision
    from cnncli.model.precision import policy_kept

    with policy_kept():  # the model's layers hold it, not Keras' global
        return devices.setup("auto", "auto", one_device=True).precision


def load(model: str, *, weights: str | None = None, offline: bool = False,
         preprocessing: str | None = None, precision: str = "float32") -> Classifier:
    """A pretrained name (``vgg16``), a run folder, a ``.keras`` file, or an exported
    file (``.onnx``, ``.tflite``, ``.xml``, a SavedModel folder; `cnncli.infer.exported`)."""
    if exported.kind(model):
        if weights or preprocessing:
            raise ConfigError("--weights and another preprocessing do not apply to an "
                              "exported model: its preprocessing is inside it", file=model)
        return exported.load(model)
    precision = _precision(precision)
    if model in pretrained.REGISTRY:
        entry = pretrained.get(model)
        net = pretrained.load(model, weights=weights, offline=offline, precision=precision)
        return keras_classifier(model, net, entry.input_shape,
                                preprocessing or entry.preprocessing, imagenet.class_names(),
                                precision=precision)
    _mistyped_name(model)
    if weights:
        raise ConfigError("--weights goes with a pretrained model name",
                          hint="use one of " + ", ".join(sorted(pretrained.REGISTRY)))
    from cnncli.model import modelfile

    art = resolve(model)
    net = modelfile.load_model(art.model_path)
    check_class_scores(net, art.model_path)  # first: a no-top network takes any size
    shape = image_input(net, art.model_path)
    classes = net.output_shape[-1]
    names = list(output_names(art.meta.class_names, classes))
    return keras_classifier(str(art.model_path), net, shape,
                            preprocessing or art.meta.preprocessing, names, art.meta, art,
                            precision)
