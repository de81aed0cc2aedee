"""A model computing in another precision, for inference in mixed precision (`cnncli
predict`, `cnncli evaluate`) and for float32 exports.

Keras keeps each layer's dtype policy in the model file, so a model saved in float32
runs in float32 whatever the global policy. The weights are float32 variables under
every policy (mixed precision computes in 16 bits and keeps float32 weights), so only
each layer's compute policy changes: `set_policy` switches a model that is yours in
place (no second copy of the weights: VGG16 has 138 million), `with_policy` gives a
copy and leaves the model as it was. The last layer (softmax) stays in float32 under
mixed precision, as training keeps it.

>>> fast = with_policy(model, "mixed_bfloat16")    # doctest: +SKIP
>>> fast.layers[-1].dtype_policy.name               # doctest: +SKIP
'float32'
"""

from __future__ import annotations

from cnncli.runtime import import_keras

keras = import_keras()


def with_policy(model, policy: str):
    """`model` itself when every layer already computes in `policy`, else a clone of it
    with its weights, computing in `policy` (its output layer in float32)."""
    output = model.layers[-1]
    wanted = {id(layer): ("float32" if layer is output else policy) for layer in
              all_layers(model)}
    if all(_policy(layer) == wanted[id(layer)] for layer in all_layers(model)):
        return model
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(policy)
    try:
        def clone(layer):
            config = layer.get_config()
            config["dtype"] = wanted.get(id(layer), policy)
            return layer.__class__.from_config(config)

        copy = keras.models.clone_model(model, clone_function=clone, recursive=True)
        copy.set_weights(model.get_weights())
    finally:
        keras.config.set_dtype_policy(previous)
    return copy


def set_policy(model, policy: str):
    """Switch every layer of `model` (nested models' too) to compute in `policy`, its
    output layer in float32; returns `model`. Keras applies a layer's policy each time
    the layer is called, so the next call (or trace) computes in the new precision."""
    output = model.layers[-1]
    for layer in all_layers(model):
        wanted = "float32" if layer is output else policy
        if _policy(layer) != wanted and not hasattr(layer, "layers"):
            layer.dtype_policy = wanted
    return model


def _policy(layer) -> str:
    policy = getattr(layer, "dtype_policy", None)
    return getattr(policy, "name", "float32")


def all_layers(model) -> list:
    """Every layer of `model`, nested models' layers included (outermost first)."""
    found = []
    for layer in model.layers:
        found.append(layer)
        if hasattr(layer, "layers"):
            found.extend(all_layers(layer))
    return found
