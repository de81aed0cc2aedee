"""``cnncli runs``: every run under a folder with its status and best figure. A run that
cannot be read (its files damaged or written by something else) is listed as damaged,
and the listing goes on; a run whose process died while training is told from one
that is training now.

>>> [r.status for r in summaries("runs")]            # doctest: +SKIP
['finished', 'killed', 'damaged']
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from cnncli import files, runfolder
from cnncli.config.sections import SHORT_NAMES
from cnncli.run import rundir
from cnncli.run.monitor import best_monitor
from cnncli.run.record import RunMetrics
from cnncli.run.status import FINISHED, RUNNING, RunStatus

#: What `RunSummary.status` says, besides the states a run records itself
#: (running, interrupted, failed, finished).
KILLED = "killed"  # state says running, but no process holds the run's lock
DAMAGED = "damaged"


@dataclass
class RunSummary:
    run: str
    status: str
    epochs: int | None = None
    best_metric: str | None = None
    best: float | None = None
    images_per_s: float | None = None
    problem: str | None = None  # what is damaged; or what ended a failed/interrupted run

    def to_dict(self) -> dict:
        """``cnncli runs --json``'s row: `run` the folder's full path, as ``train --json``
        and ``evaluate --json`` give it (a script joins them by it), wherever it was
        listed from."""
        return {**asdict(self), "run": str(Path(self.run).resolve())}


def summaries(root: str | Path = "runs", *, must_exist: bool = False) -> list[RunSummary]:
    """One `RunSummary` per run folder under `root`, in `rundir.list_runs` order; with
    `must_exist` (a folder the user named), a `ConfigError` if `root` is not a folder (a
    mistyped folder is not "no runs")."""
    if must_exist and not Path(root).is_dir():
        from cnncli.errors import ConfigError

        raise ConfigError("not a folder" if Path(root).exists() else "no such folder",
                          file=str(root), hint="give the folder holding the runs (cnncli "
                                               "train writes them under runs/)")
    return [summarize(run) for run in rundir.list_runs(root)]


def summarize(run: Path) -> RunSummary:
    """What the files of `run` say about it; never raises for a damaged run."""
    try:
        _check_config(run / rundir.CONFIG)
        error = None  # what ended a failed or interrupted run
        if (run / rundir.STATE).exists() or not rundir.is_live(run):
            state = RunStatus.read(run)
            status, error = state.status, state.error
        else:  # its process is writing it now: the state comes next
            status = RUNNING
        metrics = RunMetrics.read(run)
        _check_model(run, finished=status == FINISHED)
    except (OSError, ValueError) as exc:  # json.JSONDecodeError is a ValueError
        return RunSummary(str(run), DAMAGED, problem=str(exc))
    if status == RUNNING and not rundir.is_live(run):  # (only then: a look takes a lock)
        status = KILLED
    if metrics is None:  # not finished: its finished epochs say what it reached so far
        return replace(_so_far(run, status), problem=error)
    best = metrics.best
    return RunSummary(str(run), status, metrics.epochs, _text(best.metric), best.value,
                      metrics.images_per_s)


def _check_config(path: Path) -> None:
    """A `ValueError` if the run's config is not a YAML mapping (predict, evaluate and
    ``--resume`` read it) or not the one the run wrote (`config.as_written`)."""
    from cnncli import yamlio
    from cnncli.errors import CnnError

    try:
        loaded = yamlio.load(path)
    except CnnError as exc:
        raise ValueError(f"{path.name}: {exc.message}") from None
    if not isinstance(loaded, dict):
        raise ValueError(f"{path.name} is not a run config (not a mapping)")
    from cnncli import config

    if not config.as_written(loaded):
        raise ValueError(f"{path.name} is not the one the run wrote (edited, or cut short)")


def _check_model(run: Path, finished: bool) -> None:
    """A `ValueError` if a model file (``best.keras``, ``model.keras``) is not a model
    archive, a finished run has neither, or an unfinished one has backups of which none is
    an archive (``--resume`` would have nothing to continue from): a cheap look (the end of
    each file), not a load."""
    import zipfile

    if runfolder.model_file(run) is None and finished:
        raise ValueError("its model files (best.keras, model.keras) are gone")
    for name in runfolder.MODELS:
        model = run / name
        if model.exists() and (not model.is_file() or not zipfile.is_zipfile(model)):
            raise ValueError(f"{name} is not a Keras model file (cut short or damaged)")
    backups = [run / rundir.BACKUP, run / rundir.PREVIOUS_BACKUP]
    if not finished and any(b.exists() for b in backups) and not any(
            b.is_file() and zipfile.is_zipfile(b) for b in backups):
        raise ValueError("its backups are cut short or damaged: --resume has nothing to "
                         "continue from")


def _so_far(run: Path, status: str) -> RunSummary:
    """A run without ``metrics.json`` (interrupted, failed, running), from its
    ``history.csv``: the epochs finished and the best of the figure ``best.keras`` follows
    (`cnncli.run.monitor.best_monitor`: validation accuracy, else validation
    loss, else loss)."""
    try:
        text = files.read_record(run / rundir.HISTORY).decode()
        rows = list(csv.DictReader(io.StringIO(text, newline="")))
    except (OSError, ValueError, csv.Error):  # (UnicodeDecodeError: a ValueError)
        return RunSummary(str(run), status)
    rows = [_long_names(row) for row in rows]
    # the figures the run measured (history.csv always heads val_ and accuracy columns)
    columns = [c for c in (rows[0] if rows else ()) if any(_float(r.get(c)) is not None
                                                           for r in rows)]
    monitor = best_monitor(columns, any(c.startswith("val_") for c in columns))
    monitor = monitor if monitor in columns else None
    values = [v for v in (_float(r.get(monitor)) for r in rows) if v is not None] \
        if monitor else []
    best = (max if monitor == "val_accuracy" else min)(values) if values else None
    speed = _float(rows[-1].get("images_per_s")) if rows else None
    return RunSummary(str(run), status, len(rows) or None, monitor if best is not None
                      else None, best, speed)


def _long_names(row: dict) -> dict:
    """A history row with Keras' long names: an older run of ``metrics: [acc]`` wrote
    ``acc`` and ``val_acc``, and one resumed since has both pairs, each half empty.

    >>> _long_names({"acc": "0.9", "accuracy": "", "val_acc": "", "val_accuracy": "0.8"})
    {'accuracy': '0.9', 'val_accuracy': '0.8'}
    """
    named: dict = {}
    for key, value in row.items():
        key = SHORT_NAMES.get(key, key)
        if value not in ("", None) or key not in named:
            named[key] = value
    return named


def _float(text) -> float | None:
    try:
        value = float(text)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def _text(value) -> str | None:
    return value if isinstance(value, str) else None

