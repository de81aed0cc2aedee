"""Choosing where a model runs: CPU, one GPU, several GPUs mirrored, or several machines.

The module has two halves:

* pure decisions with no TensorFlow in them (`decide`, `gpu_warning`,
  `estimate_batch_memory`, `check_fits`, `next_batch_size`, ...), tested with
  made-up GPU lists;
* a thin TensorFlow layer (`visible_gpus`, `setup`, `strategy`, `doctor_info`)
  that asks TensorFlow what it sees and applies the decision.

Example (pure, no TensorFlow needed):

>>> t4 = GpuInfo("NVIDIA T4", 16 * 2**30, (7, 5), 0)
>>> decide("auto", "auto", [t4], cpu_threads=2).describe()
'Device: NVIDIA T4 (gpu:0, mixed_float16)'
>>> decide("auto", "auto", [], cpu_threads=2).describe()
'Device: CPU (2 threads): TensorFlow sees no GPU'

In a command (TensorFlow):

>>> placement = setup("auto", "auto")          # doctest: +SKIP
>>> with strategy(placement).scope():           # doctest: +SKIP
...     model = build(spec)

``CUDA_VISIBLE_DEVICES`` is left to TensorFlow: the GPUs it hides are never
seen here, and the ones it shows are numbered from 0.

Several machines: when ``TF_CONFIG`` describes a cluster of two or more
training tasks (as Kubeflow's TFJob, Vertex AI and SageMaker set it) and the
caller asks for it (``setup(..., multiworker=True)``, training only), the
placement is ``"multiworker"``: each machine uses its own devices as above, and
`MultiWorkerMirroredStrategy` keeps all of them in step.

>>> cluster = parse_tf_config('{"cluster": {"worker": ["a:2222", "b:2222"]},'
...                           ' "task": {"type": "worker", "index": 1}}')
>>> placement = decide("cpu", "auto", [], cpu_threads=2, cluster=cluster)
>>> first, *rest = placement.describe().split("; ")
>>> first
'Device: 2 workers x CPU (multi-worker mirrored, float32)'
>>> rest
['this is worker 1', 'batch size is per replica']
"""

from __future__ import annotations

import functools
import json
import math
import os
import re
import shutil
import subprocess
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field

from cnncli.errors import ConfigError, DeviceError
from cnncli.runtime import import_keras, import_tf, stderr_silenced

keras = import_keras()
tf = import_tf()

#: Values of ``--device``.
DEVICE_FORMS = "auto, cpu, gpu, gpu:N (N = 0, 1, ... as numbered by TensorFlow)"
#: Values of ``--precision``.
PRECISIONS = ("auto", "float32", "mixed_float16", "mixed_bfloat16")
#: ``--auto-batch`` halves the batch size at most this many times.
MAX_BATCH_HALVINGS = 3
#: Share of a GPU's memory a training step may plan to use; the rest goes to
#: the CUDA context, cuDNN workspaces and allocator fragmentation.
USABLE_MEMORY_FRACTION = 0.9
#: Learning-rate scaling rules for several replicas (`scale_learning_rate`).
LR_RULES = ("linear", "sqrt", "none")
#: ``TF_CONFIG`` task types that train (MultiWorkerMirroredStrategy's); an
#: ``evaluator`` may be listed in the cluster but does not train.
TRAINING_TASKS = ("chief", "worker")
TF_CONFIG_HINT = ('TF_CONFIG is JSON such as {"cluster": {"worker": ["host0:2222", '
                  '"host1:2222"]}, "task": {"type": "worker", "index": 0}}; Kubeflow, '
                  "Vertex AI and SageMaker set it; unset it to train on this machine only")

NO_GPU_NOTE = "TensorFlow sees no GPU"
CPU_REQUESTED_NOTE = "--device cpu"
GPU_INSTALL = "pip install 'cnncli[gpu]'"


@dataclass
class GpuInfo:
    """One GPU as TensorFlow sees it.

    Args:
        name: e.g. ``"NVIDIA A100-SXM4-80GB"``.
        memory_bytes: total memory, or None when unknown.
        compute_capability: e.g. ``(8, 0)``, or None when unknown.
        index: TensorFlow's number for it (``/gpu:index``).
    """

    name: str
    memory_bytes: int | None = None
    compute_capability: tuple[int, int] | None = None
    index: int = 0

    def to_dict(self) -> dict:
        """Plain JSON-able values."""
        cc = self.compute_capability
        return {
            "index": self.index,
            "name": self.name,
            "memory_bytes": self.memory_bytes,
            "compute_capability": None if cc is None else f"{cc[0]}.{cc[1]}",
        }


@dataclass
class Cluster:
    """This process's place in a training cluster, from ``TF_CONFIG`` (`parse_tf_config`).

    Args:
        workers: tasks that train together (the chief, if any, and the workers).
        task_type: ``"chief"`` or ``"worker"``.
        task_index: this task's index among the tasks of its type.
        is_chief: whether this task writes the run: the ``chief`` task, or
            worker 0 when the cluster has no chief.
    """

    workers: int
    task_type: str
    task_index: int
    is_chief: bool

    @property
    def task(self) -> str:
        """``"worker 1"``, ``"chief 0"``."""
        return f"{self.task_type} {self.task_index}"


@dataclass
class Placement:
    """Where and how a command runs: the result of `decide`.

    Args:
        kind: ``"cpu"``, ``"gpu"`` (one GPU), ``"mirrored"`` (several) or
            ``"multiworker"`` (several machines, each with its `devices`).
        devices: TensorFlow device names on this machine, e.g. ``["/gpu:0", "/gpu:1"]``.
        gpus: the GPUs used (empty on the CPU).
        precision: ``"float32"``, ``"mixed_float16"`` or ``"mixed_bfloat16"``.
        cpu_threads: threads TensorFlow may use on the CPU.
        replicas: model copies trained in step (1 unless mirrored or
            multi-worker; then the devices of all machines).
        note: why this placement (shown for the CPU), e.g. ``"--device cpu"``.
        visible: how many GPUs TensorFlow sees (used or not).
        warnings: things the user should know (slow precision, driver without GPU).
        workers: machines training together (1 unless multi-worker).
        task: this machine's task in the cluster, e.g. ``"worker 1"`` ("" alone).
        is_chief: whether this process writes the run (always, unless it is a
            multi-worker task other than the chief).
    """

    kind: str
    devices: list[str]
    gpus: list[GpuInfo] = field(default_factory=list)
    precision: str = "float32"
    cpu_threads: int = 1
    replicas: int = 1
    note: str = ""
    visible: int = 0
    warnings: list[str] = field(default_factory=list)
    workers: int = 1
    task: str = ""
    is_chief: bool = True

    def describe(self) -> str:
        """The first line every command prints.

        >>> Placement("cpu", ["/cpu:0"], cpu_threads=2, note="--device cpu").describe()
        'Device: CPU (2 threads): --device cpu'
        """
        if self.kind == "cpu":
            threads = f"{self.cpu_threads} thread{'s' if self.cpu_threads != 1 else ''}"
            if self.precision != "float32":
                threads += f", {self.precision}"
            text = f"Device: CPU ({threads})"
            return f"{text}: {self.note}" if self.note else text
        names = [g.name for g in self.gpus] or list(self.devices)
        if self.kind == "multiworker":
            return self._describe_multiworker(names)
        if self.kind == "gpu":
            where = self.devices[0].lstrip("/")
            return f"Device: {names[0]} ({where}, {self.precision})"
        if len(set(names)) == 1:
            what = f"{len(names)}x {names[0]}"
        else:
            what = f"{len(names)} devices: {', '.join(names)}"
        text = f"Device: {what} (mirrored, {self.precision})"
        if self.replicas > 1:
            text += "; batch size is per replica"
        return text

    def _describe_multiworker(self, names: list[str]) -> str:
        if not self.gpus:
            local = "CPU"
        elif len(names) == 1:
            local = names[0]
        elif len(set(names)) == 1:
            local = f"{len(names)}x {names[0]}"
        else:
            local = f"({', '.join(names)})"
        if self.task.startswith("chief"):
            role = "this is the chief"
        else:
            role = f"this is {self.task}" + (" (chief)" if self.is_chief else "")
        text = f"Device: {self.workers} workers x {local} (multi-worker mirrored, " \
               f"{self.precision}); {role}"
        return text + ("; batch size is per replica" if self.replicas > 1 else "")

    def to_dict(self) -> dict:
        """Plain JSON-able values (for ``doctor`` and run records)."""
        return {
            "kind": self.kind,
            "devices": list(self.devices),
            "gpus": [g.to_dict() for g in self.gpus],
            "precision": self.precision,
            "cpu_threads": self.cpu_threads,
            "replicas": self.replicas,
            "note": self.note,
            "visible_gpus": self.visible,
            "warnings": list(self.warnings),
            "workers": self.workers,
            "task": self.task,
            "is_chief": self.is_chief,
            "strategy": strategy_name(self),
            "describe": self.describe(),
        }


# --------------------------------------------------------------------------- #
# Pure decisions
# --------------------------------------------------------------------------- #


def parse_device(requested: str) -> tuple[str, int | None]:
    """Split a ``--device`` value into its form and GPU index.

    >>> parse_device("gpu:1")
    ('gpu', 1)
    >>> parse_device("auto")
    ('auto', None)
    """
    text = str(requested).strip().lower()
    if text in ("auto", "cpu", "gpu"):
        return text, None
    match = re.fullmatch(r"/?gpu:(\d+)", text)
    if match:
        return "gpu", int(match.group(1))
    raise ConfigError(
        f"--device {requested!r} is not a device cnncli knows",
        hint=f"use one of: {DEVICE_FORMS}",
    )


def auto_precision(gpus: Sequence[GpuInfo], cpu_bf16: bool = False) -> str:
    """The precision ``--precision auto`` picks for these GPUs (empty = the CPU).

    Tensor Cores for float16 arrived with compute capability 7.0, native
    bfloat16 with 8.0; with several GPUs the weakest one decides. On the CPU,
    mixed_bfloat16 when it has bfloat16 matrix units (`cpu_bf16_units`): there it
    trained the lecture's ConvNet 1.45x (batch 50) to 2.1x (batch 128) as fast as
    float32, to the same test accuracy (``bench/LEVERS.md``); float32 otherwise.

    >>> auto_precision([GpuInfo("T4", None, (7, 5), 0)])
    'mixed_float16'
    >>> auto_precision([]), auto_precision([], cpu_bf16=True)
    ('float32', 'mixed_bfloat16')
    """
    if not gpus:
        return "mixed_bfloat16" if cpu_bf16 else "float32"
    caps = [g.compute_capability for g in gpus]
    if any(cc is None for cc in caps):
        return "float32"
    weakest = min(caps)
    if weakest >= (8, 0):
        return "mixed_bfloat16"
    if weakest >= (7, 0):
        return "mixed_float16"
    return "float32"


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


#: CPU flags (``/proc/cpuinfo``) of matrix units that multiply bfloat16: Intel AMX
#: (Sapphire Rapids and later). AVX512-BF16 alone was not measured, so not listed.
CPU_BF16_FLAGS = frozenset({"amx_bf16"})


def cpu_flags(path: str = "/proc/cpuinfo") -> frozenset[str]:
    """The CPU's feature flags as Linux lists them (empty where it does not).

    >>> "fpu" in cpu_flags() or cpu_flags() == frozenset()
    True
    """
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("flags"):
                    return frozenset(line.partition(":")[2].split())
    except OSError:
        pass
    return frozenset()


def cpu_bf16_units(flags: frozenset[str] | None = None,
                   environ: dict | None = None) -> bool:
    """True when TensorFlow can multiply bfloat16 on this CPU's matrix units: the CPU
    has them (`CPU_BF16_FLAGS`) and oneDNN, which drives them, is not turned off.

    >>> cpu_bf16_units(frozenset({"avx512f", "amx_bf16"}), environ={})
    True
    >>> cpu_bf16_units(frozenset({"amx_bf16"}), environ={"TF_ENABLE_ONEDNN_OPTS": "0"})
    False
    """
    flags = cpu_flags() if flags is None else flags
    environ = os.environ if environ is None else environ
    onednn = environ.get("TF_ENABLE_ONEDNN_OPTS", "1").strip().lower() not in ("0", "false")
    return onednn and bool(flags & CPU_BF16_FLAGS)


def _precision_warnings(precision: str, gpus: Sequence[GpuInfo],
                        cpu_bf16: bool = False) -> list[str]:
    """Warnings for an explicit precision that will be slow where it runs."""
    if precision == "float32":
        return []
    if not gpus:
        if precision == "mixed_bfloat16" and cpu_bf16:
            return []
        return [
            f"--precision {precision} on this CPU is usually slower than float32: it has "
            "no bfloat16 matrix units (Intel AMX); mixed precision pays off on GPUs"
        ]
    caps = [g.compute_capability for g in gpus]
    if any(cc is None for cc in caps):
        return []
    weakest = min(caps)
    cc_text = f"{weakest[0]}.{weakest[1]}"
    if precision == "mixed_float16" and weakest < (7, 0):
        return [
            f"--precision mixed_float16 on a GPU of compute capability {cc_text} "
            "(no Tensor Cores) may be slower than float32"
        ]
    if precision == "mixed_bfloat16" and weakest < (8, 0):
        return [
            f"--precision mixed_bfloat16 on a GPU of compute capability {cc_text} "
            "(no native bfloat16) is slow; use mixed_float16 there"
        ]
    return []


def _no_such_gpu(requested: str, gpus: Sequence[GpuInfo]) -> DeviceError:
    if not gpus:
        seen = "TensorFlow sees no GPU"
    else:
        names = ", ".join(f"gpu:{g.index}" for g in gpus)
        seen = f"TensorFlow sees only {len(gpus)} GPU{'s' if len(gpus) != 1 else ''} ({names})"
    return DeviceError(
        f"--device {requested} was asked for, but {seen}",
        hint=(
            "check that nvidia-smi lists the GPU, that CUDA_VISIBLE_DEVICES does not hide it "
            "(it also renumbers the visible GPUs from 0), and that TensorFlow has its CUDA "
            f"libraries: {GPU_INSTALL}; or use --device auto or --device cpu"
        ),
    )


def _tf_config_error(message: str) -> ConfigError:
    return ConfigError(message, hint=TF_CONFIG_HINT)


def parse_tf_config(text: str | None) -> Cluster | None:
    """The training cluster a ``TF_CONFIG`` value describes, and this task's place in it.

    None when there is nothing to join: `text` unset or empty, no cluster, or a
    cluster with a single training task (Vertex AI sets one for one machine).

    >>> parse_tf_config('{"cluster": {"chief": ["a:1"], "worker": ["b:1"]},'
    ...                 ' "task": {"type": "worker", "index": 0}}')
    Cluster(workers=2, task_type='worker', task_index=0, is_chief=False)
    >>> parse_tf_config(None) is None
    True

    Raises:
        ConfigError: not JSON, parameter servers, or a task that is not in the cluster.
    """
    if not text or not text.strip():
        return None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise _tf_config_error(f"TF_CONFIG is not valid JSON ({exc.msg} at character "
                               f"{exc.pos})") from None
    if not isinstance(data, dict):
        raise _tf_config_error("TF_CONFIG is not a JSON object")
    cluster, task = data.get("cluster") or {}, data.get("task") or {}
    if not isinstance(cluster, dict) or not isinstance(task, dict):
        raise _tf_config_error("TF_CONFIG's `cluster` and `task` must be JSON objects")
    if not cluster:
        return None
    other = sorted(set(cluster) - set(TRAINING_TASKS) - {"evaluator"})
    if other:
        raise _tf_config_error(
            f"TF_CONFIG's cluster has '{other[0]}' tasks, but cnncli trains with "
            "MultiWorkerMirroredStrategy, on 'chief' and 'worker' tasks only")
    lists = {kind: cluster.get(kind) or [] for kind in TRAINING_TASKS}
    if any(not isinstance(hosts, list) for hosts in lists.values()):
        raise _tf_config_error("TF_CONFIG's cluster must list each task type's hosts")
    if len(lists["chief"]) > 1:
        raise _tf_config_error("TF_CONFIG's cluster has more than one chief")
    kind, index = task.get("type"), task.get("index", 0)
    if kind not in TRAINING_TASKS:
        raise _tf_config_error(f"TF_CONFIG's task type {kind!r} does not train: cnncli "
                               "trains on 'chief' and 'worker' tasks")
    if isinstance(index, bool) or not isinstance(index, int) \
            or not 0 <= index < len(lists[kind]):
        raise _tf_config_error(f"TF_CONFIG's task {kind} {index!r} is not in its cluster, "
                               f"which has {len(lists[kind])} {kind} task(s)")
    workers = len(lists["chief"]) + len(lists["worker"])
    if workers < 2:
        return None
    return Cluster(workers=workers, task_type=kind, task_index=index,
                   is_chief=kind == "chief" or (not lists["chief"] and index == 0))


def decide(
    requested: str, precision: str, gpus: Sequence[GpuInfo], cpu_threads: int,
    cluster: Cluster | None = None, cpu_bf16: bool = False,
) -> Placement:
    """Choose the devices and precision for ``--device requested --precision precision``.

    * ``auto``: no GPU -> CPU, one -> that GPU, several -> mirrored over all;
    * ``cpu``: the CPU even if GPUs are visible;
    * ``gpu``: like ``auto`` but a missing GPU is an error, not a fallback;
    * ``gpu:N``: that GPU only (an error if TensorFlow does not see it).

    With a `cluster` (from `parse_tf_config`) the same choice is made for this
    machine, and the placement is ``"multiworker"``: every machine trains a
    replica on each of its devices (they must all have the same number).

    >>> a100 = GpuInfo("NVIDIA A100-SXM4-80GB", None, (8, 0), 0)
    >>> two = [a100, GpuInfo(a100.name, None, (8, 0), 1)]
    >>> decide("auto", "auto", two, 8).describe()
    'Device: 2x NVIDIA A100-SXM4-80GB (mirrored, mixed_bfloat16); batch size is per replica'
    """
    form, index = parse_device(requested)
    wanted = str(precision).strip().lower()
    if wanted not in PRECISIONS:
        raise ConfigError(
            f"--precision {precision!r} is not a precision cnncli knows",
            hint=f"use one of: {', '.join(PRECISIONS)}",
        )
    gpus = list(gpus)

    if form == "cpu" or (form == "auto" and not gpus):
        used: list[GpuInfo] = []
        kind, devices = "cpu", ["/cpu:0"]
        note = CPU_REQUESTED_NOTE if form == "cpu" else NO_GPU_NOTE
    elif index is not None:
        matches = [g for g in gpus if g.index == index]
        if not matches:
            raise _no_such_gpu(f"gpu:{index}", gpus)
        used, kind, devices, note = matches, "gpu", [f"/gpu:{index}"], ""
    elif not gpus:
        raise _no_such_gpu("gpu", gpus)
    elif len(gpus) == 1:
        used, kind, devices, note = gpus, "gpu", [f"/gpu:{gpus[0].index}"], ""
    else:
        used, kind, note = gpus, "mirrored", ""
        devices = [f"/gpu:{g.index}" for g in gpus]

    chosen = auto_precision(used, cpu_bf16) if wanted == "auto" else wanted
    placement = Placement(
        kind=kind,
        devices=devices,
        gpus=list(used),
        precision=chosen,
        cpu_threads=max(1, int(cpu_threads)),
        replicas=len(devices) if kind == "mirrored" else 1,
        note=note,
        visible=len(gpus),
        warnings=[] if wanted == "auto" else _precision_warnings(chosen, used, cpu_bf16),
    )
    if cluster is not None:
        placement.kind, placement.note = "multiworker", ""
        placement.replicas = cluster.workers * len(devices)
        placement.workers, placement.task = cluster.workers, cluster.task
        placement.is_chief = cluster.is_chief
    return placement


def strategy_name(placement: Placement) -> str:
    """The `tf.distribute` strategy `strategy` builds for this placement."""
    return {"cpu": "default", "gpu": "OneDeviceStrategy",
            "multiworker": "MultiWorkerMirroredStrategy"}.get(placement.kind, "MirroredStrategy")


def global_batch_size(batch_size: int, replicas: int) -> int:
    """The batch Keras `fit` needs so each replica gets `batch_size`.

    >>> global_batch_size(32, 2)
    64
    """
    return int(batch_size) * max(1, int(replicas))


def nvidia_driver_present(
    paths: Sequence[str] = ("/proc/driver/nvidia",), search_path: str | None = None
) -> bool:
    """True when an NVIDIA driver is installed: ``nvidia-smi`` is on the PATH or
    one of `paths` exists.

    Args:
        paths: files or folders the driver creates.
        search_path: the PATH to search for ``nvidia-smi`` (None: ``$PATH``).

    >>> nvidia_driver_present(paths=[], search_path="")
    False
    """
    if shutil.which("nvidia-smi", path=search_path):
        return True
    return any(os.path.exists(p) for p in paths)


def gpu_warning(driver_present: bool, placement: Placement, build_info: dict) -> str | None:
    """A warning when an NVIDIA driver is installed but TensorFlow sees no GPU.

    Args:
        driver_present: from `nvidia_driver_present`.
        placement: from `decide`.
        build_info: ``tf.sysconfig.get_build_info()`` (``is_cuda_build``,
            ``cuda_version``, ``cudnn_version``).

    >>> cpu = decide("auto", "auto", [], 2)
    >>> gpu_warning(False, cpu, {}) is None
    True
    """
    if not driver_present or placement.visible > 0:
        return None
    text = "An NVIDIA driver is installed but TensorFlow sees no GPU, so cnncli runs on the CPU"
    if not build_info.get("is_cuda_build"):
        return f"{text}. This TensorFlow was built without CUDA; fix: {GPU_INSTALL}"
    cuda = build_info.get("cuda_version") or "unknown"
    cudnn = build_info.get("cudnn_version") or "unknown"
    return (
        f"{text}. This TensorFlow was built with CUDA {cuda} and cuDNN {cudnn}; "
        f"fix: {GPU_INSTALL} (installs those libraries), check that the driver supports "
        f"CUDA {cuda} (nvidia-smi shows the newest CUDA it supports) and that "
        "CUDA_VISIBLE_DEVICES does not hide the GPUs"
    )


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


def format_bytes(count: int) -> str:
    """``1536 * 2**20`` -> ``'1.5 GiB'``."""
    value = float(count)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GiB"  # pragma: no cover


def check_fits(estimate: int, device_memory: int | None) -> str | None:
    """Warning text when `estimate` bytes will not fit in `device_memory` (None: fits).

    >>> check_fits(10 * 2**30, 16 * 2**30) is None
    True
    >>> check_fits(20 * 2**30, 16 * 2**30)[:40]
    'A training step needs about 20.0 GiB, bu'
    """
    if device_memory is None:
        return None
    usable = int(device_memory * USABLE_MEMORY_FRACTION)
    if estimate <= usable:
        return None
    return (
        f"A training step needs about {format_bytes(estimate)}, but only about "
        f"{format_bytes(usable)} of the device's {format_bytes(device_memory)} is usable; "
        "try a smaller --batch-size, --precision mixed_float16 or --auto-batch"
    )


def out_of_memory_message(batch_size: int, device: str | None = None) -> DeviceError:
    """The error to raise for a ``ResourceExhaustedError`` at `batch_size`.

    >>> print(out_of_memory_message(256))  # doctest: +ELLIPSIS
    Ran out of device memory at batch size 256. Hint: try --batch-size 128, ...
    """
    where = f" on {device}" if device else ""
    smaller = max(1, int(batch_size) // 2)
    return DeviceError(
        f"Ran out of device memory{where} at batch size {batch_size}",
        hint=(
            f"try --batch-size {smaller}, --precision mixed_float16 (halves activation "
            "memory on a GPU), or --auto-batch to halve the batch size automatically"
        ),
    )


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


# --------------------------------------------------------------------------- #
# TensorFlow layer
# --------------------------------------------------------------------------- #


def available_cpus() -> int:
    """CPUs this process may run on (its affinity, else the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def tf_cpu_threads() -> int:
    """Threads TensorFlow uses for one op (its setting, else all available CPUs)."""
    return tf.config.threading.get_intra_op_parallelism_threads() or available_cpus()


def build_info() -> dict:
    """``tf.sysconfig.get_build_info()`` as a plain dict."""
    return dict(tf.sysconfig.get_build_info())


def _physical_gpus() -> list:
    # TensorFlow logs a cuInit error from C++ on machines without CUDA.
    if os.environ.get("CNNCLI_DEBUG"):
        return tf.config.list_physical_devices("GPU")
    with stderr_silenced():
        return tf.config.list_physical_devices("GPU")


def _smi_memory() -> dict[str, int]:
    """Total memory by GPU name, from ``nvidia-smi`` ({} when unavailable)."""
    smi = shutil.which("nvidia-smi")
    if not smi:
        return {}
    try:
        out = subprocess.run(
            [smi, "--query-gpu=name,memory.total", "--format=csv,noheader,nounits"],
            capture_output=True, text=True, timeout=10, check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return {}
    memory = {}
    for line in out.splitlines():
        name, _, mib = line.rpartition(",")
        if name.strip() and mib.strip().isdigit():
            memory[name.strip()] = int(mib.strip()) * 2**20
    return memory


def visible_gpus() -> list[GpuInfo]:
    """The GPUs TensorFlow sees (after ``CUDA_VISIBLE_DEVICES``), numbered as it does.

    Name and compute capability come from TensorFlow; total memory from
    ``nvidia-smi`` when it is installed (TensorFlow does not report it).
    """
    gpus = []
    memory = None
    for index, device in enumerate(_physical_gpus()):
        details = tf.config.experimental.get_device_details(device) or {}
        name = details.get("device_name") or device.name
        cc = details.get("compute_capability")
        if memory is None:
            memory = _smi_memory()
        gpus.append(GpuInfo(name, memory.get(name), tuple(cc) if cc else None, index))
    return gpus


def _enable_memory_growth() -> None:
    """Let TensorFlow take GPU memory as needed instead of all of it at once."""
    for device in _physical_gpus():
        try:
            tf.config.experimental.set_memory_growth(device, True)
        except RuntimeError:
            pass  # already initialised: the setting can no longer change


def setup(requested: str = "auto", precision: str = "auto", *,
          multiworker: bool = False) -> Placement:
    """Prepare TensorFlow for ``--device requested --precision precision``.

    Call it before any tensor is created. It turns on GPU memory growth,
    decides the placement, sets Keras's global dtype policy to its precision
    (float32 too, so a previous mixed policy does not linger), and issues each
    of ``placement.warnings`` with `warnings.warn`.

    With `multiworker` (training only) and a ``TF_CONFIG`` that describes a
    cluster, it also joins the cluster: it creates the
    `MultiWorkerMirroredStrategy` now, because TensorFlow allows that only before
    it starts, and waits for the other tasks to start too.

    Raises:
        ConfigError: a bad ``--device``, ``--precision`` or ``TF_CONFIG`` value.
        DeviceError: a GPU was asked for that TensorFlow does not see, or the
            cluster could not be joined.
    """
    _enable_memory_growth()
    cluster = parse_tf_config(os.environ.get("TF_CONFIG")) if multiworker else None
    placement = decide(requested, precision, visible_gpus(), tf_cpu_threads(), cluster,
                       cpu_bf16=cpu_bf16_units())
    warning = gpu_warning(nvidia_driver_present(), placement, build_info())
    if warning:
        placement.warnings.append(warning)
    if placement.kind == "multiworker":
        strategy(placement)
    keras.config.set_dtype_policy(placement.precision)
    for text in placement.warnings:
        warnings.warn(text, stacklevel=2)
    return placement


def strategy(placement: Placement):
    """The `tf.distribute` strategy to build and train the model under.

    The default strategy on the CPU, `OneDeviceStrategy` on one GPU,
    `MirroredStrategy` over several devices, `MultiWorkerMirroredStrategy` over
    several machines (one per process, created by the first call).
    """
    if placement.kind == "multiworker":
        joined = _multiworker_strategy(tuple(placement.devices))
        if joined.num_replicas_in_sync != placement.replicas:
            raise DeviceError(
                f"the cluster trains {joined.num_replicas_in_sync} replicas, but this "
                f"worker expected {placement.replicas} ({placement.workers} workers x "
                f"{len(placement.devices)} devices)",
                hint="give every worker the same number of GPUs, or use --device cpu")
        return joined
    if placement.kind == "cpu":
        return tf.distribute.get_strategy()
    if placement.kind == "gpu":
        return tf.distribute.OneDeviceStrategy(placement.devices[0])
    return tf.distribute.MirroredStrategy(list(placement.devices))


@functools.cache
def _multiworker_strategy(devices: tuple[str, ...]):
    """Use only `devices` on this machine and join the ``TF_CONFIG`` cluster (once)."""
    try:
        physical = _physical_gpus()
        wanted = [physical[int(d.split(":")[1])] for d in devices if d.startswith("/gpu:")]
        if len(wanted) != len(physical):
            tf.config.set_visible_devices(wanted, "GPU")
        return tf.distribute.MultiWorkerMirroredStrategy()
    except (RuntimeError, ValueError) as exc:
        raise DeviceError(
            f"cannot join the TF_CONFIG cluster: {str(exc).splitlines()[0]}",
            hint="TensorFlow must not have started before (call devices.setup(..., "
            "multiworker=True) first), and a process joins one cluster with one set of "
            "devices only") from None


def doctor_info() -> dict:
    """What ``cnncli doctor`` reports, as plain JSON-able values.

    Nothing is changed: no memory growth, no dtype policy.
    """
    info = build_info()
    gpus = visible_gpus()
    driver = nvidia_driver_present()
    auto = decide("auto", "auto", gpus, tf_cpu_threads(), cpu_bf16=cpu_bf16_units())
    return {
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "cuda_build": bool(info.get("is_cuda_build")),
        "cuda_version": info.get("cuda_version"),
        "cudnn_version": info.get("cudnn_version"),
        "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
        "gpus": [g.to_dict() for g in gpus],
        "auto": auto.to_dict(),
        "cpu": {
            "available": available_cpus(),
            "intra_op_threads": tf.config.threading.get_intra_op_parallelism_threads(),
            "inter_op_threads": tf.config.threading.get_inter_op_parallelism_threads(),
            "bf16_units": cpu_bf16_units(),
        },
        "nvidia_driver": driver,
        "warning": gpu_warning(driver, auto, info),
    }
