"""Architecture specs: YAML in, a checked `Spec` out (`cnncli.model.expand` flattens it).

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

`parse` checks the top level (keys, `layers:`, `blocks:`, `classes`, preprocessing);
`cnncli.model.expand` turns the layers into named Keras nodes, and
`cnncli.model.keras_layers` knows which Keras layers and arguments exist.

>>> spec = parse({"input": [28, 28, 1], "classes": 10,
...               "layers": ["Flatten", {"Dense": {"units": "$classes"}}]})
>>> spec.name, spec.classes, spec.preprocessing
('model', 10, 'scale')
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cnncli import config, yamlio
from cnncli.config import PREPROCESSING_MODES
from cnncli.errors import CnnError, ConfigError, raise_all, suggest
from cnncli.yamlio import is_int, key_line, type_name

SPEC_KEYS = {
    "name": "the model's name (default: the file name)",
    "description": "one line saying what this network is",
    "input": "the input volume [height, width, channels], e.g. [28, 28, 1]",
    "classes": "number of output classes, used as $classes",
    "preprocessing": "how images are scaled: scale (x/255), tf ([-1, 1]), caffe, torch, none",
    "blocks": "named groups of layers with parameters, used like layers",
    "layers": "the list of layers, from input to output",
}


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

    def digest(self, files: dict[str, str] | None = None) -> str:
        """A fingerprint of the network this spec describes (its input, classes,
        preprocessing, layers and blocks; not its name, nor where it was written or how):
        a resumed run must build the network its backup was made with. (An inline
        network is named after the run's `output.name`, which a resume may change.)
        `files`: a layer argument that is one of its paths is replaced by its value (a
        file's SHA-256: several machines compare the file, not where it is)."""
        import hashlib
        import json

        def named(value):
            if isinstance(value, dict):
                return {k: named(v) for k, v in value.items()}
            if isinstance(value, list):
                return [named(v) for v in value]
            return files.get(value, value) if isinstance(value, str) else value

        layers, blocks = (named(self.layers), named(self.blocks)) if files else \
            (self.layers, self.blocks)
        text = json.dumps([self.input, self.classes, self.preprocessing, layers, blocks],
                          sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def with_overrides(self, *, classes: int | None = None, input: list | None = None) -> Spec:
        """A copy with another number of classes or input size."""
        spec = Spec(**{k: getattr(self, k) for k in self.__dataclass_fields__})
        if classes is not None:
            spec.classes = classes
        if input is not None:
            spec.input = list(input)
        return spec


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
            f"a spec must be a mapping with `input:` and `layers:`, not a {type_name(doc)}",
            file=file, line=yamlio.line_of(doc),
            hint="see README.md, 'Architecture specs'",
        )
    errors = _key_errors(doc, file)
    layers = doc.get("layers")
    if not isinstance(layers, list) or not layers:
        errors.append(_no_layers(doc, file))
    blocks = doc.get("blocks") or {}
    if not isinstance(blocks, dict):
        errors.append(ConfigError("`blocks:` must be a mapping of block names to blocks",
                                  file=file, line=key_line(doc, "blocks")))
        blocks = {}
    preprocessing = doc.get("preprocessing")
    if preprocessing is not None and preprocessing not in PREPROCESSING_MODES:
        errors.append(ConfigError(
            f"unknown preprocessing {preprocessing!r}", file=file,
            line=key_line(doc, "preprocessing"),
            hint=suggest(preprocessing, PREPROCESSING_MODES, listing="use one of")))
    classes = doc.get("classes")
    if classes is not None and (not is_int(classes) or classes < 1):
        errors.append(ConfigError(
            f"`classes` must be a whole number of at least 1, not {classes!r}",
            file=file, line=key_line(doc, "classes"),
            hint="a classifier needs at least one class (usually 2 or more)"))
    if errors and doc.get("input"):  # said with them, not after they are mended ([]: a
        # backbone's default, when the first layer is one)
        try:
            check_input(doc["input"], file=file, line=key_line(doc, "input"))
        except ConfigError as exc:
            errors.append(exc)
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


def _key_errors(doc: dict, file: str | None) -> list[CnnError]:
    """An error for each top-level key that is no name (`1: 2`, `~: 3`) or unknown."""
    errors: list[CnnError] = []
    for key in doc:
        if not isinstance(key, str):
            message, hint = config.odd_key(key, "the spec")
            errors.append(ConfigError(message, file=file, line=key_line(doc, key), hint=hint))
        elif key not in SPEC_KEYS:
            errors.append(ConfigError(
                f"unknown key '{key}' in the spec", file=file, line=key_line(doc, key),
                hint=suggest(key, SPEC_KEYS, listing="valid keys")))
    return errors


def _no_layers(doc: dict, file: str | None) -> ConfigError:
    """The error of a spec whose `layers:` is missing, empty or not a list."""
    layers = doc.get("layers")
    mapping = isinstance(layers, dict) and bool(layers)  # the dashes left out
    hint = (f"start each layer with `- ` (a list item): `- {next(iter(layers))}: ...`, one "
            "per line, in order" if mapping else
            "add e.g. `layers: [Flatten, {Dense: {units: 10, activation: softmax}}]`")
    return ConfigError(
        "the spec has no `layers:` list" if layers is None else "`layers:` must be a "
        "non-empty list of layers" + (", not a mapping" if mapping else ""),
        file=file, line=key_line(doc, "layers"), hint=hint)


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
            or not all(is_int(v) and v >= 1 for v in value)):
        raise ConfigError(
            f"`input` must be [height, width, channels] of positive whole numbers, not "
            f"{value!r}", file=file, line=line,
            hint="e.g. [28, 28, 1] for grey images, [224, 224, 3] for colour ones")
    if value[2] not in (1, 3):
        raise ConfigError(
            f"`input` has {value[2]} channels; cnncli feeds images with 1 (grey) or 3 (RGB)",
            file=file, line=line, hint=f"use [{value[0]}, {value[1]}, 1] or "
                                       f"[{value[0]}, {value[1]}, 3]")
    if max(value[:2]) > config.MAX_IMAGE_SIDE:  # as data.image_size: images resize to it
        raise ConfigError(
            f"`input` {list(value)} is larger than the {config.MAX_IMAGE_SIDE:,} pixels a side "
            "cnncli allows for a model's input (as for `data.image_size`)", file=file,
            line=line,
            hint="give the size images are resized to, e.g. [224, 224, 3]")
    return tuple(int(v) for v in value)


def from_run_config(cfg, *, file: str | None = None, classes: int | None = None):
    """The architecture spec a run config names (built-in, file or inline), with overrides.

    `classes` (e.g. the dataset's) applies unless the config sets `model.classes`. An
    inline network without a `name` is named after the run (`output.name`, which
    ``cnncli train`` sets to the config file's name when the file does not, and which
    a run's own ``config.yaml`` keeps for ``--resume``), else after the config file.
    With `data.image_size`, the network takes images of that size (its input's height
    and width: what training builds, and what `check` and `summary` show).
    """
    network = _named_network(cfg, file, classes)
    size = cfg.data.image_size
    if size and list(network.input[:2]) != list(size):
        network = network.with_overrides(input=[*size, network.input[-1]])
    return network


def resized_note(cfg) -> list[str]:
    """A note when `data.image_size` resizes the input an inline network gives itself
    (`model: {input: [64, 64, 3], layers: ...}`): two sizes in one config, the data's
    taken (a built-in's or a spec file's input is the network's default, said nowhere
    near; `model.from` with `model.input` refuses two sizes: `transfer_spec.document`).

    >>> from types import SimpleNamespace as C
    >>> print(*resized_note(C(model={"input": [64, 64, 3], "layers": []},
    ...                       data=C(image_size=[32, 48]))))
    `data.image_size` [32, 48] sizes the network's input, not its `input` (64x64)
    """
    given, size = cfg.model, cfg.data.image_size
    own = given.get("input") if isinstance(given, dict) and "layers" in given else None
    if not size or not isinstance(own, list | tuple) or list(own[:2]) == list(size):
        return []
    return [f"`data.image_size` {list(size)} sizes the network's input, not its `input` "
            f"({'x'.join(map(str, own[:2]))})"]


def _named_network(cfg, file: str | None, classes: int | None):
    model = cfg.model
    if isinstance(model, str):
        try:
            return load(model).with_overrides(classes=classes)
        except ConfigError as exc:
            if exc.file is None and file:  # it names nothing: say where it was named
                exc.file, exc.line = file, config.line_of(yamlio.load(file), "model")
                exc.hint = config.beside_config(model, file) or exc.hint
            raise
    if (section := cfg.start_from) is not None:
        from cnncli.model import transfer_spec

        doc = transfer_spec.document(section, classes=section.classes or classes,
                                     image_size=cfg.data.image_size, file=file)
        if doc is not None:  # a pretrained network or a trained model, with a new head
            return parse(doc, file=file, default_name=doc["name"])
        base = load(section.from_)
        return base.with_overrides(classes=section.classes or classes, input=section.input)
    inline = parse(model, file=file,
                   default_name=cfg.output.name or (Path(file).stem if file else "model"))
    return inline if inline.classes is not None else inline.with_overrides(classes=classes)
