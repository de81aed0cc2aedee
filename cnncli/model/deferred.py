"""Networks built with weights that have no values yet: for showing one (`weightless`:
shapes and counts, no memory for the weights) or for filling it from a file
(`built_empty`: zeros, not random numbers the file replaces). Both use Keras' deferred
initialization (a `keras.StatelessScope` that does not initialize), its internals:
``keras<3.16`` is pinned, and tests hold them to it.
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


def built_empty(build):
    """The Keras network `build()` makes, its weights zeros instead of drawn at random:
    for a network whose weights a file replaces next (`cnncli.model.weights.load_file`).
    VGG16's 138 million random numbers take about 0.5 s on two cores, zeros 0.06 s. The
    network is built `weightless`, then each weight is made with a zeros initializer
    (tests/test_predict.py holds Keras' internals to it).

    >>> model = built_empty(lambda: keras.applications.VGG16(weights=None))  # doctest: +SKIP
    >>> weights.load_file(model, "vgg16.weights.h5", fits="vgg16", expected="")  # doctest: +SKIP
    """
    with weightless():
        model = build()
    zeros = keras.initializers.Zeros()
    for variable in model.weights:
        if variable._value is None:  # deferred
            variable._initializer = zeros
            variable._deferred_initialize()
    return model
