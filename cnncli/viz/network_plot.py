"""The network drawn as the lecture draws it: each layer a box whose size follows its
output volume, input to output, left to right.

A box's height grows with the square root of the volume's height (224 -> 15 units,
7 -> 2.6), its width with the logarithm of its depth, so VGG16's five pooling stages
step down visibly while its 512-deep volumes still fit; the volume (HxWxD) is written on
it. Convolutions, pooling, the input and merges have their own colours; fully-connected
layers are thin bars whose height grows with the logarithm of their units. Parallel
branches (GoogLeNet's inception modules, residual blocks) are drawn side by side, one
above the other. Layers that keep their input's shape (Dropout, BatchNormalization,
activations) and reshaping ones (Flatten) are left out: a box would repeat the one
before it (the lecture's tables have no such rows; `cnncli summary` lists them, with the
memory they take).

>>> from cnncli.model import builder, spec
>>> boxes = layout(builder.build_checked(spec.load("mnist_net"))).boxes
>>> [(b.label, b.volume) for b in boxes if b.kind != "fc"]
[('INPUT', '28x28x1'), ('CONV5-32 + ReLU', '28x28x32'), ('POOL2', '14x14x32'), \
('CONV5-64 + ReLU', '14x14x64'), ('POOL2', '7x7x64')]
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path

from cnncli import plots
from cnncli.model import expand, layer_kinds, summary
from cnncli.model.builder import Built

#: Okabe and Ito's colours, told apart by colour-blind eyes; the four kinds every network
#: has differ in brightness too (grey 189, 158, 119, 213: a print in grey keeps them
#: apart), and the two whose brightness is near another's are hatched.
COLOURS = {"input": "#bdbdbd", "conv": "#56b4e9", "pool": "#d55e00", "fc": "#f0e442",
           "merge": "#009e73", "other": "#cc79a7"}
HATCHES = {"merge": "//", "other": ".."}
LEGEND = [(COLOURS["input"], "input"), (COLOURS["conv"], "convolution"),
          (COLOURS["pool"], "pooling"), (COLOURS["fc"], "fully connected"),
          (COLOURS["merge"], "merge"), (COLOURS["other"], "other")]
MERGES = set(expand.MERGES.values())
GAP_X, GAP_Y, BAR_WIDTH = 1.2, 1.0, 0.8


@dataclass
class Box:
    """One drawn layer: what it is, and where (data units, centre and size)."""

    name: str
    kind: str  # input, conv, pool, fc, merge, other
    label: str  # the lecture's name: CONV3-64 + ReLU, POOL2, FC-4096
    volume: str  # 224x224x64, or 4096
    inputs: list[str]  # the drawn boxes feeding it
    width: float = 0.0
    height: float = 0.0
    x: float = 0.0
    y: float = 0.0
    column: int = 0
    lanes: tuple = ()  # (fork, branch, branches) for each branching it sits inside


@dataclass
class Layout:
    name: str
    boxes: list[Box] = field(default_factory=list)


def layout(built: Built) -> Layout:
    """Where each layer of `built` goes."""
    boxes = _boxes(built)
    _place(boxes)
    return Layout(built.expanded.name, boxes)


def write(built: Built, path: str | Path) -> Path:
    """The drawing of `built` as a PNG at `path`."""
    drawn = layout(built)
    by_name = {b.name: b for b in drawn.boxes}
    rects = [plots.DiagramBox(b.x - b.width / 2, b.y - b.height / 2, b.width, b.height,
                              COLOURS[b.kind], text=b.volume,
                              caption="" if b.lanes else b.label,  # branches share a column
                              hatch=HATCHES.get(b.kind, ""))
             for b in drawn.boxes]
    lines = [_line(by_name[i], b, drawn.boxes) for b in drawn.boxes for i in b.inputs]
    used = {b.kind for b in drawn.boxes}
    legend = [(c, t, HATCHES.get(kind, "")) for (c, t), kind in zip(LEGEND, COLOURS, strict=True)
              if kind in used]
    return plots.box_diagram(rects, lines, path, title=drawn.name, legend=legend)


def _line(source: Box, dest: Box, boxes: list[Box]) -> list[tuple[float, float]]:
    """The points of the line from `source` to `dest`: straight, or, when that would
    pass behind boxes of the columns between (a residual block's identity path), over
    them: up from `source`, across, down into `dest`."""
    start, end = (source.x + source.width / 2, source.y), (dest.x - dest.width / 2, dest.y)

    def height_at(x: float) -> float:
        return start[1] + (end[1] - start[1]) * (x - start[0]) / (end[0] - start[0])

    behind = [b for b in boxes if source.column < b.column < dest.column
              and abs(height_at(b.x) - b.y) < b.height / 2]
    if not behind:
        return [start, end]
    over = max(b.y + b.height / 2 for b in [source, dest, *behind]) + GAP_Y / 2
    return [(source.x, source.y + source.height / 2), (source.x, over), (dest.x, over),
            (dest.x, dest.y + dest.height / 2)]


def _kind(layer_class: str) -> str:
    return layer_kinds.kind(layer_class) or ("merge" if layer_class in MERGES else "other")


def _boxes(built: Built) -> list[Box]:
    """The layers worth drawing, each with its inputs among the drawn ones."""
    expanded = built.expanded
    # Summarize without folding blocks, for the lecture's label of every single layer.
    unfolded = dataclasses.replace(expanded, nodes=[dataclasses.replace(n, group=None)
                                                    for n in expanded.nodes])
    rows = {r.name: r for r in summary.summarize(Built(built.model, unfolded)).rows}
    shape = tuple(expanded.input_shape)
    boxes = [_sized(Box("input", "input", "INPUT", rows["input"].volume, []), shape)]
    drawn_as = {"input": "input"}  # node name -> the drawn box standing for it
    shapes = {"input": shape}
    for node in expanded.nodes:
        out = tuple(built.model.get_layer(node.name).output.shape[1:])
        shapes[node.name] = out
        kind = _kind(node.layer)
        keeps_shape = all(shapes[i] == out for i in node.inputs)
        if not rows[node.name].shown or (kind == "other" and keeps_shape):
            drawn_as[node.name] = drawn_as[node.inputs[0]]
            continue
        inputs = list(dict.fromkeys(drawn_as[i] for i in node.inputs))
        row = rows[node.name]
        boxes.append(_sized(Box(node.name, kind, row.layer, row.volume, inputs), out))
        drawn_as[node.name] = node.name
    return boxes


def _sized(box: Box, shape: tuple) -> Box:
    if len(shape) >= 2:  # a volume: height from its height, width from its depth
        box.height = math.sqrt(shape[0])
        box.width = 0.8 * math.log2(shape[-1] + 1) if len(shape) == 3 else 1.0
    else:  # a vector: a bar
        box.height = 1.2 * math.log2(shape[0] + 1)
        box.width = BAR_WIDTH
    return box


def _place(boxes: list[Box]) -> None:
    """Columns by longest path from the input; branches stacked around their fork's line."""
    by_name = {b.name: b for b in boxes}
    consumers: dict[str, list[str]] = {b.name: [] for b in boxes}
    for b in boxes:
        for i in b.inputs:
            consumers[i].append(b.name)
    for b in boxes:
        preds = [by_name[i] for i in b.inputs]
        b.column = 1 + max((p.column for p in preds), default=-1)
        if len(preds) == 1:
            fork = preds[0]
            branches = [c for c in consumers[fork.name] if len(by_name[c].inputs) == 1]
            b.lanes = fork.lanes + (((fork.name, branches.index(b.name), len(branches)),)
                                    if len(branches) > 1 else ())
        elif preds:  # a merge: back on the line its branches left
            b.lanes = _common_prefix([p.lanes for p in preds])
    spread: dict[str, float] = {}
    for b in boxes:
        for fork, _, _ in b.lanes:
            spread[fork] = max(spread.get(fork, 0.0), b.height + GAP_Y)
    for b in boxes:
        b.y = sum(((n - 1) / 2 - i) * spread[fork] for fork, i, n in b.lanes)  # first on top
    widths: dict[int, float] = {}
    for b in boxes:
        widths[b.column] = max(widths.get(b.column, 0.0), b.width)
    left, starts = 0.0, {}
    for column in sorted(widths):
        starts[column] = left
        left += widths[column] + GAP_X
    for b in boxes:
        b.x = starts[b.column] + widths[b.column] / 2


def _common_prefix(lanes: list[tuple]) -> tuple:
    prefix = []
    for parts in zip(*lanes, strict=False):
        if any(p != parts[0] for p in parts):
            break
        prefix.append(parts[0])
    return tuple(prefix)
