"""Expanding a spec: repeats, blocks and branches become a flat list of named layers.

`expand` turns a `Spec` into `Node`s, each with a readable, stable name (``conv1_1``,
``pool1``, ``fc1``...), its Keras class and arguments, its inputs, and the file and line
it came from. Problems are collected, then raised together.

>>> from cnncli.model import spec
>>> s = spec.parse({"input": [28, 28, 1], "classes": 10,
...                 "layers": ["Flatten", {"Dense": {"units": "$classes"}}]})
>>> [(n.name, n.layer, n.args) for n in expand(s).nodes]
[('flatten1', 'Flatten', {}), ('fc1', 'Dense', {'units': 10})]
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

from cnncli import config, yamlio
from cnncli.errors import CnnError, ConfigError, raise_all, suggest
from cnncli.model import keras_layers, layer_kinds
from cnncli.model.spec import Spec, check_input
from cnncli.yamlio import is_int, item_line, key_line, shown, type_name

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
    used: str = ""  # inside a block: which use of it (``in block 'res' used on line 11``)

    def where(self) -> str:
        return f"layer {self.index} '{self.name}' ({self.layer})" + (
            f", {self.used}" if self.used else "")


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
    snake = re.sub(r"(?<!^)(?=[A-Z][a-z])", "_", layer).lower().replace("2_d", "2d")
    return layer_kinds.kind(layer) or snake


class _Expander:
    def __init__(self, spec: Spec):
        self.spec = spec
        self.file = spec.file
        self.nodes: list[Node] = []
        self.used_names: set[str] = {INPUT}
        self.named: set[str] = set()  # the names given with `name:`
        self.errors: list[CnnError] = []
        self.unbuilt = 0  # layer entries that made no node (errors): they keep their number
        self.sound = MAX_LAYERS + 1  # the nodes before the first error
        self.uses: list[tuple[str, int | None]] = []  # the blocks being expanded, used where

    # Errors name the file, the line, and the layer by index and name; inside a block, the
    # line of its use too (its parameters' values come from there: `repeat: $convs`).
    def error(self, message, line, where=None, hint=None):
        self.sound = min(self.sound, len(self.nodes))
        if self.uses:
            where = f"{where + ', ' if where else ''}{self.use()}"
        self.errors.append(ConfigError(message, file=self.file, line=line, where=where,
                                       hint=hint))

    def use(self) -> str:
        """The use of the block being expanded, as errors say it ("" outside blocks)."""
        if not self.uses:
            return ""
        key, used = self.uses[-1]
        return f"in block '{key}' used on line {used}"

    def add(self, layer, args, inputs, names, line, explicit=None, group=None) -> str:
        if len(self.nodes) >= MAX_LAYERS:
            raise ConfigError(f"the spec expands to more than {MAX_LAYERS:,} layers",
                              file=self.file, line=line, hint="check the `repeat:` counts")
        name = names.prefix + explicit if explicit else names.next(layer)
        if explicit:  # `freeze: [out]` or `cut: out` must mean one layer
            if name in self.named:
                self.error(f"two layers are named '{name}'", line, f"layer {self.number()} "
                           f"'{name}' ({layer})", hint="give each layer its own name")
            self.named.add(name)
        base, k = name, 1
        while name in self.used_names:
            k += 1
            name = f"{base}_{k}"
        self.used_names.add(name)
        self.nodes.append(Node(len(self.nodes) + 1, name, layer, args, inputs, self.file, line,
                               group, self.use()))
        return name

    def sequence(self, entries, tail, names, params, stack, line, group=None):
        """Expand a list of entries; returns the name of the last node (the new tail)."""
        if not isinstance(entries, list):
            self.error(f"expected a list of layers here, not a {type_name(entries)}", line)
            return tail
        for i, entry in enumerate(entries):
            tail = self.entry(entry, tail, names, params, stack,
                              item_line(entries, i, line), group)
        return tail

    def number(self) -> int:
        """The number of the layer being expanded, as people count the spec's entries:
        one with an error still counts, so the next error names the right layer."""
        return len(self.nodes) + self.unbuilt + 1

    def entry(self, entry, tail, names, params, stack, line, group):
        nodes, errors = len(self.nodes), len(self.errors)
        tail = self._entry(entry, tail, names, params, stack, line, group)
        if len(self.nodes) == nodes and len(self.errors) > errors:
            self.unbuilt += 1
        return tail

    def _entry(self, entry, tail, names, params, stack, line, group):
        where = f"layer {self.number()}"
        if isinstance(entry, str):
            entry = {entry: None}
        if not isinstance(entry, dict) or not entry:
            self.error(f"a layer must be a name like `Flatten` or a mapping like "
                       f"`Conv2D: {{...}}`, not {shown(entry)}", line, where)
            return tail
        extra = {k: entry[k] for k in entry if k in ENTRY_KEYS}
        main = [k for k in entry if k not in ENTRY_KEYS]
        repeat = self.substitute(extra.get("repeat", 1), params, line, where)
        if not is_int(repeat) or repeat < 1:
            self.error(f"`repeat` must be a whole number of at least 1, not {shown(repeat)}",
                       line, where, "write how many times the layer comes, e.g. `repeat: 3` "
                       "(a number, without quotes)")
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
                       _several_names_hint(entry, main))
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
        where = f"layer {self.number()}" + (f" '{explicit}'" if explicit else "")
        cls = keras_layers.layer_class(key)
        if cls is None:
            self.error(f"unknown layer '{key}'", line, where,
                       keras_layers.unknown_layer_hint(key, self.spec.blocks))
            return tail
        args = self.layer_args(key, cls, value, params, line, where)
        if args is None:
            return tail
        return self.add(key, args, [tail], names, line, explicit, group)

    def layer_args(self, key, cls, value, params, line, where):
        if value is None:
            value = {}
        elif not isinstance(value, dict):
            first = keras_layers.first_argument(cls)
            if first is None:
                self.error(f"{key} takes no positional argument; got {value!r}", line, where,
                           f"write `{key}: {{argument: value}}`")
                return None
            value = {first: value}
        args = {k: self.substitute(v, params, key_line(value, k, line), where)
                for k, v in value.items()}
        valid = keras_layers.valid_arguments(cls)
        ok = True
        for arg in args:
            if arg in ("input_shape", "batch_input_shape", "input_dim"):
                self.error(f"`{arg}` is not set on a layer in a spec", key_line(value, arg, line),
                           where, "give the input volume once, at the top: `input: [28, 28, 1]`")
                ok = False
            elif arg == "name":
                self.error(f"`name` goes next to the layer, not among the arguments of {key}",
                           key_line(value, arg, line), where,
                           f"write `- {key}: {{...}}` and on the next line "
                           f"`  name: {json.dumps(value[arg], ensure_ascii=False)}`")
                ok = False
            elif arg not in valid:
                self.error(f"unknown argument '{arg}' for {key}", key_line(value, arg, line),
                           where, " ".join(filter(None, (suggest(arg, valid), "valid "
                                                         "arguments: " + ", ".join(valid)))))
                ok = False
            elif args[arg] is None:  # `$nope`, said by `substitute`; `~`: Keras' default
                continue
            elif arg in keras_layers.boolean_arguments(cls) and not isinstance(args[arg], bool):
                self.error(f"`{arg}` of {key} is true or false, not {args[arg]!r}",
                           key_line(value, arg, line), where, config.BOOLEAN_HINT)
                ok = False
            elif arg == "padding" and (words := keras_layers.padding_words(cls)) and \
                    not keras_layers.padding_taken(cls, args[arg]):
                self.error(f"`padding` of {key} is {' or '.join(words)}, not {args[arg]!r}",
                           key_line(value, arg, line), where, keras_layers.padding_hint(cls))
                ok = False
            elif kind := keras_layers.wrong_number(arg, args[arg]):
                self.error(f"`{arg}` of {key} is {kind}, not {args[arg]!r}",
                           key_line(value, arg, line), where)
                ok = False
        return args if ok else None

    def pretrained(self, value, tail, line, explicit, group, repeat):
        """A backbone (`cnncli.model.backbone`): one node, the spec's first layer."""
        from cnncli.model import backbone

        where = f"layer {self.number()} ({backbone.ENTRY})"
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
        where = f"layer {self.number()} (block '{key}')"
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
                       key_line(block, "params", bline), where,
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
            self.error(f"block '{key}' has no parameter '{p}'", key_line(given, p, line), where,
                       suggest(p, defaults, listing="its parameters") if defaults
                       else "it takes no parameters")
        known = len(self.errors)
        values = {p: self.substitute(v, params, line, where) for p, v in given.items()}
        undefined = len(self.errors) > known  # `filters: $nope`, said: not again inside
        missing = [p for p, d in defaults.items() if d is None and p not in values]
        for p in missing:
            self.error(f"block '{key}' needs the parameter '{p}'", line, where,
                       f"add it: `{key}: {{{p}: ...}}` (declared on line {bline})")
        if unknown or missing or undefined:
            return tail
        inner_params = {**params, **defaults, **values}
        if explicit:  # a named instance gets its own name space: inception3a_conv1 ...
            names = _Names(prefix=f"{names.prefix}{explicit}_", staged=False)
            group = group or explicit
        self.uses.append((key, line))
        try:
            return self.sequence(block["layers"], tail, names, inner_params, [*stack, key],
                                 yamlio.line_of(block["layers"], bline), group)
        finally:
            self.uses.pop()

    def branches(self, entry, tail, names, params, stack, line, explicit, group):
        where = f"layer {self.number()} (branches)"
        branches = entry["branches"]
        merge = str(entry.get("merge", "concatenate"))
        layer = MERGES.get(merge.lower()) or (merge if merge in MERGES.values() else None)
        if layer is None:
            self.error(f"unknown merge '{merge}'", key_line(entry, "merge", line), where,
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
            branch_line = item_line(branches, i, line)
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


def _several_names_hint(entry: dict, names: list) -> str:
    """What to do about an entry with several names: arguments written under a layer
    without their indent (``- Conv2D:`` then ``filters: 8`` in line with it) are
    told to indent; otherwise each layer is its own list item."""
    first, rest = names[0], names[1:]
    cls = keras_layers.layer_class(str(first)) if entry.get(first) is None else None
    if cls is not None and rest and all(
            str(n) in keras_layers.valid_arguments(cls) for n in rest):
        given = ", ".join(f"{n}: {entry[n]}" for n in rest)
        return (f"indent the arguments of {first} under it (two more spaces than `{first}:`"
                f"), or write them on its line: `- {first}: {{{given}}}`")
    return "write each layer as its own list item (`- Flatten`)"


def expand(spec: Spec) -> Expanded:
    """Expand repeats, blocks and branches into named `Node`s; raise all problems found."""
    expanded, errors = expand_partly(spec)
    raise_all(errors)
    return expanded


def expand_partly(spec: Spec) -> tuple[Expanded, list[CnnError]]:
    """Like `expand`, returning the problems instead of raising them; when there are
    some, the nodes are those before the first (their shapes can still be checked)."""
    errors: list[CnnError] = []
    line = key_line(spec.raw, "input")
    try:
        input_shape = check_input(spec.input, file=spec.file, line=line)
    except ConfigError as exc:
        errors.append(exc)
        input_shape = ()
    for name in spec.blocks:
        if keras_layers.layer_class(str(name)) is not None:
            errors.append(ConfigError(
                f"block '{name}' has the name of a Keras layer", file=spec.file,
                line=key_line(spec.blocks, name), hint="rename the block"))
    exp = _Expander(spec)
    exp.errors = errors
    if errors:
        exp.sound = 0
    params = {"classes": spec.classes}
    output = exp.sequence(spec.layers, INPUT, _Names(), params, [],
                          key_line(spec.raw, "layers"))
    if exp.errors:
        nodes = exp.nodes[:exp.sound]
        return Expanded(spec, nodes, input_shape, nodes[-1].name if nodes else INPUT), exp.errors
    if not exp.nodes:
        return Expanded(spec, [], input_shape, INPUT), [
            ConfigError("the spec has no layers", file=spec.file)]
    return Expanded(spec=spec, nodes=exp.nodes, input_shape=input_shape, output=output), []
