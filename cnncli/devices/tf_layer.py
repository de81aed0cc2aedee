"""The thin TensorFlow layer of `cnncli.devices`: ask TensorFlow what it sees, apply a
`Placement` (memory growth, dtype policy, `tf.distribute` strategy), and report for
``cnncli doctor``. TensorFlow is imported when a function here is called, not before.

>>> placement = setup("auto", "auto")          # doctest: +SKIP
>>> with strategy(placement).scope():           # doctest: +SKIP
...     model = build(spec)
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
import warnings
from dataclasses import asdict, dataclass, fields

from cnncli import config
from cnncli.devices.cluster import TRAINING_TASKS, from_environment
from cnncli.devices.hardware import GPU_INSTALL, cpu_bf16_units, nvidia_driver_present
from cnncli.devices.placement import (
    GpuInfo,
    Placement,
    decide,
    gpu_warning,
    oldest_supported,
    parse_precision,
)
from cnncli.errors import ConfigError, DeviceError
from cnncli.parallel import available_cpus, cpu_quota
from cnncli.runtime import import_keras, import_tf, quiet_unless_debugging
from cnncli.text import first_line


def tf_cpu_threads() -> int:
    """Threads TensorFlow uses for one op (its setting, else all available CPUs)."""
    tf = import_tf()
    return tf.config.threading.get_intra_op_parallelism_threads() or available_cpus()


def build_info() -> dict:
    """``tf.sysconfig.get_build_info()`` as a plain dict."""
    tf = import_tf()
    return dict(tf.sysconfig.get_build_info())


def _physical_gpus() -> list:
    # TensorFlow logs a cuInit error from C++ on machines without CUDA.
    tf = import_tf()
    with quiet_unless_debugging():
        return tf.config.list_physical_devices("GPU")


def _smi_memory() -> dict[str, int]:
    """Total memory by GPU name, from ``nvidia-smi`` ({} when unavailable). Two cards of
    one name and different memory (an 8 and a 12 GB RTX 3060) get the smaller: TensorFlow
    names its GPUs, it does not say which of nvidia-smi's each is (CUDA numbers them
    fastest first, nvidia-smi by bus), and a memory check must not overestimate."""
    memory = {}
    for name, mib in _smi_query("memory.total"):
        if mib.isdigit():
            total = int(mib) * 2**20
            memory[name] = min(total, memory.get(name, total))
    return memory


def _smi_gpus() -> list[GpuInfo]:
    """The GPUs ``nvidia-smi`` lists, named with their compute capabilities (None where it
    says ``N/A``; TensorFlow does not list those too old for it, nor number them: their
    index is -1); [] when it cannot say (drivers before 510 do not know ``compute_cap``)."""
    gpus = []
    for name, cap in _smi_query("compute_cap"):
        major, _, minor = cap.partition(".")
        known = major.isdigit() and minor.isdigit()
        gpus.append(GpuInfo(name, None, (int(major), int(minor)) if known else None, -1))
    return gpus


def _installed_gpus(driver: bool, info: dict) -> list[GpuInfo]:
    """`_smi_gpus` where it can matter: an NVIDIA driver and a TensorFlow built for CUDA
    (saying which compute capabilities); else [] without running nvidia-smi."""
    return _smi_gpus() if driver and oldest_supported(info) else []


def _smi_query(field: str) -> list[tuple[str, str]]:
    """(name, `field`) of each GPU ``nvidia-smi`` lists, in its order; [] when it is not
    installed or cannot answer (an old driver not knowing the field)."""
    smi = shutil.which("nvidia-smi")
    if not smi:
        return []
    try:
        out = subprocess.run(
            [smi, f"--query-gpu=name,{field}", "--format=csv,noheader,nounits"],
            capture_output=True, text=True, timeout=10, check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    rows = [line.rpartition(",")[::2] for line in out.splitlines()]
    return [(name.strip(), value.strip()) for name, value in rows if name.strip()]


def gpus_in_use() -> bool:
    """True if TensorFlow has GPUs to compute on (`setup` hid those it does not use)."""
    return bool(import_tf().config.get_visible_devices("GPU"))


def mig_memory(name: str) -> int | None:
    """The memory of a MIG slice of a GPU, from the name TensorFlow gives it (nvidia-smi
    reports the whole GPU's name and memory, which a memory check must not take for the
    slice's); None for a whole GPU.

    >>> mig_memory("NVIDIA A100-SXM4-40GB MIG 1g.5gb") == 5 * 2**30
    True
    >>> mig_memory("NVIDIA A100-SXM4-40GB MIG 1c.3g.20gb") == 20 * 2**30  # a compute instance
    True
    >>> mig_memory("NVIDIA A100-SXM4-40GB") is None
    True
    """
    found = re.search(r"\bMIG (?:\d+c\.)?\d+g\.(\d+)gb\b", name, re.IGNORECASE)
    return int(found.group(1)) * 2**30 if found else None


def visible_gpus() -> list[GpuInfo]:
    """The GPUs TensorFlow sees (after ``CUDA_VISIBLE_DEVICES``), numbered as it does.

    Name and compute capability come from TensorFlow; total memory from
    ``nvidia-smi`` when it is installed (TensorFlow does not report it).
    """
    tf = import_tf()
    gpus = []
    memory = None
    for index, device in enumerate(_physical_gpus()):
        details = tf.config.experimental.get_device_details(device) or {}
        name = details.get("device_name") or device.name
        cc = details.get("compute_capability")
        if memory is None:
            memory = _smi_memory()
        gpus.append(GpuInfo(name, mig_memory(name) or memory.get(name),
                            tuple(cc) if cc else None, index))
    return gpus


def _enable_memory_growth() -> None:
    """Let TensorFlow take GPU memory as needed instead of all of it at once."""
    tf = import_tf()
    for device in _physical_gpus():
        try:
            tf.config.experimental.set_memory_growth(device, True)
        except RuntimeError:
            pass  # already initialised: the setting can no longer change


def _threads_within_quota() -> None:
    """TensorFlow sizes its thread pools by the CPUs the process may run on, not by its
    container's CPU quota (a pod limited to 2 CPUs on a 64-core node ran 64 threads,
    throttled): under a lower quota, as many threads as it allows (`available_cpus`)."""
    tf = import_tf()
    cpus, threading = available_cpus(), tf.config.threading
    if cpu_quota() is None or threading.get_intra_op_parallelism_threads():
        return  # no quota, or threads set already (by the user)
    try:
        threading.set_intra_op_parallelism_threads(cpus)
        # two at least: tf.data can hang with one inter-op thread (tensorflow#38969)
        threading.set_inter_op_parallelism_threads(max(2, cpus))
    except RuntimeError:  # TensorFlow started earlier in this process: its pools are made
        pass


def setup(requested: str = "auto", precision: str = "auto", *,
          multiworker: bool = False, one_device: bool = False) -> Placement:
    """Prepare TensorFlow for ``--device requested --precision precision``.

    Call it before any tensor is created. It turns on GPU memory growth,
    decides the placement, hides from TensorFlow the GPUs it does not use (else
    TensorFlow would put work on the first GPU whatever was chosen), sets Keras's
    global dtype policy to its precision (float32 too, so a previous mixed policy does
    not linger), and issues each of ``placement.warnings`` with `warnings.warn`.

    With `one_device` (prediction, evaluation, export: they run on one device) a
    choice of several GPUs is narrowed to the first.

    With `multiworker` (training only) and a ``TF_CONFIG`` that describes a
    cluster, it also joins the cluster: it creates the
    `MultiWorkerMirroredStrategy` now, because TensorFlow allows that only before
    it starts, and waits for the other tasks to start too.

    Raises:
        ConfigError: a bad ``--device``, ``--precision`` or ``TF_CONFIG`` value.
        DeviceError: a GPU was asked for that TensorFlow does not see, or the
            cluster could not be joined.
    """
    keras = import_keras()
    _enable_memory_growth()
    _threads_within_quota()
    cluster = from_environment() if multiworker else None
    placement = decide(requested, precision, visible_gpus(), tf_cpu_threads(), cluster,
                       cpu_bf16=cpu_bf16_units(), one_device=one_device)
    driver, info = nvidia_driver_present(), build_info()
    warning = gpu_warning(driver, placement, info, os.environ.get("CUDA_VISIBLE_DEVICES"),
                          installed=_installed_gpus(driver, info))
    if warning:
        placement.warnings.append(warning)
    if placement.kind == "multiworker":
        joined = strategy(placement)
        if parse_precision(precision) == "auto":  # each machine chose for its own devices
            _agree_on_precision(joined, placement)
    else:
        _hide_unused_gpus(placement)
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
    tf = import_tf()
    if placement.kind == "multiworker":
        joined = _multiworker_strategy(tuple(placement.devices))
        _same_devices_everywhere(joined, len(placement.devices))
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
        return tf.distribute.OneDeviceStrategy(_logical_name(placement.devices[0]))
    return tf.distribute.MirroredStrategy([_logical_name(d) for d in placement.devices])


#: How long a worker waits for every other to say how many devices it trains on.
AGREE_TIMEOUT_MS = 10 * 60 * 1000


def _same_devices_everywhere(joined, mine: int) -> None:
    """A `DeviceError` on every machine of the cluster unless all train on as many devices
    as this one (`mine`). TensorFlow counts the cluster's replicas as this machine's
    devices times the machines, so each sees its own count agree; machines with different
    counts would wait in their first collective (or fail in it). The counts go through
    the cluster's coordination service (its key-value store), which, unlike a collective,
    does not need them to agree."""
    tf = import_tf()
    try:
        counts = {task: int(n) for task, n in _said_by_each_task(joined, "devices",
                                                                 str(mine)).items()}
    except tf.errors.OpError as exc:  # a machine that stopped, or never came
        raise DeviceError(f"the machines of the cluster could not agree on their devices: "
                          f"{first_line(exc)}",
                          hint="start cnncli train on every machine of TF_CONFIG") from None
    if len(set(counts.values())) > 1:
        said = ", ".join(f"{task}: {n}" for task, n in counts.items())
        raise DeviceError(
            f"the machines of the cluster train on different numbers of devices ({said}): "
            "each trains one replica a device, and every machine must train as many",
            hint="give every machine the same number of GPUs (CUDA_VISIBLE_DEVICES, or "
                 "--device gpu:0 on each for one a machine), or use --device cpu")


def said_by_each_machine(placement: Placement, topic: str, mine: str) -> dict[str, str]:
    """What each training task of `placement`'s cluster says on `topic`, ``{"worker 0":
    ..., "worker 1": ...}``, this one saying `mine`: each writes its own and reads the
    others' through the cluster's coordination service, its key-value store (which, unlike
    a collective, works whatever each says). Each topic once a process: the store keeps a
    key for the cluster's life. {} on one machine, or when the cluster has no
    coordination service (nothing to compare with).

    Raises:
        tf.errors.OpError: a machine that stopped, or never came (`AGREE_TIMEOUT_MS`).
    """
    if placement.kind != "multiworker":
        return {}
    return _said_by_each_task(strategy(placement), topic, mine)


@functools.cache
def _said_by_each_task(joined, topic: str, mine: str) -> dict[str, str]:
    from tensorflow.python.eager import context  # the key-value store has no public API

    tf = import_tf()
    resolver = joined.cluster_resolver
    jobs = resolver.cluster_spec().as_dict()
    tasks = [f"{job} {i}" for job in TRAINING_TASKS for i in range(len(jobs.get(job, ())))]
    store = context.context()
    try:
        store.set_config_key_value(f"cnncli/{topic}/{resolver.task_type} {resolver.task_id}",
                                   mine)
    except tf.errors.AlreadyExistsError:  # said before in this cluster's life: read back
        pass
    except tf.errors.OpError:  # no coordination service
        return {}
    return {task: store.get_config_key_value(f"cnncli/{topic}/{task}", AGREE_TIMEOUT_MS)
            for task in tasks}


#: The precisions `auto` may become, in the order `_agree_on_precision` counts the replicas
#: choosing each.
_CHOSEN = tuple(p for p in config.PRECISIONS if p != "auto")


def _agree_on_precision(joined, placement: Placement) -> None:
    """Make every machine of a cluster train in the same precision: the one `auto` chose
    on each if it chose the same everywhere, else float32 (which every device runs), with
    a warning. A collective over the cluster: every worker calls it at once."""
    tf = import_tf()

    @tf.function
    def count():
        mine = tf.one_hot(_CHOSEN.index(placement.precision), len(_CHOSEN))
        return joined.reduce(tf.distribute.ReduceOp.SUM, joined.run(lambda: mine), axis=None)

    chosen = [name for name, n in zip(_CHOSEN, count().numpy(), strict=True) if n > 0]
    if len(chosen) > 1:
        placement.precision = "float32"
        placement.warnings.append(
            f"precision auto chose {' on some machines, '.join(chosen)} on others: all "
            "train in float32; give --precision to choose one for all")


def _hide_unused_gpus(placement: Placement) -> None:
    """Leave TensorFlow only the GPUs `placement` uses (none on the CPU): it puts any
    work no strategy places (a model loaded to predict, `--device cpu`'s training) on
    the first GPU it sees."""
    tf = import_tf()
    physical = _physical_gpus()
    wanted = [physical[int(d.split(":")[1])] for d in placement.devices
              if d.startswith("/gpu:")]
    if wanted == tf.config.get_visible_devices("GPU"):
        return
    try:
        tf.config.set_visible_devices(wanted, "GPU")
    except RuntimeError:  # TensorFlow started on other devices earlier in this process
        raise DeviceError(
            f"TensorFlow already runs on other devices in this process: it cannot move "
            f"to {', '.join(placement.devices)}",
            hint="run each choice of --device in its own process") from None


def _logical_name(device: str) -> str:
    """TensorFlow's name now for the GPU `device` names in its first numbering
    (``/gpu:N``, as `decide` does): the GPUs `_hide_unused_gpus` hid renumber the rest.
    Other devices keep their names."""
    if not device.startswith("/gpu:"):
        return device
    tf = import_tf()
    physical = _physical_gpus()[int(device.split(":")[1])]
    return f"/gpu:{tf.config.get_visible_devices('GPU').index(physical)}"


@functools.cache


def _multiworker_strategy(devices: tuple[str, ...]):
    """Use only `devices` on this machine and join the ``TF_CONFIG`` cluster (once)."""
    tf = import_tf()
    try:
        physical = _physical_gpus()
        wanted = [physical[int(d.split(":")[1])] for d in devices if d.startswith("/gpu:")]
        if len(wanted) != len(physical):
            tf.config.set_visible_devices(wanted, "GPU")
        return tf.distribute.MultiWorkerMirroredStrategy()
    except (RuntimeError, ValueError, tf.errors.OpError) as exc:  # OpError: a bad address
        me = from_environment()
        where = f" as {me.task} ({me.address})" if me else ""
        hint = ("TensorFlow must not have started before (call devices.setup(..., "
                "multiworker=True) first), and a process joins one cluster with one set of "
                "devices only")
        if me and "grpc server" in str(exc).lower():  # it could not listen there
            port = me.address.rpartition(":")[2]
            hint = (f"another process may be using port {port} here (`ss -ltnp | grep "
                    f":{port}` names it), or {me.address} is not this machine's address: "
                    "free the port, or give this task another address in TF_CONFIG (on "
                    "every machine)")
        raise DeviceError(f"cannot join the TF_CONFIG cluster{where}: {first_line(exc)}",
                          hint=hint) from None


def cpu_allocator(environ=os.environ) -> str:
    """``bfc`` when TensorFlow's tensors in CPU memory come from its BFC allocator, which
    reuses freed memory (what importing cnncli chooses: `cnncli/__init__.py`), else
    ``default``: ``TF_CPU_ALLOCATOR_USE_BFC`` read as TensorFlow reads it (true or 1),
    without starting TensorFlow's runtime (on a GPU machine that would take the GPUs'
    memory).

    >>> cpu_allocator({"TF_CPU_ALLOCATOR_USE_BFC": "false"}), cpu_allocator({})
    ('default', 'default')
    >>> cpu_allocator({"TF_CPU_ALLOCATOR_USE_BFC": "True"})
    'bfc'
    >>> cpu_allocator({"TF_CPU_ALLOCATOR_USE_BFC": "1"})
    'bfc'
    """
    setting = environ.get("TF_CPU_ALLOCATOR_USE_BFC", "").strip().lower()
    return "bfc" if setting in ("true", "1") else "default"


@dataclass(frozen=True)
class CpuInfo:
    """The CPU as TensorFlow uses it: threads, bfloat16 units, its memory allocator."""

    available: int
    intra_op_threads: int  # 0: TensorFlow chooses
    inter_op_threads: int
    bf16_units: bool
    allocator: str | None  # "bfc" or "default"


@dataclass(frozen=True)
class Doctor:
    """What ``cnncli doctor`` reports: versions, CUDA, GPUs, the CPU, what `auto` picks."""

    tensorflow: str
    keras: str
    cuda_build: bool
    cuda_version: str | None
    cudnn_version: str | None
    cuda_visible_devices: str | None
    gpus: list[GpuInfo]
    auto: Placement
    cpu: CpuInfo
    nvidia_driver: bool
    warning: str | None

    def to_dict(self) -> dict:
        """Plain JSON-able values (``cnncli doctor --json``)."""
        return {**{f.name: getattr(self, f.name) for f in fields(self)},
                "gpus": [g.to_dict() for g in self.gpus], "auto": self.auto.to_dict(),
                "cpu": asdict(self.cpu)}


def doctor_info() -> Doctor:
    """What ``cnncli doctor`` reports. Nothing is changed: no memory growth, no dtype
    policy."""
    keras = import_keras()
    tf = import_tf()
    info = build_info()
    gpus = visible_gpus()
    driver, hidden = nvidia_driver_present(), os.environ.get("CUDA_VISIBLE_DEVICES")
    try:
        cluster, bad_cluster = from_environment(), None
    except ConfigError as exc:  # what doctor is for: said, with the rest of the machine
        cluster, bad_cluster = None, exc.message
    auto = decide("auto", "auto", gpus, tf_cpu_threads(), cluster, cpu_bf16=cpu_bf16_units())
    return Doctor(
        tensorflow=tf.__version__, keras=keras.__version__,
        cuda_build=bool(info.get("is_cuda_build")), cuda_version=info.get("cuda_version"),
        cudnn_version=info.get("cudnn_version"),
        cuda_visible_devices=hidden, gpus=gpus, auto=auto,
        cpu=CpuInfo(available_cpus(), tf.config.threading.get_intra_op_parallelism_threads(),
                    tf.config.threading.get_inter_op_parallelism_threads(),
                    cpu_bf16_units(), cpu_allocator()),
        nvidia_driver=driver, warning="; ".join(filter(None, (
            gpu_warning(driver, auto, info, hidden, _installed_gpus(driver, info)),
            bad_cluster))) or None)


def failed_on_a_gpu(exc: Exception) -> DeviceError | None:
    """A `DeviceError` for a TensorFlow error raised while GPUs were in use, else None.
    There it is most often the GPU's libraries (a cuDNN other than the one TensorFlow was
    built with, found first on the library path) or XLA's compiler, whose own message
    TensorFlow logs and cnncli hides without ``--debug``: not a bug to report."""
    if not type(exc).__module__.startswith("tensorflow") or not (
            type(exc).__name__ in ("InternalError", "UnknownError")
            or re.search(r"cudnn|cublas|cuda|ptxas|libdevice|\bxla\b|\bdnn\b", str(exc),
                         re.IGNORECASE)):
        return None  # e.g. out of memory, a tf.data shape error: not the GPU's libraries
    try:
        if not gpus_in_use():
            return None
        info = build_info()
    except Exception:  # noqa: BLE001 (saying the first error matters more than this guess)
        return None
    built = (f"CUDA {info.get('cuda_version') or 'unknown'} and cuDNN "
             f"{info.get('cudnn_version') or 'unknown'}")
    return DeviceError(
        f"TensorFlow failed on the GPU: {type(exc).__name__}: {first_line(exc)}",
        hint=f"most often the GPU's libraries: this TensorFlow was built with {built} "
             f"({GPU_INSTALL} installs them; another cuDNN on LD_LIBRARY_PATH is taken "
             "first), or XLA's compiler (try --set train.jit_compile=false); --debug shows "
             "TensorFlow's own messages, --device cpu runs on the CPU")
