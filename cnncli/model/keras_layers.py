"""The Keras layers a spec can name, and the arguments each one takes.

Specs name layers by their Keras class name; this module is the one place that looks
them up (`layer_class`), lists their arguments (`valid_arguments`) and says what to do
about a name that is not a layer (`unknown_layer_hint`).

>>> layer_class("Conv2D").__name__
'Conv2D'
>>> layer_class("Lambda") is None     # specs run no code
True
>>> "kernel_size" in valid_arguments(layer_class("Conv2D"))
True
>>> [found[:2] for found in unknown_names({"units": 10, "activation": "sofmax"})]
[('activation', 'activations')]
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Iterable
from functools import cache
from typing import Any

from cnncli.errors import suggest
from cnncli.model.layer_kinds import kind
from cnncli.text import reads_as_number
from cnncli.yamlio import is_int

#: Keras layers a spec may not use: they run code, or load a model, from outside the spec.
REFUSED_LAYERS = {
    "Lambda": "Lambda layers run arbitrary code",
    "TFSMLayer": "TFSMLayer loads and runs a TensorFlow SavedModel from disk",
    "JaxLayer": "JaxLayer wraps Python functions",
    "FlaxLayer": "FlaxLayer wraps a Python module",
    "TorchModuleWrapper": "TorchModuleWrapper wraps a PyTorch module",
}


@cache
def keras_layer_names() -> dict[str, type]:
    from cnncli.runtime import import_keras

    keras = import_keras()
    return {name: obj for name in dir(keras.layers)
            if isinstance(obj := getattr(keras.layers, name), type)
            and issubclass(obj, keras.layers.Layer)
            and name not in ("Layer", "InputLayer", "Input", *REFUSED_LAYERS)}


def layer_class(name: str) -> type | None:
    """The Keras layer class called `name`, or None (also for `REFUSED_LAYERS`: specs run
    no code)."""
    return keras_layer_names().get(name)


@cache
def valid_arguments(cls: type) -> tuple[str, ...]:
    """The argument names a Keras layer class accepts (its own and those of its bases);
    not a base's argument without a default, which the class gives it (Conv2D gives its
    base ``rank=2``: a spec's ``rank`` would be given twice).

    >>> "rank" in valid_arguments(layer_class("Conv2D")), "padding" in valid_arguments(
    ...     layer_class("Conv2D"))
    (False, True)
    """
    names, own = set(), True
    for klass in cls.__mro__:
        if "__init__" not in vars(klass):
            continue
        for p in inspect.signature(klass.__init__).parameters.values():
            if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.name != "self" \
                    and (own or p.default is not p.empty):
                names.add(p.name)
        own = False
        if not any(p.kind == p.VAR_KEYWORD
                   for p in inspect.signature(klass.__init__).parameters.values()):
            break
    names |= {"dtype", "trainable"}
    return tuple(sorted(names - {"name", "input_shape", "batch_input_shape", "input_dim"}))


@cache
def boolean_arguments(cls: type) -> frozenset[str]:
    """The arguments of a Keras layer class that are true or false by default
    (``use_bias``, ``center``, ``trainable``): they take booleans only (Keras would take
    the text ``"no"`` as true).

    >>> sorted(boolean_arguments(layer_class("Dense")))
    ['autocast', 'trainable', 'use_bias']
    """
    names = {"trainable"}
    for klass in cls.__mro__:
        if "__init__" in vars(klass):
            names |= {p.name for p in inspect.signature(klass.__init__).parameters.values()
                      if isinstance(p.default, bool)}
    return frozenset(names & set(valid_arguments(cls)))


def padding_words(cls: type) -> tuple[str, ...]:
    """The words `cls`'s ``padding`` takes (``valid``, ``same``; Conv1D ``causal`` too),
    or () when its padding is no word (ZeroPadding2D takes sizes) or it has none.

    >>> padding_words(layer_class("Conv2D")), padding_words(layer_class("ZeroPadding2D"))
    (('valid', 'same'), ())
    """
    defaults = [inspect.signature(klass.__init__).parameters.get("padding")
                for klass in cls.__mro__ if "__init__" in vars(klass)]
    if not any(p is not None and isinstance(p.default, str) for p in defaults):
        return ()
    return ("valid", "same", "causal") if cls.__name__ == "Conv1D" else ("valid", "same")


def padding_taken(cls: type, value) -> bool:
    """Whether `cls` takes `value` as its ``padding`` word: convolutions in any case
    (Keras lower-cases theirs), pooling layers only in lower case.

    >>> padding_taken(layer_class("Conv2D"), "SAME"), padding_taken(layer_class("MaxPooling2D"), "SAME")
    (True, False)
    """  # noqa: E501
    if not isinstance(value, str):
        return False
    return (value.lower() if kind(cls.__name__) == "conv" else value) in padding_words(cls)


def padding_hint(cls: type) -> str:
    """How to get what a ``padding`` number meant: the lecture's P zeros on each side.

    >>> padding_hint(layer_class("Conv1D")).split("; ")[1]
    'for P zeros of your own, put `- ZeroPadding1D: P` before it, with padding valid'
    """
    name = cls.__name__
    rank = re.search(r"(\d)D", name)
    if kind(name) != "conv":
        return "`same` covers the edges (output size W/S, rounded up); `valid` only whole " \
               "windows"
    same = "`same` keeps the size at stride 1 (the lecture's P = (F - 1)/2 zeros)"
    if "Transpose" in name or "LSTM" in name or rank is None:
        return same
    return f"{same}; for P zeros of your own, put `- ZeroPadding{rank[1]}D: P` before it, " \
           "with padding valid"


#: Layer arguments that are whole numbers (or lists of them, one per dimension): sizes
#: and counts. Keras says other things of 8.5 filters ("must be evenly divisible by the
#: number of groups").
WHOLE_NUMBERS = frozenset({"filters", "units", "kernel_size", "strides", "pool_size",
                           "dilation_rate", "groups", "depth_multiplier", "num_heads",
                           "key_dim"})
#: Layer arguments that are numbers (Keras compares 'half' <= 0 and says so).
NUMBERS = frozenset({"rate", "momentum", "epsilon", "stddev", "negative_slope",
                     "max_value", "threshold"})


def wrong_number(name: str, value) -> str | None:
    """What is wrong with `value` for the layer argument `name` when it must be a whole
    number or a number (`WHOLE_NUMBERS`, `NUMBERS`), else None; None for a number in
    quotes too (`cnncli.model.builder` says to write it without them).

    >>> wrong_number("filters", 8.5), wrong_number("kernel_size", [3, 3])
    ('a whole number', None)
    >>> wrong_number("pool_size", (2, 2)) is None  # as a model file's layers give it
    True
    >>> wrong_number("rate", "half"), wrong_number("rate", 0.5), wrong_number("units", True)
    ('a number', None, 'a whole number')
    """
    if isinstance(value, str) and reads_as_number(value):
        return None
    if name in WHOLE_NUMBERS and not (is_int(value) or (
            isinstance(value, list | tuple) and value and all(is_int(v) for v in value))):
        return "a whole number"
    if name in NUMBERS and (isinstance(value, bool) or not isinstance(value, int | float)):
        return "a number"
    return None


@cache
def first_argument(cls: type) -> str | None:
    for p in list(inspect.signature(cls.__init__).parameters.values())[1:]:
        if p.kind == p.POSITIONAL_OR_KEYWORD:
            return p.name
    return None


#: Arguments whose text is the name of a Keras object, by how the argument's name ends
#: (`activation`, `recurrent_activation`, `kernel_initializer`...): the kind of object.
_NAMED_KINDS = ("activation", "initializer", "regularizer", "constraint")


@cache
def keras_names(module: str) -> tuple[str, ...]:
    """The names Keras' ``get`` takes in keras.`module` (``activations``, ``losses``...),
    sorted: its snake_case functions that ``get`` takes (not ``l1_l2``, which it lists),
    and for optimizers the lower-cased classes (``adam``); metrics also take
    ``accuracy``, which Keras' compile turns into the accuracy that fits the labels.

    >>> "relu" in keras_names("activations"), "adam" in keras_names("optimizers")
    (True, True)
    """
    from cnncli.runtime import import_keras

    keras = import_keras()
    space = getattr(keras, module)
    if module == "optimizers":
        return tuple(sorted(n.lower() for n in dir(space) if isinstance(getattr(space, n), type)
                            and issubclass(getattr(space, n), keras.optimizers.Optimizer)
                            and n not in ("Optimizer", "LossScaleOptimizer")))
    names = {n for n in dir(space) if n.islower() and not n.startswith("_")
             and callable(getattr(space, n)) and _taken(space, n)}
    return tuple(sorted(names - {"get", "serialize", "deserialize"}
                        | ({"accuracy"} if module == "metrics" else set())))


def _taken(space, name: str) -> bool:
    try:
        space.get(name)
    except Exception:  # listed by Keras, not taken by its own lookup (l1_l2, constant)
        return False
    return True


def unknown_names(args: dict) -> list[tuple[str, str, str]]:
    """The arguments naming a Keras object that Keras does not know (``activation:
    sofmax``): (argument, kind in the plural, the did-you-mean) each."""
    from cnncli.runtime import import_keras

    keras = import_keras()
    found = []
    for key, value in args.items():
        kind = next((k for k in _NAMED_KINDS if str(key).endswith(k)), None)
        if kind is None or not isinstance(value, str):
            continue
        module = getattr(keras, f"{kind}s")
        if value in dir(module):  # Keras' name, refused for another reason (`constant`
            continue  # needs its value, `stft` scipy): Keras' own words say which
        try:
            module.get(value)
        except Exception:
            found.append((key, f"{kind}s", suggest(value, keras_names(f"{kind}s"),
                                                   listing=f"{kind}s")))
    return found


# Names users bring from PyTorch, for the "did you mean" of an unknown layer.
_TORCH_NAMES = {"linear": "Dense", "conv2d": "Conv2D", "maxpool2d": "MaxPooling2D",
                "avgpool2d": "AveragePooling2D", "batchnorm2d": "BatchNormalization",
                "sequential": "a block (see `blocks:`)", "adaptiveavgpool2d":
                "GlobalAveragePooling2D", "softmax": "Softmax", "relu": "ReLU",
                # (the closest Keras names of these are the 3D layers: not what is meant)
                "convtranspose2d": "Conv2DTranspose", "convtranspose1d": "Conv1DTranspose",
                "conv1d": "Conv1D", "maxpool1d": "MaxPooling1D", "zeropad2d": "ZeroPadding2D",
                "upsample": "UpSampling2D", "upsamplingnearest2d": "UpSampling2D",
                "gelu": "Activation: gelu", "silu": "Activation: silu",
                "batchnorm1d": "BatchNormalization", "dropout2d": "SpatialDropout2D",
                "adaptivemaxpool2d": "GlobalMaxPooling2D", "layernorm": "LayerNormalization",
                "leakyrelu": "LeakyReLU", "identity": "Identity"}


def unknown_layer_hint(key: Any, blocks: Iterable = ()) -> str:
    """What to say about a layer name that is neither a Keras layer nor one of `blocks`."""
    key = str(key)  # YAML keys can be numbers, null, booleans
    torch = _TORCH_NAMES.get(key.lower())
    text = f"did you mean '{torch}'?" if torch else suggest(
        key, [*keras_layer_names(), *map(str, blocks)])
    text = f"{text} " if text else ""
    if key in REFUSED_LAYERS:
        text = f"{REFUSED_LAYERS[key]}: not allowed in specs. "
    return text + "Any class in keras.layers can be used, by its exact name (e.g. Conv2D, " \
        "MaxPooling2D, Dense), or a block defined under `blocks:`"
