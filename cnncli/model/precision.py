"""A model computing in another precision, for inference in mixed precision (`cnncli
predict`, `cnncli evaluate`) and for float32 exports.

Keras keeps each layer's dtype policy in the model file, so a model saved in float32
runs in float32 whatever the global policy. The weights are float32 variables under
every policy (mixed precision computes in 16 bits and keeps float32 weights), so only
each layer's compute policy changes: `set_policy` switches a model that is yours in
place (no second copy of the weights: VGG16 has 138 million), `with_policy` gives a
copy and leaves the model as it was. The last layer (softmax) stays in float32 under
mixed precision, as training keeps it. A model loaded only to infer can then keep its
weights in 16 bits (`compact_weights`): the same outputs, faster, half the memory.

>>> fast = with_policy(model, "mixed_bfloat16")    # doctest: +SKIP
>>> fast.layers[-1].dtype_policy.name               # doctest: +SKIP
'float32'
"""

from __future__ import annotations

import contextlib

from cnncli.runtime import import_keras

keras = import_keras()


@contextlib.contextmanager
def policy_kept():
    """Keras' global dtype policy put back as it was before the block, whatever it sets:
    a call from Python (a notebook's prediction with ``precision="auto"``, a training,
    a copy in another precision) leaves the user's own new layers computing as before.

    >>> with policy_kept():
    ...     keras.config.set_dtype_policy("mixed_bfloat16")
    >>> keras.config.dtype_policy().name
    'float32'
    """
    policy = keras.config.dtype_policy()
    try:
        yield
    finally:
        keras.config.set_dtype_policy(policy)


def with_policy(model: keras.Model, policy: str):
    """`model` itself when every layer already computes in `policy`, else a clone of it
    with its weights, computing in `policy` (its output layer in float32)."""
    output = model.layers[-1]
    wanted = {id(layer): ("float32" if layer is output else policy) for layer in
              all_layers(model)}
    if all(_policy(layer) == wanted[id(layer)] for layer in all_layers(model)):
        return model
    with policy_kept():
        keras.config.set_dtype_policy(policy)

        def clone(layer):
            config = layer.get_config()
            config["dtype"] = wanted.get(id(layer), policy)
            return layer.__class__.from_config(config)

        copy = keras.models.clone_model(model, clone_function=clone, recursive=True)
        copy.set_weights(model.get_weights())
    _normalise_again(copy)
    return copy


def set_policy(model: keras.Model, policy: str):
    """Switch every layer of `model` (nested models' too) to compute in `policy`, its
    output layer in float32; returns `model`. Keras applies a layer's policy each time
    the layer is called, so the next call (or trace) computes in the new precision."""
    output = model.layers[-1]
    for layer in all_layers(model):
        wanted = "float32" if layer is output else policy
        if _policy(layer) != wanted and not hasattr(layer, "layers"):
            layer.dtype_policy = wanted
    _normalise_again(model)
    return model


def _normalise_again(model: keras.Model) -> None:
    """Normalization layers keep their mean and variance as constants in their compute
    type, made when their weights are set (``finalize_state``): made again after a
    change of policy (in float32 again, not rounded to 16 bits) or of weights (a clone's
    would be the zeros and ones it was built with)."""
    for layer in all_layers(model):
        if isinstance(layer, keras.layers.Normalization) and layer.built:
            layer.finalize_state()


HALF = ("bfloat16", "float16")


def compact_weights(model: keras.Model) -> int:
    """Keep each weight that a layer of `model` reads in 16 bits as a 16-bit variable, for
    a model loaded only to infer; returns how many weights were converted.

    Under mixed precision Keras keeps the weights in float32 and casts each one to the
    layer's compute type at every call: VGG16's 138 million a batch, about a tenth of a
    bfloat16 batch's time on a CPU with AMX. Cast once here, with the same rounding, the
    outputs are the same bits and the weights take half the memory. Only the weights
    Keras casts are converted, each decided by the layer that owns it (BatchNormalization
    reads its own in float32; a layer computing in float32, such as the output layer or
    a float32 layer inside another, keeps them). The model can no longer be trained or
    saved as it was: the classifier that loaded it owns it
    (`cnncli.infer.classifier.keras_classifier`).

    >>> set_policy(model, "mixed_bfloat16"); compact_weights(model)    # doctest: +SKIP
    32
    """
    from cnncli.runtime import import_tf

    tf = import_tf()
    halves = half_weights(model)
    for variable in model.weights:
        if id(variable) in halves:
            variable._value = tf.Variable(tf.cast(variable._value, halves[id(variable)]),
                                          trainable=False, name=variable.name)
            variable._dtype = halves[id(variable)]
    return len(halves)


def half_weights(model: keras.Model) -> dict[int, str]:
    """The weights of `model` (by ``id``) that its layers read cast to 16 bits, each with
    that type: those `compact_weights` keeps in 16 bits. Each is decided by the layer
    that owns it (Keras' own flag, ``_autocast``), those of layers inside layers too
    (TimeDistributed's, an RNN's cell); a weight already in 16 bits is not one."""
    halves = {}
    for layer in model._flatten_layers(include_self=True, recursive=True):
        compute = getattr(layer, "compute_dtype", "float32")
        if compute not in HALF or not getattr(layer, "autocast", False):
            continue
        # the weights the layer owns (`weights` would give its inner layers' as well)
        for variable in [*layer._trainable_variables, *layer._non_trainable_variables]:
            if variable.dtype == "float32" and getattr(variable, "_autocast", False):
                halves[id(variable)] = compute
    return halves


#: Layers that compute in float32 inside whatever their policy (Keras casts their
#: input up): their activations take float32's 4 bytes a value in 16-bit inference too.
UPCASTING = ("BatchNormalization", "LayerNormalization", "GroupNormalization")


def activation_bytes(model: keras.Model, precision: str) -> int:
    """Bytes a value of `model`'s largest activations takes when it infers in
    `precision`: 2 in 16 bits, 4 in float32 or when a normalisation layer computes in
    float32 inside it (ResNet50's BatchNormalization after its largest convolutions).

    >>> activation_bytes(None, "float32")
    4
    """
    if precision == "float32" or not hasattr(model, "layers"):
        return 4
    keras_names = {type(layer).__name__ for layer in all_layers(model)}
    return 4 if keras_names & set(UPCASTING) else 2


def _policy(layer) -> str:
    policy = getattr(layer, "dtype_policy", None)
    return getattr(policy, "name", "float32")


def all_layers(model: keras.Model) -> list:
    """Every layer of `model`, nested models' layers included (outermost first)."""
    found = []
    for layer in model.layers:
        found.append(layer)
        if hasattr(layer, "layers"):
            found.extend(all_layers(layer))
    return found
