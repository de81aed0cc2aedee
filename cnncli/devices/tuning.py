"""What follows from a placement: XLA, the learning rate over several replicas, and the
prediction batch size. Decisions only, no TensorFlow (tested with made-up placements).

>>> from cnncli.devices.placement import Placement
>>> mirrored = Placement("mirrored", ["/gpu:0", "/gpu:1"], replicas=2)
>>> auto_jit_compile(mirrored), scale_learning_rate(0.1, mirrored.replicas)
(False, 0.2)
"""

from __future__ import annotations

import math

from cnncli.devices.placement import Placement
from cnncli.errors import ConfigError

#: Learning-rate scaling rules for several replicas (`scale_learning_rate`).
LR_RULES = ("linear", "sqrt", "none")


def auto_jit_compile(placement: Placement) -> bool:
    """Whether ``train.jit_compile: auto`` compiles with XLA on this placement.

    On one GPU, where Keras itself turns XLA on when no `tf.distribute` strategy is
    in play (cnncli trains under `OneDeviceStrategy` there, which would make Keras'
    own ``auto`` say no). Not on the CPU, where XLA trained the lecture's ConvNet at
    0.56-0.71x the speed (``bench/LEVERS.md``), nor over several devices, where
    Keras leaves it off with `tf.distribute`.

    >>> auto_jit_compile(Placement("gpu", ["/gpu:0"])), auto_jit_compile(Placement("cpu", []))
    (True, False)
    """
    return placement.kind == "gpu"

def inference_batch_size(placement: Placement | None) -> int:
    """Images per prediction batch when not given: more on a GPU, which has the memory and
    whose speed grows with the batch; 64 on a CPU (or with no TensorFlow: exported files),
    where a call's fixed cost (oneDNN reordering each layer's weights) is shared by more
    images: VGG16 in bfloat16 on 2 AMX cores, 11.6 ms an image at 64 against 12.5 at 32
    (2026-12-07). A batch larger than the memory budget runs in parts anyway
    (`cnncli.devices.memory.inference_chunk`).

    >>> inference_batch_size(Placement("gpu", ["/gpu:0"])), inference_batch_size(None)
    (128, 64)
    """
    return 128 if placement is not None and placement.kind != "cpu" else 64


def scale_learning_rate(lr: float, replicas: int, rule: str = "linear") -> float:
    """The learning rate for `replicas` replicas, each with the per-replica batch size.

    ``linear`` multiplies by `replicas` (Goyal et al., 2017), ``sqrt`` by its
    square root, ``none`` leaves it.

    >>> scale_learning_rate(0.1, 4)
    0.4
    """
    if rule not in LR_RULES:
        raise ConfigError(
            f"learning-rate scaling rule {rule!r} is not known",
            hint=f"use one of: {', '.join(LR_RULES)}",
        )
    if replicas < 1:
        raise ValueError(f"replicas must be >= 1, not {replicas}")
    if rule == "linear":
        return lr * replicas
    if rule == "sqrt":
        return lr * math.sqrt(replicas)
    return lr
