"""cnncli: convolutional networks from YAML, trained and run with Keras on TensorFlow."""

import os as _os
import sys as _sys

__version__ = "0.1.0"

#: Said, and exit 3, where cnncli cannot run (README: "Platforms").
WINDOWS = (
    "cnncli runs on Linux and macOS, not on Windows itself: it locks, writes and replaces "
    "its files the POSIX way (fcntl, O_NOFOLLOW, pread, symbolic links). Hint: run it in "
    "WSL2, Windows' Linux (wsl --install), where TensorFlow also reaches NVIDIA GPUs\n")
if _sys.platform == "win32":  # a clear word, not a traceback from `import fcntl`
    _command = _sys.argv[:1] == ["-m"] or _os.path.basename(
        _sys.argv[0] if _sys.argv else "").lower().startswith("cnncli")
    if _command:  # `cnncli ...`, `python -m cnncli ...`: said as errors are, no traceback
        _sys.stderr.write(f"error: {WINDOWS}")
        raise SystemExit(3)
    raise ImportError(WINDOWS.strip())  # a program importing cnncli: its own to handle

# A container's user with neither HOME nor an entry in /etc/passwd has no home folder:
# Keras would keep its files in a folder named "~" in the working folder; /tmp/.keras,
# where Keras goes when the home folder cannot be written to.
if _os.path.expanduser("~") == "~" and not _os.environ.get("KERAS_HOME"):
    _os.environ["KERAS_HOME"] = "/tmp/.keras"
# Set before anything can import TensorFlow: without it, importing TensorFlow on a
# machine without CUDA prints a page of cuInit errors; Keras must use TensorFlow.
_os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
_os.environ.setdefault("KERAS_BACKEND", "tensorflow")
# TensorFlow's BFC allocator for tensors in CPU memory, which keeps freed blocks for
# reuse: by default, each batch's large tensors (a 64-photo batch at 224x224 is 38 MB
# of float32) come fresh from the operating system and every page is faulted in
# again. Measured (bench/LEVERS.md, "The CPU allocator"): streamed 224x224 JPEGs
# train 30-40% faster after the first epoch, VGG16 predicts 10% faster, the rest is
# unchanged. Set TF_CPU_ALLOCATOR_USE_BFC=false to go back.
_os.environ.setdefault("TF_CPU_ALLOCATOR_USE_BFC", "true")
try:  # its limit (TensorFlow's default: 64 GB) at least the machine's memory
    _physical_mb = _os.sysconf("SC_PHYS_PAGES") * _os.sysconf("SC_PAGE_SIZE") // 2**20
except (ValueError, OSError, AttributeError):
    _physical_mb = 0
_os.environ.setdefault("TF_CPU_BFC_MEM_LIMIT_IN_MB", str(max(_physical_mb, 2**16)))
