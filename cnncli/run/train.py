"""Training runs: config in, a complete run directory out, resumable at any step.

`train` validates everything (config, data, model) before it creates the run
directory, then fits with Keras on one tf.data iterator per stretch of epochs;
`RunCallback` does the rest: history, best model, backups, early stopping,
plateau, NaN and Ctrl-C/SIGTERM handling, progress.

A run directory (``runs/<name>/<n>/``) holds ``config.yaml`` (resolved, with its
hash), ``model.keras`` (last), ``best.keras``, ``history.csv``, ``metrics.json``,
``curves.png``, ``logs/`` (TensorBoard), ``backup.npz`` (for ``--resume``) and
``state.json``.
"""

from __future__ import annotations

import contextlib
import csv
import io
import math
import os
import platform
import signal
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml

from cnncli import __version__, config, devices, files
from cnncli.data import datasets, pipeline
from cnncli.devices import distributed
from cnncli.errors import EXIT_SIGINT, EXIT_SIGTERM, CnnError, ConfigError, DataError, TrainingError
from cnncli.model import builder
from cnncli.model import spec as specs
from cnncli.model.meta import ModelMeta
from cnncli.model.modelfile import save_model_atomic
from cnncli.run import checkpoint, optimizers, rundir, schedules
from cnncli.runtime import import_keras, import_tf

keras = import_keras()
tf = import_tf()

HISTORY_FIELDS = ["epoch", "loss", "accuracy", "val_loss", "val_accuracy", "learning_rate",
                  "seconds", "images_per_s"]


class Interrupted(CnnError):
    """Training stopped by Ctrl-C or SIGTERM after writing a backup."""

    def __init__(self, signum: int, run: Path, where: str):
        self.signum = signum
        name = "Ctrl-C" if signum == signal.SIGINT else "SIGTERM"
        super().__init__(f"{name}: training stopped at {where} after writing a backup",
                         file=str(run), hint=f"resume with: cnncli train --resume {run}")
        self.exit_code = EXIT_SIGINT if signum == signal.SIGINT else EXIT_SIGTERM


@dataclass
class Plan:
    """Everything a run needs, worked out (and checked) before anything is written."""

    cfg: config.RunConfig
    data: datasets.Dataset
    spec: object
    placement: devices.Placement
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    preprocessing: str
    steps_per_epoch: int
    total_steps: int
    epochs: int
    steps_per_execution: int
    warnings: list[str] = field(default_factory=list)


@dataclass
class Result:
    run: Path
    metrics: dict
    history: list[dict]


class Reporter:
    """What a training run tells its watcher; the CLI passes a rich or a plain one."""

    def begin(self, plan: Plan, run: Path, resumed: bool) -> None: ...
    def epoch_begin(self, epoch: int, epochs: int, steps: int, first_step: int) -> None: ...
    def step(self, step: int, logs: dict) -> None: ...
    def epoch_end(self, row: dict) -> None: ...
    def note(self, text: str) -> None: ...
    def end(self) -> None: ...


def plan(cfg: config.RunConfig, *, config_file: str | None = None, device: str = "auto",
         precision: str = "auto") -> Plan:
    """Load the data, check the model against it, and work out epochs and steps."""
    placement = devices.setup(device, precision, multiworker=True)
    d = cfg.data
    data = datasets.load(d.name, data_dir=d.data_dir, offline=d.offline, strict=d.strict,
                         image_size=tuple(d.image_size) if d.image_size else None)
    network = specs.from_run_config(cfg, file=config_file, classes=data.num_classes)
    built = builder.build_checked(network)  # validates the spec before any run folder exists
    classes = built.model.output.shape[-1]
    if data.num_classes > classes:
        raise DataError(
            f"the data has {data.num_classes} classes but the model outputs {classes}",
            file=data.source, hint="set `model.classes` to the number of classes, or remove it "
            "to use the dataset's")
    x, y = data.x_train, data.y_train
    if d.limit:
        x, y = x[:d.limit], y[:d.limit]
    x_train, y_train, x_val, y_val = pipeline.split_validation(x, y, d.validation_split,
                                                               cfg.train.seed)
    batch = placement.global_batch_size(cfg.train.batch_size)
    steps_per_epoch = len(x_train) // batch
    if steps_per_epoch < 1:
        raise ConfigError(
            f"the {len(x_train)} training images are fewer than one batch of {batch}",
            hint="use a smaller --batch-size or more data")
    t = cfg.train
    total = t.steps or (t.epochs or 10) * steps_per_epoch
    per_call = steps_per_execution(t.steps_per_execution, steps_per_epoch, total,
                                   one_device=placement.kind in ("cpu", "gpu"))
    if per_call > 1 and placement.kind == "mirrored":
        raise ConfigError(
            f"`train.steps_per_execution: {per_call}` fails in Keras' fit over several "
            "devices (keras-team/keras#19246)", hint="use `auto` (1 there) or 1")
    uneven = steps_per_epoch % per_call or total % steps_per_epoch % per_call
    if uneven and placement.kind != "multiworker":
        # Keras' fit overruns an epoch whose steps are not a multiple of it (Keras 3.15);
        # distributed.fit, used on several machines, cuts the last execution instead
        raise ConfigError(
            f"`train.steps_per_execution` ({t.steps_per_execution}) must divide the "
            f"{steps_per_epoch} steps of an epoch (and `train.steps`)",
            hint="pick a divisor of the steps per epoch, or 1")
    preprocessing = d.preprocessing or network.preprocessing
    warnings = list(built.warnings) + _memory_warning(built, placement, cfg.train.batch_size)
    return Plan(cfg, data, network, placement, x_train, y_train, x_val, y_val, preprocessing,
                steps_per_epoch, total, math.ceil(total / steps_per_epoch), per_call, warnings)


#: What ``steps_per_execution: auto`` tries, largest first. 4 steps per call into
#: TensorFlow gave the lecture's ConvNet 3-5% more images/s on a 2-core CPU, 16 no
#: more than 4 (bench/LEVERS.md): less Python between steps.
AUTO_STEPS_PER_EXECUTION = (4, 2)


def steps_per_execution(setting: int | str, steps_per_epoch: int, total_steps: int,
                        one_device: bool = True) -> int:
    """Steps per call into TensorFlow: `setting`, or for ``"auto"`` the largest of
    `AUTO_STEPS_PER_EXECUTION` that divides an epoch's steps and the last epoch's
    (Keras' fit would run past an epoch's end otherwise), else 1. ``auto`` is 1
    on several devices: there Keras 3.15's fit fails with more (keras-team/keras#19246).

    >>> steps_per_execution("auto", 468, 936), steps_per_execution("auto", 421, 2105)
    (4, 1)
    >>> steps_per_execution(3, 468, 936)
    3
    """
    if setting != "auto":
        return int(setting)
    if not one_device:
        return 1
    last = total_steps % steps_per_epoch
    return next((n for n in AUTO_STEPS_PER_EXECUTION
                 if steps_per_epoch % n == 0 and last % n == 0), 1)


def _memory_warning(built, placement: devices.Placement, batch_size: int) -> list[str]:
    """Warn before training when a step will not fit the GPU's memory."""
    memory = min((g.memory_bytes for g in placement.gpus if g.memory_bytes), default=None)
    if memory is None:
        return []
    from cnncli.model import summary

    s = summary.summarize(built)
    per_value = 2 if placement.precision.startswith("mixed") else 4
    estimate = devices.estimate_batch_memory(s.params, s.forward_bytes // 4, batch_size,
                                             bytes_per_value=per_value)
    warning = devices.check_fits(estimate, memory)
    return [warning] if warning else []


def compile_model(p: Plan):
    """Build and compile the model of a plan, seeded, under the placement's strategy."""
    t = p.cfg.train
    keras.utils.set_random_seed(t.seed)
    with devices.strategy(p.placement).scope():
        model = builder.build(p.spec)
        lr = t.optimizer.learning_rate
        if p.placement.replicas > 1 and t.scale_lr:
            lr = devices.scale_learning_rate(lr, p.placement.replicas)
        s = t.schedule
        rate = schedules.make(s.name, lr, steps_per_epoch=p.steps_per_epoch,
                              total_steps=p.total_steps, warmup_epochs=s.warmup_epochs,
                              step_epochs=s.step_epochs, factor=s.factor, min_lr=s.min_lr)
        jit = t.jit_compile
        with warnings.catch_warnings():
            if jit == "auto":  # a model XLA cannot compile quietly runs without it
                jit = devices.auto_jit_compile(p.placement)
                warnings.filterwarnings("ignore", "Model doesn't support `jit_compile=True`")
            model.compile(optimizer=_optimizer(t, rate), loss=_loss(t),
                          metrics=list(t.metrics), steps_per_execution=p.steps_per_execution,
                          jit_compile=jit)
        # Build the optimizer and the metrics now, so a backup can be restored into them.
        model.optimizer.build(model.trainable_variables)
        labels = p.y_train[:1]
        if _one_hot(p):
            labels = keras.utils.to_categorical(labels, _one_hot(p))
        try:
            distributed.build_metrics(model, pipeline.preprocess_batch(
                p.x_train[:1], p.spec.input, p.preprocessing), labels)
        except ValueError as exc:  # Keras resolves metric names here
            raise ConfigError(f"`train.metrics` {list(t.metrics)}: "
                              f"{str(exc).splitlines()[0]}",
                              hint="use Keras metric names, e.g. [accuracy]") from None
    return model


def _optimizer(t: config.TrainSection, rate):
    extra = t.optimizer.model_extra or {}
    cfg = {"learning_rate": rate, **extra}
    if t.weight_decay:
        cfg["weight_decay"] = t.weight_decay
    try:
        return optimizers.get(t.optimizer.name, cfg)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"`train.optimizer`: {str(exc).splitlines()[0]}",
                          hint="use a Keras optimizer name (adam, adamw, sgd, rmsprop, ...) "
                          "and its own argument names") from None


def _loss(t: config.TrainSection):
    if t.label_smoothing:  # Keras smooths only one-hot labels: the pipeline makes them
        if t.loss != "sparse_categorical_crossentropy":
            raise ConfigError("`train.label_smoothing` works with the default loss only",
                              hint="remove `train.loss` or `train.label_smoothing`")
        return keras.losses.CategoricalCrossentropy(label_smoothing=t.label_smoothing)
    try:
        return keras.losses.get(t.loss)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"`train.loss`: {str(exc).splitlines()[0]}",
                          hint="use a Keras loss name, e.g. sparse_categorical_crossentropy") \
            from None


def _one_hot(p: Plan) -> int | None:
    """Classes to one-hot encode the labels over, when label smoothing needs it."""
    return p.spec.classes if p.cfg.train.label_smoothing else None


def train(cfg: config.RunConfig, *, config_file: str | None = None, device: str = "auto",
          precision: str = "auto", resume: str | Path | None = None, force: bool = False,
          auto_batch: bool = False, reporter: Reporter | None = None) -> Result:
    """Train according to `cfg`; with `resume`, continue that run from its last backup.

    Out of device memory, `auto_batch` halves the batch size and starts again (at most
    `devices.MAX_BATCH_HALVINGS` times); otherwise it is a `DeviceError` naming the
    batch size, and the last backup is kept.
    """
    reporter = reporter or Reporter()
    if auto_batch and devices.parse_tf_config(os.environ.get("TF_CONFIG", "")):
        raise ConfigError("--auto-batch cannot be used when training on several machines",
                          hint="set train.batch_size to a size that fits every worker")
    for attempt in range(devices.MAX_BATCH_HALVINGS + 1):
        try:
            return _train(cfg, config_file=config_file, device=device, precision=precision,
                          resume=resume, force=force, reporter=reporter)
        except tf.errors.ResourceExhaustedError:
            batch = cfg.train.batch_size
            smaller = devices.next_batch_size(batch, attempt) if auto_batch else None
            if smaller is None:
                raise devices.out_of_memory_message(batch) from None
            reporter.note(f"out of memory at batch size {batch}: starting again with "
                          f"{smaller} (--auto-batch)")
            cfg.train.batch_size = smaller
    raise AssertionError("unreachable")  # the last attempt returns or raises


def _train(cfg: config.RunConfig, *, config_file, device, precision, resume, force,
           reporter) -> Result:
    p = plan(cfg, config_file=config_file, device=device, precision=precision)
    model = compile_model(p)
    state = _fresh_state(p)
    chief = distributed.is_chief(p.placement)  # False on every multi-worker task but one
    if resume:
        run = rundir.find(resume)
        _check_same_config(run, cfg, force)
        if not rundir.has_backup(run):
            raise ConfigError("this run has no backup to resume from" + (
                " (it finished)" if (run / "metrics.json").exists() else ""), file=str(run),
                hint="start a new run with `cnncli train CONFIG`")
        state, note = checkpoint.load(run, model)
        if note:
            reporter.note(note)
        before, now = state.get("precision"), p.placement.precision
        if before and before != now:
            reporter.note(f"this run trained in {before} and goes on in {now}, so the rest "
                          "will differ slightly from an uninterrupted run; "
                          f"`--precision {before}` keeps it")
            state["precision"] = now
        if not chief:
            run = distributed.worker_run_dir(p.placement)
    elif chief:
        run = rundir.create(cfg.output.dir, cfg.output.name or "run")
        _write_config(run, cfg)
        rundir.point_latest(run)
    else:
        run = distributed.worker_run_dir(p.placement)
    files.write_json(run / rundir.STATE, {"status": "running"})
    reporter.begin(p, run, resumed=bool(resume))
    callback = RunCallback(p, run, model, state, reporter)
    relay = distributed.SignalRelay(callback) if p.placement.kind == "multiworker" else None
    try:
        with _signals_to(relay or callback):
            _fit(p, model, state, callback, relay)
    except BaseException as exc:
        status = "interrupted" if isinstance(exc, Interrupted) else "failed"
        with contextlib.suppress(OSError):  # e.g. the same full disk: keep the real error
            files.write_json(run / rundir.STATE, {"status": status, "error": str(exc)})
        if isinstance(exc, OSError):
            raise _write_error(run, exc) from None
        raise
    finally:
        reporter.end()
    save_model_atomic(model, run / "model.keras", model_meta(p))
    metrics = _final_metrics(p, run, state, callback)
    try:
        files.write_json(run / "metrics.json", metrics)
        files.write_json(run / rundir.STATE, {"status": "finished"})
    except OSError as exc:
        raise _write_error(run, exc) from None
    checkpoint.remove(run)  # a finished run needs no backup (tens of MB each)
    return Result(run=run, metrics=metrics, history=state["history"])


def _write_error(run: Path, exc: OSError) -> TrainingError:
    return TrainingError(
        f"cannot write to the run folder: {exc.strerror or exc}"
        + (f" ({exc.filename})" if getattr(exc, "filename", None) else ""), file=str(run),
        hint=f"free some disk space, then: cnncli train --resume {run} (the last backup "
             "is kept)")


def model_meta(p: Plan) -> ModelMeta:
    """What evaluation and prediction need to treat images as training did."""
    return ModelMeta(model=p.spec.name, input=tuple(p.spec.input),
                     preprocessing=p.preprocessing, class_names=tuple(p.data.class_names),
                     dataset=p.cfg.data.name)


def _fresh_state(p: Plan) -> dict:
    return {"epoch": 0, "step": 0, "history": [], "best": None, "best_epoch": None,
            "wait": 0, "plateau_wait": 0, "plateau_best": None, "stopped_early": False,
            "backup_every": p.cfg.train.backup_every, "train_seconds": 0.0,
            "precision": p.placement.precision}


def _fit(p: Plan, model, state: dict, callback: RunCallback, relay=None) -> None:
    """Fit in stretches of equal-length epochs: a partial first epoch (when resuming
    mid-epoch), the full epochs, a partial last epoch (when `steps` ends mid-epoch).

    On several machines (`relay` given) `distributed.fit` replaces `model.fit`, which
    Keras 3 cannot run under MultiWorkerMirroredStrategy (keras-team/keras#20585)."""
    t = p.cfg.train
    val = None
    if len(p.x_val):
        val = pipeline.make_dataset(p.x_val, p.y_val,
                                    batch_size=p.placement.global_batch_size(t.batch_size),
                                    input_shape=p.spec.input, training=False, seed=t.seed,
                                    preprocessing=p.preprocessing, one_hot=_one_hot(p))
    for first_epoch, last_epoch, first_step, steps in _stretches(p, state):
        if callback.stop:
            break
        batches = pipeline.training_batches(
            p.x_train, p.y_train, batch_size=p.placement.global_batch_size(t.batch_size),
            input_shape=p.spec.input, seed=t.seed, epochs=last_epoch, start_epoch=first_epoch,
            start_step=first_step, preprocessing=p.preprocessing, augment=p.cfg.data.augment,
            one_hot=_one_hot(p))
        callback.first_step = first_step
        if relay is not None:
            distributed.fit(model, devices.strategy(p.placement), batches,
                            epochs=last_epoch, initial_epoch=first_epoch,
                            steps_per_epoch=steps, validation_data=val,
                            callbacks=[relay, callback])
        else:
            model.fit(batches, epochs=last_epoch, initial_epoch=first_epoch,
                      steps_per_epoch=steps, validation_data=val, callbacks=[callback],
                      shuffle=False, verbose=0)  # the order comes from pipeline.epoch_order
    callback.raise_if_stopped()


def _stretches(p: Plan, state: dict):
    """(first_epoch, end_epoch, first_step, steps_per_epoch) for each `fit` call."""
    spe, epoch, step = p.steps_per_epoch, state["epoch"], state["step"]
    last_steps = p.total_steps - (p.epochs - 1) * spe
    out = []
    if step:
        steps = (last_steps if epoch == p.epochs - 1 else spe) - step
        out.append((epoch, epoch + 1, step, steps))
        epoch += 1
    full_end = p.epochs - 1 if last_steps < spe else p.epochs
    if epoch < full_end:
        out.append((epoch, full_end, 0, spe))
        epoch = full_end
    if epoch < p.epochs:
        out.append((epoch, p.epochs, 0, last_steps))
    return out


class _signals_to:
    """Route SIGINT and SIGTERM to the callback (stop after the current step)."""

    def __init__(self, callback):
        self.callback = callback

    def __enter__(self):
        self.saved = {s: signal.signal(s, self._handle) for s in (signal.SIGINT, signal.SIGTERM)}

    def _handle(self, signum, frame):
        if self.callback.signal:  # a second Ctrl-C: stop now
            raise KeyboardInterrupt
        self.callback.signal = signum

    def __exit__(self, *exc):
        for s, handler in self.saved.items():
            signal.signal(s, handler)


class RunCallback(keras.callbacks.Callback):
    """History, best model, backups, early stopping, plateau, NaN and signal handling."""

    def __init__(self, p: Plan, run: Path, model, state: dict, reporter: Reporter):
        super().__init__()
        self.p, self.run, self.state, self.reporter = p, run, state, reporter
        self.signal = None
        self.stop = None  # why training stopped: "nan", "signal", "early"
        self.nan_at = None
        self.first_step = 0
        self.last_backup = state["epoch"] * p.steps_per_epoch + state["step"]
        self.metric_values = None  # restored into the metrics at the next epoch start
        self.writer = tf.summary.create_file_writer(str(run / "logs"))
        t = p.cfg.train
        self.monitor = "val_accuracy" if len(p.x_val) and "accuracy" in t.metrics else \
            ("val_loss" if len(p.x_val) else "loss")
        if state["step"]:  # resuming mid-epoch: keep the epoch's running metrics
            self.metric_values = [v.numpy() for m in model.metrics for v in m.variables]

    # -- epochs ---------------------------------------------------------------------------
    def on_epoch_begin(self, epoch, logs=None):
        if self.metric_values is not None:
            variables = [v for m in self.model.metrics for v in m.variables]
            for v, value in zip(variables, self.metric_values, strict=True):
                v.assign(value)
            self.metric_values = None
        self.state["epoch"] = epoch
        self.epoch_start = time.perf_counter()
        self.epoch_steps = 0
        self.reporter.epoch_begin(epoch, self.p.epochs, self.steps_in(epoch), self.first_step)

    def steps_in(self, epoch: int) -> int:
        if epoch == self.p.epochs - 1:
            return self.p.total_steps - epoch * self.p.steps_per_epoch
        return self.p.steps_per_epoch

    def on_train_batch_end(self, batch, logs=None):
        # With steps_per_execution > 1 Keras calls this once per execution, with `batch`
        # the index of its last step: count steps from `batch`, not from calls.
        logs = logs or {}
        loss = float(logs.get("loss", 0.0))
        step = self.first_step + batch + 1
        self.epoch_steps = step - self.first_step
        if not math.isfinite(loss):
            self.nan_at = (self.state["epoch"], step)
            self._halt("nan")
            return
        self.state["step"] = step
        self.reporter.step(step, logs)
        global_step = self.state["epoch"] * self.p.steps_per_epoch + step
        if self.signal:
            self._backup()
            self._halt("signal")
        elif global_step - self.last_backup >= self.p.cfg.train.backup_every:
            self._backup()

    def on_epoch_end(self, epoch, logs=None):
        if self.stop == "nan":
            return
        logs = dict(logs or {})
        seconds = time.perf_counter() - self.epoch_start
        if self.stop == "signal" or self.state["step"] < self.steps_in(epoch):
            return  # an interrupted epoch is not finished: no history row
        self.first_step = 0
        self.state["train_seconds"] += seconds
        images = self.epoch_steps * self.p.placement.global_batch_size(self.p.cfg.train.batch_size)
        row = {"epoch": epoch + 1, **{k: float(v) for k, v in logs.items()},
               "learning_rate": float(keras.ops.convert_to_numpy(
                   self.model.optimizer.learning_rate)),
               "seconds": round(seconds, 3), "images_per_s": round(images / seconds, 1)}
        self.state["history"].append(row)
        self._track_best(epoch, row)
        self._early_stopping_and_plateau(row)
        self.state.update(epoch=epoch + 1, step=0)
        self._backup()
        if self.stop == "nan":
            return
        self._write_epoch_outputs(row)
        self.reporter.epoch_end(row)
        if self.signal:
            self._halt("signal")

    # -- decisions ------------------------------------------------------------------------
    def _better(self, value, best, key) -> bool:
        if best is None:
            return True
        return value > best if "accuracy" in key else value < best

    def _track_best(self, epoch, row):
        value = row.get(self.monitor)
        if value is not None and self._better(value, self.state["best"], self.monitor):
            self.state.update(best=value, best_epoch=epoch + 1)
            save_model_atomic(self.model, self.run / "best.keras", model_meta(self.p))

    def _early_stopping_and_plateau(self, row):
        t = self.p.cfg.train
        es = t.early_stopping
        if es and es.monitor in row:
            value, best = row[es.monitor], self.state.get("es_best")
            improved = best is None or (value > best + es.min_delta if "accuracy" in es.monitor
                                        else value < best - es.min_delta)
            if improved:
                self.state.update(es_best=value, wait=0)
            else:
                self.state["wait"] += 1
                if self.state["wait"] >= es.patience:
                    self.state["stopped_early"] = True
                    self._halt("early")
        if t.schedule.name == "plateau":
            key = "val_loss" if "val_loss" in row else "loss"
            if self._better(row[key], self.state["plateau_best"], key):
                self.state.update(plateau_best=row[key], plateau_wait=0)
            else:
                self.state["plateau_wait"] += 1
                if self.state["plateau_wait"] >= t.schedule.patience:
                    lr = self.model.optimizer.learning_rate
                    new = max(float(lr.numpy()) * t.schedule.factor, t.schedule.min_lr)
                    self.model.optimizer.learning_rate.assign(new)
                    self.state["plateau_wait"] = 0
                    self.reporter.note(f"validation loss has not improved for "
                                       f"{t.schedule.patience} epochs: learning rate now {new:g}")

    def _halt(self, why: str) -> None:
        self.stop = self.stop or why
        self.model.stop_training = True

    def raise_if_stopped(self) -> None:
        if self.stop == "nan":
            epoch, step = self.nan_at
            raise TrainingError(
                f"the loss became NaN or infinite at epoch {epoch + 1}, step {step}; training "
                "stopped and the last good backup was kept", file=str(self.run),
                hint="lower the learning rate (--lr), or check the data for bad values")
        if self.stop == "signal":
            where = f"epoch {self.state['epoch'] + 1}, step {self.state['step']}"
            raise Interrupted(self.signal, self.run, where)

    # -- files ----------------------------------------------------------------------------
    def _backup(self) -> None:
        """Write a backup, unless the weights are no longer finite: the loss of a step is
        computed before its update, so a finite loss does not prove finite weights."""
        if not all(np.isfinite(v.numpy()).all() for v in self.model.trainable_variables):
            self.nan_at = (self.state["epoch"], self.state["step"])
            self._halt("nan")
            return
        checkpoint.save(self.run, self.model, self.state)
        self.last_backup = self.state["epoch"] * self.p.steps_per_epoch + self.state["step"]

    def _write_epoch_outputs(self, row):
        history = self.state["history"]
        buffer = io.StringIO()
        fields = HISTORY_FIELDS + sorted({k for r in history for k in r} - set(HISTORY_FIELDS))
        writer = csv.DictWriter(buffer, fieldnames=fields, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(history)
        files.write_atomic(self.run / "history.csv", buffer.getvalue())
        with self.writer.as_default(step=row["epoch"]):
            for key, value in row.items():
                if key != "epoch":
                    tf.summary.scalar(key, value)
        self.writer.flush()
        from cnncli import plots

        plots.training_curves(history, self.run / "curves.png")


def _check_same_config(run: Path, cfg: config.RunConfig, force: bool) -> None:
    saved = yaml.safe_load((run / rundir.CONFIG).read_text())
    if saved.get("digest") != cfg.digest() and not force:
        raise ConfigError(
            "the config differs from the one this run was started with", file=str(run),
            hint="resume without changing it (cnncli train --resume RUN uses the run's own "
            "config), or pass --force to resume anyway")


def _write_config(run: Path, cfg: config.RunConfig) -> None:
    text = ("# The resolved config of this run (cnncli train --resume uses it).\n"
            + yaml.safe_dump({**cfg.resolved(), "digest": cfg.digest()}, sort_keys=False))
    files.write_atomic(run / rundir.CONFIG, text)


def _final_metrics(p: Plan, run: Path, state: dict, callback: RunCallback) -> dict:
    history = state["history"]
    last = history[-1] if history else {}
    speeds = [r["images_per_s"] for r in history]
    d = p.data
    return {
        "run": str(run),
        "epochs": len(history),
        "steps": p.total_steps,
        "stopped_early": state["stopped_early"],
        "final": {k: v for k, v in last.items() if k not in ("seconds", "images_per_s")},
        "best": {"metric": callback.monitor, "value": state["best"],
                 "epoch": state["best_epoch"]},
        "train_seconds": round(state["train_seconds"], 2),
        "images_per_s": float(np.median(speeds)) if speeds else None,
        "batch_size": p.cfg.train.batch_size,
        "batch_size_is_per_replica": p.placement.replicas > 1,
        "device": p.placement.describe(),
        "replicas": p.placement.replicas,
        "precision": p.placement.precision,
        "steps_per_execution": p.steps_per_execution,
        "jit_compile": bool(getattr(callback.model, "jit_compile", False)),
        "dataset": {"name": d.name, "source": d.source, "sample": d.sample,
                    "train": len(p.x_train), "validation": len(p.x_val),
                    "test": len(d.x_test), "classes": d.num_classes,
                    "class_names": list(d.class_names)},
        "preprocessing": p.preprocessing,
        "input": list(p.spec.input),
        "versions": {"cnncli": __version__, "tensorflow": tf.__version__,
                     "keras": keras.__version__, "numpy": np.__version__,
                     "python": platform.python_version()},
    }
