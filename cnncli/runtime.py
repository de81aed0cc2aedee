"""Importing Keras the one way cnncli does: checked version, quiet TensorFlow.

`cnncli/__init__.py` already sets ``TF_CPP_MIN_LOG_LEVEL`` and ``KERAS_BACKEND``
before anything imports TensorFlow; `keras()` adds the version check.

Heavy modules start with ``keras = import_keras()`` instead of ``import keras``.

>>> keras = import_keras()   # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import io
import os
import socket
import sys
import threading
from pathlib import Path

from cnncli.errors import CnnError

#: Keras releases before this lack the published safe-mode model-loading fixes
#: (up to CVE-2026-12481 and CVE-2026-12479); README "Pinned versions".
MIN_KERAS = (3, 15, 1)


def _version_tuple(version: str) -> tuple[int, ...]:
    parts = []
    for piece in version.split(".")[:3]:
        digits = "".join(ch for ch in piece if ch.isdigit())
        parts.append(int(digits or 0))
    return tuple(parts)


def check_keras_version(version: str) -> None:
    """Raise if `version` is older than `MIN_KERAS`.

    >>> check_keras_version("3.15.1")
    >>> check_keras_version("3.13.2")
    Traceback (most recent call last):
    ...
    cnncli.errors.CnnError: Keras 3.13.2 is installed, but cnncli needs keras >= 3.15.1 ...
    """
    if _version_tuple(version) < MIN_KERAS:
        need = ".".join(map(str, MIN_KERAS))
        raise CnnError(
            f"Keras {version} is installed, but cnncli needs keras >= {need} for its "
            "safe model loading",
            hint=f"pip install 'keras>={need}'",
        )


#: Threads inside `stderr_silenced`, and the real standard error they put back.
_SILENCING = threading.Lock()
_silenced: dict = {"threads": 0, "saved": None}


@contextlib.contextmanager
def stderr_silenced():
    """Silence file descriptor 2 (C++ code writes there, not to `sys.stderr`).

    The descriptor is the process's: threads inside at once share one silence, begun by
    the first and ended by the last (each saving and putting back its own, a thread saved
    the silence another had begun, put it back last, and standard error stayed silent).
    """
    with _SILENCING:
        if _silenced["threads"] == 0:
            sys.stderr.flush()
            saved = os.dup(2)
            try:
                with open(os.devnull, "w") as devnull:
                    os.dup2(devnull.fileno(), 2)
            except BaseException:
                os.close(saved)
                raise
            _silenced["saved"] = saved
        _silenced["threads"] += 1
    try:
        yield
    finally:
        with _SILENCING:
            _silenced["threads"] -= 1
            if _silenced["threads"] == 0:
                os.dup2(_silenced["saved"], 2)
                os.close(_silenced["saved"])


def quiet_unless_debugging():
    """`stderr_silenced`, unless ``CNNCLI_DEBUG`` is set (the CLI's ``--debug``): a
    library's C++ notices are shown then."""
    return contextlib.nullcontext() if os.environ.get("CNNCLI_DEBUG") else stderr_silenced()


@contextlib.contextmanager
def downloads_on_stderr():
    """Keras' download messages ("Downloading data from URL" and its progress bar) on
    stderr, where progress belongs, not on stdout, which holds results (`--json`). The
    first line waits for the next (the progress bar): a download that fails before any
    (no network) says nothing, and the caller says what it does instead.

    Keras' downloads have no timeout of their own: a network that drops what it is sent
    (a CI job's firewall) kept a command silent for 140 s, the system's connection
    timeout; each connection and read waits `DOWNLOAD_TIMEOUT` seconds at most here.

    >>> with downloads_on_stderr():
    ...     print("Downloading data from https://example.com/x.npz")   # goes to stderr
    """
    held, timeout = _FirstLineHeld(sys.stderr), socket.getdefaulttimeout()
    socket.setdefaulttimeout(DOWNLOAD_TIMEOUT)  # (urllib's sockets take it when made)
    with contextlib.redirect_stdout(held):
        try:
            yield
        except BaseException:
            held.held = ""  # it never started: nothing to show
            raise
        finally:
            held.release()
            socket.setdefaulttimeout(timeout)


#: Seconds a Keras download waits to connect, or for its next bytes (`downloads_on_stderr`).
DOWNLOAD_TIMEOUT = 30


class _FirstLineHeld(io.TextIOBase):
    """Writes to `target`, the first line only once something follows it."""

    def __init__(self, target):
        self.target, self.held, self.started = target, "", False

    def write(self, text: str) -> int:
        if not self.started and (not self.held or not self.held.endswith("\n")):
            self.held += text  # the first line, until its end
            return len(text)
        self.release()
        return self.target.write(text)

    def release(self) -> None:
        if self.held:
            self.target.write(self.held)
            self.held = ""
        self.started = True
        self.target.flush()

    def flush(self) -> None:
        if self.started:
            self.target.flush()

    def isatty(self) -> bool:
        return self.target.isatty()


def keras_home() -> Path:
    """Keras' folder for what it downloads (``datasets/``, ``models/``), as Keras chooses
    it: ``$KERAS_HOME`` (``~`` expanded, as `keras.utils.get_file` does), else
    ``~/.keras``, or ``/tmp/.keras`` when the home folder cannot be written to."""
    home = os.environ.get("KERAS_HOME")
    if home:
        return Path(home).expanduser()
    try:
        user_home = Path.home()
    except RuntimeError:  # no home folder (`cnncli` sets KERAS_HOME then: /tmp/.keras)
        user_home = None
    writable = user_home is not None and os.access(user_home, os.W_OK)
    return (user_home if writable else Path("/tmp")) / ".keras"


def keras_cache_dirs(kind: str) -> list[Path]:
    """Where `keras.utils.get_file` keeps downloads of `kind` (``datasets``, ``models``):
    under `keras_home`, or under ``/tmp/.keras`` when that folder cannot be written to
    (get_file falls back there), first found first."""
    base = keras_home()
    dirs = [base / kind]
    if base.exists() and not os.access(base, os.W_OK):
        dirs.append(Path("/tmp/.keras") / kind)
    return dirs


def import_keras():
    """Import and return `keras` (on TensorFlow), after checking its version.

    TensorFlow prints oneDNN and CUDA notices from C++ before its logging is set
    up, which no environment variable silences; they are hidden here unless
    ``CNNCLI_DEBUG`` is set (the CLI's ``--debug`` sets it).
    """
    if "keras" not in sys.modules:
        with quiet_unless_debugging(), without_matplotlib():
            import keras
            import tensorflow  # noqa: F401
    import keras
    check_keras_version(keras.__version__)
    return keras


@contextlib.contextmanager
def without_matplotlib():
    """Inside, ``import matplotlib`` fails as if it were not installed; it works again
    after. Keras imports matplotlib's pyplot at its own import, for two drawing helpers
    (``keras.visualization``) that cnncli never calls: 0.24 s of every start that imports
    Keras, here. Keras' helpers go without it (they say matplotlib is missing if called);
    cnncli imports matplotlib itself when it draws (`cnncli.plots`). Nothing changes
    when matplotlib was imported before. It holds for the whole process while Keras
    imports (no thread of cnncli's imports matplotlib then).

    >>> with without_matplotlib():
    ...     import matplotlib.pyplot    # doctest: +SKIP
    Traceback (most recent call last):
    ModuleNotFoundError: import of matplotlib halted; None in sys.modules
    """
    if "matplotlib" in sys.modules:
        yield
        return
    sys.modules["matplotlib"] = None  # Python's way to make an import fail
    try:
        yield
    finally:
        if sys.modules.get("matplotlib", "") is None:
            del sys.modules["matplotlib"]


def import_tf():
    """Import and return `tensorflow`, quietly (see `import_keras`)."""
    import_keras()
    import tensorflow as tf

    return tf
