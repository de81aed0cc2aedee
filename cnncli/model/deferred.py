"""Networks built with weights that have no values yet: for showing one (`weightless`:
shapes and counts, no memory for the weights) or for filling it from a file
(`filled`: each weight made once, from the file's value, in the type it is used in).
Both use Keras' deferred initialization (a `keras.StatelessScope` that does not
initialize), its internals: ``keras<3.16`` is pinned, and tests hold them to it.
"""

from __future__ import annotations

import contextlib
import contextvars

from cnncli.runtime import import_keras

keras = import_keras()

#: True inside `weightless` (the builder reads no weights of a model it cuts from).
WEIGHTLESS = contextvars.ContextVar("weightless", default=False)


@contextlib.contextmanager
def weightless():
    """Models built inside get variables with shapes and no values: no memory for the
    weights (a summary of a network with 500 million weights needed 6.5 GB). Such a model
    is for showing (layers, shapes, parameter counts, frozen layers): Keras answers a read
    of a variable without a value with new initial values each time, so running or saving
    it would not fail but would use, or write, weights nobody trained. `checking` builds
    with it for ``summary``, ``check`` and ``train --dry-run``, which do neither. A network
    cut from a model file (``model.from: RUN``) is made from the file's description, none
    of its weights read (`cnncli summary` of one cut from a ResNet50: 5.3 s and 0.65 GB
    against 7.1 s and 0.95 GB when they were; `check` reads them once, to refuse a file
    whose weights do not fit).

    >>> from cnncli.model import builder, spec as specs
    >>> with weightless():
    ...     model = builder.build(specs.parse({"input": [8, 8, 1], "layers": ["Flatten",
    ...                                        {"Dense": {"units": 2}}]}))
    >>> model.count_params(), model.weights[0]._value is None
    (130, True)
    """
    from keras.src.backend.common import global_state  # private: keras<3.16 is pinned

    token = WEIGHTLESS.set(True)  # a network cut from a model file: its weights not read
    try:
        with keras.StatelessScope(initialize_variables=False):
            yield
    finally:  # Keras lists them to give them values when a scope closes: never
        global_state.set_global_attribute("uninitialized_variables", [])
        WEIGHTLESS.reset(token)


def filled(build, fill, precision: str = "float32"):
    """The Keras network `build()` makes, computing in `precision`, each weight made from
    the value `fill(model)` assigns it (Keras' loader: `cnncli.model.weights.load_file`)
    and from nothing else: no random numbers or zeros the file replaces, and the weights
    a layer reads in 16 bits made in 16 bits at once (`precision.half_weights`, as
    `precision.compact_weights` would keep them). VGG16 from a file in bfloat16: 1.8 GB
    at the most instead of 2.3, the weights made once. A weight the file gives no value
    stays without one (`unfilled` names them); the variables that are no weights (a
    Dropout's random seed) get their initial values.

    >>> model = filled(lambda: keras.applications.VGG16(weights=None),
    ...                lambda m: weights.load_file(m, "vgg16.weights.h5", fits="vgg16",
    ...                                            expected=""),
    ...                "mixed_bfloat16")    # doctest: +SKIP
    """
    from cnncli.model.precision import half_weights, set_policy

    with weightless():
        model = build()
        set_policy(model, precision)
        with _Filling(half_weights(model)):
            fill(model)
    weights = {id(weight) for weight in model.weights}
    for variable in model.variables:  # no file holds them: initialized as Keras would
        if variable._value is None and id(variable) not in weights:
            variable._deferred_initialize()
    return model


def unfilled(model: keras.Model) -> list[str]:
    """The paths of `model`'s weights that have no value (`filled` found none for them)."""
    return [variable.path for variable in model.weights if variable._value is None]


class _Filling(keras.StatelessScope):
    """A stateless scope in which a weight's first assigned value becomes its value at
    once, in its 16-bit type for those in `halves` (``id`` -> type): Keras' loader
    assigns each weight once, so only one weight's file value is held at a time."""

    def __init__(self, halves: dict[int, str]):
        super().__init__(initialize_variables=False)
        self.halves = halves

    def add_update(self, update):
        from cnncli.runtime import import_tf

        tf = import_tf()
        variable, value = update
        with tf.init_scope():
            if variable._value is not None:  # a second value: the last one, as Keras'
                variable._direct_assign(value)
                return
            if id(variable) in self.halves:
                variable._dtype = self.halves[id(variable)]
                value = tf.cast(value, variable._dtype)
            variable._initialize(value)
