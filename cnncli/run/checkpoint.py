"""Resumable backups of a training run: everything that shapes the rest of the run.

One file, ``backup.npz``, holds the model's variables (weights, batch-norm
statistics, dropout seed states), the optimizer's (step count, moments, learning
rate), mixed_float16's loss scaling (kept apart: a resume may change the precision),
the running metrics of the current epoch, and the loop's state as JSON
(epoch, step, best metric, early-stopping and plateau counters, history rows).

Written through a temporary file, fsync and rename, so a ``kill -9`` leaves either
the previous backup or the new one, never a torn file. The previous backup is kept
as ``backup.prev.npz``: if the newest is unreadable (a truncated copy, a full disk),
`load` falls back to it and says how many steps were lost. Keras' BackupAndRestore
is not used: it writes in place, restores only the epoch, and a truncated metadata
file crashed it (keras-team/keras#19179, #17012, #20712).
"""

from __future__ import annotations

import io
import json
import os
import zipfile
from pathlib import Path

import numpy as np

from cnncli import runfolder, text
from cnncli.errors import TrainingError
from cnncli.files import parse_json, remove_leftovers, write_atomic
from cnncli.run import rundir
from cnncli.run.state import TrainState

BACKUP, PREVIOUS = rundir.BACKUP, rundir.PREVIOUS_BACKUP


def _variables(model) -> dict[str, list]:
    optimizer, loss_scale = _optimizer_parts(model.optimizer)
    return {
        "model": list(model.variables),
        "optimizer": optimizer,
        "loss_scale": loss_scale,  # a run may gain or lose it (--force --precision)
        "metrics": [v for m in model.metrics for v in m.variables],
    }


def _optimizer_parts(optimizer) -> tuple[list, list]:
    """The optimizer's variables (step count, rate, moments) and those of the loss
    scaling that wraps it under mixed_float16 (its scale and counter; none without)."""
    inner = getattr(optimizer, "inner_optimizer", None)
    if inner is None:
        return list(optimizer.variables), []
    own = [v for v in optimizer.variables if not any(v is w for w in inner.variables)]
    return list(inner.variables), own


def save(run: Path, model, state: TrainState) -> None:
    """Write a backup of `model` (compiled, optimizer built) and the loop `state`."""
    arrays = {}
    for group, variables in _variables(model).items():
        for i, v in enumerate(variables):
            arrays[f"{group}/{i}"] = np.asarray(v.numpy())
    arrays["state"] = np.frombuffer(json.dumps(state.to_json()).encode(), dtype=np.uint8)
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    current = run / BACKUP
    had_backup = current.exists()
    if had_backup:
        os.replace(current, run / PREVIOUS)
    try:
        write_atomic(current, buffer.getvalue())
    except OSError as exc:
        kept = (f"the previous backup ({PREVIOUS}) is kept and --resume uses it"
                if had_backup else "there is no earlier backup to resume from")
        raise TrainingError(
            f"cannot write the backup: {exc.strerror or exc}; {kept}", file=str(current),
            hint=rundir.after_write_failure(run)) from None


def remove(run: Path) -> None:
    """Remove the run's backups, and what a write of one stopped mid-way left."""
    for name in (BACKUP, PREVIOUS):
        (run / name).unlink(missing_ok=True)
    remove_unfinished(run)


def remove_unfinished(run: Path) -> None:
    """Remove what writes of the run's backups and model files stopped mid-way (a ``kill
    -9``) left: nothing reads them, and each is a backup's or a model's size. Only by the
    run's writer (`rundir.writer`): another worker's process reads the run, not writes."""
    for name in (BACKUP, runfolder.BEST_MODEL, runfolder.LAST_MODEL):
        remove_leftovers(run / name)


def load(run: Path, model, prepare=None, *, mend: bool = True
         ) -> tuple[TrainState, str | None]:
    """Restore the newest readable backup into `model`; return (state, note).

    `prepare(state)`, if given, is called with the backup's state before its variables
    are restored (a run in its fine-tuning stage recompiles for that stage's optimizer).

    `note` says what was lost when the newest backup was unreadable and the
    previous one was used; the unreadable one is then removed, or the next backup would
    rotate it over the readable one (`save` keeps the newest as the previous), when
    `mend` (this process is the run's writer: not another worker of several machines,
    which only reads it). Raises `TrainingError` if no backup can be read.
    """
    problems = []
    for i, name in enumerate((BACKUP, PREVIOUS)):
        path = run / name
        if not path.exists():
            continue
        try:
            arrays = _read(path)
            state = TrainState.from_json(parse_json(bytes(arrays["state"]).decode()))
        except KeyError:
            problems.append(f"{name}: it holds no training state")
            continue
        except (OSError, ValueError, TypeError, zipfile.BadZipFile, EOFError) as exc:
            problems.append(f"{name}: {exc or type(exc).__name__}")
            continue
        if prepare is not None:
            prepare(state)
        _restore(model, arrays, path)
        note = None
        if i == 1 and mend:
            (run / BACKUP).unlink(missing_ok=True)  # unreadable: never to become PREVIOUS
        if i == 1:
            why = "; ".join(problems) or f"{BACKUP} is missing: its write did not finish"
            note = (f"the newest backup was unreadable ({why}); resumed from "
                    f"the previous one, at epoch {state.epoch + 1} step {state.step}: "
                    f"the steps since (about {state.backup_every}, train.backup_every) are "
                    "trained again")
        return state, note
    raise TrainingError(
        "no readable backup to resume from" + (f" ({'; '.join(problems)})" if problems else ""),
        file=str(run), hint="start it again as a new run: cnncli train "
        f"{text.arg(run / rundir.CONFIG)}")


def _saved(arrays: dict, group: str) -> list[str]:
    """The keys of `group`'s variables in a backup, in their order."""
    return sorted((k for k in arrays if k.startswith(f"{group}/")),
                  key=lambda k: int(k.split("/")[1]))


def _read(path: Path) -> dict:
    with np.load(path, allow_pickle=False) as data:
        return {key: data[key] for key in data.files}


#: A LossScaleOptimizer's own variables (step count, rate, scale's counter, scale),
#: which Keras lists before those of the optimizer it wraps.
LOSS_SCALE_OWN = 4


def _in_groups(arrays: dict, optimizer_variables: int) -> dict:
    """The backup's arrays in today's groups: one written before 12/2026 under
    mixed_float16 held the loss scaling's variables and the optimizer's as one group, as
    Keras lists them (the scaling's first)."""
    saved = _saved(arrays, "optimizer")
    if _saved(arrays, "loss_scale") or len(saved) != optimizer_variables + LOSS_SCALE_OWN:
        return arrays
    split = {k: v for k, v in arrays.items() if not k.startswith("optimizer/")}
    for i, key in enumerate(saved):
        group, j = ("loss_scale", i) if i < LOSS_SCALE_OWN else ("optimizer",
                                                                 i - LOSS_SCALE_OWN)
        split[f"{group}/{j}"] = arrays[key]
    return split


def _restore(model, arrays: dict, path: Path) -> None:
    groups = _variables(model)
    arrays = _in_groups(arrays, len(groups["optimizer"]))
    for group, variables in groups.items():
        saved = _saved(arrays, group)
        if group == "loss_scale" and not (saved and variables):
            continue  # loss scaling added (it starts afresh) or dropped by a new precision
        if group == "metrics" and len(saved) != len(variables):
            continue  # a backup of a cnncli that compiled other metrics (the crossentropy
            # of label smoothing, 2026-12-07): running figures, reset at each epoch anyway
        if len(saved) != len(variables):
            raise TrainingError(
                f"the backup holds {len(saved)} {group} variables, the model has "
                f"{len(variables)}", file=str(path),
                hint="the run's model changed; start a new run instead of resuming")
        for key, variable in zip(saved, variables, strict=True):
            value = arrays[key]
            if tuple(value.shape) != tuple(variable.shape):
                raise TrainingError(
                    f"backup variable {key} has shape {value.shape}, the model's has "
                    f"{tuple(variable.shape)}", file=str(path),
                    hint="the run's model changed; start a new run instead of resuming")
            variable.assign(value)
