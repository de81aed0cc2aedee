"""Backbones: a network without its classifier, used as the first layer of a spec.

A spec's first entry may be ``pretrained:``. It stands for one layer of the model, a
Keras sub-model (summaries show it as one row), either a ``keras.applications`` network
from the pretrained registry without its classifier (``include_top=False``)::

    layers:
      - pretrained: {name: resnet50, weights: imagenet}   # or `none`, or a weights file
      - GlobalAveragePooling2D
      - Dense: {units: $classes, activation: softmax}

or a model trained with cnncli (a run folder or a ``.keras`` file), up to a layer::

      - pretrained: {model: runs/fashion/1, cut: pool2}

The builder calls `build`; weights files are `cnncli.model.backbone_weights`' concern,
freezing is training's (`cnncli.run.transfer`).

>>> entry_args({"name": "resnet50"})
({'name': 'resnet50', 'weights': 'imagenet'}, [])
>>> entry_args({"name": "resnet5"})[1][0][1]
"did you mean 'resnet50'? pretrained models: efficientnet_b0, mobilenet_v2, resnet50, vgg16, vgg19"
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from cnncli import config, runfolder
from cnncli.errors import ConfigError, InputTooSmall, ModelError, suggest
from cnncli.model import layer_kinds, pretrained
from cnncli.text import dims_text

if TYPE_CHECKING:
    import keras

ENTRY = "pretrained"  # the key of a backbone entry in a spec
LAYER = "Pretrained"  # `Node.layer` of a backbone node (not a Keras class)
KEYS = {
    "name": "a pretrained network: " + ", ".join(sorted(pretrained.REGISTRY)),
    "weights": "imagenet (default), none (random), or a weights file",
    "model": "a cnncli run folder or .keras file to start from",
    "cut": "with `model`: the last layer kept (default: the last convolution or pooling "
           "layer before Flatten and the fully-connected layers)",
}
NO_WEIGHTS = "none"
#: Layers that start a classifier head: the default cut is before the first of them.
HEAD_START = ("Flatten", "Dense")


def entry_args(value) -> tuple[dict, list[tuple[str, str | None]]]:
    """The arguments of a ``pretrained:`` entry, normalised, and its problems as
    (message, hint) pairs (the spec's expander adds the file, line and layer)."""
    if isinstance(value, str):
        value = {"name": value}
    if not isinstance(value, dict):
        return {}, [(f"`{ENTRY}:` takes a mapping such as {{name: resnet50, weights: "
                     f"imagenet}} or {{model: runs/x/1}}, not {value!r}", None)]
    problems = [(f"unknown argument '{k}' for {ENTRY}",
                 suggest(k, KEYS, listing="valid arguments")) for k in value if k not in KEYS]
    args = {k: value[k] for k in KEYS if k in value}
    for key, text in args.items():
        if not isinstance(text, str) or not text:
            problems.append((f"`{key}` of {ENTRY} must be text, not {text!r}", KEYS[key]))
    if ("name" in args) == ("model" in args):
        problems.append((f"{ENTRY} needs either `name:` (a pretrained network) or `model:` "
                         "(a run folder or .keras file)", "e.g. `- pretrained: {name: "
                         "resnet50, weights: imagenet}`"))
    elif "name" in args:
        if isinstance(args["name"], str) and args["name"] not in pretrained.REGISTRY:
            problems.append((f"unknown pretrained model '{args['name']}'",
                             suggest(args["name"], sorted(pretrained.REGISTRY),
                                     listing="pretrained models")))
        if "cut" in args:
            problems.append(("`cut` applies to `model:` (a network of your own)",
                             "a pretrained network is used up to its last convolution"))
        args.setdefault("weights", "imagenet")
        if isinstance(args["weights"], str) and args["weights"]:
            try:
                args["weights"] = config.weights_setting(args["weights"])
            except ValueError as exc:  # imagenett: a typo, not a file; blanks: empty
                problems.append((f"`weights` of {ENTRY} {exc}", getattr(exc, "hint", None)))
    elif "weights" in args:
        problems.append(("`weights` applies to `name:` (a pretrained network); a model's "
                         "own weights come with it", "remove `weights`"))
    return args, problems


def default_shape(args: dict) -> tuple[tuple[int, int, int], str] | None:
    """The input volume and preprocessing a backbone brings, or None if unknown."""
    if args.get("name") in pretrained.REGISTRY:
        entry = pretrained.get(args["name"])
        return entry.input_shape, entry.preprocessing
    if isinstance(args.get("model"), str):
        from cnncli.model import saved_meta

        path = model_file(args["model"])
        shape = tuple(load_source(path, weights=False).input_shape[1:])
        return shape, saved_meta.read(path).preprocessing
    return None


def build(args: dict, input_shape: tuple, name: str, *, weights: bool = True):
    """The backbone sub-model of a ``pretrained:`` entry on inputs of `input_shape`, with
    random weights for a pretrained network (training loads the file) and the source
    model's own weights for a model (with ``weights=False``: its layers only, none of
    its weights read)."""
    if "name" in args:
        return _pretrained(pretrained.get(args["name"]), tuple(input_shape), name)
    source = load_source(model_file(args["model"]), weights=weights)
    have = tuple(source.input_shape[1:])
    if tuple(input_shape) != have:
        raise ConfigError(
            f"the layers of {args['model']} take {dims_text(have)} inputs, not "
            f"{dims_text(input_shape)}", hint="leave the input size as the model's (remove "
            "`input` and `data.image_size`): images are resized to it")
    cut = args.get("cut") or default_cut(source, args["model"])
    layer = layer_named(source, cut, args["model"])
    return _keras().Model(source.inputs, output_in_graph(layer), name=name)


def output_in_graph(layer):
    """`layer`'s output in the model it was called in. A nested model's own ``.output``
    is the tensor of its inner graph, not connected to the outer model's input: its
    call's is taken (Keras keeps it in the node of that call)."""
    if not is_network(layer):
        return layer.output
    outputs = layer._inbound_nodes[0].output_tensors  # Keras 3 has no public getter
    return outputs[0] if len(outputs) == 1 else outputs


def _pretrained(entry: pretrained.Pretrained, shape: tuple, name: str):
    if shape[-1] != 3:
        raise ConfigError(
            f"{entry.name} takes RGB images (3 channels); the input has {shape[-1]}",
            hint=f"use `input: [{shape[0]}, {shape[1]}, 3]`: grey images are converted to "
                 "RGB for it")
    if min(shape[:2]) < entry.min_size:
        raise InputTooSmall(
            f"the {dims_text(shape[:2])} input is smaller than {entry.name} allows (at least "
            f"{entry.min_size}x{entry.min_size})",
            hint=f"set `data.image_size: [{max(shape[0], entry.min_size)}, "
                 f"{max(shape[1], entry.min_size)}]` or larger: images are resized to it "
                 f"({entry.name} was trained on {entry.size}x{entry.size})")
    return entry.factory(None, include_top=False, input_shape=shape, name=name)


def model_file(source: str) -> Path:
    """The model file of a run folder (its ``best.keras``, else ``model.keras``; the
    folder of a run's name: its latest run's, as `cnncli evaluate` takes it) or the
    ``.keras`` file itself."""
    path = runfolder.named(source)
    if path.is_dir():
        found = runfolder.model_file(path)
        if found is None:
            raise ModelError("this folder holds no model file (best.keras or model.keras)",
                             file=source, hint="give a run that finished at least one "
                             "epoch, or a .keras file")
        return found
    return path


def load_source(path: Path, *, weights: bool = True):
    """The model at `path`, loaded safely (`cnncli.model.modelfile.load_model`); with
    ``weights=False``, its layers only."""
    from cnncli.model import modelfile

    return modelfile.load_model(path, weights=weights)


def top_layers(model: keras.Model) -> list:
    """The layers of `model` after its input, in order."""
    keras = _keras()
    return [layer for layer in model.layers if not isinstance(layer, keras.layers.InputLayer)]


def default_cut(model: keras.Model, source: str) -> str:
    """The last convolution or pooling layer (or nested network) before the first Flatten
    or Dense layer: where the convolutional part of `model` ends."""
    layers = top_layers(model)
    end = next((i for i, layer in enumerate(layers) if type(layer).__name__ in HEAD_START),
               len(layers))
    found = [layer for layer in layers[:end] if _is_convolutional(layer)]
    if not found:
        raise ConfigError(
            f"the model of {source} has no convolution or pooling layer before its "
            "fully-connected layers to cut at", hint="give `cut: LAYER` (`model.cut`), one "
            "of: " + ", ".join(layer.name for layer in layers[:-1]))
    return found[-1].name


def _is_convolutional(layer) -> bool:
    return layer_kinds.kind(type(layer).__name__) in ("conv", "pool") or is_network(layer)


def layer_named(model: keras.Model, name: str, source: str):
    """The top-level layer `name` of `model` (not its last), or a `ConfigError`."""
    layers = top_layers(model)
    names = [layer.name for layer in layers]
    if name not in names[:-1]:
        why = "is its output layer: nothing would be left to train" if name in names else \
            "is not one of its layers"
        raise ConfigError(f"cannot cut the model of {source} at '{name}': it {why}",
                          hint=suggest(name, names[:-1], listing="its layers"))
    return layers[names.index(name)]


def is_network(layer) -> bool:
    """True for a nested Keras model (a backbone), False for a layer."""
    return isinstance(layer, _keras().Model)


def backbones(model: keras.Model) -> list:
    """The backbone sub-models of a built model (the nested Keras models)."""
    return [layer for layer in model.layers if is_network(layer)]


def leaf_layers(model: keras.Model) -> list[tuple[str, object]]:
    """Every layer of `model`, nested models opened, as (``outer/inner`` path, layer)."""
    out = []
    for layer in top_layers(model):
        if is_network(layer):
            out += [(f"{layer.name}/{path}", inner) for path, inner in leaf_layers(layer)]
        else:
            out.append((layer.name, layer))
    return out


def _keras():
    from cnncli.runtime import import_keras

    return import_keras()
