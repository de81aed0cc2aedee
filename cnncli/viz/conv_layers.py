"""Finding a model's convolution layers, nested models included, by name.

A layer inside a nested model (a fine-tuned ``keras.applications`` backbone) is named by
its path, ``mobilenet_v2/Conv_1``; its own name alone works when it is unique.
A name that does not exist, or a model without convolution layers, is an error that
lists the names that would work.

>>> refs = convolutions(model)                   # doctest: +SKIP
>>> [r.name for r in refs][:2]                   # doctest: +SKIP
['conv1_1', 'conv2_1']
"""

from __future__ import annotations

from dataclasses import dataclass

from cnncli.errors import LONG_LIST, ConfigError, ModelError, suggest
from cnncli.infer import exported
from cnncli.model import backbone
from cnncli.model.layer_kinds import UNCHANGED_WHEN_PREDICTING
from cnncli.runtime import import_keras
from cnncli.text import some

keras = import_keras()

#: The 2-D convolutions: each makes one activation map per filter.
CONV_CLASSES = (keras.layers.Conv2D, keras.layers.Conv2DTranspose,
                keras.layers.DepthwiseConv2D, keras.layers.SeparableConv2D)


@dataclass(frozen=True)
class LayerRef:
    """A layer and the models it sits in (outermost first, the model itself excluded)."""

    layer: object
    parents: tuple = ()

    @property
    def name(self) -> str:
        return "/".join([p.name for p in self.parents] + [self.layer.name])


def keras_model(clf, what: str):
    """The Keras model behind a loaded classifier, or a `ModelError` for an exported file
    (ONNX, LiteRT, OpenVINO, SavedModel), whose layers cannot be looked into."""
    model = getattr(clf, "model", None)
    if not isinstance(model, keras.Model):
        raise exported.not_looked_into(what, clf.name)
    return model


def walk(model, parents: tuple = ()) -> list[LayerRef]:
    """Every layer of `model` in order, the layers of nested models in their place: as
    `cnncli.model.backbone.leaf_layers` finds them (the names `--layer` takes are the
    paths `summary --expand` shows and `train.freeze` takes), with their models."""
    found = []
    for layer in backbone.top_layers(model):
        if backbone.is_network(layer):
            found += walk(layer, (*parents, layer))
        else:
            found.append(LayerRef(layer, parents))
    return found


def convolutions(model) -> list[LayerRef]:
    """The 2-D convolution layers of `model`, input to output."""
    return [r for r in walk(model) if isinstance(r.layer, CONV_CLASSES)]


def volumes(model) -> list[LayerRef]:
    """The layers whose output is a volume (height x width x depth): where Grad-CAM can look."""
    return [r for r in walk(model) if _output_rank(r.layer) == 4]


def last_volume(model) -> LayerRef:
    """Where Grad-CAM looks unless told: the feature maps of the last convolution, as the
    network goes on with them: after its batch norm and ReLU when they follow it, and,
    when that convolution is one branch of several (an inception module, a residual
    block), after the branches join.

    From the last convolution on, the layers that keep its output's height and width
    (batch norm, ReLU, the merge itself) are followed and the last of them is the answer
    (ResNet50: ``conv5_block3_out``, the sum after its ReLU; MobileNetV2: ``out_relu``,
    not ``Conv_1`` before its batch norm, whose scale may turn the evidence around);
    VGG16's ``block5_conv3`` (its ReLU inside) is followed by pooling. Layers that change
    nothing when predicting (Dropout) are not chosen. Looking at one branch would show
    only what that branch found.

    A convolution whose maps are 1x1 (LeNet-5's C5: 120 maps of one value) is passed
    over for the last one before it with larger maps: a heat map of one value colours the
    whole image the same, and says nothing about where.
    """
    refs = walk(model)
    convs = [i for i, r in enumerate(refs) if isinstance(r.layer, CONV_CLASSES)]
    followed = [_followed(refs, i) for i in reversed(convs)]
    return next((ref for ref in followed if not one_value(ref)), followed[0])


#: Layers that act on each value of a map alone: the batch norm and the activation a
#: network applies to a convolution's maps before it goes on with them.
PER_VALUE = {"BatchNormalization", "Activation", "ReLU", "LeakyReLU", "PReLU", "ELU"}


def as_used(refs: list[LayerRef], at: int) -> tuple[LayerRef, list[str]]:
    """The layer whose output is the convolution `refs[at]`'s maps as the network goes on
    with them, and what was applied: the batch norm and activation layers that take its
    maps one after the other (MobileNetV2's ``Conv1``, then ``bn_Conv1`` and
    ``Conv1_relu``: ``['batch norm', 'ReLU6']``); the convolution itself when its
    activation is inside it (VGG's, the lecture's) or nothing follows so.

    >>> as_used(walk(model), 0)                    # doctest: +SKIP
    (LayerRef(layer=<ReLU name=Conv1_relu>, ...), ['batch norm', 'ReLU6'])
    """
    chosen, said, i = refs[at], [], at
    while True:  # (the layer taking them need not come next: Keras orders a functional
        # model's layers by depth, so a residual block's two convolutions come before
        # either's batch norm)
        takers = [j for j in range(i + 1, len(refs)) if _takes(refs[j].layer, refs[i].layer)]
        kind = type(refs[takers[0]].layer).__name__ if len(takers) == 1 else None
        if kind not in PER_VALUE | UNCHANGED_WHEN_PREDICTING:  # (none, several: a branch)
            return chosen, said
        i = takers[0]
        if kind in PER_VALUE:
            chosen = refs[i]
            said.append(_said(refs[i].layer))


def _takes(layer, before) -> bool:
    """Whether `layer`'s one input is `before`'s output (not a branch beside it)."""
    try:
        return layer.input is before.output
    except (AttributeError, ValueError):  # called several times, or never
        return False


def _said(layer) -> str:
    """A per-value layer as a caption names it: ``batch norm``, ``ReLU6``, ``swish``."""
    kind = type(layer).__name__
    if kind == "BatchNormalization":
        return "batch norm"
    if kind == "ReLU":
        return "ReLU6" if getattr(layer, "max_value", None) == 6 else "ReLU"
    if kind == "Activation":
        name = getattr(layer.activation, "__name__", "activation")
        return "ReLU" if name == "relu" else name
    return kind


def one_value(ref: LayerRef) -> bool:
    """Whether `ref`'s maps are 1x1: where Grad-CAM cannot say where."""
    return _spatial(ref.layer) == (1, 1)


def _followed(refs: list[LayerRef], last: int) -> LayerRef:
    """The convolution `refs[last]`, or the last of the layers after it that keep its
    maps' height and width (`last_volume`)."""
    size = _spatial(refs[last].layer)
    chosen = refs[last]
    for ref in refs[last + 1:]:
        if size is None or _spatial(ref.layer) != size:
            break
        if type(ref.layer).__name__ not in UNCHANGED_WHEN_PREDICTING:
            chosen = ref
    return chosen


def _output_rank(layer) -> int | None:
    try:
        return len(layer.output.shape)
    except (AttributeError, ValueError):  # never called, or called several times
        return None


def _spatial(layer) -> tuple | None:
    """The height and width of the layer's output volume; None if it is not a volume."""
    if _output_rank(layer) != 4:
        return None
    return tuple(layer.output.shape[1:3])


def require_convolutions(model, what: str, model_name: str) -> list[LayerRef]:
    """`convolutions(model)`, or a `ModelError` saying the model has none."""
    refs = convolutions(model)
    if not refs:
        names = ", ".join(r.name for r in walk(model)) or "none"
        raise ModelError(f"the model has no convolution layer, so it has no {what} "
                         f"(its layers: {names})", file=model_name,
                         hint="use a convolutional network, e.g. a run of mnist_net or vgg16")
    return refs


def pick(refs: list[LayerRef], name: str, *, kind: str = "convolution layer",
         listed: list[LayerRef] | None = None, model=None) -> LayerRef:
    """The layer called `name` (a full path, or a unique last part) among `refs`.

    An error lists the valid names: those of `listed` if given (the convolutions, when
    any of a ResNet's hundreds of layers would do), else of `refs`. Given the `model`,
    a name of one of its other layers (a Dense layer) is told what that layer is.
    """
    exact = [r for r in refs if r.name == name]
    short = [r for r in refs if r.layer.name == name]
    if exact or len(short) == 1:
        return (exact or short)[0]
    if len(short) > 1:
        raise ConfigError(f"several layers are called '{name}'",
                          hint=f"name one by its path: {', '.join(r.name for r in short)}")
    inside = [r for r in refs if r.name.startswith(f"{name}/")]
    if inside:  # the nested network itself (a fine-tuned backbone), not one of its layers
        raise ConfigError(f"'{name}' is a network inside the model, not one layer",
                          hint=f"name one of its layers by its path, e.g. {inside[-1].name} "
                               f"(its last {kind})")
    shown = listed or refs
    hint = "use one of: " + ", ".join(r.name for r in shown)
    others = [r.name for r in refs if r not in shown]
    if others:
        hint += f" (or another layer with an HxWxD output: {some(others)})"
    other = [r for r in (walk(model) if model is not None else [])
             if name in (r.name, r.layer.name)]
    if other:
        raise ConfigError(f"'{name}' is a {type(other[0].layer).__name__} layer, not a "
                          f"{kind}", hint=hint)
    close = suggest(name, dict.fromkeys([r.layer.name for r in refs] + [r.name for r in refs]))
    if close:  # a typo: the likely name first, the whole list only when short
        hint = close + ("" if len(shown) > LONG_LIST else f" {hint}")
    raise ConfigError(f"the model has no {kind} called '{name}'", hint=hint)
