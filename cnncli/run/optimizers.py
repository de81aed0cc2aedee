"""Keras optimizers by name, with Adam's update done by TensorFlow's fused kernel.

Keras 3's Adam updates each weight with about ten element-wise operations, each one a
pass over the weight's memory. TensorFlow's ``ResourceApplyAdam`` kernel does the same
update (the same formula, the same epsilon placement) in one pass. For the lecture's
ConvNet, whose FC-1024 layer holds 3.2M of its 3.3M weights, that step is a large
share of training: the fused kernel gives 8-10% more images/s in float32 and 23-43%
in mixed_bfloat16, where the rest of the step is faster (``bench/LEVERS.md``).

The optimizer stays a plain ``keras.optimizers.Adam`` (or ``AdamW``): the same
config, variables and saved files; only its update of a dense gradient is swapped.

>>> opt = get("adam", {"learning_rate": 1e-3})
>>> type(opt).__name__, is_fused(opt)
('Adam', True)
>>> is_fused(get("adam", {"amsgrad": True}))       # AMSGrad: Keras' own update
False
"""

from __future__ import annotations

import inspect
from functools import cache

from cnncli.runtime import import_keras, import_tf

keras = import_keras()
tf = import_tf()

#: Variable dtypes TensorFlow's CPU and GPU ResourceApplyAdam kernels take.
_FUSED_DTYPES = ("float16", "bfloat16", "float32", "float64")


def get(name: str, config: dict):
    """``keras.optimizers.get`` by name and config, with Adam/AdamW fused (`fuse`).

    Raises Keras' ValueError/TypeError for an unknown name or argument.
    """
    return fuse(keras.optimizers.get({"class_name": name, "config": dict(config)}))


#: Optimizer arguments that are None by default and take a number otherwise.
_NUMBERS_OR_NONE = frozenset({"weight_decay", "clipnorm", "clipvalue", "global_clipnorm",
                              "loss_scale_factor", "ema_overwrite_frequency",
                              "gradient_accumulation_steps"})


@cache
def argument_kinds(name: str) -> dict[str, type]:
    """The arguments of the optimizer `name` that take a boolean (``bool``) or a number
    (``float``), judged from their defaults. Keras takes the text ``"no"`` as true and
    fails on ``"1e-7"`` only inside the first training step: cnncli checks them first.

    >>> kinds = argument_kinds("sgd")
    >>> kinds["nesterov"].__name__, kinds["momentum"].__name__, kinds["clipnorm"].__name__
    ('bool', 'float', 'float')

    Raises Keras' ValueError for an unknown name.
    """
    cls = type(keras.optimizers.get(name))
    kinds: dict[str, type] = {}
    for klass in reversed(cls.__mro__):
        if "__init__" not in vars(klass):
            continue
        for p in inspect.signature(klass.__init__).parameters.values():
            if isinstance(p.default, bool):
                kinds[p.name] = bool
            elif isinstance(p.default, int | float) or p.name in _NUMBERS_OR_NONE:
                kinds[p.name] = float
    return kinds


def fuse(optimizer):
    """Make a Keras Adam or AdamW do its dense updates with ``ResourceApplyAdam``.

    Other optimizers, AMSGrad, and backends other than TensorFlow are returned as
    they are. Sparse gradients (``IndexedSlices``) keep Keras' update. AdamW's
    weight decay is applied by Keras before the update, as before.
    """
    if (type(optimizer) not in (keras.optimizers.Adam, keras.optimizers.AdamW)
            or optimizer.amsgrad or keras.backend.backend() != "tensorflow"):
        return optimizer
    keras_update = optimizer.update_step

    def update_step(gradient, variable, learning_rate):
        dtype = variable.dtype
        if isinstance(gradient, tf.IndexedSlices) or dtype.name not in _FUSED_DTYPES:
            return keras_update(gradient, variable, learning_rate)
        index = optimizer._get_variable_index(variable)
        step = tf.cast(optimizer.iterations + 1, dtype)
        beta_1 = tf.cast(optimizer.beta_1, dtype)
        beta_2 = tf.cast(optimizer.beta_2, dtype)
        tf.raw_ops.ResourceApplyAdam(
            var=_handle(variable), m=_handle(optimizer._momentums[index]),
            v=_handle(optimizer._velocities[index]),
            beta1_power=tf.pow(beta_1, step), beta2_power=tf.pow(beta_2, step),
            lr=tf.cast(learning_rate, dtype), beta1=beta_1, beta2=beta_2,
            epsilon=tf.cast(optimizer.epsilon, dtype), grad=tf.cast(gradient, dtype))

    update_step.fused = True
    optimizer.update_step = update_step
    return optimizer


def is_fused(optimizer) -> bool:
    """True when `fuse` swapped this optimizer's update."""
    return getattr(optimizer.update_step, "fused", False)


def _handle(variable):
    """The resource handle of a Keras or TensorFlow (or distributed) variable."""
    return variable.handle if hasattr(variable, "handle") else variable.value.handle
