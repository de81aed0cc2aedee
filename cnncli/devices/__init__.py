"""Choosing where a model runs: CPU, one GPU, several GPUs mirrored, or several machines.

Decisions and facts (`placement`, `tuning`, `cluster`, `memory`, `hardware`) are plain Python,
tested with made-up GPU lists; `tf_layer` is the thin TensorFlow layer that asks
TensorFlow what it sees and applies a decision; `distributed` is the training loop for
several machines. Importing this
package does not import TensorFlow: `tf_layer`'s functions import it when called.

>>> t4 = GpuInfo("NVIDIA T4", 16 * 2**30, (7, 5), 0)
>>> decide("auto", "auto", [t4], cpu_threads=2).describe()
'Device: NVIDIA T4 (gpu:0, mixed_float16)'

In a command (TensorFlow):

>>> placement = setup("auto", "auto")          # doctest: +SKIP
>>> with strategy(placement).scope():           # doctest: +SKIP
...     model = build(spec)

``CUDA_VISIBLE_DEVICES`` is left to TensorFlow: the GPUs it hides are never seen here,
and the ones it shows are numbered from 0. Several machines: when ``TF_CONFIG``
describes a cluster of two or more training tasks and the caller asks for it
(``setup(..., multiworker=True)``, training only), the placement is ``"multiworker"``.
"""

from cnncli.devices.cluster import (
    TF_CONFIG_HINT,
    TRAINING_TASKS,
    Cluster,
    from_environment,
    parse_tf_config,
)
from cnncli.devices.hardware import (
    CPU_BF16_FLAGS,
    GPU_INSTALL,
    cpu_bf16_units,
    cpu_flags,
    nvidia_driver_present,
)
from cnncli.devices.memory import (
    MAX_BATCH_HALVINGS,
    USABLE_MEMORY_FRACTION,
    check_fits,
    estimate_batch_memory,
    next_batch_size,
    out_of_memory_message,
    too_large,
)
from cnncli.devices.placement import (
    CPU_REQUESTED_NOTE,
    DEVICE_FORMS,
    NO_GPU_NOTE,
    PRECISIONS,
    GpuInfo,
    Placement,
    auto_precision,
    decide,
    gpu_warning,
    parse_device,
    parse_precision,
    strategy_name,
)
from cnncli.devices.tf_layer import (
    build_info,
    doctor_info,
    failed_on_a_gpu,
    said_by_each_machine,
    setup,
    strategy,
    tf_cpu_threads,
    visible_gpus,
)
from cnncli.devices.tuning import (
    LR_RULES,
    auto_jit_compile,
    inference_batch_size,
    scale_learning_rate,
)
from cnncli.parallel import available_cpus

__all__ = [
    "CPU_BF16_FLAGS", "CPU_REQUESTED_NOTE", "DEVICE_FORMS", "GPU_INSTALL", "LR_RULES",
    "MAX_BATCH_HALVINGS", "NO_GPU_NOTE", "PRECISIONS", "TF_CONFIG_HINT", "TRAINING_TASKS",
    "USABLE_MEMORY_FRACTION", "Cluster", "GpuInfo", "Placement", "auto_jit_compile",
    "auto_precision", "available_cpus", "build_info", "check_fits", "cpu_bf16_units",
    "cpu_flags", "decide", "doctor_info", "estimate_batch_memory",
    "failed_on_a_gpu",
    "from_environment", "gpu_warning", "inference_batch_size", "next_batch_size",
    "nvidia_driver_present", "out_of_memory_message", "parse_device", "parse_precision",
    "parse_tf_config", "said_by_each_machine", "scale_learning_rate", "setup", "strategy",
    "strategy_name", "tf_cpu_threads", "too_large", "visible_gpus",
]
