"""Run directories: ``runs/<name>/<n>/``, never overwritten, with one writer at a time.

>>> import tempfile
>>> root = tempfile.mkdtemp()
>>> create(root, "mnist").name, create(root, "mnist").name
('1', '2')

A process that trains into a run holds its `writer` lock: an exclusive ``flock`` on
``.lock`` in the run folder. The operating system releases it when the process ends, by
any means (``kill -9`` included), so a crashed run never leaves a stale lock, and
`is_live` tells a run being trained from one that died.

>>> run = create(root, "mnist")
>>> with writer(run):
...     is_live(run)
True
>>> is_live(run)
False
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import shutil
import socket
import stat
from pathlib import Path

from cnncli import files, runfolder, text
from cnncli.errors import ConfigError, DataError, WriteError

CONFIG = runfolder.CONFIG
STATE = "state.json"  # what the run is doing: running, interrupted, failed, finished
LOCK = ".lock"  # held (flock) by the process training into the run
BACKUP = "backup.npz"  # the resumable state (cnncli.run.checkpoint writes it)
PREVIOUS_BACKUP = "backup.prev.npz"
HISTORY = "history.csv"  # a row per finished epoch (`cnncli.run.callbacks.outputs`)


def create(root: str | Path, name: str) -> Path:
    """Make the next free ``root/name/<n>`` directory; safe when two runs start at once.

    ``os.mkdir`` either creates the directory or fails because it exists, so two
    processes racing for the same number cannot both get it.
    """
    base = Path(root) / name
    _room_for_files(base)
    try:
        base.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create the run folder: {exc.strerror}", file=str(base),
                          hint="choose another output folder with --set output.dir=...") from None
    if not os.access(base, os.W_OK):
        raise ConfigError("the run folder is not writable", file=str(base),
                          hint="choose another output folder with --set output.dir=...")
    _refuse_own_latest(base)  # (point_latest would replace it)
    n = max(_numbers(base), default=0) + 1
    while True:
        run = base / str(n)
        try:
            run.mkdir()
            return run
        except FileExistsError:
            n += 1


def check_place(root: str | Path, name: str) -> None:
    """Refuse, without making anything, what `create` would refuse for ``root/name``: a
    file where a folder must be, a folder that cannot be written to, a path too long, a
    `latest` of the user's own (``train --dry-run``: it writes nothing, and must not pass
    a run that would fail at once)."""
    base = Path(root) / name
    _room_for_files(base)
    here = next(p for p in (base, *base.parents) if p.exists() or p == Path(p.anchor))
    why = ("Not a directory" if not here.is_dir() else
           "Permission denied" if not os.access(here, os.W_OK | os.X_OK) else None)
    if why is not None:
        raise ConfigError(f"cannot create the run folder: {why} ({here})", file=str(base),
                          hint="choose another output folder with --set output.dir=...")
    _refuse_own_latest(base)


def _refuse_own_latest(base: Path) -> None:
    """A `latest` in `base` that is not cnncli's link (a folder or file of the user's)."""
    latest = base / runfolder.LATEST
    if latest.exists() and not latest.is_symlink():
        raise ConfigError("'latest' here is not the link cnncli keeps to the newest run "
                          "(it is a folder or a file of its own)", file=str(latest),
                          hint="move or rename it; cnncli makes runs/<name>/latest a link "
                               "to the newest run")


#: Bytes a run's own paths take below ``root/name``: ``/<n>/`` and its longest file,
#: TensorBoard's ``tensorboard/validation/events.out.tfevents.<time>.<host>.<pid>...``
#: (a host name has up to 64).
RUN_FILES_ROOM = 256


def _room_for_files(base: Path) -> None:
    """Refuse a run folder whose files' paths would be longer than a path may be: the
    folder was made, then TensorFlow's event writer failed ("a bug in cnncli"), and the
    run was left `running`."""
    path = os.path.abspath(base)
    try:
        most = os.pathconf(next(p for p in (path, *Path(path).parents) if os.path.exists(p)),
                           "PC_PATH_MAX")
    except (OSError, ValueError):
        most = 4096  # Linux's
    length = len(os.fsencode(path))
    if length + RUN_FILES_ROOM > most:
        raise ConfigError(f"the run folder's path is {length:,} bytes long: the run's files "
                          f"would have paths longer than the {most:,} bytes a path may have",
                          file=str(base), hint="choose a shorter output folder with --set "
                                               "output.dir=...")


def _number(name: str) -> bool:
    """True for a run number: ASCII digits only (``"²".isdigit()`` is True too)."""
    return name.isascii() and name.isdigit()


def _numbers(folder: Path) -> list[int]:
    """The numbers of the runs in the folder of a run's name."""
    return [int(p.name) for p in folder.iterdir() if _number(p.name) and p.is_dir()]


def remove_unstarted(run: Path) -> None:
    """Remove the run folder an attempt made if no epoch of it finished and it has no
    backup (its config, status and TensorBoard's first events: `--auto-batch` starts
    again in a new one), and point ``latest`` at the newest run left."""
    if not run.is_dir() or (run / HISTORY).exists() or has_backup(run):
        return
    shutil.rmtree(run, ignore_errors=True)
    if _numbers(run.parent):
        point_latest(run.parent / str(max(_numbers(run.parent))))
    else:
        with contextlib.suppress(FileNotFoundError):
            (run.parent / runfolder.LATEST).unlink()


def point_latest(run: Path) -> None:
    """Make ``runs/<name>/latest`` a symlink to the newest run beside `run` (the highest
    number), replaced atomically: of two runs started at once, the one that links last
    does not take the link from the later one."""
    link = run.parent / runfolder.LATEST
    tmp = run.parent / f".latest.{os.getpid()}"
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    tmp.symlink_to(str(max(_numbers(run.parent), default=int(run.name))))
    try:
        os.replace(tmp, link)
    except OSError:
        tmp.unlink()
        raise


def find(path: str | Path) -> Path:
    """The run directory at `path` (a run, its ``latest`` link, or a run's parent folder)."""
    p = runfolder.named(path)
    if not p.exists():
        raise DataError("no such run", file=str(path), hint=_not_a_run(str(path)))
    p = p.resolve()
    if not runfolder.is_run(p):
        if not p.is_dir():
            raise DataError("this is a file, not a run folder", file=str(path),
                            hint="give a run folder such as runs/mnist/1")
        models = _model_files(p)
        raise DataError("this is not a cnncli run folder (it has no config.yaml)",
                        file=str(path), hint=f"it holds model files: give one of them, e.g. "
                        f"{models[0]}" if models else "give a run folder such as runs/mnist/1")
    return p


def _not_a_run(name: str) -> str:
    """The hint for a run that is not there: a built-in architecture's name (its weights
    are not trained: nothing to show or run) says so."""
    from cnncli.model import architectures

    if name in architectures.names():
        return (f"'{name}' is a built-in architecture, with no trained weights: train it "
                f"first (cnncli train with `model: {name}`), then give its run "
                f"(runs/<name>/latest); `cnncli summary {name}` shows its layers")
    return "list runs with `cnncli runs`; runs live in runs/<name>/<n>"


def _model_files(folder: Path) -> list[str]:
    """The model files (and SavedModel folders) in `folder`, sorted."""
    try:
        return sorted(str(m) for m in folder.iterdir() if m.suffix.lower() in (
            ".keras", ".onnx", ".tflite", ".xml") or (m / "saved_model.pb").is_file())
    except OSError:
        return []


#: How deep under the folder given `cnncli runs` looks: runs/<output.dir>/<name>/<n>.
RUN_DEPTH = 3


def list_runs(root: str | Path = "runs") -> list[Path]:
    """Every run in `root`: the runs of a runs folder (``runs/<name>/<n>``), of one name's
    folder (``runs/mnist``), `root` itself if it is a run, and runs of an ``output.dir``
    inside it (``runs/exp/<name>/<n>``); sorted by folder, then run number. A run is a
    folder named with a number holding its ``config.yaml`` or ``state.json`` (one without
    the other is listed: as damaged); `root` may have another name (a run copied to
    ``moved/``) when it holds its ``state.json``."""
    root = Path(root)
    if not root.is_dir():
        return []
    found = [root.resolve(), *(p for depth in range(1, RUN_DEPTH + 1)  # runs/x/latest, .
                               for p in root.glob("/".join(["*"] * depth)))]
    runs = [p for p in found if _number(p.name) and p.is_dir()
            and ((p / CONFIG).exists() or (p / STATE).exists())]
    if not _number(root.resolve().name) and (root / STATE).is_file():  # a run copied to
        runs.append(root.resolve())  # moved/ (its latest link resolves to a number: found)
    return sorted(runs, key=lambda p: (str(p.parent), int(p.name) if _number(p.name) else 0))


#: The hint for a run folder this user cannot write (a teammate's).
ANOTHER_USERS = "the run folder is another user's: train into a copy of your own (cp -r), " \
    "or ask them"


@contextlib.contextmanager
def writer(run: Path):
    """Hold `run`'s writer lock while the block runs.

    Raises:
        ConfigError: another process holds it (it is training into this run now).
        WriteError: the lock file cannot be opened (a folder in its place, a run folder
            that cannot be written to).
    """
    theirs = False
    try:
        try:
            fd = _open_lock(run, os.O_RDWR | os.O_CREAT)
        except PermissionError:  # another user's run: a lock is taken on a file read only
            fd, theirs = _open_lock(run, os.O_RDONLY), True  # (whoever holds it is said)
    except OSError as exc:
        theirs = isinstance(exc, PermissionError)
        raise WriteError(f"cannot open the run's lock file: {exc.strerror or exc}",
                         file=str(run / LOCK),
                         hint=ANOTHER_USERS if theirs else "it is cnncli's own file: "
                              "remove what is in its place, or make the run folder "
                              "writable") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(run)
            raise ConfigError(
                f"another process is training into this run now{holder}", file=str(run),
                hint="wait for it to finish (cnncli runs shows it as running), or stop it "
                     "first; one run folder has one writer at a time") from None
        if theirs:  # no one trains into it; this process cannot write it either
            raise WriteError("cannot open the run's lock file: Permission denied",
                             file=str(run / LOCK), hint=ANOTHER_USERS)
        with contextlib.suppress(OSError):  # (who holds it: said to a second writer)
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()} {socket.gethostname()}\n".encode())
        yield
    finally:
        os.close(fd)  # closing the file releases the lock


def _open_lock(run: Path, flags: int) -> int:
    """`run`'s lock file opened with `flags`, only if it is a file of the run's own: a
    link (to a file elsewhere, which the writer would overwrite), a pipe (a wait with no
    end) or a device in its place is an `OSError`."""
    try:
        fd = os.open(run / LOCK, flags | os.O_NOFOLLOW | os.O_NONBLOCK,
                     0o666 & ~files.umask())  # (as the run's other files: the umask says)
    except OSError as exc:
        if exc.errno != errno.ELOOP:
            raise
        raise OSError(errno.ELOOP, f"it is a link (to {os.readlink(run / LOCK)}), not a "
                      "file of the run's own") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise OSError(errno.EINVAL, "it is not a file (a pipe or a device in its place)")
    return fd


def _holder(run: Path) -> str:
    try:
        pid, _, host = files.read_record(run / LOCK, limit=1000).decode().strip() \
            .partition(" ")
    except (OSError, ValueError):
        return ""
    return f" (process {pid} on {host})" if pid.isdigit() and host else ""


def is_live(run: Path) -> bool:
    """True while a process holds `run`'s writer lock (it is training into it)."""
    return files.is_locked(run / LOCK) is not False  # (a file system without locks: as if)


def has_backup(run: Path) -> bool:
    return (run / BACKUP).exists() or (run / PREVIOUS_BACKUP).exists()


def resumable(folder: str | os.PathLike) -> Path | None:
    """The newest run under `folder` (``runs/NAME``) with a backup to go on from (it
    stopped: a finished run keeps none) that no process trains into now, this user can
    write and whose config.yaml is the one it wrote (`edited_configs`), else None:
    ``train --resume auto``, the same command again after a machine stopped, goes on or
    starts anew. Not only the latest: a colleague's run of the same config may have
    finished since this one stopped.

    >>> resumable("runs/no-such-name") is None
    True
    """
    return next((run for run in numbered(folder) if has_backup(run) and not is_live(run)
                 and os.access(run, os.W_OK)  # (not another user's, in runs/NAME a team
                 and config_as_written(run)), None)  # shares: it could not be written)


def edited_configs(folder: str | os.PathLike, newer_than: Path | None = None) -> list[Path]:
    """The runs under `folder` (newer than `newer_than`, if given) with a backup whose
    ``config.yaml`` is not the one the run wrote (edited by hand, or unreadable): their
    resume is refused, so `resumable` passes over them (a job restarted on failure with
    ``--resume auto`` was refused again at every start)."""
    runs = numbered(folder)
    if newer_than is not None and newer_than in runs:
        runs = runs[:runs.index(newer_than)]
    return [run for run in runs if has_backup(run) and not config_as_written(run)]


def config_as_written(run: Path) -> bool:
    """Whether `run`'s ``config.yaml`` is the one it wrote (`cnncli.config.as_written`)."""
    from cnncli import config, yamlio
    from cnncli.errors import CnnError

    try:
        doc = yamlio.load(run / CONFIG)
    except (CnnError, OSError):
        return False
    return isinstance(doc, dict) and config.as_written(doc)


def numbered(folder: str | os.PathLike) -> list[Path]:
    """The runs of one name's `folder` (``runs/NAME/<n>``), newest first."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    runs = sorted((p for p in folder.iterdir() if _number(p.name) and runfolder.is_run(p)),
                  key=lambda p: int(p.name), reverse=True)  # (by its own number: a link's
    return [p.resolve() for p in runs]  # target may be named otherwise)


def after_write_failure(run: Path) -> str:
    """What to do when a file of `run` could not be written: resume from its backup, or,
    with none yet, start again (the hint said to resume, which was refused: "no backup");
    the run folder removed while it trained: start again."""
    if not run.is_dir():
        return "the run folder is gone (removed while the run trained): start the run again"
    if has_backup(run):
        return (f"free some disk space (or make the run folder writable), then: cnncli "
                f"train --resume {text.arg(run)} (the last backup is kept)")
    return ("free some disk space (or make the run folder writable), then start the run "
            "again (it had no backup to resume from yet)")


def no_model_hint(run: Path) -> str:
    """What to do with a run that has no model file yet, given what it is doing."""
    if is_live(run):
        return f"it is training now{_holder(run)}; its model is written when an epoch ends"
    if has_backup(run):
        return f"continue it: cnncli train --resume {text.arg(run)}"
    return ("it stopped before its first backup; start it again: cnncli train "
            f"{text.arg(run / CONFIG)}")
