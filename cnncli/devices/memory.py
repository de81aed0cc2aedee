"""Device memory: what a training step needs, whether it fits, and what to do when it
does not (``--auto-batch``). No TensorFlow.

>>> check_fits(estimate_batch_memory(138_000_000, 15_000_000, 256), 16 * 2**30)[:28]
'A training step needs about '
"""

from __future__ import annotations

import math

from cnncli.errors import DeviceError
from cnncli.text import size

#: ``--auto-batch`` halves the batch size at most this many times.
MAX_BATCH_HALVINGS = 3

#: Share of a GPU's memory a training step may plan to use; the rest goes to
#: the CUDA context, cuDNN workspaces and allocator fragmentation.
USABLE_MEMORY_FRACTION = 0.9


def estimate_batch_memory(
    params: int,
    activations_per_image: int,
    batch_size: int,
    optimizer_slots: int = 2,
    bytes_per_value: int = 4,
) -> int:
    """A rough estimate, in bytes, of the memory one training step needs.

    Weights, their gradients and `optimizer_slots` copies (Adam keeps 2) are
    float32; each image's activations are kept for the backward pass and get a
    gradient of the same size, at `bytes_per_value` each (2 under mixed precision).

    >>> estimate_batch_memory(1000, 500, 10)
    56000
    """
    weights = int(params) * (2 + int(optimizer_slots)) * 4
    activations = int(activations_per_image) * int(batch_size) * 2 * int(bytes_per_value)
    return weights + activations


def too_large(params: int, largest: tuple[str, int], memory: int, *,
              on_cpu: bool) -> DeviceError | None:
    """The error for a network whose weights alone, float32, do not fit in `memory` bytes
    (on the CPU: the memory available; the process would be killed making them, with no
    message), None when they do. Training needs more (gradients, the optimizer's copies,
    activations: `estimate_batch_memory`, a warning), but what that is depends on the
    optimizer and on what is frozen; the weights alone are certain. `largest`: the name
    and weight count of its largest layer.

    >>> print(too_large(16_000_000_000, ("fc1", 1_600_000_000), 23 * 2**30,
    ...                 on_cpu=True).message)  # doctest: +NORMALIZE_WHITESPACE
    the network has 16,000,000,000 weights: they alone take 59.6 GiB, and this machine
    has 23.0 GiB of memory available
    >>> too_large(4_000_000_000, ("fc1", 500), 23 * 2**30, on_cpu=True) is None
    True
    """
    need = int(params) * 4
    if need <= memory:
        return None
    where = ("this machine has {} of memory available" if on_cpu
             else "the GPU has {} of memory").format(size(memory, memory=True))
    name, count = largest
    return DeviceError(
        f"the network has {params:,} weights: they alone take {size(need, memory=True)}, and "
        f"{where}", hint=f"make the network smaller: its largest layer, {name}, has "
                         f"{count:,} weights (a fully-connected layer has one per input "
                         "and unit: pool the volume before it, or give it fewer units)")


#: Memory (bytes) inference may give one layer's input and output together: a batch
#: with more images runs in parts (`inference_chunk`). VGG16 at 224x224 (12.8 MB per
#: image in its first layers) runs 41 images at a time; 256 at once ended TensorFlow
#: on the CPU (``std::bad_alloc``), and 128 took 4.6 GB for no gain in speed.
INFERENCE_LAYER_BUDGET = 2**30


def largest_activation(model) -> int:
    """Values per image of the largest layer output of a Keras `model`, looking inside
    nested models (a backbone); 0 if no layer's output size is known.

    >>> class Layer:
    ...     def __init__(self, shape): self.output = type("T", (), {"shape": shape})()
    >>> largest_activation(type("M", (), {"layers": [Layer((None, 8, 8, 3)),
    ...                                              Layer((None, 10))]})())
    192
    """
    largest = 0
    for layer in getattr(model, "layers", ()):
        if getattr(layer, "layers", None):
            largest = max(largest, largest_activation(layer))
        try:
            outputs = layer.output
        except (AttributeError, ValueError, RuntimeError):  # shared or unbuilt layer
            continue
        for out in outputs if isinstance(outputs, (list, tuple)) else (outputs,):
            dims = tuple(getattr(out, "shape", ()) or ())[1:]
            if dims and all(isinstance(d, int) for d in dims):
                largest = max(largest, math.prod(dims))
    return largest


def inference_chunk(largest: int, bytes_per_value: int = 4, budget: int | None = None) -> int:
    """Images inference runs at once so that a layer's input and output (`largest`
    values per image each) fit in `budget` bytes (`INFERENCE_LAYER_BUDGET`); at least 1.

    >>> inference_chunk(224 * 224 * 64), inference_chunk(28 * 28 * 32)
    (41, 5349)
    """
    budget = budget or INFERENCE_LAYER_BUDGET
    return max(1, budget // (2 * bytes_per_value * max(1, int(largest))))


def memory_tips(batch: str, *, precision: str = "float32", resumed: bool = False,
                several_machines: bool = False) -> str:
    """What to try when a training step needs more memory than there is: `batch` (a
    smaller batch), half-precision activations unless they are already, `--auto-batch`
    where it applies (not on several machines, nor for a resumed run, whose batch size is
    its own).

    >>> memory_tips("--batch-size 128", precision="mixed_float16", several_machines=True)
    'try --batch-size 128'
    >>> memory_tips("--batch-size 128", resumed=True)  # doctest: +NORMALIZE_WHITESPACE
    'try --force --precision mixed_float16 (halves activation memory on a GPU), or start a
    new run with --batch-size 128'
    """
    tips = []
    if precision == "float32":
        tips.append(f"{'--force ' if resumed else ''}--precision mixed_float16 (halves "
                    "activation memory on a GPU)")
    if resumed:  # the batch size of a resumed run is its own
        return f"try {tips[0]}, or start a new run with {batch}" if tips else \
            f"start a new run with {batch}"
    tips.insert(0, batch)
    if not several_machines:
        tips.append("--auto-batch to halve the batch size automatically")
    return "try " + (tips[0] if len(tips) == 1 else
                     f"{', '.join(tips[:-1])}{',' if len(tips) > 2 else ''} or {tips[-1]}")


def check_fits(estimate: int, device_memory: int | None, *, on_cpu: bool = False,
               precision: str = "float32", several_machines: bool = False) -> str | None:
    """Warning text when `estimate` bytes will not fit in `device_memory` (None: fits); with
    `on_cpu`, `device_memory` is the machine's memory available.

    >>> check_fits(10 * 2**30, 16 * 2**30) is None
    True
    >>> check_fits(20 * 2**30, 16 * 2**30)[:40]
    'A training step needs about 20.0 GiB, bu'
    >>> check_fits(20 * 2**30, 16 * 2**30, on_cpu=True)[28:]
    '20.0 GiB, but only about 14.4 GiB of memory is available; try a smaller --batch-size'
    """
    if device_memory is None:
        return None
    usable = int(device_memory * USABLE_MEMORY_FRACTION)
    if estimate <= usable:
        return None
    if on_cpu:
        return (f"A training step needs about {size(estimate, memory=True)}, but only about "
                f"{size(usable, memory=True)} of memory is available; try a smaller --batch-size")
    return (
        f"A training step needs about {size(estimate, memory=True)}, but only about "
        f"{size(usable, memory=True)} of the device's {size(device_memory, memory=True)} "
        f"is usable; " + memory_tips("a smaller --batch-size", precision=precision,
                                     several_machines=several_machines)
    )


def out_of_memory_message(batch_size: int, device: str | None = None, *,
                          precision: str = "float32", resumed: bool = False,
                          several_machines: bool = False) -> DeviceError:
    """The error to raise for a ``ResourceExhaustedError`` at `batch_size`; `device` is
    what the run trains on (its ``train.device``: ``gpu:0``, ``gpu`` for several, ``cpu``).
    With several devices or machines the batch size is per replica: said so.

    >>> print(out_of_memory_message(256))  # doctest: +ELLIPSIS
    Ran out of device memory at batch size 256. Hint: try --batch-size 128, ...
    >>> print(out_of_memory_message(64, "gpu"))  # doctest: +ELLIPSIS
    Ran out of device memory on the GPUs at batch size 64 per replica (each GPU trains ...
    """
    where = {"gpu": " on the GPUs", "cpu": "", "auto": "", None: ""}.get(
        device, f" on {device}")
    memory = "memory" if device == "cpu" else "device memory"
    per = ""
    if device == "gpu" or several_machines:
        per = f" per replica (each {'GPU' if device != 'cpu' else 'machine'} trains that " \
              "many images a step)"
    smaller = max(1, int(batch_size) // 2)
    return DeviceError(
        f"Ran out of {memory}{where} at batch size {batch_size}{per}",
        hint=memory_tips(f"--batch-size {smaller}", precision=precision, resumed=resumed,
                         several_machines=several_machines))


def next_batch_size(batch: int, attempt: int) -> int | None:
    """For ``--auto-batch``: the batch size to retry with after running out of memory.

    Args:
        batch: the batch size that failed.
        attempt: how many times the batch size was already halved (0 at first).

    Returns:
        half of `batch`, or None after `MAX_BATCH_HALVINGS` halvings or below 1.

    >>> next_batch_size(256, 0), next_batch_size(32, 3)
    (128, None)
    """
    if attempt >= MAX_BATCH_HALVINGS or batch < 2:
        return None
    return batch // 2
