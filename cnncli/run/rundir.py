"""Run directories: ``runs/<name>/<n>/``, never overwritten, and atomic file writes.

>>> import tempfile
>>> root = tempfile.mkdtemp()
>>> create(root, "mnist").name, create(root, "mnist").name
('1', '2')
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from cnncli.errors import ConfigError, DataError

CONFIG = "config.yaml"
STATE = "state.json"  # what the run is doing: running, interrupted, failed, finished


def create(root: str | Path, name: str) -> Path:
    """Make the next free ``root/name/<n>`` directory; safe when two runs start at once.

    ``os.mkdir`` either creates the directory or fails because it exists, so two
    processes racing for the same number cannot both get it.
    """
    base = Path(root) / name
    try:
        base.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create the run folder: {exc.strerror}", file=str(base),
                          hint="choose another output folder with --set output.dir=...") from None
    if not os.access(base, os.W_OK):
        raise ConfigError("the run folder is not writable", file=str(base),
                          hint="choose another output folder with --set output.dir=...")
    numbers = [int(p.name) for p in base.iterdir() if p.name.isdigit()]
    n = max(numbers, default=0) + 1
    while True:
        run = base / str(n)
        try:
            run.mkdir()
            return run
        except FileExistsError:
            n += 1


def point_latest(run: Path) -> None:
    """Make ``runs/<name>/latest`` a symlink to `run`, replaced atomically."""
    link = run.parent / "latest"
    tmp = run.parent / f".latest.{os.getpid()}"
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    tmp.symlink_to(run.name)
    os.replace(tmp, link)


def find(path: str | Path) -> Path:
    """The run directory at `path` (a run, its ``latest`` link, or a run's parent folder)."""
    p = Path(path)
    if p.is_dir() and not (p / CONFIG).exists() and (p / "latest").exists():
        p = p / "latest"
    if not p.exists():
        raise DataError("no such run", file=str(path),
                        hint="list runs with `cnncli runs`; runs live in runs/<name>/<n>")
    p = p.resolve()
    if not (p / CONFIG).exists():
        raise DataError("this is not a cnncli run folder (it has no config.yaml)",
                        file=str(path), hint="give a run folder such as runs/mnist/1")
    return p


def list_runs(root: str | Path = "runs") -> list[Path]:
    """Every run under `root`, oldest name first, run number ascending."""
    root = Path(root)
    if not root.is_dir():
        return []
    runs = [p for p in root.glob("*/*") if p.name.isdigit() and (p / CONFIG).exists()]
    return sorted(runs, key=lambda p: (p.parent.name, int(p.name)))
