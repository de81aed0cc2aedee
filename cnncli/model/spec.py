"""Architecture specs: YAML in, a flat, named, checked list of layers out.

A spec reads like the Keras code it stands for::

    name: mnist_net
    input: [28, 28, 1]          # the input volume: height, width, channels
    classes: 10                 # `$classes` below; overridable per run
    layers:
      - Conv2D: {filters: 32, kernel_size: 5, padding: same, activation: relu}
      - MaxPooling2D: {pool_size: 2}
      - Flatten
      - Dense: {units: $classes, activation: softmax}

Besides Keras layers (any class in ``keras.layers``, by its name, with its
argument names; a scalar stands for the first argument: ``Dropout: 0.5``):

* ``repeat: N`` next to a layer repeats it N times;
* ``blocks:`` defines named, parameterised groups of layers (``$param`` inside),
  used like layers: ``- vgg_block: {filters: 64, convs: 2}``;
* ``branches: [[...], [...], []]`` with ``merge: concatenate`` (or ``add``) runs
  branches in parallel on the same input and merges them; ``[]`` is the identity;
* ``pretrained: {name: resnet50, weights: imagenet}`` (or ``{model: runs/x/1}``) as the
  first layer: a network without its classifier, one node (`cnncli.model.backbone`);
  the spec's input and preprocessing default to that network's.

`expand` turns a spec into `Node`s: each with a readable, stable name
(``conv1_1``, ``pool1``, ``fc1``...), its Keras class and arguments, its inputs,
and the file and line it came from. Problems are collected, then raised together.

>>> spec = parse({"input": [28, 28, 1], "classes": 10,
...               "layers": ["Flatten", {"Dense": {"units": "$classes"}}]})
>>> [(n.name, n.layer, n.args) for n in expand(spec).nodes]
[('flatten1', 'Flatten', {}), ('fc1', 'Dense', {'units': 10})]
"""

from __future__ import annotations

import inspect
import re
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from cnncli import config, yamlio
from cnncli.config import PREPROCESSING_MODES
from cnncli.errors import CnnError, ConfigError, raise_all, suggest

SPEC_KEYS = {
    "name": "the model's name (default: the file name)",
    "description": "one line saying what this network is",
    "input": "the input volume [height, width, channels], e.g. [28, 28, 1]",
    "classes": "number of output classes, used as $classes",
    "preprocessing": "how images are scaled: scale (x/255), tf ([-1, 1]), caffe, torch, none",
    "blocks": "named groups of layers with parameters, used like layers",
    "layers": "the list of layers, from input to output",
}
ENTRY_KEYS = {"repeat", "name", "branches", "merge"}
MERGES = {
    "concatenate": "Concatenate",
    "add": "Add",
    "multiply": "Multiply",
    "average": "Average",
    "maximum": "Maximum",
    "minimum": "Minimum",
    "subtract": "Subtract",
}
INPUT = "input"  # the name of the model's input in `Node.inputs`
MAX_LAYERS = 10_000  # `repeat` and nested blocks cannot blow up past this
_PARAM = re.compile(r"^\$([A-Za-z_]\w*)$")


@dataclass
class Spec:
    """A parsed (not yet expanded) spec."""

    name: str
    layers: list
    input: list | None = None
    classes: int | None = None
    preprocessing: str = "scale"
    description: str = ""
    blocks: dict = field(default_factory=dict)
    file: str | None = None
    raw: dict = field(default_factory=dict, repr=False)

    def with_overrides(self, *, classes: int | None = None, input: list | None = None) -> Spec:
        """A copy with another number of classes or input size."""
        spec = Spec(**{k: getattr(self, k) for k in self.__dataclass_fields__})
        if classes is not None:
            spec.classes = classes
        if input is not None:
            spec.input = list(input)
        return spec


@dataclass
class Node:
    """One Keras layer of an expanded spec."""

    index: int  # 1-based position in the expanded network
    name: str
    layer: str  # Keras class name
    args: dict
    inputs: list[str]  # names of the nodes feeding it; INPUT is the model's input
    file: str | None = None
    line: int | None = None
    group: str | None = None  # named block instance it belongs to (summary folds these)

    def where(self) -> str:
        return f"layer {self.index} '{self.name}' ({self.layer})"


@dataclass
class Expanded:
    """A spec expanded into a flat list of nodes, ready for the builder."""

    spec: Spec
    nodes: list[Node]
    input_shape: tuple[int, ...]
    output: str  # name of the output node

    @property
    def name(self) -> str:
        return self.spec.name


# --------------------------------------------------------------------------- parsing


def load(path_or_name: str | Path) -> Spec:
    """A spec from a YAML file, or a built-in one by name (``vgg16``)."""
    from cnncli.model import architectures

    path = architectures.resolve(path_or_name)
    doc = yamlio.load(path)
    default_name = Path(path).stem
    return parse(doc, file=str(path), default_name=default_name)


def parse(doc: Any, *, file: str | None = None, default_name: str = "model") -> Spec:
    """Check a spec's top level (a mapping from YAML) and wrap it in a `Spec`."""
    if doc is None:
        raise ConfigError("the spec is empty", file=file,
                          hint="a spec needs at least `input:` and `layers:`")
    if not isinstance(doc, dict):
        raise ConfigError(
            f"a spec must be a mapping with `input:` and `layers:`, not a {_kind(doc)}",
            file=file, line=yamlio.line_of(doc),
            hint="see README.md, 'Architecture specs'",
        )
    errors: list[CnnError] = []
    for key in doc:
        if key not in SPEC_KEYS:
            errors.append(ConfigError(
                f"unknown key '{key}' in the spec", file=file, line=_key_line(doc, key),
                hint=suggest(key, SPEC_KEYS, listing="valid keys"),
            ))
    layers = doc.get("layers")
    if not isinstance(layers, list) or not layers:
        errors.append(ConfigError(
            "the spec has no `layers:` list" if layers is None else "`layers:` must be a "
            "non-empty list of layers", file=file, line=_key_line(doc, "layers"),
            hint="add e.g. `layers: [Flatten, {Dense: {units: 10, activation: softmax}}]`",
        ))
    blocks = doc.get("blocks") or {}
    if not isinstance(blocks, dict):
        errors.append(ConfigError("`blocks:` must be a mapping of block names to blocks",
                                  file=file, line=_key_line(doc, "blocks")))
        blocks = {}
    preprocessing = doc.get("preprocessing")
    if preprocessing is not None and preprocessing not in PREPROCESSING_MODES:
        errors.append(ConfigError(
            f"unknown preprocessing {preprocessing!r}", file=file,
            line=_key_line(doc, "preprocessing"),
            hint=suggest(preprocessing, PREPROCESSING_MODES, listing="use one of")))
    classes = doc.get("classes")
    if classes is not None and (not _is_int(classes) or classes < 1):
        errors.append(ConfigError(
            f"`classes` must be a whole number of at least 1, not {classes!r}",
            file=file, line=_key_line(doc, "classes"),
            hint="a classifier needs at least one class (usually 2 or more)"))
    raise_all(errors)
    brought = _backbone_defaults(layers) if doc.get("input") is None or preprocessing is None \
        else None
    return Spec(
        name=str(doc.get("name") or default_name),
        layers=layers,
        input=doc.get("input") or (list(brought[0]) if brought else None),
        classes=classes,
        preprocessing=str(preprocessing or (brought[1] if brought else "scale")),
        description=str(doc.get("description") or ""),
        blocks=blocks,
        file=file,
        raw=doc,
    )


def _backbone_defaults(layers) -> tuple | None:
    """(input, preprocessing) a first ``pretrained:`` layer brings, if it names one."""
    from cnncli.model import backbone

    first = layers[0] if isinstance(layers, list) and layers else None
    if not isinstance(first, dict) or backbone.ENTRY not in first:
        return None
    args, problems = backbone.entry_args(first[backbone.ENTRY])
    if problems:
        return None  # reported when the spec is expanded
    try:
        return backbone.default_shape(args)
    except CnnError:
        return None  # e.g. a model file that is missing: the builder says so


def check_input(value: Any, *, file: str | None = None, line: int | None = None):
    """The input volume as (height, width, channels), or a `ConfigError`.

    cnncli classifies images: grey (1 channel) or colour (3), as its data feeds them.
    """
    if value is None:
        raise ConfigError(
            "the spec has no input shape", file=file, line=line,
            hint="add `input: [height, width, channels]`, e.g. `input: [28, 28, 1]`")
    if (not isinstance(value, (list, tuple)) or len(value) != 3
            or not all(_is_int(v) and v >= 1 for v in value)):
        raise ConfigError(
            f"`input` must be [height, width, channels] of positive whole numbers, not "
            f"{value!r}", file=file, line=line,
            hint="e.g. [28, 28, 1] for grey images, [224, 224, 3] for colour ones")
    if value[2] not in (1, 3):
        raise ConfigError(
            f"`input` has {value[2]} channels; cnncli feeds images with 1 (grey) or 3 (RGB)",
            file=file, line=line, hint=f"use [{value[0]}, {value[1]}, 1] or "
                                       f"[{value[0]}, {value[1]}, 3]")
    return tuple(int(v) for v in value)


# ------------------------------------------------------------------------- expansion


@dataclass
class _Names:
    """Readable layer names: conv1_1, conv1_2, pool1, conv2_1, ... fc1, fc2."""

    prefix: str = ""
    staged: bool = True  # top level counts stages (pool ends one); inside groups just counts
    stage: int = 1
    counts: dict = field(default_factory=dict)

    def next(self, layer: str) -> str:
        kind = _kind_of_layer(layer)
        if kind == "conv" and self.staged:
            key = f"conv{self.stage}"
            self.counts[key] = self.counts.get(key, 0) + 1
            return f"{self.prefix}conv{self.stage}_{self.counts[key]}"
        if kind == "pool" and self.staged:
            name = f"{self.prefix}pool{self.stage}"
            self.stage += 1
            return name
        self.counts[kind] = self.counts.get(kind, 0) + 1
        return f"{self.prefix}{kind}{self.counts[kind]}"


def _kind_of_layer(layer: str) -> str:
    if "Conv" in layer:
        return "conv"
    if "Pool" in layer:
        return "pool"
    if layer == "Dense":
        return "fc"
    return re.sub(r"(?<!^)(?=[A-Z][a-z])", "_", layer).lower().replace("2_d", "2d")


class _Expander:
    def __init__(self, spec: Spec):
        self.spec = spec
        self.file = spec.file
        self.nodes: list[Node] = []
        self.used_names: set[str] = {INPUT}
        self.errors: list[CnnError] = []

    # Errors name the file, the line, and the layer by index and name.
    def error(self, message, line, where=None, hint=None):
        self.errors.append(ConfigError(message, file=self.file, line=line, where=where,
                                       hint=hint))

    def add(self, layer, args, inputs, names, line, explicit=None, group=None) -> str:
        if len(self.nodes) >= MAX_LAYERS:
            raise ConfigError(f"the spec expands to more than {MAX_LAYERS:,} layers",
                              file=self.file, line=line, hint="check the `repeat:` counts")
        name = names.prefix + explicit if explicit else names.next(layer)
        base, k = name, 1
        while name in self.used_names:
            k += 1
            name = f"{base}_{k}"
        self.used_names.add(name)
        self.nodes.append(Node(len(self.nodes) + 1, name, layer, args, inputs, self.file, line,
                               group))
        return name

    def sequence(self, entries, tail, names, params, stack, line, group=None):
        """Expand a list of entries; returns the name of the last node (the new tail)."""
        if not isinstance(entries, list):
            self.error(f"expected a list of layers here, not a {_kind(entries)}", line)
            return tail
        for i, entry in enumerate(entries):
            tail = self.entry(entry, tail, names, params, stack,
                              _item_line(entries, i, line), group)
        return tail

    def entry(self, entry, tail, names, params, stack, line, group):
        where = f"layer {len(self.nodes) + 1}"
        if isinstance(entry, str):
            entry = {entry: None}
        if not isinstance(entry, dict) or not entry:
            self.error(f"a layer must be a name like `Flatten` or a mapping like "
                       f"`Conv2D: {{...}}`, not {entry!r}", line, where)
            return tail
        extra = {k: entry[k] for k in entry if k in ENTRY_KEYS}
        main = [k for k in entry if k not in ENTRY_KEYS]
        repeat = self.substitute(extra.get("repeat", 1), params, line, where)
        if not _is_int(repeat) or repeat < 1:
            self.error(f"`repeat` must be a whole number of at least 1, not {repeat!r}", line,
                       where)
            return tail
        explicit = extra.get("name")
        if explicit is not None and not re.fullmatch(r"[A-Za-z_][\w.-]*", str(explicit)):
            self.error(f"`name: {explicit}` is not a valid layer name", line, where,
                       "use letters, digits and _ (no spaces or /)")
            explicit = None
        if "branches" in entry:
            if main:
                self.error(f"an entry with `branches` cannot also be a layer ({main[0]})",
                           line, where, "put the layer in its own list entry")
            for k in range(repeat):
                name = f"{explicit}_{k + 1}" if explicit and repeat > 1 else explicit
                tail = self.branches(entry, tail, names, params, stack, line, name, group)
            return tail
        if "merge" in extra:
            self.error("`merge` belongs next to `branches`", line, where)
        if len(main) != 1:
            self.error(f"a layer entry has one layer name, found {len(main)}: "
                       f"{', '.join(map(str, main)) or 'none'}", line, where,
                       "write each layer as its own list item (`- Flatten`)")
            return tail
        key, value = main[0], entry[main[0]]
        if key == "pretrained":
            return self.pretrained(value, tail, line, explicit, group, repeat)
        for k in range(repeat):
            name = f"{explicit}_{k + 1}" if explicit and repeat > 1 else explicit
            if key in self.spec.blocks:
                tail = self.block(key, value, tail, names, params, stack, line, name, group)
            else:
                tail = self.layer(key, value, tail, names, params, line, name, group)
        return tail

    def layer(self, key, value, tail, names, params, line, explicit, group):
        where = f"layer {len(self.nodes) + 1}" + (f" '{explicit}'" if explicit else "")
        cls = _layer_class(key)
        if cls is None:
            self.error(f"unknown layer '{key}'", line, where, _unknown_layer_hint(key, self.spec))
            return tail
        args = self.layer_args(key, cls, value, params, line, where)
        if args is None:
            return tail
        return self.add(key, args, [tail], names, line, explicit, group)

    def layer_args(self, key, cls, value, params, line, where):
        if value is None:
            value = {}
        elif not isinstance(value, dict):
            first = _first_argument(cls)
            if first is None:
                self.error(f"{key} takes no positional argument; got {value!r}", line, where,
                           f"write `{key}: {{argument: value}}`")
                return None
            value = {first: value}
        args = {k: self.substitute(v, params, _key_line(value, k, line), where)
                for k, v in value.items()}
        valid = valid_arguments(cls)
        ok = True
        for arg in args:
            if arg in ("input_shape", "batch_input_shape", "input_dim"):
                self.error(f"`{arg}` is not set on a layer in a spec", _key_line(value, arg, line),
                           where, "give the input volume once, at the top: `input: [28, 28, 1]`")
                ok = False
            elif arg == "name":
                self.error(f"`name` goes next to the layer, not among the arguments of {key}",
                           _key_line(value, arg, line), where,
                           f"write `- {key}: {{...}}` and on the next line `  name: "
                           f"{value[arg]}`")
                ok = False
            elif arg not in valid:
                self.error(f"unknown argument '{arg}' for {key}", _key_line(value, arg, line),
                           where, " ".join(filter(None, (suggest(arg, valid), "valid "
                                                         "arguments: " + ", ".join(valid)))))
                ok = False
        return args if ok else None

    def pretrained(self, value, tail, line, explicit, group, repeat):
        """A backbone (`cnncli.model.backbone`): one node, the spec's first layer."""
        from cnncli.model import backbone

        where = f"layer {len(self.nodes) + 1} ({backbone.ENTRY})"
        args, problems = backbone.entry_args(value)
        for message, hint in problems:
            self.error(message, line, where, hint)
        if tail != INPUT or self.nodes or group or repeat != 1:
            self.error(f"`{backbone.ENTRY}:` can only be the first layer of a spec, once",
                       line, where, "put it first; the layers after it are the new head")
            return tail
        if problems:
            return tail
        name = explicit or args.get("name") or "backbone"
        return self.add(backbone.LAYER, args, [tail], _Names(), line, name, group)

    def block(self, key, value, tail, names, params, stack, line, explicit, group):
        where = f"layer {len(self.nodes) + 1} (block '{key}')"
        if key in stack:
            chain = " -> ".join([*stack[stack.index(key):], key])
            self.error(f"block '{key}' uses itself ({chain})", line, where,
                       "a block cannot contain itself; unroll it with `repeat:` instead")
            return tail
        block = self.spec.blocks[key]
        bline = yamlio.line_of(block, line)
        if not isinstance(block, dict) or "layers" not in block:
            self.error(f"block '{key}' must be a mapping with `layers:` (and `params:`)", bline)
            return tail
        declared = block.get("params") or []
        if not (isinstance(declared, (list, dict))
                and all(isinstance(p, str) for p in declared)):
            self.error(f"`params:` of block '{key}' must be a list of names or a mapping of "
                       f"names to defaults, not {declared!r}",
                       _key_line(block, "params", bline), where,
                       "e.g. `params: [filters, convs]` or `params: {filters: null, convs: 2}`")
            return tail
        defaults = dict(declared) if isinstance(declared, dict) else {p: None for p in declared}
        given = value if isinstance(value, dict) else ({} if value is None else None)
        if given is None:
            self.error(f"block '{key}' takes parameters as a mapping, not {value!r}", line,
                       where, f"write `{key}: {{{', '.join(defaults) or 'param'}: ...}}`")
            return tail
        unknown = [p for p in given if p not in defaults]
        for p in unknown:
            self.error(f"block '{key}' has no parameter '{p}'", _key_line(given, p, line), where,
                       suggest(p, defaults, listing="its parameters") if defaults
                       else "it takes no parameters")
        values = {p: self.substitute(v, params, line, where) for p, v in given.items()}
        missing = [p for p, d in defaults.items() if d is None and p not in values]
        for p in missing:
            self.error(f"block '{key}' needs the parameter '{p}'", line, where,
                       f"add it: `{key}: {{{p}: ...}}` (declared on line {bline})")
        if unknown or missing:
            return tail
        inner_params = {**params, **defaults, **values}
        if explicit:  # a named instance gets its own name space: inception3a_conv1 ...
            names = _Names(prefix=f"{names.prefix}{explicit}_", staged=False)
            group = group or explicit
        return self.sequence(block["layers"], tail, names, inner_params, [*stack, key],
                             yamlio.line_of(block["layers"], bline), group)

    def branches(self, entry, tail, names, params, stack, line, explicit, group):
        where = f"layer {len(self.nodes) + 1} (branches)"
        branches = entry["branches"]
        merge = str(entry.get("merge", "concatenate"))
        layer = MERGES.get(merge.lower()) or (merge if merge in MERGES.values() else None)
        if layer is None:
            self.error(f"unknown merge '{merge}'", _key_line(entry, "merge", line), where,
                       "use one of: " + ", ".join(MERGES))
            return tail
        if not isinstance(branches, list) or len(branches) < 2:
            self.error("`branches` must be a list of at least two lists of layers "
                       "(`[]` is the identity)", line, where)
            return tail
        count = names.counts["_groups"] = names.counts.get("_groups", 0) + 1
        if explicit:
            stem = f"{names.prefix}{explicit}_"
        else:
            stem = names.prefix if count == 1 and not names.staged else f"{names.prefix}m{count}_"
        tails = []
        for i, branch in enumerate(branches):
            sub = _Names(prefix=f"{stem}b{i + 1}_", staged=False)
            branch_line = _item_line(branches, i, line)
            tails.append(self.sequence(branch, tail, sub, params, stack, branch_line, group)
                         if branch else tail)
        merge_name = explicit or (f"{stem}{merge.lower()}" if stem else None)
        return self.add(layer, {}, [t for t in tails], names, line,
                        merge_name and merge_name[len(names.prefix):], group)

    def substitute(self, value, params, line, where):
        """Replace ``$param`` strings (also inside lists and mappings) by their values."""
        if isinstance(value, str):
            match = _PARAM.match(value)
            if not match:
                return value
            key = match.group(1)
            if key not in params or params[key] is None:
                self.error(f"'{value}' is not defined here", line, where,
                           "defined: " + (", ".join(f"${p}" for p in params if params[p]
                                                   is not None) or "nothing")
                           + ("; add `classes:` to the spec" if key == "classes" else ""))
                return None
            return params[key]
        if isinstance(value, list):
            return [self.substitute(v, params, line, where) for v in value]
        if isinstance(value, dict):
            return {k: self.substitute(v, params, line, where) for k, v in value.items()}
        return value


def expand(spec: Spec) -> Expanded:
    """Expand repeats, blocks and branches into named `Node`s; raise all problems found."""
    errors: list[CnnError] = []
    line = _key_line(spec.raw, "input")
    try:
        input_shape = check_input(spec.input, file=spec.file, line=line)
    except ConfigError as exc:
        errors.append(exc)
        input_shape = ()
    for name in spec.blocks:
        if _layer_class(str(name)) is not None:
            errors.append(ConfigError(
                f"block '{name}' has the name of a Keras layer", file=spec.file,
                line=_key_line(spec.blocks, name), hint="rename the block"))
    exp = _Expander(spec)
    exp.errors = errors
    params = {"classes": spec.classes}
    output = exp.sequence(spec.layers, INPUT, _Names(), params, [],
                          _key_line(spec.raw, "layers"))
    raise_all(exp.errors)
    if not exp.nodes:
        raise ConfigError("the spec has no layers", file=spec.file)
    return Expanded(spec=spec, nodes=exp.nodes, input_shape=input_shape, output=output)


# ------------------------------------------------------------------- Keras lookups


#: Keras layers a spec may not use: they run code, or load a model, from outside the spec.
REFUSED_LAYERS = {
    "Lambda": "Lambda layers run arbitrary code",
    "TFSMLayer": "TFSMLayer loads and runs a TensorFlow SavedModel from disk",
    "JaxLayer": "JaxLayer wraps Python functions",
    "FlaxLayer": "FlaxLayer wraps a Python module",
    "TorchModuleWrapper": "TorchModuleWrapper wraps a PyTorch module",
}


@cache
def _keras_layer_names() -> dict[str, type]:
    from cnncli.runtime import import_keras

    keras = import_keras()
    return {name: obj for name in dir(keras.layers)
            if isinstance(obj := getattr(keras.layers, name), type)
            and issubclass(obj, keras.layers.Layer)
            and name not in ("Layer", "InputLayer", "Input", *REFUSED_LAYERS)}


def _layer_class(name: str) -> type | None:
    """The Keras layer class called `name`, or None (also for `REFUSED_LAYERS`: specs run
    no code)."""
    return _keras_layer_names().get(name)


@cache
def valid_arguments(cls: type) -> tuple[str, ...]:
    """The argument names a Keras layer class accepts (its own and those of its bases)."""
    names = set()
    for klass in cls.__mro__:
        if "__init__" not in vars(klass):
            continue
        for p in inspect.signature(klass.__init__).parameters.values():
            if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.name != "self":
                names.add(p.name)
        if not any(p.kind == p.VAR_KEYWORD
                   for p in inspect.signature(klass.__init__).parameters.values()):
            break
    names |= {"dtype", "trainable"}
    return tuple(sorted(names - {"name", "input_shape", "batch_input_shape", "input_dim"}))


@cache
def _first_argument(cls: type) -> str | None:
    for p in list(inspect.signature(cls.__init__).parameters.values())[1:]:
        if p.kind == p.POSITIONAL_OR_KEYWORD:
            return p.name
    return None


# Names users bring from PyTorch, for the "did you mean" of an unknown layer.
_TORCH_NAMES = {"linear": "Dense", "conv2d": "Conv2D", "maxpool2d": "MaxPooling2D",
                "avgpool2d": "AveragePooling2D", "batchnorm2d": "BatchNormalization",
                "sequential": "a block (see `blocks:`)", "adaptiveavgpool2d":
                "GlobalAveragePooling2D", "softmax": "Softmax", "relu": "ReLU"}


def _unknown_layer_hint(key: Any, spec: Spec) -> str:
    key = str(key)  # YAML keys can be numbers, null, booleans
    torch = _TORCH_NAMES.get(key.lower())
    text = f"did you mean '{torch}'?" if torch else suggest(
        key, [*_keras_layer_names(), *map(str, spec.blocks)])
    text = f"{text} " if text else ""
    if key in REFUSED_LAYERS:
        text = f"{REFUSED_LAYERS[key]}: not allowed in specs. "
    return text + "Any class in keras.layers can be used, by its exact name (e.g. Conv2D, " \
        "MaxPooling2D, Dense), or a block defined under `blocks:`"


# ------------------------------------------------------------------------- helpers


def _kind(value: Any) -> str:
    for type_, name in ((dict, "mapping"), (list, "list"), (str, "string")):
        if isinstance(value, type_):
            return name
    return type(value).__name__


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _key_line(mapping: Any, key: Any, default: int | None = None) -> int | None:
    if isinstance(mapping, yamlio.YamlMap):
        return mapping.key_line(key)
    return default


def _item_line(seq: Any, index: int, default: int | None) -> int | None:
    if isinstance(seq, yamlio.YamlList):
        return seq.item_line(index)
    return default


def from_run_config(cfg, *, file: str | None = None, classes: int | None = None):
    """The architecture spec a run config names (built-in, file or inline), with overrides.

    `classes` (e.g. the dataset's) applies unless the config sets `model.classes`.
    """
    model = cfg.model
    if isinstance(model, str):
        return load(model).with_overrides(classes=classes)
    if "from" in model:
        from cnncli.model import transfer_spec

        section = config.check_part(("model",), model, model, file)
        doc = transfer_spec.document(section, classes=section.classes or classes,
                                     image_size=cfg.data.image_size, file=file)
        if doc is not None:  # a pretrained network or a trained model, with a new head
            return parse(doc, file=file, default_name=doc["name"])
        base = load(section.from_)
        return base.with_overrides(classes=section.classes or classes, input=section.input)
    inline = parse(model, file=file, default_name=Path(file).stem if file else "model")
    return inline if inline.classes is not None else inline.with_overrides(classes=classes)
