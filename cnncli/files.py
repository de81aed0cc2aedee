"""Writing files so that a crash never leaves half of one: a temporary file, then a rename.

>>> import tempfile, pathlib
>>> path = pathlib.Path(tempfile.mkdtemp()) / "state.json"
>>> write_json(path, {"status": "running"})
>>> read_json(path)
{'status': 'running'}
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import glob
import json
import math
import os
import re
import secrets
import shutil
import stat
import tempfile
from pathlib import Path

from cnncli.text import as_text, size

#: Files a spec or run config is not: models trained or exported (`cnncli summary` of one,
#: or `model: best.keras` in a config, is told so, not "not UTF-8 text").
MODEL_FILES = (".keras", ".h5", ".onnx", ".tflite", ".xml", ".bin", ".pb")


def unfinished_prefix(path: str | Path) -> str:
    """How the temporary file of an atomic write of `path` begins (`write_atomic`,
    `cnncli.model.modelfile.save_model_atomic`): ``.best.keras.`` for ``best.keras``."""
    return f".{os.path.basename(os.fspath(path))}."


def remove_leftovers(path: Path) -> None:
    """Remove what atomic writes of `path` stopped mid-way (a ``kill -9``) left beside
    it: nothing reads them, and each can be the size of a model. Only where no other
    process writes `path` now."""
    import glob

    for stray in path.parent.glob(glob.escape(unfinished_prefix(path)) + "*"):
        stray.unlink(missing_ok=True)


def write_atomic(path: str | Path, data: bytes | str) -> None:
    """Write `data` to `path` through a temporary file and a rename: never half-written."""
    path = Path(path)
    raw = data.encode() if isinstance(data, str) else data
    fd, tmp = tempfile.mkstemp(prefix=unfinished_prefix(path), dir=path.parent)
    try:
        os.chmod(tmp, 0o666 & ~umask())  # mkstemp makes 0600 files; keep the usual mode
        with os.fdopen(fd, "wb") as f:
            f.write(raw)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        sync_folder(path.parent)  # the rename itself survives a power cut
    except BaseException as exc:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if isinstance(exc, OSError) and exc.filename is None:  # a write or fsync: name it
            exc.filename = str(path)
        raise


def sync_folder(folder: str | Path) -> None:
    """Flush `folder`'s entries to disk (after a rename into it), where the file system
    can; a folder that cannot be synced is left as it is (the rename is atomic all the
    same)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def umask() -> int:
    """The process's umask (reading it means setting it: it is set back at once)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_json(path: str | Path, data) -> None:
    write_atomic(path, json_text(data) + "\n")


def json_text(data, *, one_line: bool = False) -> str:
    """`data` as strict JSON: a number that is not one (NaN, infinite) is ``null``, as
    JavaScript's JSON.parse, Go and serde read none of Python's ``NaN``; a file name's
    bytes that are not UTF-8 (Python holds them as lone surrogates, which strict parsers
    refuse as ``"\\udc80"``) are written as ``\\x80``.

    >>> json_text({"loss": float("nan"), "p": [0.5, float("inf")]}, one_line=True)
    '{"loss": null, "p": [0.5, null]}'
    >>> json_text([b"caf\\xe9.png".decode("utf-8", "surrogateescape")], one_line=True)
    '["caf\\\\\\\\xe9.png"]'

    Indented, a list of numbers is one line (a confusion matrix's row; 1,000 classes were
    a million lines):

    >>> print(json_text({"confusion": [[3, 1], [0, 2]]}))
    {
      "confusion": [
        [3, 1],
        [0, 2]
      ]
    }
    """
    if one_line:
        return json.dumps(_strict(data), default=str, allow_nan=False)
    rows: list[str] = []
    mark = f"row-{secrets.token_hex(16)}:"  # (no string of the data is one)
    text = json.dumps(_numbers_marked(_strict(data), rows, mark), indent=2, default=str,
                      allow_nan=False)
    return re.sub(f'"{mark}([0-9]+)"', lambda m: rows[int(m.group(1))], text) if rows \
        else text


def _numbers_marked(data, rows: list[str], mark: str):
    """`data` with each non-empty list of numbers (or nulls) replaced by `mark` and a
    number, its one-line JSON appended to `rows`."""
    if isinstance(data, dict):
        return {k: _numbers_marked(v, rows, mark) for k, v in data.items()}
    if isinstance(data, list):
        if data and all(v is None or (isinstance(v, int | float) and not isinstance(v, bool))
                        for v in data):
            rows.append(json.dumps(data, allow_nan=False))
            return f"{mark}{len(rows) - 1}"
        return [_numbers_marked(v, rows, mark) for v in data]
    return data


def _strict(data):
    if isinstance(data, float):
        return data if math.isfinite(data) else None
    if isinstance(data, str):
        return as_text(data)
    if isinstance(data, dict):
        return {_strict(k): _strict(v) for k, v in data.items()}
    if isinstance(data, list | tuple):
        return [_strict(v) for v in data]
    return data


def parse_json(raw: str | bytes):
    """The JSON value in `raw`; a `ValueError` for anything that is not JSON, text that is
    not UTF-8 and JSON nested too deeply for Python's parser (a hostile file's
    ``[[[[...`` is not a bug of cnncli's).

    >>> parse_json("[" * 100_000)
    Traceback (most recent call last):
    ...
    ValueError: it is nested too deeply to be read
    """
    try:
        return json.loads(raw)
    except RecursionError:
        raise ValueError("it is nested too deeply to be read") from None


#: The largest record file cnncli reads (state.json, a pack's dataset.json, history.csv):
#: the ones it writes are kilobytes, a few megabytes for a pack of millions of images.
MAX_RECORD_BYTES = 256_000_000


def read_record(path: str | Path, limit: int = MAX_RECORD_BYTES) -> bytes:
    """The bytes of a record file of cnncli's (a run's state.json, a pack's dataset.json):
    a regular file of at most `limit` bytes. A run folder or pack from someone else may
    put a pipe or ``/dev/zero`` in its place: a `ValueError` says so, where reading would
    wait forever or fill the memory.

    >>> read_record("/dev/zero")
    Traceback (most recent call last):
    ...
    ValueError: zero is not a file (a device or a pipe in its place)

    Raises:
        OSError: it cannot be opened (not there, no permission).
        ValueError: not a regular file, or larger than `limit`.
    """
    name = Path(path).name
    with open(os.open(path, os.O_RDONLY | os.O_NONBLOCK), "rb") as f:  # (a pipe: no wait)
        if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
            raise ValueError(f"{name} is not a file (a device or a pipe in its place)")
        raw = f.read(limit + 1)
    if len(raw) > limit:
        raise ValueError(f"{name} is over {size(limit)}, larger than any cnncli writes")
    return raw


def open_no_wait(path: str | Path):
    """`path` opened to read bytes, without waiting for a pipe's writer: a named pipe
    nobody writes to (a run folder from someone else) reads as empty, where ``open``
    would wait for ever; one being written (``<(envsubst < cfg.yaml)``) reads whole."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    os.set_blocking(fd, True)  # (reads wait for data again; with no writer they end at once)
    return open(fd, "rb")


def read_json(path: str | Path):
    """The JSON value in the record file `path` (`read_record`)."""
    return parse_json(read_record(path))


def read_json_object(path: str | Path) -> dict:
    """The JSON object in `path`; a `ValueError` naming the file if it is missing, not
    JSON, or not an object (a record a run wrote, damaged or replaced)."""
    path = Path(path)
    if not path.exists():
        raise ValueError(f"{path.name} is missing")
    raw = read_record(path)  # (a pipe or a device in its place: its ValueError)
    try:
        data = parse_json(raw)
    except (ValueError, UnicodeDecodeError) as exc:  # json.JSONDecodeError is a ValueError
        raise ValueError(f"{path.name} is not JSON ({exc})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path.name} is not a JSON object")
    return data


@contextlib.contextmanager
def only_writer(folder: str | Path, busy):
    """Hold an exclusive lock on `folder` itself (no file is left in it) while the block
    runs; `busy` (an exception) is raised at once if another process holds it. Two
    commands writing one folder's files together would each check it alone, then mix
    their files (two exports: one's model beside the other's labels.txt).

    >>> with only_writer(tempfile.mkdtemp(), OSError("busy")): pass
    """
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise busy from None
        except OSError:  # a file system without locks (some NFS mounts): none held
            pass
        yield
    finally:
        os.close(fd)  # (releases the lock)


def missing_folders(folder: str | Path) -> list[Path]:
    """`folder` and those of its parents that do not exist yet, deepest first: what to
    remove again when the work they were made for fails.

    >>> missing_folders("/") == []
    True
    """
    folder = Path(folder)
    return [p for p in (folder, *folder.parents) if not p.exists() and not p.is_symlink()]


def remove_empty(folders: list[Path]) -> None:
    """Remove those of `folders` (`missing_folders`' list, deepest first) that are empty:
    the work that made them failed. A folder that holds anything is left as it is."""
    for folder in folders:
        with contextlib.suppress(OSError):
            folder.rmdir()


def writable_folder(folder: str | Path, option: str | None = None, *,
                    create: bool = True) -> Path:
    """`folder`, created if needed, once it is known to be a folder one can write to;
    else a `ConfigError` saying why (e.g. that it is a file) and to give another (with
    `option`, e.g. ``--output``, when the command chose the folder itself). With
    ``create=False`` it is only known that it could be made: a command that may fail
    before writing anything leaves no empty folder behind.

    >>> writable_folder(tempfile.mkdtemp()).is_dir()
    True
    """
    from cnncli.errors import ConfigError

    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise ConfigError("the output folder is a file, not a folder", file=str(folder),
                          hint="give the output a folder (new or existing)")
    broken = next((p for p in (folder, *folder.parents) if p.is_symlink() and not p.exists()),
                  None)
    if broken is not None:  # mkdir would say only "File exists"
        raise ConfigError(f"the output folder cannot be made: '{broken}' is a link to "
                          f"'{os.readlink(broken)}', which does not exist", file=str(folder),
                          hint="make the folder it points to, or give another")
    blocking = next((p for p in folder.parents if p.exists() and not p.is_dir()), None)
    if blocking is not None:  # mkdir would say only "File exists" or "Not a directory"
        raise ConfigError(f"the output folder cannot be made: '{blocking}' is a file",
                          file=str(folder), hint="give the output a folder (new or existing)")
    try:
        if create:
            folder.mkdir(parents=True, exist_ok=True)
        here = next(p for p in (folder, *folder.parents) if p.exists())
        os.rmdir(tempfile.mkdtemp(prefix=".cnncli-probe-", dir=here))
    except OSError as exc:
        raise ConfigError(f"cannot write to the output folder: {exc.strerror or exc}",
                          file=str(folder), hint="give a folder you can write to" + (
                              f" with {option} DIR" if option else "")) from None
    return folder


#: Free bytes under which a failure to write is put down to a full disk.
NEARLY_FULL = 1 << 20


def disk_full(exc: BaseException, path: Path) -> bool:
    """Whether `exc`, raised writing `path`, came from a full disk (or quota): its errno,
    its words (TensorFlow's ``No space left on device [Op:SaveV2]``, raised as its own
    error types), or, for an I/O or runtime error that says only "iostream error"
    (OpenVINO), less than `NEARLY_FULL` bytes free there."""
    if getattr(exc, "errno", None) in (errno.ENOSPC, errno.EDQUOT):
        return True
    if any(words in str(exc) for words in (os.strerror(errno.ENOSPC),
                                           os.strerror(errno.EDQUOT))):
        return True
    if not isinstance(exc, OSError | RuntimeError):  # an operation it cannot convert...
        return False
    folder = next((p for p in (path, *path.parents) if p.exists()), None)
    try:
        return folder is not None and shutil.disk_usage(folder).free < NEARLY_FULL
    except OSError:
        return False


#: In a staging folder: the process filling it, so that a later one knows it is stale; a
#: name of cnncli's own, so that no folder of the user's is taken for one.
PID_FILE = ".cnncli-staging-pid"
#: The name cnncli before 2026-12-07 gave it (a folder a version of then left is cleared).
_OLD_PID_FILE = "pid"

#: The names `tempfile.mkdtemp` gives after the prefix (8 of these letters).
_MKDTEMP_TAIL = re.compile(r"[a-z0-9_]{8}")


def staging_folder(parent: str | Path, prefix: str) -> Path:
    """A new hidden folder in `parent` (the same file system as what it becomes: renamed
    into place whole), holding the number of the process filling it; those of `prefix`
    left by a process that died (``kill -9``, a power cut) are removed first. Remove the
    `PID_FILE` before the rename.

    >>> staging_folder(tempfile.mkdtemp(), ".out.").name.startswith(".out.")
    True
    """
    remove_dead_staging(parent, prefix)
    for done in [p for p in _MARKERS if not p.exists()]:  # (renamed into place, removed)
        os.close(_MARKERS.pop(done))
    path = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
    marker = path / f"{PID_FILE}.new"
    fd = os.open(marker, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    with contextlib.suppress(OSError):  # (a file system without locks: its number says)
        fcntl.flock(fd, fcntl.LOCK_EX)  # held while this process lives (or the folder does)
    os.write(fd, str(os.getpid()).encode())
    os.rename(marker, path / PID_FILE)  # seen by others only once locked
    _MARKERS[path] = fd
    return path


#: This process's staging folders and their markers, each held open with a lock while
#: the folder is used: another process knows a live folder by the lock, which every
#: process of the machine sees, where a process number is not (a container's own).
_MARKERS: dict[Path, int] = {}


def remove_dead_staging(parent: str | Path, prefix: str) -> list[Path]:
    """Remove the `staging_folder`s of `prefix` in `parent` whose process died: only
    folders named as `staging_folder` names them, holding its `PID_FILE` (a folder of the
    user's that happens to start with `prefix`, ``.packed.backup``, is left alone).
    Returns the staging folders left: in use by a live process."""
    live = []
    for path in Path(parent).glob(glob.escape(prefix) + "*"):
        if not _MKDTEMP_TAIL.fullmatch(path.name[len(prefix):]) or path.is_symlink():
            continue
        pid = _staging_pid(path)
        if pid is None:
            continue
        # a marker of this name is held locked while its folder is used; the older
        # `pid` marker had no lock: its process number says (a number reused, in a
        # container whose processes start at 1, kept a dead folder "live" for good)
        locked = is_locked(path / PID_FILE) if (path / PID_FILE).exists() else None
        alive = locked if locked is not None else _running(pid)
        if alive:
            live.append(path)
        else:
            shutil.rmtree(path, ignore_errors=True)
    return live


def is_locked(marker: Path) -> bool | None:
    """Whether a process holds a lock on the file `marker` (a staging folder's, an
    evaluation's claim; `cnncli.run.rundir.is_live` for a run's): what it marks is in use.
    None when its file system cannot tell (no locks: some NFS mounts)."""
    try:
        fd = os.open(marker, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return False
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):  # a pipe or a device in its place
            return False
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:  # a file system without locks
        return None
    finally:
        os.close(fd)
    return False


def _staging_pid(folder: Path) -> int | None:
    """The process number `folder`'s marker holds; None while it is being made, or for a
    folder that is not a staging one (no marker, or not a file: a pipe is not waited on)."""
    for name in (PID_FILE, _OLD_PID_FILE):
        try:
            return int(read_record(folder / name, limit=100))
        except FileNotFoundError:
            continue
        except (OSError, ValueError):
            return None
    return None


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    return True
