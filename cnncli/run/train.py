"""Training runs: config in, a complete run directory out, resumable at any step.

`train` plans the run (`cnncli.run.plan`: config, data, model, devices, all checked)
and compiles the model (`cnncli.run.compile`) before it creates the run directory, then
fits (`cnncli.run.loop`) with one callback (`cnncli.run.callbacks`) that keeps the
history, the best model, the backups, early stopping and the plateau schedule.

A run directory (``runs/<name>/<n>/``) holds ``config.yaml`` (resolved, with its
hash), ``model.keras`` (last), ``best.keras``, ``history.csv``, ``metrics.json``,
``curves.png``, ``logs/`` (TensorBoard), ``backup.npz`` (for ``--resume``) and
``state.json``. One process trains into it at a time (`rundir.writer`).

>>> result = train(config.load("configs/mnist.yaml"))      # doctest: +SKIP
>>> result.run, result.metrics.best.value                   # doctest: +SKIP
(PosixPath('runs/mnist/1'), 0.9888)
"""

from __future__ import annotations

import contextlib
import gc
import shutil
from dataclasses import dataclass, replace
from pathlib import Path

from cnncli import config, devices, runfolder, text
from cnncli.data import records
from cnncli.devices import distributed
from cnncli.errors import (
    ConfigChanged,
    ConfigError,
    DataError,
    DeviceError,
    NoSuchDevice,
    Terminated,
    TrainingError,
    WriteError,
    stopped_by,
)
from cnncli.model.modelfile import save_model_atomic
from cnncli.run import agreement, checkpoint, finetune, loop, record, resume, rundir
from cnncli.run.callbacks import Interrupted, RunCallback, signal_name
from cnncli.run.compile import compile_model, replica_rate
from cnncli.run.monitor import Directions
from cnncli.run.plan import Plan, absolute_paths, plan
from cnncli.run.state import EpochRow, TrainState
from cnncli.run.status import FAILED, FINISHED, INTERRUPTED, RUNNING, RunStatus
from cnncli.runtime import import_tf

__all__ = ["Interrupted", "Plan", "Reporter", "Result", "compile_model", "plan", "train"]


@dataclass
class Result:
    run: Path | None  # None on a worker of several machines: the chief writes the run
    metrics: record.RunMetrics
    history: list[EpochRow]
    task: str = ""  # a worker's task in the cluster ("worker 1") when `run` is None


class Reporter:
    """What a training run tells its watcher; the CLI passes a rich or a plain one."""

    def begin(self, plan: Plan, run: Path, resumed: bool) -> None: ...
    def epoch_begin(self, epoch: int, epochs: int, steps: int, first_step: int) -> None: ...
    def step(self, step: int, logs: dict) -> None: ...
    def epoch_end(self, row: EpochRow) -> None: ...
    def note(self, text: str) -> None: ...  # something to heed: a warning
    def info(self, text: str) -> None: ...  # something to know (a stage begins)
    def end(self) -> None: ...


def train(cfg: config.RunConfig, *, config_file: str | None = None,
          resume: str | Path | None = None, force: bool = False, auto_batch: bool = False,
          reporter: Reporter | None = None) -> Result:
    """Train according to `cfg`; with `resume`, continue that run from its last backup.

    Out of device memory, `auto_batch` halves the batch size and starts again (at most
    `devices.MAX_BATCH_HALVINGS` times; not when resuming, where the batch is the
    run's); otherwise it is a `DeviceError` naming the batch size, and the last backup
    is kept.
    """
    reporter = reporter or Reporter()
    cluster = devices.from_environment()
    if auto_batch and cluster:
        raise ConfigError("--auto-batch cannot be used when training on several machines",
                          hint="set train.batch_size to a size that fits every worker")
    with _process_state_kept():
        return _attempts(cfg, config_file, resume, force, auto_batch, reporter, cluster)


@contextlib.contextmanager
def _process_state_kept():
    """Keras' dtype policy and Python's and NumPy's random generators as they were before
    a training (it sets them: `devices.setup`, `keras.utils.set_random_seed`): a notebook's
    own models and random draws are not changed by it. (TensorFlow's global seed stays
    set: it cannot be read back.)"""
    import random

    import numpy as np

    from cnncli.model.precision import policy_kept

    python, numpy = random.getstate(), np.random.get_state()
    try:
        with policy_kept():
            yield
    finally:
        random.setstate(python)
        np.random.set_state(numpy)


def _attempts(cfg, config_file, resume, force, auto_batch, reporter, cluster) -> Result:
    """`train`'s attempts: again at half the batch size when out of memory (`auto_batch`)."""
    tf = import_tf()
    made: list[Path] = []  # the run folder an attempt made
    for attempt in range(devices.MAX_BATCH_HALVINGS + 1):
        if attempt:  # the failed attempt's model and optimizer state, before another's
            gc.collect()
        try:
            return _train(cfg, config_file=config_file, resume=resume, force=force,
                          reporter=reporter, made=made)
        except tf.errors.ResourceExhaustedError:
            batch = cfg.train.batch_size
            smaller = devices.next_batch_size(batch, attempt) if auto_batch and not resume \
                else None
            if smaller is None:
                raise devices.out_of_memory_message(
                    batch, cfg.train.device, precision=cfg.train.precision,
                    resumed=bool(resume),
                    several_machines=cluster is not None) from None
            reporter.note(f"out of memory at batch size {batch}: starting again with "
                          f"{smaller} (--auto-batch)")
            while made:  # not listed as a failed run beside the one that trains
                rundir.remove_unstarted(made.pop())
            cfg.train.batch_size = smaller
    raise AssertionError("unreachable")  # the last attempt returns or raises


def _train(cfg: config.RunConfig, *, config_file, resume, force, reporter,
           made: list[Path] | None = None) -> Result:
    """One attempt of `train`; a new run's folder is added to `made`."""
    saved = None
    if resume:
        run = rundir.find(resume)
        cluster = devices.from_environment()
        with rundir.writer(run) if cluster is None or cluster.is_chief \
                else contextlib.nullcontext():  # a second writer is refused before any work
            saved = config.load_run_config(run / rundir.CONFIG)
            absolute_paths(saved)  # as `plan` makes them (a run from before it did)
            config.inherit_older_run(cfg, saved)  # (a CONFIG given: settings made since)
        _has_backup(run)  # before the data is read, and whatever another config says
        _data_still_there(cfg, saved, run)
    try:
        p = plan(cfg, config_file=config_file)
    except NoSuchDevice as exc:  # the GPU the run recorded is not here
        if saved is not None and cfg.train.device == saved.train.device:
            raise _device_gone(exc, saved.train.device, run) from None
        raise
    try:
        with distributed.peers_watched(started=bool(resume)):  # (its first collectives)
            agreement.check_same_run(p, "resuming" if resume else "as a new run")  # before
            model = compile_model(p)  # building it, which machines do together
            ways = Directions.of(model, p.cfg.train, len(p.feed.val) > 0)  # errors here
            # come before any run folder exists
    except BaseException:
        p.feed.close()  # (its threads, caches and a pack's lock)
        raise
    with contextlib.ExitStack() as stack:
        stack.callback(p.feed.close)  # (one process may train again: a notebook)
        if resume:
            run, state = _resume(p, model, saved, rundir.find(resume), force, reporter, stack)
            agreement.check_same_run(p, f"resuming at epoch {state.epoch + 1} (step "
                                        f"{state.step})", topic="resume point")
        else:
            run, state = _start(p, stack)
            if made is not None:
                made.append(run)
        try:
            RunStatus(RUNNING).write(run)
            reporter.begin(p, run, resumed=bool(resume))
            callback = RunCallback(p, run, model, state, reporter, ways)
        except BaseException as exc:  # e.g. TensorBoard's files cannot be made: not left
            stopped = isinstance(exc, KeyboardInterrupt)  # `running` (a process gone)
            if stopped and not resume:  # before its first step: no run is left of it
                rundir.remove_unstarted(run)
                raise
            why = (f"stopped by {stopped_by(isinstance(exc, Terminated))} before this "
                   "resume's first step") if stopped else str(exc) or type(exc).__name__
            with contextlib.suppress(OSError):
                RunStatus(INTERRUPTED if stopped else FAILED, why).write(run)
            raise
        result = _fit_and_finish(p, model, state, run, callback, reporter)
        checkpoint.remove(run)  # a finished run needs no backup (tens of MB each)
        if not p.placement.is_chief:  # nobody reads a worker's copy of a finished run
            shutil.rmtree(run, ignore_errors=True)
            result.run, result.metrics = None, replace(result.metrics, run=None)  # gone
            result.task = p.placement.task
        return result


def _has_backup(run: Path) -> None:
    """The error for resuming a run that has no backup (finished, or stopped before its
    first backup)."""
    if not rundir.has_backup(run):
        finished = (run / record.METRICS).exists()
        raise ConfigError("this run has no backup to resume from" + (
            " (it finished)" if finished else " (it stopped before its first backup)"),
            file=str(run), hint=(f"use it as it is (cnncli evaluate {text.arg(run)}), or "
                                 "start "
                                 if finished else "start it again as ")
            + f"a new run: cnncli train {text.arg(run / rundir.CONFIG)}")


def _device_gone(exc: NoSuchDevice, device: str, run: Path) -> DeviceError:
    """The error for resuming a run on a machine without the device its config recorded
    (`exc`: the user did not ask for it, the run did), saying how to go on elsewhere."""
    said = f"this run trained on {device} (train.device in its {rundir.CONFIG}), but " \
        f"{exc.seen}"
    return DeviceError(said, file=str(run), hint=(
        f"to go on here: cnncli train --resume {text.arg(run)} --force --device cpu (or auto; the "
        f"device is part of the run's config, so --force); or bring the GPU back ({exc.hint})"))


def _data_still_there(cfg: config.RunConfig, saved: config.RunConfig, run: Path) -> None:
    """The error for a resume whose data is no longer where the run read it (moved?)."""
    from cnncli.data import datasets

    name = cfg.data.name
    if name == saved.data.name and not datasets.exists(name):
        raise DataError(f"the run's data is no longer at {name}", file=str(run),
                        hint=f"if it moved, resume from its new place: cnncli train --resume "
                             f"{text.arg(run)} --set data.name=NEW_PLACE --force (the data must be "
                             "the same); if it is gone, the run cannot go on")


def _cpu_threads(p: Plan) -> int:
    """The CPU threads a run computes on, each machine of a cluster of CPUs too (0 on
    GPUs: not the CPU's sums)."""
    return 0 if p.placement.gpus else p.placement.cpu_threads


def _start(p: Plan, stack: contextlib.ExitStack) -> tuple[Path, TrainState]:
    """A new run folder (on the chief; a temporary one on other workers), locked."""
    state = TrainState(backup_every=p.cfg.train.backup_every,
                       precision=p.placement.precision, replicas=p.placement.replicas,
                       data=p.feed.fingerprint(), network=p.spec.digest(),
                       cpu_threads=_cpu_threads(p))
    if not p.placement.is_chief:
        return distributed.worker_run_dir(p.placement), state
    run = rundir.create(p.cfg.output.dir, p.cfg.output.name or "run")
    stack.enter_context(rundir.writer(run))
    record.write_config(run, p.cfg)
    rundir.point_latest(run)
    return run, state


def _resume(p: Plan, model, saved: config.RunConfig, run: Path, force: bool, reporter,
            stack: contextlib.ExitStack) -> tuple[Path, TrainState]:
    """Continue `run`: the same config (or changes `--force` may apply), its backup."""
    diff = resume.changes(saved.resolved(), p.cfg.resolved())
    fixed = resume.refused(diff)
    if fixed:
        raise ConfigChanged(
            "the config differs from the run's in what its backup was made with: "
            + resume.describe({k: diff[k] for k in fixed}), file=str(run),
            ways=["resume without changing these (cnncli train --resume RUN uses the run's "
                  "own config)", ConfigChanged.NEW_RUN])
    if diff and not force:
        raise ConfigChanged("the config differs from the one this run was started with: "
                            + resume.describe(diff), file=str(run),
                            ways=["resume without changing it (cnncli train --resume RUN "
                                  "uses the run's own config)", "pass --force to apply the "
                                  "changes"])
    if p.placement.is_chief:
        stack.enter_context(rundir.writer(run))
    data = p.feed.fingerprint()

    def prepare(saved_state: TrainState) -> None:  # before the weights: the data first
        _check_same_data(saved_state.data, data, run, p.data.sample,
                         lambda: p.feed.fingerprint(absolute=True),
                         moved_from=diff.get("data.name", (None,))[0])
        _check_same_network(saved_state.network, p.spec, p.cfg.model, run)
        finetune.restore(p, model, saved_state)

    if p.placement.is_chief:  # the run's writer (`rundir.writer` above)
        checkpoint.remove_unfinished(run)
    state, note = checkpoint.load(run, model, prepare, mend=p.placement.is_chief)
    state.data = data  # the same data (checked), recorded as this version records it
    state.network = p.spec.digest()
    if note:
        reporter.note(note)
    if state.best_epoch and not (run / runfolder.BEST_MODEL).is_file():  # removed by hand
        reporter.note(f"{runfolder.BEST_MODEL}, the model of epoch {state.best_epoch} (the "
                      "best so far), is not in the run folder: it is written again only when "
                      "a later epoch beats that epoch; until then evaluate, predict and "
                      f"export use {runfolder.LAST_MODEL}, the last epoch's")
    if state.replicas != p.placement.replicas:
        raise ConfigError(
            f"this run trained {state.replicas} model replicas in step; here there would be "
            f"{p.placement.replicas}, which changes the batch of every step", file=str(run),
            hint="resume with the same devices (and number of workers) as the run had")
    threads = _cpu_threads(p)
    if state.cpu_threads and threads and state.cpu_threads != threads:
        reporter.note(f"this run trained on {text.count(state.cpu_threads, 'CPU thread')}, here "
                      f"{threads}: the CPU's kernels split their sums otherwise, so it goes "
                      "on with figures as good but not to the bit those of a run never "
                      "stopped; resume on as many CPUs (taskset, the container's limit) for "
                      "an exact resume")
    state.cpu_threads = threads
    # a last epoch `train.steps` cut short counts its steps, not a whole epoch's: the run
    # trained up to its own config's steps, no more
    ran = saved.train.steps or saved.train.planned_epochs * p.steps_per_epoch
    done = min(state.global_step(p.steps_per_epoch), ran)
    if done > p.total_steps or (done == p.total_steps and state.step):  # --force with
        # fewer epochs or steps than were trained (or ending mid-epoch: no epoch's end)
        raise ConfigError(
            f"this run has trained {done:,} steps already ({text.count(state.epoch, 'epoch')}"
            + (f" and {state.step:,} steps" if state.step else "") + f"), and the config "
            f"asks for {p.total_steps:,} in all: nothing would be left to train", file=str(run),
            hint="ask for more epochs (or steps) than it has done, or use the run as it is "
                 "(cnncli evaluate RUN)")
    if done < state.global_step(p.steps_per_epoch) and p.total_steps > done:
        spe = p.steps_per_epoch  # the backup's last epoch ended where `train.steps` did
        raise ConfigError(
            f"this run's last epoch ({state.epoch}) was cut short by its `train.steps` "
            f"({ran:,}) after {done - (state.epoch - 1) * spe:,} of its {spe:,} steps, and "
            f"its backup was made at that end: the rest of the epoch cannot be trained as "
            f"one run of {p.total_steps:,} steps would", file=str(run),
            hint=f"resume it with its own {ran:,} steps (cnncli train --resume {text.arg(run)}, no "
                 "--force: its results are saved, with no more training), or start a new "
                 "run with more steps")
    if done == p.total_steps or state.stopped_early:
        reporter.note(("this run had stopped early" if state.stopped_early else
                       "this run had trained all its steps") + ", but its results were not "
                      "all saved (the command stopped while saving them): they are saved "
                      "now, with no more training" if not diff else
                      f"the run ends at the {text.count(state.epoch, 'epoch')} it has "
                      "trained: its results are saved, with no more training")
    if diff:
        _apply(p, model, state, diff, run, reporter)
    return (run if p.placement.is_chief else distributed.worker_run_dir(p.placement)), state


def _check_same_network(recorded: str, spec, model, run: Path) -> None:
    """Refuse to resume with a network other than the run's (`model`: the config's
    `model:`): its spec file edited since the run started (the config names the file),
    what `model.from` names replaced, or a built-in network that another version of
    cnncli defines otherwise. The backup's weights are for the run's network; loaded into
    another of the same shapes (an activation changed), they would go on silently as
    something else."""
    if not recorded or recorded == spec.digest():  # (not recorded before 2026-12-07)
        return
    from cnncli.model import architectures

    hint = "resume with the network the run started with, or start a new run"
    if spec.file and Path(spec.file).parent == architectures.HERE:
        what = (f"the built-in network '{spec.name}' is defined otherwise in this version "
                "of cnncli")
        hint = "resume with the cnncli version the run started with, or start a new run"
    elif isinstance(model, str):
        what = f"its spec file, {model}, was changed since the run started"
        hint = ("put the spec file back as it was when the run started (the backup's "
                "weights are for that network), or start a new run")
    elif isinstance(model, config.ModelSection):
        what = f"what `model.from` names ({model.from_}) changed since the run started"
    else:
        what = "its definition changed since the run started"
    raise ConfigError(f"the network is not the one this run's backup was made with: {what}",
                      file=str(run), hint=hint)


def _check_same_data(recorded: dict, now: dict, run: Path, sample: bool = False,
                     by_full_paths=None, moved_from: str | None = None) -> None:
    """Refuse to resume on data other than the run's (files or classes added, removed or
    renamed, other labels): the backup's place in the data order would point elsewhere.
    The data's folder may have moved. `sample`: the data read now is the bundled MNIST
    sample (the full set not found); `by_full_paths()`: the fingerprint of the data as
    older backups recorded it (files by their full paths); `moved_from`: where the run
    read its data, when it is read from elsewhere now."""
    if not recorded and moved_from:  # (not recorded by backups made before 2026-12-05)
        raise DataError("this run's backup does not record its data (cnncli before 2026-12-05 "
                        "made it): it can be resumed only on the data where it was read, "
                        f"{moved_from}", file=str(run),
                        hint=f"put the data back at {moved_from}, and resume without "
                             "changing `data.name`")
    if not recorded or recorded == now:
        return
    legacy = "paths" not in recorded  # made by cnncli before 2026-12-05: full paths
    if legacy and by_full_paths is not None and recorded == by_full_paths():
        return
    counts = (f"it had {recorded['train']:,} training and {recorded['validation']:,} "
              f"validation images, now {now['train']:,} and {now['validation']:,}"
              if (recorded["train"], recorded["validation"]) != (now["train"], now["validation"])
              else "as many images as before, but other files, images or labels")
    if sample:
        raise DataError(f"the data is not the one this run trained on ({counts}): the full "
                        "MNIST was not found, and the bundled 5,000-digit sample was read",
                        file=str(run), hint="resume where the full MNIST is found (online, or "
                                            "--data-dir DIR holding mnist.npz)")
    older = (f"; a backup made by cnncli before 2026-12-05 knows its files by their full "
             f"paths: resume it once with the data at {moved_from}, then it may move"
             if moved_from and legacy and (recorded.get("train"), recorded.get("validation"))
             == (now["train"], now["validation"]) else "")
    raise DataError(f"the data is not the one this run trained on ({counts})",
                    file=str(run), hint="put the data back as it was when the run started "
                                        "(a damaged image may be replaced, not removed), or "
                                        "start a new run on the data as it is now" + older)


def _apply(p: Plan, model, state: TrainState, diff: dict, run: Path, reporter) -> None:
    """Apply what `--force` accepted, and record it (state, config.yaml)."""
    said = resume.describe(diff)
    if "train.optimizer.learning_rate" in diff and state.stage:
        said += (" (the fine-tuning stage goes on at train.fine_tune.learning_rate, "
                 f"{p.cfg.train.fine_tune.learning_rate:g})")
    elif "train.optimizer.learning_rate" in diff:
        rate = model.optimizer.learning_rate  # a schedule was made with the new rate
        if hasattr(rate, "assign"):  # a constant rate is a restored variable
            rate.assign(replica_rate(p, p.cfg.train.optimizer.learning_rate))
    state.precision = p.placement.precision
    state.resumes.append({"epoch": state.epoch + 1, "step": state.step,
                          "changed": {k: list(v) for k, v in diff.items()}})
    if p.placement.is_chief:
        record.write_config(run, p.cfg)
    reporter.note(f"--force: continuing with {said} (recorded in config.yaml and "
                  "metrics.json)")


def _fit_and_finish(p: Plan, model, state: TrainState, run: Path, callback,
                    reporter) -> Result:
    """Train, then save the results. A Ctrl-C or SIGTERM while the results are saved
    (or at the last epoch's end) lets them be saved: the run ends finished."""
    relay = distributed.SignalRelay(callback, lambda: (p.feed.failures, p.feed.tried)) \
        if p.placement.kind == "multiworker" else None
    signals = relay or callback  # where the signal handler records a Ctrl-C or SIGTERM
    try:
        with loop.signals_to(signals):
            loop.fit(p, model, state, callback, relay)
            result = _finish(p, model, state, run, callback)
        if signals.signal:
            reporter.note(f"{signal_name(signals.signal)} came as the run's last steps ran "
                          "(or after them): they were finished and the run saved")
        return result
    except BaseException as exc:
        error = exc
        if isinstance(exc, KeyboardInterrupt) and signals.signal:  # a second one: at once
            error = Interrupted(signals.signal, run,
                                resume_as=distributed.resume_name(p.placement, run))
        elif p.feed.records is not None and (said := records.read_error(exc,
                                                                          p.feed.records)):
            error = said  # a damaged shard (found by reading each once), a record
        elif isinstance(exc, (OSError, WriteError)):  # history.csv, a plot, a model file
            error = _write_error(run, exc)
        status = INTERRUPTED if isinstance(error, Interrupted) else FAILED
        with contextlib.suppress(OSError):  # e.g. the same full disk: keep the real error
            RunStatus(status, str(error)).write(run)  # what the user is told (runs shows it)
        with contextlib.suppress(Exception):  # (a full disk: the real error is said)
            callback.outputs.draw(state.history)  # the epochs done
        if error is not exc:
            raise error from None
        raise
    finally:
        reporter.end()


def _finish(p: Plan, model, state: TrainState, run: Path, callback) -> Result:
    # every epoch's row: the last one's write may have failed (a full disk) before the
    # resume that saves the results now
    callback.outputs.write_history(state.history)
    callback.outputs.draw(state.history)  # curves.png of every epoch
    save_model_atomic(model, run / runfolder.LAST_MODEL, p.meta())
    metrics = record.final_metrics(p, run, state, callback.monitor, model)
    try:
        metrics.write(run)
        RunStatus(FINISHED).write(run)
    except OSError as exc:
        raise _write_error(run, exc) from None
    return Result(run=run, metrics=metrics, history=state.history)


def _write_error(run: Path, exc: OSError | WriteError) -> TrainingError:
    """What to say when a file of the run could not be written: the backup is kept."""
    if isinstance(exc, WriteError):  # it says which file
        what = f"{exc.message} ({exc.file})" if exc.file else exc.message
    else:
        what = f"cannot write to the run folder: {exc.strerror or exc}" + (
            f" ({exc.filename})" if getattr(exc, "filename", None) else "")
    return TrainingError(what, file=str(run), hint=rundir.after_write_failure(run))
