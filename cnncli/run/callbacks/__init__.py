"""The one Keras callback of a run, and the jobs it calls in order.

`RunCallback` counts steps, stops on a NaN loss, a signal or images that cannot be
decoded (`Feed.unreadable_error`), and at each epoch's end
builds the history row, then calls each job: the best model (`best`), early stopping
and the plateau schedule (`stopping`), a backup (`backup`), the files people read
(`outputs`), and the reporter (progress lines). Each job keeps its counters in the
run's `TrainState`, so a resumed run continues exactly.
"""

from __future__ import annotations

import math
import os
import signal
import time
from pathlib import Path

from cnncli import text
from cnncli.devices import distributed
from cnncli.errors import DataError, Stopped, TrainingError, stopped_by
from cnncli.run import finetune, rundir, schedules
from cnncli.run.callbacks.backup import Backups, weights_finite
from cnncli.run.callbacks.best import BestModel
from cnncli.run.callbacks.outputs import Outputs
from cnncli.run.callbacks.stopping import EarlyStopping, Plateau
from cnncli.run.monitor import Directions, best_monitor
from cnncli.run.state import EpochRow, TrainState
from cnncli.runtime import import_keras
from cnncli.text import some

keras = import_keras()

__all__ = ["Interrupted", "RunCallback", "best_monitor"]


def signal_name(signum: int) -> str:
    """How people call the signal: Ctrl-C (SIGINT) or SIGTERM."""
    return stopped_by(signum != signal.SIGINT)


class Interrupted(Stopped):
    """Training stopped by Ctrl-C or SIGTERM: after the current step, writing a backup;
    or, at a second one (no `where`), at once, the last backup kept."""

    def __init__(self, signum: int, run: Path, where: str | None = None,
                 resume_as: str | None = None):
        self.signum = signum
        name = signal_name(signum)
        terminated = signum != signal.SIGINT
        resume_as = resume_as or text.arg(run)  # another worker's: the chief's run
        if where is None:
            again = f"cnncli train {text.arg(run / rundir.CONFIG)}" \
                if resume_as == text.arg(run) else \
                "the same command on every worker"  # (another worker: its own folder)
            hint = (f"resume from the last backup with: cnncli train --resume {resume_as}"
                    if rundir.has_backup(run) else f"there was no backup yet: start it again: "
                    f"{again}")
            super().__init__(f"{name} twice: training stopped at once, without a new backup",
                             file=str(run), hint=hint, terminated=terminated)
        else:
            super().__init__(f"{name}: training stopped at {where} after writing a backup",
                             file=str(run),
                             hint=f"resume with: cnncli train --resume {resume_as}",
                             terminated=terminated)


class RunCallback(keras.callbacks.Callback):
    """Steps, NaN and signal handling, the history row, and the epoch-end jobs.

    Args:
        p: the run's plan (`cnncli.run.plan.Plan`).
        run: the run folder.
        model: the compiled model (its metrics hold a resumed epoch's running values).
        state: the run's state, updated in place.
        reporter: progress lines (`cnncli.run.train.Reporter`).
        ways: the figure the best model follows and the direction (``min``/``max``) of
            it and of early stopping's (`Directions`), worked out before the run folder
            was made.
    """

    def __init__(self, p, run: Path, model, state: TrainState, reporter, ways: Directions):
        super().__init__()
        self.p, self.run, self.state, self.reporter = p, run, state, reporter
        self.signal = None  # set by the signal handler (cnncli.run.loop.signals_to)
        self.stop = None  # why training stopped: "nan", "signal", "early", "unreadable"
        self.nan_at, self.nan_weights = None, False  # (False: the loss was not finite)
        self.unreadable: DataError | None = None  # why, when images could not be decoded
        self.cluster_unreadable = (0, 0)  # several machines: images failed, tried on all
        self.first_step = 0  # the step an epoch (re)starts at: > 0 when resuming mid-epoch
        t = p.cfg.train
        self.monitor = ways.monitor
        self.backups = Backups(run, model, state, p.steps_per_epoch, t.backup_every)
        self.best = BestModel(run, state, self.monitor, ways.best, p.meta())
        self.early = EarlyStopping(t.early_stopping, state, ways.early_stopping) \
            if t.early_stopping else None
        self.plateau = Plateau(t.schedule, state) if t.schedule.name == "plateau" else None
        self.outputs = Outputs(run)
        self.cache_noted = False  # the image cache's failure is said once
        self.changed_noted = False  # image files changed mid-run: said once
        self.unreadable_new = []  # images found unreadable, not yet named

    # -- steps ----------------------------------------------------------------------------
    def on_epoch_begin(self, epoch, logs=None):
        self.backups.restore_metrics(self.model)
        self.state.epoch = epoch
        # resumed mid-epoch: its time before the backup counts in the epoch's row too
        self.epoch_start = time.perf_counter() - (self.state.epoch_seconds if self.first_step
                                                  else 0.0)
        self.validation_seconds = 0.0  # of the epoch's time: not training (images/s)
        self.epoch_steps = 0
        self.reporter.epoch_begin(epoch, self.p.epochs, self.p.steps_in(epoch), self.first_step)

    def on_train_batch_end(self, batch, logs=None):
        # With steps_per_execution > 1 Keras calls this once per execution, with `batch`
        # the index of its last step: count steps from `batch`, not from calls.
        logs = logs or {}
        step = self.first_step + batch + 1
        self.epoch_steps = step - self.first_step
        if not math.isfinite(float(logs.get("loss", 0.0))):
            self.nan_at = (self.state.epoch, step)
            self._halt("nan")
            return
        self.state.step = step
        if self._unreadable_images():
            return
        self.reporter.step(step, logs)
        if step >= self.p.steps_in(self.state.epoch):
            return  # the epoch's end comes next: its backup and a signal are handled there
        if self.signal:
            self._backup()
            self._halt("signal")
        elif self.backups.due():
            self._backup()

    def on_test_begin(self, logs=None):  # the validation at an epoch's end
        self.test_start = time.perf_counter()

    def on_test_end(self, logs=None):
        self.validation_seconds += time.perf_counter() - self.test_start

    # -- epochs ---------------------------------------------------------------------------
    def on_epoch_end(self, epoch, logs=None):
        if self.stop in ("nan", "signal", "unreadable") or self._unreadable_images(True) \
                or self.state.step < self.p.steps_in(epoch):
            return  # an interrupted epoch is not finished: no history row
        if not weights_finite(self.model):  # before any model file is written
            self.nan_at, self.nan_weights = (epoch, self.state.step), True
            self._halt("nan")
            return
        row = self._row(epoch, logs or {})
        self.state.history.append(row)
        self.best.update(self.model, row)
        stopping = None  # early, not after the last epoch: said after the epoch's line
        if self.early and self.early.should_stop(row) and epoch + 1 < self.p.epochs:
            self.state.stopped_early = True
            self._halt("early")
            stopping = self.early.note(epoch + 1, self.p.epochs, bool(
                self.p.cfg.train.fine_tune and self.state.stage == 0))
        lowered = self.plateau.update(self.model, row) if self.plateau else None
        if epoch + 1 >= self.p.epochs or self.state.stopped_early:
            lowered = None  # (lowered all the same: a run taken further goes on from it)
        self.state.epoch, self.state.step = epoch + 1, 0
        self._backup(checked=True)  # (its weights were checked above)
        if self.stop == "nan":
            return
        self.outputs.write(self.state.history, row)
        self.reporter.epoch_end(row)
        for note in filter(None, (lowered, stopping)):  # said after the epoch they follow
            self.reporter.note(note)
        self._name_unreadable()
        if not self.changed_noted and (changed := self.p.feed.changed_note):
            self.changed_noted = True
            self.reporter.note(changed)
        if self.p.feed.cache_error and not self.cache_noted:
            self.cache_noted = True
            self.reporter.note(f"{self.p.feed.cache_error}; images are decoded every epoch "
                               "from now on (slower, nothing lost)")
        if self.signal and self.state.epoch < self.p.epochs:  # after the last: it finishes
            self._halt("signal")

    def _row(self, epoch: int, logs: dict) -> EpochRow:
        seconds = time.perf_counter() - self.epoch_start
        images = (self.first_step + self.epoch_steps) * self.p.global_batch  # resumed: all
        self.first_step = 0
        self.state.train_seconds += seconds
        rate = schedules.last_step_rate(self.model.optimizer)  # what this epoch ended with
        training = max(seconds - getattr(self, "validation_seconds", 0.0), 1e-9)
        row = {"epoch": epoch + 1, **{k: float(v) for k, v in logs.items()},
               "learning_rate": rate, "seconds": round(seconds, 3),  # validation included
               "images_per_s": round(images / training, 1)}  # training images, training time
        self._record_unreadable()
        if self.state.unreadable:  # files that could not be decoded: skipped, and said
            row["unreadable_images"] = len(self.state.unreadable)  # resumes included
        row.update(finetune.row_fields(self.p, self.state))  # the stage, with two
        return row

    def _record_unreadable(self) -> None:
        """The images found unreadable since the last look, into the run's state (its
        backups carry them), to be named at the epoch's end."""
        # named below the data's folder: the same names after the data moved
        root = os.path.join(self.p.cfg.data.name, "")
        why = {str(exc.file).removeprefix(root): exc for exc in self.p.feed.unreadable()}
        self.unreadable_new += [why[f] for f in self.state.add_unreadable(why)]

    def _name_unreadable(self) -> None:
        """Which images could not be decoded (the epoch line counts them), each file once
        in the run: the first three found since the last epoch, and how many more."""
        new, self.unreadable_new = self.unreadable_new, []
        if not new:
            return
        examples = some((f"{exc.file}: {exc.message}" for exc in new), sep="; ")
        self.reporter.note(f"skipped {text.count(len(new), 'image')} that could not be decoded: "
                           f"{examples}")

    # -- stopping -------------------------------------------------------------------------
    def _unreadable_images(self, epoch_end: bool = False) -> bool:
        """Stop (keeping the last backup) when too many images could not be decoded, or
        one with `data.strict`. With several machines, each decodes only its own part:
        all judge the sums over the machines (`cluster_unreadable`, set by
        `distributed.SignalRelay` at the same step everywhere), and stop together."""
        several = self.p.placement.kind == "multiworker"
        totals = self.cluster_unreadable if several else None
        if not (totals[0] if several else self.p.feed.failures):
            return False
        self.unreadable = self.p.feed.unreadable_error(self.p.cfg.data.strict, epoch_end,
                                                       totals)
        if self.unreadable is not None:
            self._halt("unreadable")
        return self.unreadable is not None

    def _backup(self, checked: bool = False) -> None:
        self._record_unreadable()  # a resume from this backup counts them too
        self.state.epoch_seconds = time.perf_counter() - self.epoch_start \
            if self.state.step else 0.0  # (mid-epoch; 0 at an epoch's end)
        if not self.backups.save(self.model, checked=checked):
            self.nan_at, self.nan_weights = (self.state.epoch, self.state.step), True
            self._halt("nan")

    def _halt(self, why: str) -> None:
        self.stop = self.stop or why
        self.model.stop_training = True

    def raise_if_stopped(self) -> None:
        if self.stop == "nan":
            raise self._nan_error()
        if self.stop == "signal":
            raise Interrupted(self.signal, self.run, self._where(),
                              distributed.resume_name(self.p.placement, self.run))
        if self.stop == "unreadable":
            e, then = self.unreadable, "start the run again"
            if self.backups.last > 0:
                then = ("resume with: cnncli train --resume "
                        f"{distributed.resume_name(self.p.placement, self.run)}") + (
                    " (add --set data.strict=false --force to skip such files)"
                    if self.p.cfg.data.strict else "")
            raise DataError(f"{e.message}; training stopped at {self._where()}, and "
                            f"{self._kept()}",
                            file=e.file or self.p.cfg.data.name, hint=f"{e.hint}; then {then}")

    def _where(self) -> str:
        """Where the run stopped: ``epoch 3, step 40``, or, between two epochs, ``the end
        of epoch 2`` (not ``epoch 3, step 0``)."""
        if self.state.step == 0 and self.state.epoch > 0:
            return f"the end of epoch {self.state.epoch}"
        return f"epoch {self.state.epoch + 1}, step {self.state.step}"

    def _kept(self, what: str = "backup") -> str:
        return (f"the last {what} was kept" if self.backups.last > 0 else
                "no backup was written yet (it happened before the first one)")

    def _nan_error(self) -> TrainingError:
        epoch, step = self.nan_at
        kept = self._kept("good backup")
        what = "weights" if self.nan_weights else "loss"  # (a step's loss comes first)
        return TrainingError(
            f"the {what} became NaN or infinite at epoch {epoch + 1}, step {step}; training "
            f"stopped and {kept}", file=str(self.run), hint=nan_hint(self.p.cfg.train,
                                                                    self.p.placement))


def nan_hint(t, placement) -> str:
    """What most likely made the loss NaN, given the settings, as a hint."""
    causes = []
    if t.weight_decay >= 1:
        causes.append(f"`train.weight_decay: {t.weight_decay:g}` is very large (try 1e-4)")
    if placement.precision == "mixed_float16":
        slow = [g for g in placement.gpus if (g.compute_capability or (0, 0)) < (8, 0)]
        causes.append("float16 overflows easily: try --precision " + (
            "float32" if slow else "mixed_bfloat16 or float32"))  # bfloat16 is slow on < 8.0
    if t.optimizer.learning_rate >= 0.1:
        causes.append(f"the learning rate {t.optimizer.learning_rate:g} is high: lower it "
                      "(--lr)")
    if not causes:
        causes.append("lower the learning rate (--lr), or check the data for bad values")
    return "; ".join(causes)
