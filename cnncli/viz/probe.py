"""A sub-model from a model's input to the outputs of chosen layers, and optionally to
its class scores: what activation maps and Grad-CAM look at.

Layers of the model itself are reached the usual Keras way (``keras.Model(model.inputs,
[layer.output, ...])``), whatever the graph (branches included). A ``keras.Sequential``
is called again layer by layer (a loaded one has called its layers more than once, and a
layer's ``output`` need not be the call its model's output comes from). A layer inside a nested
model (a ``keras.applications`` backbone inside a fine-tuned model) is not connected to
the outer model's input, so the outer model is called again layer by layer, with the
nested model replaced by a sub-model that also gives that layer's output; this needs the
models along the way to be chains of layers, and the result is checked against the model.

The class scores are what the last layer computes before its softmax (Grad-CAM's y^c):
a Dense layer with ``activation: softmax`` gets a twin without it, sharing its weights.

>>> outputs = probe(model, [ref], scores=True)(x)     # doctest: +SKIP
>>> [o.shape for o in outputs]    # the layer's volume, scores, probabilities  # doctest: +SKIP
[TensorShape([1, 7, 7, 64]), TensorShape([1, 10]), TensorShape([1, 10])]
"""

from __future__ import annotations

import numpy as np

from cnncli.errors import ModelError
from cnncli.model.layer_kinds import UNCHANGED_WHEN_PREDICTING
from cnncli.runtime import import_keras
from cnncli.viz.conv_layers import LayerRef

keras = import_keras()


def probe(model, refs: list[LayerRef], *, scores: bool = False):
    """A Keras model: input -> [the output of each of `refs`, (scores, probabilities)]."""
    if all(not r.parents for r in refs) and not isinstance(model, keras.Sequential):
        outputs = [r.layer.output for r in refs]
        if scores:
            last = _last_layer(model)
            head = _head(last) if last is not None else None
            outputs += [head(last.input) if head else model.outputs[0], model.outputs[0]]
        return keras.Model(_single(model.inputs), outputs)
    return _nested_probe(model, refs, scores=scores)


def _single(inputs: list):
    """One input as itself, not a list of one: Keras warns when called with a tensor."""
    return inputs[0] if len(inputs) == 1 else inputs


def _last_layer(model):
    """The layer that gives the model's output, if it is the last of `model.layers`; past
    layers that change nothing when predicting (Dropout after the softmax), the one before."""
    last = model.layers[-1] if model.layers else None
    try:
        if last is None or last.output is not model.outputs[0]:
            return None
        while last is not None and type(last).__name__ in UNCHANGED_WHEN_PREDICTING:
            last = next((layer for layer in model.layers if layer.output is last.input), None)
        return last
    except (AttributeError, ValueError):  # a layer called more than once
        return None


def _head(last):
    """A function from `last`'s input to the class scores before its softmax, or None
    when `last` applies no softmax (its output is then the scores)."""
    if isinstance(last, keras.layers.Softmax):
        return lambda t: t
    config = {} if isinstance(last, keras.Model) else last.get_config()
    if config.get("activation") != "softmax":
        return None
    if isinstance(last, keras.layers.Activation):
        return lambda t: t
    twin = type(last).from_config({**config, "activation": "linear",
                                   "name": f"{last.name}_scores"})

    def scores(tensor):
        out = twin(tensor)
        twin.set_weights(last.get_weights())
        return out

    return scores


def _nested_probe(model, refs: list[LayerRef], *, scores: bool):
    wanted = {id(r.layer) for r in refs}
    found: dict[int, object] = {}
    x = keras.Input(shape=tuple(model.inputs[0].shape[1:]), dtype=model.inputs[0].dtype)
    probabilities, score = _through(model, x, wanted, found, scores=scores, top=True)
    outputs = [found[id(r.layer)] for r in refs]
    _check_same(model, keras.Model(x, probabilities))
    return keras.Model(x, [*outputs, score, probabilities] if scores else outputs)


def _holds(model, wanted: set[int]) -> bool:
    return any(id(layer) in wanted or (isinstance(layer, keras.Model) and _holds(layer, wanted))
               for layer in model.layers)


def _through(net, x, wanted: set[int], found: dict, *, scores: bool = False,
             top: bool = False):
    """Call `net` on `x`, recording the outputs of the `wanted` layers in `found`; at the
    top, also the class scores. Returns (output, scores or None)."""
    nested = [layer for layer in net.layers
              if isinstance(layer, keras.Model) and _holds(layer, wanted)]
    if not nested and not isinstance(net, keras.Sequential):  # net's own layers: the
        # usual sub-model, called on x (a loaded Sequential's layers were called more than
        # once, and `layer.output` may be a call its output does not come from)
        here = [layer for layer in net.layers if id(layer) in wanted]
        outputs = keras.Model(_single(net.inputs), [*net.outputs,
                                                    *[h.output for h in here]])(x)
        found.update({id(h): t for h, t in zip(here, outputs[1:], strict=True)})
        return outputs[0], None
    layers = [layer for layer in net.layers if not isinstance(layer, keras.layers.InputLayer)]
    last = next((layer for layer in reversed(layers)  # the softmax, past a Dropout after it
                 if type(layer).__name__ not in UNCHANGED_WHEN_PREDICTING), None)
    y, score = x, None
    for layer in layers:
        head = _head(layer) if top and scores and layer is last else None
        if head:
            score = head(y)
        try:
            y = (_through(layer, y, wanted, found)[0] if layer in nested else layer(y))
        except Exception as exc:  # Keras raises ValueError, TypeError... on a branching graph
            raise _not_a_chain(net, exc) from None
        if id(layer) in wanted:
            found[id(layer)] = y
    return y, (score if score is not None else y) if top else None


def _not_a_chain(net, exc: Exception) -> ModelError:
    return ModelError(f"cannot reach a layer inside the nested model '{net.name}': the "
                      "layers around it do not form a chain (they branch), which pictures "
                      f"of a layer inside a nested model need ({type(exc).__name__})",
                      hint=f"pick a layer outside '{net.name}' that has a height and width "
                           "(explain --layer, visualize activations --layers), if the model "
                           "has one; the layers inside it cannot be shown for this model")


def _check_same(model, rebuilt) -> None:
    """The rebuilt model must compute what the model computes (it does when the nested
    models sit on a chain of layers); else an error instead of a wrong picture."""
    shape = (2, *model.inputs[0].shape[1:])
    x = np.random.default_rng(0).uniform(0, 1, shape).astype("float32")
    expected = np.asarray(model(x, training=False), dtype=np.float32)
    got = np.asarray(rebuilt(x, training=False), dtype=np.float32)
    if expected.shape != got.shape or not np.allclose(expected, got, atol=1e-4):
        raise _not_a_chain(model, ValueError("different outputs"))
