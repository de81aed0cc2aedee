"""Where a command runs, decided without TensorFlow: `decide` takes the GPUs seen (made-up
ones in tests) and returns a `Placement`.

>>> t4 = GpuInfo("NVIDIA T4", 16 * 2**30, (7, 5), 0)
>>> decide("auto", "auto", [t4], cpu_threads=2).describe()
'Device: NVIDIA T4 (gpu:0, mixed_float16)'
>>> decide("auto", "auto", [], cpu_threads=2).describe()
'Device: CPU (2 threads): TensorFlow sees no GPU'
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from cnncli import config
from cnncli.devices.cluster import Cluster
from cnncli.devices.hardware import GPU_INSTALL
from cnncli.errors import ConfigError, NoSuchDevice
from cnncli.text import count

#: Values of ``--device`` (one list, the run config's: ``train.device``).
DEVICE_FORMS = config.DEVICE_FORMS

#: Values of ``--precision`` (one list, the run config's: ``train.precision``).
PRECISIONS = config.PRECISIONS

NO_GPU_NOTE = "TensorFlow sees no GPU"

CPU_REQUESTED_NOTE = "--device cpu"

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
            "compute_capability": None if cc is None else cc_text(cc),
        }


def cc_text(capability: tuple[int, int]) -> str:
    """A compute capability as NVIDIA writes it.

    >>> cc_text((8, 6))
    '8.6'
    """
    return f"{capability[0]}.{capability[1]}"


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
        text = f"Device: {self.label()}"
        if self.kind == "cpu":
            return f"{text}: {self.note}" if self.note else text
        if self.kind == "multiworker":
            if self.task.startswith("chief"):
                role = "this is the chief"
            else:
                role = f"this is {self.task}" + (" (chief)" if self.is_chief else "")
            text += f"; {role}"
        return text + ("; batch size is per replica" if self.replicas > 1 and
                       self.kind != "gpu" else "")

    def label(self) -> str:
        """The devices and precision, as a value (metrics.json's ``device``).

        >>> Placement("cpu", ["/cpu:0"], cpu_threads=2, note="--device cpu").label()
        'CPU (2 threads)'
        """
        if self.kind == "cpu":
            threads = count(self.cpu_threads, "thread")
            if self.precision != "float32":
                threads += f", {self.precision}"
            return f"CPU ({threads})"
        names = [g.name for g in self.gpus] or list(self.devices)
        if self.kind == "multiworker":
            if not self.gpus:
                local = "CPU"
            elif len(names) == 1:
                local = names[0]
            elif len(set(names)) == 1:
                local = f"{len(names)}x {names[0]}"
            else:
                local = f"({', '.join(names)})"
            return f"{self.workers} workers x {local} (multi-worker mirrored, {self.precision})"
        if self.kind == "gpu":
            return f"{names[0]} ({self.devices[0].lstrip('/')}, {self.precision})"
        if len(set(names)) == 1:
            what = f"{len(names)}x {names[0]}"
        else:
            what = f"{len(names)} devices: {', '.join(names)}"
        return f"{what} (mirrored, {self.precision})"

    def global_batch_size(self, batch_size: int) -> int:
        """The batch of one step over all replicas, when each gets `batch_size`.

        >>> Placement("mirrored", ["/gpu:0", "/gpu:1"], replicas=2).global_batch_size(32)
        64
        """
        return int(batch_size) * max(1, self.replicas)

    def device_setting(self) -> str:
        """The ``--device`` value that gives this placement again (what a run records).

        >>> t4 = GpuInfo("T4", index=1)
        >>> Placement("gpu", ["/gpu:1"], [t4]).device_setting()
        'gpu:1'
        >>> Placement("cpu", []).device_setting()
        'cpu'
        """
        if not self.gpus:
            return "cpu"
        if self.kind == "gpu" or (self.kind == "multiworker" and len(self.devices) == 1):
            return self.devices[0].lstrip("/")
        return "gpu"

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


def parse_device(requested: str) -> tuple[str, int | None]:
    """Split a ``--device`` value into its form and GPU index.

    >>> parse_device("gpu:1")
    ('gpu', 1)
    >>> parse_device("auto")
    ('auto', None)
    """
    text = str(requested).strip().lower()
    if not re.fullmatch(config.DEVICE_PATTERN, text):  # the run config's forms, one list
        raise ConfigError(f"--device {requested!r} is not one of {DEVICE_FORMS}",
                          hint=config.device_hint(requested) or None)
    return ("gpu", int(text.rpartition(":")[2])) if ":" in text else (text, None)


def parse_precision(precision: str) -> str:
    """A ``--precision`` value, checked.

    >>> parse_precision(" Float32")
    'float32'
    """
    wanted = str(precision).strip().lower()
    if wanted not in PRECISIONS:
        raise ConfigError(
            f"--precision {precision!r} is not a precision cnncli knows",
            hint=f"use one of: {', '.join(PRECISIONS)}",
        )
    return wanted


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


def _precision_warnings(precision: str, gpus: Sequence[GpuInfo],
                        cpu_bf16: bool = False) -> list[str]:
    """Warnings for an explicit precision that will be slow where it runs."""
    if precision == "float32":
        return []
    if not gpus:
        if precision == "mixed_bfloat16" and cpu_bf16:
            return []
        if cpu_bf16:  # mixed_float16
            return ["--precision mixed_float16 on this CPU is usually slower than float32: "
                    "its bfloat16 units (Intel AMX, AVX512-BF16) speed up mixed_bfloat16, "
                    "not float16; use --precision mixed_bfloat16 (or auto)"]
        return [
            f"--precision {precision} on this CPU is usually slower than float32: it has "
            "no bfloat16 units (Intel AMX, AVX512-BF16); mixed precision pays off on GPUs"
        ]
    caps = [g.compute_capability for g in gpus]
    if any(cc is None for cc in caps):
        return []
    weakest = min(caps)
    weakest_text = cc_text(weakest)
    if precision == "mixed_float16" and weakest < (7, 0):
        return [
            f"--precision mixed_float16 on a GPU of compute capability {weakest_text} "
            "(no Tensor Cores) may be slower than float32"
        ]
    if precision == "mixed_bfloat16" and weakest < (8, 0):
        # below 7.0 float16 has no Tensor Cores either: float32 is the fast choice there
        better = "mixed_float16" if weakest >= (7, 0) else "float32"
        return [
            f"--precision mixed_bfloat16 on a GPU of compute capability {weakest_text} "
            f"(no native bfloat16) is slow; use {better} there (or auto)"
        ]
    return []


def _no_such_gpu(requested: str, gpus: Sequence[GpuInfo]) -> NoSuchDevice:
    if not gpus:
        seen = "TensorFlow sees no GPU"
    else:
        names = ", ".join(f"gpu:{g.index}" for g in gpus)
        seen = f"TensorFlow sees only {count(len(gpus), 'GPU')} ({names})"
    return NoSuchDevice(
        f"--device {requested}", seen,
        hint=(
            "check that nvidia-smi lists the GPU, that CUDA_VISIBLE_DEVICES does not hide it "
            "(it also renumbers the visible GPUs from 0), and that TensorFlow has its CUDA "
            f"libraries: {GPU_INSTALL}; or use --device auto or --device cpu"
        ),
    )


# Over 60 lines with its docstring and doctest; the decision itself is one if-chain.
def decide(
    requested: str, precision: str, gpus: Sequence[GpuInfo], cpu_threads: int,
    cluster: Cluster | None = None, cpu_bf16: bool = False, one_device: bool = False,
) -> Placement:
    """Choose the devices and precision for ``--device requested --precision precision``.

    * ``auto``: no GPU -> CPU, one -> that GPU, several -> mirrored over all;
    * ``cpu``: the CPU even if GPUs are visible;
    * ``gpu``: like ``auto`` but a missing GPU is an error, not a fallback;
    * ``gpu:N``: that GPU only (an error if TensorFlow does not see it).

    With `one_device` (commands that run on one device: predict, evaluate, export)
    several GPUs are narrowed to the first.

    With a `cluster` (from `parse_tf_config`) the same choice is made for this
    machine, and the placement is ``"multiworker"``: every machine trains a
    replica on each of its devices (they must all have the same number).

    >>> a100 = GpuInfo("NVIDIA A100-SXM4-80GB", None, (8, 0), 0)
    >>> two = [a100, GpuInfo(a100.name, None, (8, 0), 1)]
    >>> decide("auto", "auto", two, 8).describe()
    'Device: 2x NVIDIA A100-SXM4-80GB (mirrored, mixed_bfloat16); batch size is per replica'
    """
    form, index = parse_device(requested)
    wanted = parse_precision(precision)
    gpus = list(gpus)

    if form == "cpu" or (form == "auto" and not gpus):
        used: list[GpuInfo] = []
        kind, devices = "cpu", ["/cpu:0"]
        # without GPUs that is the reason (also when a resumed run's config says cpu)
        note = CPU_REQUESTED_NOTE if form == "cpu" and gpus else NO_GPU_NOTE
    elif index is not None:
        matches = [g for g in gpus if g.index == index]
        if not matches:
            raise _no_such_gpu(f"gpu:{index}", gpus)
        used, kind, devices, note = matches, "gpu", [f"/gpu:{index}"], ""
    elif not gpus:
        raise _no_such_gpu("gpu", gpus)
    elif len(gpus) == 1 or one_device:
        used, kind, devices, note = gpus[:1], "gpu", [f"/gpu:{gpus[0].index}"], ""
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
    kinds = sorted({g.name for g in used})
    if kind == "mirrored" and len(kinds) > 1:  # auto or gpu: all visible
        placement.warnings.append(
            f"mirrored over GPUs of different kinds ({', '.join(kinds)}): every step waits "
            f"for the slowest{', in the precision of the oldest' if wanted == 'auto' else ''}; "
            "--device gpu:N trains on one of them alone")
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


def gpus_hidden(cuda_visible_devices: str | None) -> bool:
    """Whether ``CUDA_VISIBLE_DEVICES`` hides every GPU: empty, or its first entry not a
    GPU (CUDA stops at the first invalid one: ``-1``, or ``NoDevFiles``, which some
    batch schedulers set on nodes without GPUs). A GPU is an index or a ``GPU-``/``MIG-``
    UUID.

    >>> gpus_hidden(""), gpus_hidden("-1"), gpus_hidden("0,1"), gpus_hidden(None)
    (True, True, False, False)
    >>> gpus_hidden("NoDevFiles"), gpus_hidden("GPU-8f6e0c2a"), gpus_hidden("all")
    (True, False, False)

    (``all`` hides every GPU too, but by mistake, as ``NVIDIA_VISIBLE_DEVICES``'s value:
    the warning that TensorFlow sees none stays.)
    """
    if cuda_visible_devices is None:
        return False
    first = cuda_visible_devices.split(",")[0].strip()
    return not first or first.startswith("-") or first.lower() == "nodevfiles"


def oldest_supported(build_info: dict) -> tuple[int, int] | None:
    """The oldest compute capability this TensorFlow runs on (it ignores older GPUs),
    from its build's ``cuda_compute_capabilities``; None if it does not say.

    >>> oldest_supported({"cuda_compute_capabilities": ["sm_60", "sm_89", "compute_90"]})
    (6, 0)
    """
    caps = [int(digits) for cap in build_info.get("cuda_compute_capabilities") or ()
            if (digits := str(cap).rpartition("_")[2]).isdigit()]
    return divmod(min(caps), 10) if caps else None


def gpu_warning(driver_present: bool, placement: Placement, build_info: dict,
                cuda_visible_devices: str | None = None,
                installed: Sequence[GpuInfo] = ()) -> str | None:
    """A warning when an NVIDIA driver is installed but TensorFlow sees no GPU (none
    when ``CUDA_VISIBLE_DEVICES`` hides them on purpose), or when GPUs are too old for
    this TensorFlow, which ignores them.

    Args:
        driver_present: from `nvidia_driver_present`.
        placement: from `decide`.
        build_info: ``tf.sysconfig.get_build_info()`` (``is_cuda_build``,
            ``cuda_version``, ``cudnn_version``, ``cuda_compute_capabilities``).
        installed: the GPUs ``nvidia-smi`` lists, with their compute capabilities.

    >>> cpu = decide("auto", "auto", [], 2)
    >>> gpu_warning(False, cpu, {}) is None
    True
    """
    if not driver_present or gpus_hidden(cuda_visible_devices):
        return None
    oldest = oldest_supported(build_info)
    old = [g for g in installed if oldest and g.compute_capability
           and g.compute_capability < oldest]
    if old:
        kinds = sorted({f"{g.name} (compute capability {cc_text(g.compute_capability)})"
                        for g in old})
        named = ", ".join(kinds)
        supported = f"compute capability {cc_text(oldest)} and newer"
        if placement.visible == 0 and len(old) == len(installed):
            these, them = ("The GPU here is", "it") if len(old) == 1 else \
                ("The GPUs here are", "them")
            return (f"{these} older than this TensorFlow supports ({supported}): "
                    f"{named}; cnncli runs on the CPU. A newer GPU, or a TensorFlow built "
                    f"for {them}, would use {them}")
        if placement.visible > 0 and cuda_visible_devices is None:
            return (f"{named} {'is' if len(kinds) == 1 else 'are'} older than this "
                    f"TensorFlow supports ({supported}): not used")
    if placement.visible > 0:
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
