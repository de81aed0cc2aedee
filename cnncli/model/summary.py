"""The lecture's table for any network: layer, volume size, description, parameters.

Plus totals: parameters (trainable and frozen: not changed by the optimizer, which
includes BatchNormalization's moving statistics, as in Keras' own summary), activation
memory per image (forward; the backward pass is estimated at twice that, as the lecture
does), and multiply-adds per image. A pretrained backbone is one row (``expand=True``:
a row per layer inside it).

>>> s = summarize(build_checked(spec.load("mnist_net")))      # doctest: +SKIP
>>> [r.layer for r in s.rows if r.shown][:3]                  # doctest: +SKIP
['INPUT', 'CONV5-32 + ReLU', 'POOL2']
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING

from cnncli.model import backbone, layer_kinds
from cnncli.model.builder import Built
from cnncli.model.expand import MERGES, Node
from cnncli.model.shapes import as_tuple, transposed_output, window_output
from cnncli.text import count, dims_text

if TYPE_CHECKING:
    import keras

BYTES_PER_VALUE = 4  # float32 activations
_ACTIVATIONS = {"relu": "ReLU", "softmax": "Softmax", "tanh": "tanh", "sigmoid": "sigmoid",
                "elu": "ELU", "gelu": "GELU", "selu": "SELU", "swish": "Swish", "silu": "SiLU",
                "leaky_relu": "LeakyReLU", "relu6": "ReLU6"}
_HIDDEN = {"Flatten", "Reshape"}  # reshaping only: the lecture's tables leave them out


@dataclass
class Row:
    name: str  # Keras layer name (conv1_1); for a folded block, the block's name
    layer: str  # the lecture's label: CONV3-64 + ReLU, POOL2, FC-4096 + ReLU
    volume: str  # 224x224x64, or 4096
    description: str
    params: int
    activations: int  # output values per image
    macs: int  # multiply-adds per image
    shown: bool = True  # False for rows the lecture's tables leave out (Flatten)
    explain: list[str] = field(default_factory=list)
    trainable: int = 0  # of `params`, those the optimizer changes; the rest are frozen

    @property
    def frozen(self) -> int:
        return self.params - self.trainable


@dataclass
class Summary:
    name: str
    rows: list[Row]
    params: int
    trainable_params: int
    forward_bytes: int
    backward_bytes: int
    macs: int
    warnings: list[str] = field(default_factory=list)
    #: layers with weights whose multiply-adds `macs` leaves out (`uncounted`)
    uncounted: list[str] = field(default_factory=list)

    @property
    def frozen_params(self) -> int:
        return self.params - self.trainable_params

    def to_dict(self) -> dict:
        data = asdict(self)
        data["frozen_params"] = self.frozen_params
        for row, out in zip(self.rows, data["rows"], strict=True):
            out["frozen"] = row.frozen
        return data


def summarize(built: Built, *, expand: bool = False) -> Summary:
    """Summarize a built model, one row per layer (named blocks folded into one row, a
    backbone one row unless `expand`)."""
    model, expanded = built.model, built.expanded
    shape = expanded.input_shape
    rows = [Row("input", "INPUT", dims_text(shape), _input_description(shape), 0,
                math.prod(shape), 0)]
    groups: dict[str, Row] = {}
    last = expanded.nodes[-1].name
    for node in expanded.nodes:
        layer = model.get_layer(node.name)
        if node.layer == backbone.LAYER and expand:
            rows += _inner_rows(layer)
            continue
        row = _row(node, layer, is_output=node.name == last)
        if node.group:
            folded = groups.get(node.group)
            if folded is None:
                folded = groups[node.group] = Row(node.group, node.group.upper(), "",
                                                  "", 0, 0, 0)
                rows.append(folded)
            folded.params += row.params
            folded.trainable += row.trainable
            folded.activations += row.activations
            folded.macs += row.macs
            folded.volume = row.volume
            folded.explain += [f"{row.name}: {e}" for e in row.explain]
            members = [n for n in expanded.nodes if n.group == node.group]
            folded.description = (f"Block of {len(members)} layers: "
                                  + _block_description(members))
        else:
            rows.append(row)
    trainable = int(sum(math.prod(w.shape) for w in model.trainable_weights))
    params = int(sum(math.prod(w.shape) for w in model.weights))
    # Reshaping layers (Flatten) return a view of their input: no memory of their own.
    forward = sum(r.activations for r in rows if r.shown) * BYTES_PER_VALUE
    return Summary(
        name=expanded.name, rows=rows, params=params, trainable_params=trainable,
        forward_bytes=forward, backward_bytes=2 * forward, macs=sum(r.macs for r in rows),
        warnings=list(built.warnings), uncounted=uncounted(model),
    )


#: Layers with weights whose work is not multiply-adds of matrices: a value each (a
#: normalisation, PReLU's slopes) or a lookup (Embedding).
_NO_PRODUCTS = {"BatchNormalization", "FusedBatchNormalization", "LayerNormalization",
                "GroupNormalization", "RMSNormalization", "UnitNormalization",
                "Normalization", "Embedding", "PReLU"}


def uncounted(model: keras.Model) -> list[str]:
    """The layers of `model` (backbones opened) with weights whose multiply-adds the
    summary does not count: it counts convolutions and dense layers (an LSTM's are not).

    >>> import keras
    >>> uncounted(keras.Sequential([keras.Input((4, 3)), keras.layers.LSTM(2),
    ...                             keras.layers.Dense(1)]))
    ['lstm']
    """
    names = []
    for layer in backbone.top_layers(model):
        if backbone.is_network(layer):
            names += [f"{layer.name}/{name}" for name in uncounted(layer)]
            continue
        kind = type(layer).__name__
        if layer.count_params() and kind != "Dense" and kind not in _NO_PRODUCTS and \
                layer_kinds.kind(kind) != "conv":
            names.append(layer.name)
    return names


def _row(node, layer, *, is_output: bool) -> Row:
    out_shape = tuple(layer.output.shape[1:])
    in_shape = tuple(layer.input.shape[1:]) if not isinstance(layer.input, list) else None
    params = layer.count_params()
    activations = math.prod(out_shape)
    trainable = int(sum(math.prod(w.shape) for w in layer.trainable_weights))
    if node.layer == backbone.LAYER:  # its layers' outputs and work, in one row
        inner = [r for r in _inner_rows(layer) if r.shown]
        return Row(node.name, node.name.upper(), dims_text(out_shape), _backbone_description(
            node, layer), params, sum(r.activations for r in inner), sum(r.macs for r in inner),
            trainable=trainable)
    cfg = layer.get_config()
    act = _ACTIVATIONS.get(str(cfg.get("activation", "")), None)
    suffix = f" + {act}" if act else ""
    kind, macs, explain = type(layer).__name__, 0, []  # Keras' aliases: one class
    lecture_kind = layer_kinds.kind(kind)
    if lecture_kind == "conv" and "kernel_size" in cfg:
        label, desc, macs, explain = _conv_parts(kind, cfg, in_shape, out_shape, suffix)
    elif lecture_kind == "pool" and "pool_size" in cfg:
        label, desc, explain = _pool_parts(kind, cfg, in_shape)
    elif "GlobalAverage" in kind or "GlobalMax" in kind:
        label, desc = f"GLOBAL {'MAX' if 'Max' in kind else 'AVG'}POOL", "Pooling over the " \
            "whole height and width"
    elif kind == "Dense":
        units = cfg["units"]
        macs = (in_shape[-1] if in_shape else 0) * math.prod(out_shape)
        if is_output:
            label = f"FC-{units}" + (" Softmax" if act == "Softmax" else suffix)
            desc = f"Output layer with {units} possible " + (
                "category" if units == 1 else "categories")
        else:
            label, desc = f"FC-{units}{suffix}", f"Fully-connected layer with " \
                f"{units} {'unit' if units == 1 else 'units'}"
    elif kind == "Dropout":
        label, desc = f"DROPOUT {cfg['rate']:g}", f"Drops {cfg['rate']:.0%} of the values " \
            "while training"
    elif kind == "Softmax" or kind in ("Activation", "ReLU") and (
            kind == "Activation" or _plain_relu(cfg)):
        name = act or (kind if kind in ("ReLU", "Softmax") else str(cfg.get("activation")))
        label = name.upper()  # the lecture's RELU layer, whichever way it is written
        desc = _ACTIVATION_WORDS.get(name, f"{name} on each value")
    elif kind == "ZeroPadding2D":
        pad = cfg["padding"]
        label, desc = "PAD", f"Zero-padding {pad}"
    elif kind in MERGES.values():
        label, desc = kind.upper(), f"{kind} of {len(node.inputs)} branches"
    else:
        label, desc = kind.upper() + suffix, f"Keras {kind}"
    return Row(node.name, label, dims_text(out_shape), desc, params, activations, macs,
               shown=kind not in _HIDDEN, explain=explain, trainable=trainable)


#: What an activation layer does, as the lecture says it (no weights, no matrices).
_ACTIVATION_WORDS = {"ReLU": "ReLU, max(0, x) of each value", "Softmax": "Softmax over the "
                     "values: probabilities that sum to 1"}


def _plain_relu(cfg: dict) -> bool:
    """A ReLU layer that is max(0, x): no slope below 0, no cap, no threshold."""
    return not cfg.get("negative_slope") and cfg.get("max_value") is None and \
        not cfg.get("threshold")


def _conv_parts(kind: str, cfg: dict, in_shape, out_shape, suffix: str):
    """A convolution's label (CONV3-64), description, multiply-adds and size arithmetic."""
    k = cfg["kernel_size"]
    size = f"{k[0]}" if len(set(k)) == 1 else dims_text(k)
    filters = cfg.get("filters") or out_shape[-1]
    depth = in_shape[-1]
    stride = cfg.get("strides", (1,))
    window = dims_text(k)
    multiplier = cfg.get("depth_multiplier", 1)
    if "Depthwise" in kind:
        desc = f"Depthwise conv layer: {depth * multiplier} {window}x1 filters, " \
               f"{multiplier} per input channel"
    elif "Separable" in kind:
        desc = f"Separable conv layer: {window}x1 per input channel, then {filters} " \
               f"1x1x{depth * multiplier} filters"
    else:
        desc = f"{'Transposed conv' if 'Transpose' in kind else 'Conv'} layer with " \
               f"{filters} {window}x{depth // cfg.get('groups', 1)} " \
               f"{'filter' if filters == 1 else 'filters'}"
    if set(stride) != {1}:
        desc += f", stride {stride[0] if len(set(stride)) == 1 else stride}"
    macs = _conv_macs(kind, cfg, k, in_shape, out_shape, filters, multiplier)
    padding = cfg.get("padding", "valid")
    if "Transpose" in kind:  # the output grows: the lecture's formula run backwards
        extra = cfg.get("output_padding")
        explain = [f"F={k[0]}, S={stride[0]} ({padding}, transposed): "
                   + transposed_output(in_shape[0], k[0], stride[0], padding,
                                       as_tuple(cfg.get("dilation_rate", 1), len(k))[0],
                                       None if extra is None else as_tuple(extra, len(k))[0])]
    else:
        explain = _explain(in_shape, k, stride, padding, cfg.get("dilation_rate", 1))
    return f"{_CONV_KINDS.get(kind, 'CONV')}{size}-{filters}{suffix}", desc, macs, explain


#: The label of a convolution that is not the lecture's plain CONV: a student reading
#: the table sees which kind it is before reading its description.
_CONV_KINDS = {"Conv2DTranspose": "TCONV", "DepthwiseConv2D": "DWCONV",
               "SeparableConv2D": "SEPCONV"}


def _conv_macs(kind: str, cfg: dict, k, in_shape, out_shape, filters: int,
               multiplier: int) -> int:
    """Multiply-adds per image of a convolution of any kind."""
    depth = in_shape[-1]
    if "Separable" in kind:  # one window per input channel, then 1x1 across them
        return math.prod(out_shape[:-1]) * depth * multiplier * (math.prod(k) + filters)
    if "Transpose" in kind:  # each input value is spread over a window of every filter
        return math.prod(in_shape[:-1]) * math.prod(k) * depth * filters
    per_output = 1 if "Depthwise" in kind else depth // cfg.get("groups", 1)
    return math.prod(out_shape) * math.prod(k) * per_output  # depthwise: one channel each


def _pool_parts(kind: str, cfg: dict, in_shape):
    """A pooling layer's label (POOL2), description and size arithmetic."""
    p = cfg["pool_size"]
    s = cfg.get("strides") or p
    size = f"{p[0]}" if len(set(p)) == 1 else dims_text(p)
    op = "max" if "Max" in kind else "average"
    label = f"POOL{size}" if op == "max" else f"AVGPOOL{size}"
    standard = op == "max" and tuple(p) == (2, 2) and tuple(s) == (2, 2)
    desc = ("Standard 2x2 pooling layer with stride 2" if standard else
            f"{'x'.join(map(str, p))} {op} pooling with stride "
            f"{s[0] if len(set(s)) == 1 else s}")
    return label, desc, _explain(in_shape, p, s, cfg.get("padding", "valid"), 1,
                                 pooling=True)


def _backbone_description(node, layer) -> str:
    inner = len(backbone.top_layers(layer))
    if "name" in node.args:
        weights = node.args.get("weights", "imagenet")
        said = {"imagenet": "ImageNet weights", backbone.NO_WEIGHTS: "random weights"}.get(
            weights, f"weights from {weights}")
        return f"{node.args['name']} without its classifier: {count(inner, 'layer')}, {said}"
    cut = backbone.top_layers(layer)[-1].name
    return f"{node.args['model']} up to '{cut}': {count(inner, 'layer')}, its weights"


def _inner_rows(model: keras.Model, prefix: str = "") -> list[Row]:
    """A row per layer of a backbone sub-model (nested models opened too)."""
    rows = []
    layers = backbone.top_layers(model)
    for i, layer in enumerate(layers):
        name = f"{prefix}{model.name}/{layer.name}"
        if backbone.is_network(layer):
            rows += _inner_rows(layer, f"{prefix}{model.name}/")
            continue
        inputs = layer.input if isinstance(layer.input, list) else [layer.input]
        node = Node(i + 1, name, type(layer).__name__, {}, [str(j) for j in
                                                            range(len(inputs))])
        rows.append(_row(node, layer, is_output=False))
    return rows


def _explain(in_shape, size, strides, padding, dilation, *, pooling: bool = False
             ) -> list[str]:
    """F, S, P and the formula per spatial axis (once when all axes agree)."""
    dims = len(in_shape) - 1
    axes = list(zip(in_shape[:-1], as_tuple(size, dims), as_tuple(strides, dims),
                    as_tuple(dilation, dims), strict=False))
    same = len(set(axes)) == 1
    names = ["height", "width", "depth"] if dims <= 3 else [f"axis {i}" for i in range(dims)]
    lines = []
    for name, (w, f, s, d) in zip(names, axes[:1] if same else axes, strict=False):
        out = window_output(w, f, s, padding, d, pooling=pooling)
        spread = f" ({f} dilated by {d}: ({f} - 1) x {d} + 1)" if d > 1 else ""
        text = f"F={out.f}{spread}, S={s}, P={out.p:g} ({padding}): {out.formula}"
        if out.note:
            text += f"; {out.note}"
        lines.append(text if same else f"{name}: {text}")
    return lines


def _block_description(members) -> str:
    merges = [m for m in members if len(m.inputs) > 1]
    if merges:
        last = merges[-1]
        return f"{len(last.inputs)} parallel branches, {last.layer.lower()}d"
    return ", ".join(m.layer for m in members)


def _input_description(shape) -> str:
    if len(shape) == 3:
        h, w, c = shape
        return f"{h}x{w} pixels and {count(c, 'color channel')}"
    return f"input of shape {dims_text(shape)}"
