"""From an expanded spec to a Keras functional model, checking shapes on the way.

Shape problems are reported before Keras would raise its own (often obscure)
error, with the lecture's output-size formula filled in:

>>> from cnncli.model import spec
>>> s = spec.parse({"input": [3, 3, 1], "layers": [{"Conv2D": {"filters": 4, "kernel_size": 5}}]})
>>> build(s)  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
cnncli.errors.InputTooSmall: layer 1 'conv1_1' (Conv2D): the 3x3 input is smaller than ...
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

from cnncli.errors import CnnError, ConfigError, InputTooSmall, ManyErrors, raise_all
from cnncli.model import backbone, keras_layers, layer_kinds
from cnncli.model import expand as expansion
from cnncli.model import spec as specs
from cnncli.model.deferred import WEIGHTLESS, weightless
from cnncli.model.keras_messages import keras_reason
from cnncli.model.layer_kinds import DROPPING, KEEPS_PROBABILITIES
from cnncli.model.shapes import as_tuple, window_output
from cnncli.runtime import import_keras, import_tf
from cnncli.text import dims_text, reads_as_number

keras = import_keras()

#: Most weights one layer may have (float32: 8 GB). VGG16's largest layer has 103 million.
#: Checked before Keras allocates them: TensorFlow waits 10 s for memory before failing.
MAX_LAYER_WEIGHTS = 2**31


@dataclass
class Built:
    """A built model, the nodes it came from, and warnings worth showing the user."""

    model: keras.Model
    expanded: expansion.Expanded
    warnings: list[str] = field(default_factory=list)


def build(spec: specs.Spec | expansion.Expanded, *, classes: int | None = None,
          input: list | None = None) -> keras.Model:
    """Build the Keras model of `spec` (optionally with other classes or input size)."""
    return build_checked(spec, classes=classes, input=input).model


def build_checked(spec: specs.Spec | expansion.Expanded, *, classes: int | None = None,
                  input: list | None = None) -> Built:
    """Like `build`, also returning the expanded nodes and shape warnings."""
    if isinstance(spec, specs.Spec):
        if classes is not None or input is not None:
            spec = spec.with_overrides(classes=classes, input=input)
        spec = _expanded(spec)
    expanded = spec
    warnings: list[str] = []
    tensors = _tensors(expanded, warnings)
    outputs = tensors[expanded.output]
    _check_output(expanded, outputs)
    warnings += _output_warnings(expanded, outputs)
    model = keras.Model(tensors[expansion.INPUT], outputs, name=_model_name(expanded.name))
    return Built(model=model, expanded=expanded, warnings=warnings)


def _expanded(spec: specs.Spec) -> expansion.Expanded:
    """`expansion.expand`, whose errors come with the first shape problem among the
    layers before them (found by building those layers), so one `check` says both."""
    expanded, errors = expansion.expand_partly(spec)
    if errors and expanded.nodes and expanded.input_shape:
        try:
            _tensors(expanded, [])
        except CnnError as exc:
            errors = [*getattr(exc, "errors", [exc]), *errors]
    raise_all(errors)
    return expanded


def _tensors(expanded: expansion.Expanded, warnings: list[str]) -> dict:
    """Each node's output tensor (and the input's), checking shapes and weights as it
    goes; warnings worth showing are appended to `warnings`. After a layer's problem the
    shapes are unknown, but the later layers' arguments are still checked, so all their
    problems are reported at once."""
    tensors = {expansion.INPUT: keras.Input(shape=expanded.input_shape, name="input")}
    for k, node in enumerate(expanded.nodes):
        try:
            tensors[node.name] = _output(node, expanded, tensors, warnings)
        except CnnError as exc:
            later = (_argument_error(n) for n in expanded.nodes[k + 1:])
            raise_all([exc, *(e for e in later if e is not None)])
    return tensors


def _argument_error(node: expansion.Node) -> CnnError | None:
    """The problem Keras finds in the arguments of `node`'s layer alone, if any."""
    if node.layer == backbone.LAYER:
        return None  # a backbone is built for its input's shape
    try:
        _make_layer(node, dict(node.args), None)
    except CnnError as exc:
        return exc
    return None


def _output(node: expansion.Node, expanded: expansion.Expanded, tensors: dict,
            warnings: list[str]):
    """`node`'s output tensor, its layer made and checked."""
    args = dict(node.args)
    if keras.config.dtype_policy().name != "float32" and node.name == expanded.output:
        args.setdefault("dtype", "float32")  # softmax and loss stay in float32
    incoming = [tensors[n] for n in node.inputs]
    layer = _make_layer(node, args, incoming[0].shape)
    _check_window(node, layer, incoming[0].shape)
    _check_weights(node, layer, incoming[0].shape)
    _check_dropout(node, layer)
    if node.layer == "Dense" and len(incoming[0].shape) > 2:
        dims = dims_text(incoming[0].shape[1:])
        warnings.append(
            f"{node.where()}: Dense on a {dims} volume acts on the last axis only, "
            f"keeping the {dims.rsplit('x', 1)[0]} grid; add `- Flatten` before it if "
            "you meant a fully-connected layer")
    history = [t._keras_history for t in incoming]
    try:
        output = layer(incoming if len(incoming) > 1 else incoming[0])
    except Exception as exc:  # Keras raises ValueError, TypeError, ... on bad shapes
        if isinstance(exc, import_tf().errors.OpError):  # TensorFlow's runtime failed (a
            raise  # collective: another machine of a cluster stopped), not the layer
        raise _shape_error(node, incoming, exc) from None
    if any(output is t for t in incoming):  # Keras' Equalization, called on a model's
        for t, h in zip(incoming, history, strict=True):  # tensor, gives it back as its
            t._keras_history = h  # own output: the graph would hold a cycle
        raise ConfigError(
            "the layer gives back its input tensor itself when a model is built, which "
            "Keras cannot make a model of", file=node.file, line=node.line,
            where=node.where(), hint=f"remove it ({node.layer} is a preprocessing layer for "
            "a tf.data pipeline; cnncli's preprocessing is `data.preprocessing`)")
    if isinstance(output, (list, tuple, dict)):  # e.g. LSTM with return_state: true
        raise ConfigError(
            f"the layer gives {len(output)} outputs; a spec's layers each give one",
            file=node.file, line=node.line, where=node.where(),
            hint="remove the argument that asks for several (return_state, "
                 "return_attention_scores, ...)")
    if any(d == 0 for d in output.shape[1:]):
        raise ConfigError(
            f"it gives an empty volume ({dims_text(output.shape[1:])}) from its "
            f"{dims_text(incoming[0].shape[1:])} input", file=node.file, line=node.line,
            where=node.where(), hint="check its size arguments: every output size must "
            "be at least 1")
    return output


def _make_layer(node: expansion.Node, args: dict, shape):
    if node.layer == backbone.LAYER:  # a network without its classifier: one sub-model
        try:
            return backbone.build(args, tuple(shape[1:]), node.name,
                                  weights=not WEIGHTLESS.get())
        except CnnError as exc:
            exc.file, exc.line = exc.file or node.file, exc.line or node.line
            exc.where = exc.where or node.where()
            raise
    cls = getattr(keras.layers, node.layer)
    try:
        return cls(name=node.name, **args)
    except Exception as exc:  # a wrongly typed or out-of-range argument
        message = keras_reason(exc)
        quoted = {k: v for k, v in args.items() if isinstance(v, str)
                  and reads_as_number(v)}
        if quoted:  # filters: "8": Keras compares '8' <= 0; kernel_size: "3" is no tuple
            names = ", ".join(f"`{k}`" for k in quoted)
            texts = ", ".join(repr(v) for v in quoted.values())
            one = len(quoted) == 1
            raise ConfigError(
                f"{names} {'is' if one else 'are'} the text {texts}, not "
                f"{'a number' if one else 'numbers'}",  # (Keras' words say nothing more)
                file=node.file, line=node.line, where=node.where(),
                hint="write " + ", ".join(f"{k}: {v}" for k, v in quoted.items())
                     + " without quotes") from None
        unknown = keras_layers.unknown_names(args)
        if unknown:  # activation: sofmax (Keras: "Could not interpret ... identifier")
            found = [ConfigError(f"`{key}: {args[key]}` is not one of Keras' {kind}",
                                 file=node.file, line=node.line, where=node.where(), hint=hint)
                     for key, kind, hint in unknown]
            raise (found[0] if len(found) == 1 else ManyErrors(found)) from None
        valid = ", ".join(keras_layers.valid_arguments(cls))
        raise ConfigError(
            f"invalid arguments {args}: {message}", file=node.file, line=node.line,
            where=node.where(),
            hint=f"keras.layers.{node.layer} takes: {valid}; see its documentation for the "
                 "values each takes",
        ) from None


def _check_window(node: expansion.Node, layer, shape) -> None:
    """Explain, with the lecture's formula, a window larger than its input."""
    size = getattr(layer, "kernel_size", None) or getattr(layer, "pool_size", None)
    if size is None or len(shape) < 3 or "Transpose" in node.layer:  # those grow
        return
    spatial = list(shape[1:-1])
    n = len(spatial)
    kernel = as_tuple(size, n)
    strides = as_tuple(getattr(layer, "strides", None) or kernel, n)
    dilation = as_tuple(getattr(layer, "dilation_rate", 1) or 1, n)
    padding = getattr(layer, "padding", "valid")
    for arg, values in (("strides", strides), ("dilation_rate", dilation)):
        if min(values, default=1) < 1:  # Keras' pooling layers accept strides: 0
            raise ConfigError(
                f"`{arg}` must be at least 1, not {list(values)}", file=node.file,
                line=node.line, where=node.where(), hint=f"use `{arg}: 1` or more")
    for w, f, s, d in zip(spatial, kernel, strides, dilation, strict=False):
        if w is None:
            continue
        out = window_output(w, f, s, padding, d)
        if out.size < 1:
            grid = dims_text(spatial)
            window = "x".join(str((k - 1) * dd + 1) for k, dd in zip(kernel, dilation,
                                                                      strict=False))
            what = "pooling window" if layer_kinds.kind(node.layer) == "pool" else "filter"
            raise InputTooSmall(
                f"the {grid} input is smaller than the {window} {what}: "
                f"(W - F + 2P)/S + 1 = {out.formula}",
                file=node.file, line=node.line, where=node.where(),
                hint="use `padding: same`, a smaller kernel, or fewer pooling layers before "
                     "it (or a larger `input`)")


#: The largest input side `smallest_input` tries.
LARGEST_SIDE = 4096


def smallest_input(network: specs.Spec) -> int | None:
    """The smallest square input (its side, the channels kept) on which every filter and
    pooling window of `network` fits, or None if none up to `LARGEST_SIDE` does.

    >>> net = specs.parse({"input": [8, 8, 1], "classes": 2, "layers": [
    ...     {"Conv2D": {"filters": 1, "kernel_size": 5}}, "MaxPooling2D",
    ...     {"Conv2D": {"filters": 1, "kernel_size": 5}}, "Flatten", "Dense"]})
    >>> smallest_input(net)  # 16 -> 12 -> 6 -> 2; 15 -> 11 -> 5 -> 1; 14 -> 10 -> 5 -> 1
    14
    """
    channels = (network.input or [None])[-1]

    def fits(side: int) -> bool:
        try:
            with weightless():
                build_checked(network.with_overrides(input=[side, side, channels]))
        except InputTooSmall:
            return False
        except ManyErrors as exc:
            return not any(isinstance(e, InputTooSmall) for e in exc.errors)
        except CnnError:
            return True  # another problem: not the input's size
        return True

    low, high = 1, 2
    while not fits(high):
        low, high = high, high * 2
        if high > LARGEST_SIDE:
            return None
    while high - low > 1:  # low does not fit, high does
        middle = (low + high) // 2
        low, high = (low, middle) if fits(middle) else (middle, high)
    return high


def _check_dropout(node: expansion.Node, layer) -> None:
    """Refuse a dropout rate of 1 (Keras takes it): every value is dropped, nothing
    reaches the layers after it, and the layers before it never learn."""
    rate = getattr(layer, "rate", None)  # (GaussianDropout's rate is no share: Keras
    if node.layer in DROPPING and isinstance(rate, int | float) and rate >= 1:  # refuses 1)
        raise ConfigError(f"a rate of {rate:g} drops every value: nothing reaches the next "
                          "layer and the layers before it never learn", file=node.file,
                          line=node.line, where=node.where(),
                          hint="a rate is the share dropped, below 1 (0.5 is the classic)")


def _check_weights(node: expansion.Node, layer, shape) -> None:
    """Refuse a Dense or convolution layer whose kernel cannot fit in memory (a typo such
    as ``units: 40960000``), before Keras tries to allocate it."""
    units = getattr(layer, "units", None) or getattr(layer, "filters", None)
    depth = shape[-1] if len(shape) > 1 else None
    if (not isinstance(units, int) or not isinstance(depth, int)
            or getattr(layer, "data_format", "channels_last") != "channels_last"):
        return
    size = math.prod(getattr(layer, "kernel_size", None) or (1,))
    values = units * depth * size
    if values > MAX_LAYER_WEIGHTS:
        raise ConfigError(
            f"its weights would be {values:,} numbers ({values * 4 / 1e9:,.0f} GB), more "
            f"than the {MAX_LAYER_WEIGHTS:,} a layer may have", file=node.file,
            line=node.line, where=node.where(),
            hint="check its size arguments (units, filters) for a typo, e.g. an extra zero")


def _shape_error(node: expansion.Node, incoming, exc: Exception) -> ConfigError:
    shapes = [dims_text(t.shape[1:]) for t in incoming]
    message = keras_reason(exc)
    if isinstance(exc, MemoryError) or type(exc).__name__ == "ResourceExhaustedError":
        return ConfigError(
            f"its weights do not fit in memory (on a {shapes[0]} input)", file=node.file,
            line=node.line, where=node.where(),
            hint="check its size arguments (units, filters) for a typo, e.g. an extra zero")
    if len(incoming) > 1 and len(set(shapes)) == 1:  # the shapes fit: the merge refuses
        return ConfigError(
            f"the {len(incoming)} branches cannot be merged with {node.layer}: {message}",
            file=node.file, line=node.line, where=node.where(),
            hint="subtract takes exactly two branches; add, multiply, average, maximum, "
                 "minimum and concatenate take two or more")
    if len(incoming) > 1:
        return ConfigError(
            f"the branches cannot be merged: their outputs are {', '.join(shapes)}",
            file=node.file, line=node.line, where=node.where(),
            hint=("concatenate needs equal height and width (use `padding: same` and the same "
                  "strides in every branch); add needs equal shapes, depth included"),
        )
    if len(incoming[0].shape) == 2 and "ndim=4" in message:  # a volume's layer, a vector
        return ConfigError(
            f"needs a volume (height x width x depth) and gets a vector of {shapes[0]} "
            "values: a Flatten or Dense layer before it made the volume a vector",
            file=node.file, line=node.line, where=node.where(),
            hint="put it before the Flatten: convolution and pooling layers work on volumes, "
                 "Flatten and Dense come after them")
    hint = "check the arguments of this layer and of the layers before it"
    if node.args.get("data_format") == "channels_first":
        dims = [str(d) for d in incoming[0].shape[1:]]
        hint = (f"`data_format: channels_first` reads the {shapes[0]} input as {dims[0]} "
                f"channels of {'x'.join(dims[1:])}; cnncli feeds images as height x width x "
                "channels: remove `data_format` (channels_last is the default)")
    return ConfigError(f"cannot take its {shapes[0]} input: {message}", file=node.file,
                       line=node.line, where=node.where(), hint=hint)


def _check_output(expanded: expansion.Expanded, outputs) -> None:
    last = expanded.nodes[-1]
    classes = expanded.spec.classes
    if len(outputs.shape) != 2:
        raise ConfigError(
            f"the network ends with a {dims_text(outputs.shape[1:])} volume, not a vector of class "
            "scores", file=last.file, line=last.line, where=last.where(),
            hint="add `- Flatten` (or GlobalAveragePooling2D) before the last Dense layers")
    if classes is not None and outputs.shape[-1] != classes:
        raise ConfigError(
            f"the network ends with {outputs.shape[-1]} outputs but `classes` is {classes}",
            file=last.file, line=last.line, where=last.where(),
            hint="end with `Dense: {units: $classes, activation: softmax}`")


def _output_warnings(expanded: expansion.Expanded, outputs) -> list[str]:
    """What is odd about a network's output for a classifier: training's loss, evaluate's
    figures and predict's percentages all read it as one probability per class."""
    nodes = {n.name: n for n in expanded.nodes}
    node = nodes[expanded.output]
    notes = []
    activation = node.args.get("activation")
    if not _gives_probabilities(node, nodes):
        made = f"a {activation} activation" if isinstance(activation, str) else (
            "no activation" if activation is None else "an activation that is not softmax")
        notes.append(f"{node.where()}: the network's output has {made}, so its outputs "
                     "are not class probabilities, as the loss and predict's percentages "
                     "take them to be; end with `activation: softmax`")
    if outputs.shape[-1] == 1:
        said = ("a softmax over one class is always 100%" if activation == "softmax" else
                "cnncli's classifiers give one probability per class")
        notes.append(f"{node.where()}: one output: {said}; a classifier of two classes has "
                     "`classes: 2` (two outputs, softmax)")
    return notes


def _gives_probabilities(node: expansion.Node, nodes: dict) -> bool:
    """Whether `node`'s output is one probability per class: a softmax (layer or
    activation), a pretrained network's own classifier, or one of those through layers
    that keep it so (Dropout after the softmax; the Average of softmax branches)."""
    if node.layer in (backbone.LAYER, "Softmax") or node.args.get("activation") == "softmax":
        return True
    if node.layer not in KEEPS_PROBABILITIES or any(i not in nodes for i in node.inputs):
        return False  # (the model's input is not a node: never probabilities)
    return all(_gives_probabilities(nodes[i], nodes) for i in node.inputs)


def _model_name(name: str) -> str:
    """`name` as Keras and TensorFlow take a model's name: ASCII letters, digits, `_`, `-`
    and `.`, beginning with a letter, digit or dot (TensorFlow's rule for a name scope;
    ``猫モデル`` or ``[v2] net`` failed mid-training). The run keeps its own name.

    >>> _model_name("[v2] net"), _model_name("猫モデル"), _model_name("mnist_net")
    ('v2_net', 'model', 'mnist_net')
    """
    cleaned = re.sub(r"[^A-Za-z0-9_.-]+", "_", name).lstrip("_-").rstrip("_")
    return cleaned or "model"
