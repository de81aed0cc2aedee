"""The spec a run config's ``model: {from: ...}`` stands for when it starts from a trained
network: a pretrained one (``from: resnet50``) or one of your own (``from: runs/x/1``).

* A pretrained network: the network without its classifier, global average pooling,
  optional dropout and a new softmax layer with the dataset's classes. Input size and
  preprocessing are the network's unless given (``model.input``, ``data.image_size``).
* A run folder or ``.keras`` file: its layers up to the cut (by default the last
  convolution or pooling layer before Flatten and the fully-connected layers), then its
  own later layers rebuilt (new weights) with the new number of classes; its input and
  preprocessing are kept.

``vgg16`` and ``vgg19`` are also built-in specs: ``from: vgg16`` alone is the spec
(trained from scratch), ``from: vgg16`` with ``weights:`` the pretrained network.

>>> kind("resnet50", None), kind("vgg16", None), kind("vgg16", "imagenet")
('pretrained', 'spec', 'pretrained')
"""

from __future__ import annotations

from pathlib import Path

from cnncli import config
from cnncli.errors import ConfigError, suggest
from cnncli.model import architectures, backbone, pretrained


def kind(source: str, weights: str | None) -> str:
    """``model`` (a run folder or .keras file), ``pretrained`` or ``spec``."""
    if source.endswith(".keras") or Path(source).is_dir():
        return "model"
    if source in pretrained.REGISTRY and (weights is not None
                                          or source not in architectures.names()):
        return "pretrained"
    return "spec"


def fresh_network_note(section: config.ModelSection | None) -> list[str]:
    """A note for `from:` a name that is both a built-in spec and a pretrained network,
    without `weights` (`section`: the config's `model:` when it has `from:`, else None):
    the lecture's network with new weights, where the same line with another pretrained
    name (resnet50) starts from ImageNet's.

    >>> fresh_network_note(config.ModelSection(**{"from": "vgg16"}))[0][:40]
    '`from: vgg16` without `weights` is the l'
    >>> fresh_network_note(config.ModelSection(**{"from": "vgg16", "weights": "imagenet"}))
    []
    """
    source = section and section.from_
    if not source or kind(source, section.weights) != "spec" or \
            source not in pretrained.REGISTRY:
        return []
    return [f"`from: {source}` without `weights` is the lecture's {source}, trained from "
            "new (random) weights, every layer; to fine-tune ImageNet's, add `weights: "
            "imagenet` (frozen, with a new classifier)"]


def document(section, *, classes: int | None, image_size: list | None,
             file: str | None) -> dict | None:
    """The spec (a YAML-like mapping) for the config's `model` section, or None when
    `from:` names a plain spec (built-in or file)."""
    if section.input is not None and image_size is not None and \
            list(section.input[:2]) != list(image_size):  # (either would be dropped)
        raise ConfigError(f"`model.input` {list(section.input)} and `data.image_size` "
                          f"{list(image_size)} give the network two sizes", file=file,
                          hint="give one of them: images are resized to it")
    found = kind(section.from_, section.weights)
    extra = [k for k in ("weights", "cut", "dropout") if getattr(section, k) is not None]
    if found == "spec":
        _check_spec_name(section.from_, file)
        if extra:  # (weights and dropout: a pretrained network's; cut: a model of one's own)
            takes = "a run folder or a .keras file" if extra[0] == "cut" else ", ".join(
                sorted(pretrained.REGISTRY))
            raise ConfigError(
                f"`model.{extra[0]}` applies to " + ("a trained model of your own" if extra[0]
                                                     == "cut" else "a pretrained network")
                + f", and '{section.from_}' is a spec", file=file,
                hint=f"use `from:` with {takes}, or remove `{extra[0]}`")
        return None
    if found == "pretrained":
        return _pretrained(section, classes, image_size, file)
    return _own_model(section, classes, image_size, file)


def _check_spec_name(source: str, file: str | None) -> None:
    """A `from:` that is none of the things it may be: say so, with "did you mean"."""
    try:
        architectures.resolve(source)
    except ConfigError:
        raise ConfigError(
            f"`model.from`: '{source}' is not a built-in architecture, a pretrained network, "
            "a spec file, a run folder or a .keras file", file=file,
            hint=config.beside_config(source, file) or suggest(
                source, sorted({*architectures.names(), *pretrained.REGISTRY}),
                listing="built-in and pretrained")) from None


def _pretrained(section, classes, image_size, file) -> dict:
    if section.cut is not None:
        raise ConfigError("`model.cut` applies to a model of your own (a run folder or "
                          ".keras file)", file=file, hint="remove `cut`")
    entry = pretrained.get(section.from_)
    shape = section.input or ([*image_size, 3] if image_size else list(entry.input_shape))
    layers = [{backbone.ENTRY: {"name": entry.name, "weights": section.weights or "imagenet"}},
              "GlobalAveragePooling2D"]
    if section.dropout:
        layers.append({"Dropout": section.dropout})
    layers.append({"Dense": {"units": "$classes", "activation": "softmax"}})
    return {"name": f"{entry.name}_transfer", "input": shape, "classes": classes,
            "preprocessing": entry.preprocessing,
            "description": f"{entry.name} without its classifier, and a new one", "layers": layers}


def _own_model(section, classes, image_size, file) -> dict:
    from cnncli.model import saved_meta

    for key in ("weights", "dropout"):
        if getattr(section, key) is not None:
            raise ConfigError(
                f"`model.{key}` applies to a pretrained network; a model of your own keeps "
                "its weights and its layers after the cut are rebuilt as they were",
                file=file, hint=f"remove `{key}`")
    path = backbone.model_file(section.from_)
    source = backbone.load_source(path, weights=False)  # its layers are what is read
    meta = saved_meta.read(path)
    cut = section.cut or backbone.default_cut(source, section.from_)
    layer = backbone.layer_named(source, cut, section.from_)
    shape = list(source.input_shape[1:])
    if section.input is not None and list(section.input) != shape:
        raise ConfigError(f"`model.input`: the model of {section.from_} takes "
                          f"{shape}; a network cut from it takes the same", file=file,
                          hint="remove `model.input`: images are resized to it")
    if image_size is not None and list(image_size) != shape[:2]:
        raise ConfigError(f"`data.image_size`: the model of {section.from_} takes "
                          f"{shape[0]}x{shape[1]} images; a network cut from it takes the "
                          "same", file=file,
                          hint="remove `data.image_size`: images are resized to it")
    name = source.name
    entries = [{backbone.ENTRY: {"model": section.from_, "cut": cut}, "name": name}]
    entries += head_entries(source, layer, section.from_)
    return {"name": f"{name}_transfer", "input": shape, "classes": classes,
            "preprocessing": meta.preprocessing,
            "description": f"{section.from_} up to '{cut}', and its head rebuilt",
            "layers": entries}


def head_entries(source, cut_layer, where: str) -> list[dict]:
    """The layers of `source` after `cut_layer` as spec entries with their own names and
    arguments, the last Dense layer giving ``$classes`` outputs."""
    layers = backbone.top_layers(source)
    head = layers[layers.index(cut_layer) + 1:]
    previous = cut_layer
    for layer in head:  # the head is rebuilt as a chain of layers: it must be one
        if _producer(layer) is not previous:
            raise ConfigError(
                f"the layers of {where} after '{cut_layer.name}' are not a simple chain "
                f"('{layer.name}' does not take the output of '{previous.name}')",
                hint="cut at a layer after which each layer feeds the next (`model.cut`)")
        previous = layer
    entries = [{type(layer).__name__: _arguments(layer), "name": layer.name} for layer in head]
    dense = [e for e in entries if "Dense" in e]
    if not dense:
        entry = pretrained.recognise(source.name, {layer.name for layer in source.layers})
        raise ConfigError(f"no Dense layer after '{cut_layer.name}' in {where} to give the "
                          "new classes", hint=pretrained.start_from(entry, where) if entry
                          else "cut at an earlier layer (`model.cut`)")
    dense[-1]["Dense"]["units"] = "$classes"
    return entries


def _producer(layer):
    tensor = layer.input
    if isinstance(tensor, (list, tuple)):
        return None
    history = getattr(tensor, "_keras_history", None)
    return history.operation if history else None


def _arguments(layer) -> dict:
    """The arguments that rebuild `layer` (fresh weights): its config without what equals
    Keras' defaults (found by building the layer without each argument)."""
    cls = type(layer)
    config = layer.get_config()  # Keras' from_config passes all of it to the constructor
    args = {k: v for k, v in config.items() if k not in ("dtype", "trainable", "name")}
    for key in list(args):
        rest = {k: v for k, v in args.items() if k != key}
        try:
            default = cls(**rest).get_config().get(key)
        except Exception:  # a required argument (units, filters, rate...)
            continue
        if default == config[key]:
            args = rest
    return args
