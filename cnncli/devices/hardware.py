"""What this machine has, read without TensorFlow: CPU flags (bfloat16 matrix units), an
NVIDIA driver, and the warning when a driver is there but TensorFlow sees no GPU (the
CPUs this process may use: `cnncli.parallel.available_cpus`).

>>> cpu_bf16_units(frozenset({"amx_bf16"}), environ={})
True
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence

GPU_INSTALL = "pip install 'cnncli[gpu]'"

#: CPU flags (``/proc/cpuinfo``) of units that multiply bfloat16 and make mixed_bfloat16
#: pay off with TensorFlow's oneDNN: Intel AMX (Sapphire Rapids and later: training 1.45x
#: to 2.1x float32's images/s) and AVX512-BF16 (e.g. AMD Zen 4 EPYC: training the
#: lecture's ConvNet 2.0x, VGG16 inference 1.9x; bench/LEVERS.md).
CPU_BF16_FLAGS = frozenset({"amx_bf16", "avx512_bf16"})


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


def cpu_name(path: str = "/proc/cpuinfo") -> str:
    """The CPU's model as Linux names it, with its bfloat16 units (a run's figures to the
    last bit depend on them); the machine's kind where Linux does not say.

    >>> cpu_name() != ""
    True
    """
    import platform

    name = ""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            name = next((line.partition(":")[2].strip() for line in f
                         if line.startswith("model name")), "")
    except OSError:
        pass
    units = sorted(cpu_flags(path) & CPU_BF16_FLAGS)
    return (name or platform.machine() or "unknown") + (f" ({', '.join(units)})" if units
                                                         else "")


def cpu_bf16_units(flags: frozenset[str] | None = None,
                   environ: dict | None = None) -> bool:
    """True when TensorFlow can multiply bfloat16 on this CPU's units: the CPU has them
    (`CPU_BF16_FLAGS`) and oneDNN, which drives them, is not turned off.

    >>> cpu_bf16_units(frozenset({"avx512f", "amx_bf16"}), environ={})
    True
    >>> cpu_bf16_units(frozenset({"amx_bf16"}), environ={"TF_ENABLE_ONEDNN_OPTS": "0"})
    False
    """
    flags = cpu_flags() if flags is None else flags
    environ = os.environ if environ is None else environ
    onednn = environ.get("TF_ENABLE_ONEDNN_OPTS", "1").strip().lower() not in ("0", "false")
    return onednn and bool(flags & CPU_BF16_FLAGS)


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
