"""Which layer a format could not convert, for an error that names it.

Converters fail on TensorFlow operations they have no rule for, and say so in their own
words: tf2onnx writes the node (``functional_1/toy_1/resize1_1/resize/ScaleAndTranslate``),
LiteRT's converter ``'tf.ScaleAndTranslate' op is neither a custom op nor a flex op``,
OpenVINO ``No conversion rule found for operations: ScaleAndTranslate``. Keras names
operations after the layers that made them, so the layer is found from a node name, or
from an operation type looked up in the traced graph of the export.

>>> layer_in_path("cnncli_export_1/toy_1/resize1_1/resize/ScaleAndTranslate",
...               ["toy", "conv1", "resize1", "fc1"])
'resize1'
"""

from __future__ import annotations

import re

from cnncli.errors import CnnError, ModelError
from cnncli.export.formats import FORMATS
from cnncli.model.precision import all_layers
from cnncli.text import first_line

# What each converter says about an operation it cannot convert: the op type.
_OP_PATTERNS = (
    re.compile(r"'tf\.(\w+)' op is neither a custom op nor a flex op"),
    re.compile(r"No conversion rule found for operations?: ([\w, ]+)"),
    re.compile(r"Tensorflow op \[[^:\]]+: (\w+)\] is not supported"),
    re.compile(r"No Op registered for (\w+)"),
)
_NODE_PATTERN = re.compile(r"[\w.-]+(?:/[\w.-]+)+")


def another_format(fmt: str, failed=()) -> str:
    """The start of a hint naming the formats to try instead of `fmt`, but those that
    `failed` too ("" when none is left).

    >>> another_format("onnx"), another_format("onnx", failed={"litert"})
    ('export to another format (--format saved_model or litert)', 'export to another \
format (--format saved_model)')
    """
    others = [f for f in FORMATS[fmt].fallbacks if f not in failed]
    return f"export to another format (--format {' or '.join(others)})" if others else ""


def layer_in_path(node: str, names) -> str | None:
    """The innermost layer of `names` a graph node's path belongs to (Keras adds ``_1``)."""
    found = None
    for part in node.split("/")[:-1]:
        for name in sorted(names, key=len, reverse=True):
            if part == name or re.fullmatch(re.escape(name) + r"_\d+", part):
                found = name
                break
    return found


def op_types(message: str) -> list[str]:
    """Operation types a converter's message says it could not convert."""
    found = []
    for pattern in _OP_PATTERNS:
        for match in pattern.finditer(message):
            found += [op.strip() for op in match.group(1).split(",") if op.strip()]
    return list(dict.fromkeys(found))


def cannot_convert(fmt: str, wrapper, message: str, nodes: list[str] = ()) -> ModelError:
    """The error for a model `fmt` cannot convert, naming the layer when it can be found."""
    layers = {layer.name: layer for layer in all_layers(wrapper)}
    names = [n for n in layers if n != wrapper.name]
    culprit = next((name for node in [*nodes, *_NODE_PATTERN.findall(message)]
                    if (name := layer_in_path(node, names))), None)
    ops = op_types(message)
    if culprit is None and ops:
        culprit = _layer_of_ops(wrapper, ops, names)
    what = f"layer '{culprit}' ({type(layers[culprit]).__name__})" if culprit else \
        "a layer of the model"
    uses = f" (it uses the TensorFlow operation {', '.join(ops)})" if ops else ""
    detail = "" if ops else f": {first_line(message) or 'unknown error'}"
    return ModelError(f"the {fmt} format cannot convert {what}{uses}{detail}",
                      hint=f"{another_format(fmt)}, or replace that layer in the spec")


def said_once(failures: list[tuple[str, CnnError]], kept=()) -> list[CnnError]:
    """The errors of the formats that failed, (format, error) in the order they came: one
    per format and message (the same conversion fails for each quantization), their hints
    not naming a format that failed too (none of whose files was `kept`)."""
    failed = {fmt for fmt, _ in failures} - set(kept)
    said, seen = [], set()
    for fmt, exc in failures:
        if (fmt, exc.message) in seen:
            continue
        seen.add((fmt, exc.message))
        if exc.hint and (named := another_format(fmt)) in exc.hint:
            left = another_format(fmt, failed)
            exc.hint = exc.hint.replace(named, left) if left else \
                exc.hint.replace(f"{named}, or ", "").replace(named, "")
        said.append(exc)
    return said


def _layer_of_ops(wrapper, ops: list[str], names: list[str]) -> str | None:
    """Trace the export's graph and find a node of one of `ops`."""
    from cnncli.export.graph import signature
    from cnncli.runtime import import_tf

    tf = import_tf()
    spec = signature(wrapper.input_shape[1:])[0]
    fn = tf.function(lambda x: wrapper(x, training=False)).get_concrete_function(
        tf.TensorSpec(spec.shape, tf.uint8))
    for node in fn.graph.as_graph_def().node:
        if node.op in ops and (name := layer_in_path(node.name, names)):
            return name
    return None
