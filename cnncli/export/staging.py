"""Writing exports so that no half-written file is ever left: a hidden staging folder
inside the output folder (same file system: renames are atomic), then renames.

A file is renamed into place only once it is complete and has passed its check; the
staging folder goes away with everything in it however the export ends (an error, a
failed check, Ctrl-C, SIGTERM). ``replace=True`` (``--force``) replaces existing outputs, a
SavedModel folder included (the old one is moved aside first, then deleted).

>>> import tempfile
>>> out = Path(tempfile.mkdtemp())
>>> with Staging(out) as stage:
...     _ = (stage.path / "m.onnx").write_text("model")
...     stage.publish([(stage.path / "m.onnx", out / "m.onnx")], replace=False)
>>> sorted(p.name for p in out.iterdir())
['m.onnx']
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import tempfile
from pathlib import Path

from cnncli import files
from cnncli.errors import ConfigError, Terminated

PREFIX = ".cnncli-export-"


PID_FILE = files.PID_FILE


class Staging:
    """A temporary folder inside `folder`, removed on exit; SIGTERM is raised as
    `Terminated` (a `KeyboardInterrupt`), as Ctrl-C is, so the export says what it kept
    and the folder goes with the exception. One left by a killed export (SIGKILL, a
    power cut) is removed by the next export into the same folder."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.path: Path | None = None
        self._previous = None
        self._held: list[int] | None = None  # signals that came while publishing
        #: Ctrl-C or SIGTERM came: while files were renamed into place (all were, then:
        #: `publish` does not raise mid-way), or into a converter that swallowed it; the
        #: export should stop now.
        self.interrupted = False
        self.terminated = False  #: ... and it was SIGTERM

    def __enter__(self) -> Staging:
        self.path = files.staging_folder(self.folder, PREFIX)
        try:  # (one ignored, as for a command started with `&` by a script, stays so)
            self._previous = {s: signal.signal(s, self._signalled)
                              for s in (signal.SIGINT, signal.SIGTERM)
                              if signal.getsignal(s) is not signal.SIG_IGN}
        except ValueError:  # not the main thread: no handler (the next export cleans up)
            self._previous = None
        return self

    def __exit__(self, *exc) -> None:
        for signum, previous in (self._previous or {}).items():  # None: not set from Python
            signal.signal(signum, signal.SIG_DFL if previous is None else previous)
        shutil.rmtree(self.path, ignore_errors=True)

    def _signalled(self, signum, frame) -> None:
        """Ctrl-C or SIGTERM: raised (`Terminated` for SIGTERM), and remembered: a
        converter that catches everything swallowed it (LiteRT's did, half a second
        into its conversion), and the export went on as if it had not come; the
        exporter stops after the format it is making."""
        if self._held is not None:  # renaming files into place: once they all are
            self._held.append(signum)
            return
        self.interrupted = True
        self.terminated = self.terminated or signum == signal.SIGTERM
        raise Terminated() if signum == signal.SIGTERM else KeyboardInterrupt

    def publish(self, moves: list[tuple[Path, Path]], *, replace: bool) -> None:
        """Rename each staged file or folder to its destination, in order. Ctrl-C and
        SIGTERM wait until all are renamed (a model never lands without its sidecar);
        then either sets `interrupted` (SIGTERM `terminated` too) for the caller to stop."""
        with self.holding():
            self._rename(moves, replace)

    @contextlib.contextmanager
    def holding(self):
        """Ctrl-C and SIGTERM wait until the block is done (whatever must land whole:
        files renamed into place, a model's labels beside it), then set `interrupted`
        (SIGTERM `terminated` too). Inside another `holding`, the outer one decides."""
        if self._held is not None:
            yield
            return
        self._held = []
        try:
            yield
        finally:
            held, self._held = self._held, None
            self.terminated = self.terminated or signal.SIGTERM in held
            self.interrupted = self.interrupted or bool(held)

    def _rename(self, moves: list[tuple[Path, Path]], replace: bool) -> None:
        for source, dest in moves:
            _sync(source)
            if dest.exists() or dest.is_symlink():
                if not replace:
                    raise ConfigError("the output exists already", file=str(dest),
                                      hint="pass --force to replace it")
                if dest.is_dir() and not dest.is_symlink():
                    aside = Path(tempfile.mkdtemp(prefix="old-", dir=self.path))
                    os.rename(dest, aside / dest.name)
                elif source.is_dir():
                    dest.unlink()
            os.replace(source, dest)
        files.sync_folder(self.folder)


def _sync(path: Path) -> None:
    """Flush a file (or every file in a folder) to disk before it is renamed into place."""
    for file in ([path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]):
        with open(file, "rb") as f:
            os.fsync(f.fileno())


