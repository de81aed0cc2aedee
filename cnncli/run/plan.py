"""The plan of a training run: data, model, devices, epochs and steps, worked out and
checked before anything is written.

>>> p = plan(config.load("configs/mnist.yaml"))       # doctest: +SKIP
>>> p.steps_per_epoch, p.epochs, p.placement.precision  # doctest: +SKIP
(1080, 3, 'mixed_bfloat16')
"""

from __future__ import annotations

import contextlib
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cnncli import config, devices, runfolder, text, yamlio
from cnncli.data import checks, datasets, records
from cnncli.data.dataset import Dataset
from cnncli.data.feed import Feed
from cnncli.errors import CnnError, ConfigError, DataError, raise_all
from cnncli.model import builder, transfer_spec
from cnncli.model import spec as specs
from cnncli.model.meta import ModelMeta, output_names
from cnncli.run import checking, transfer
from cnncli.run import compile as compiling
from cnncli.run.transfer import Transfer


@dataclass
class Plan:
    """Everything a run needs, worked out (and checked) before anything is written."""

    cfg: config.RunConfig
    data: Dataset
    spec: specs.Spec
    placement: devices.Placement
    feed: Feed  # the training and validation images, and how they reach the model
    preprocessing: str
    steps_per_epoch: int
    total_steps: int
    epochs: int
    steps_per_execution: int
    warnings: list[str] = field(default_factory=list)
    transfer: Transfer | None = None  # what it starts from and freezes (cnncli.run.transfer)
    data_notes: list[str] = field(default_factory=list)  # on the Data line (grey -> RGB)

    @property
    def global_batch(self) -> int:
        """Images per step over all replicas."""
        return self.placement.global_batch_size(self.cfg.train.batch_size)

    @property
    def one_hot(self) -> int | None:
        """Classes to one-hot encode the labels over, when label smoothing needs it."""
        return self.spec.classes if self.cfg.train.label_smoothing else None

    def steps_in(self, epoch: int) -> int:
        """Steps of `epoch` (the last one may be shorter when `train.steps` ends it)."""
        if epoch == self.epochs - 1:
            return self.total_steps - epoch * self.steps_per_epoch
        return self.steps_per_epoch

    def meta(self) -> ModelMeta:
        """What evaluation and prediction need to treat images as training did."""
        return ModelMeta(model=self.spec.name, input=tuple(self.spec.input),
                         preprocessing=self.preprocessing,
                         class_names=output_names(self.data.class_names,
                                                  self.spec.classes or self.data.num_classes),
                         dataset=self.cfg.data.name,
                         resize=self.cfg.data.resize,
                         backbone=self.transfer.backbone if self.transfer else None,
                         image_channels=(self.feed.image_channels if
                                         self.feed.image_channels != self.spec.input[-1]
                                         else None),
                         held_out=self.data.held_out_names())


def absolute_paths(cfg: config.RunConfig) -> None:
    """`data.name` (when a path, not a dataset's name), `data.data_dir`, a `model:` or
    `model.from` naming a file or a run, and a `model.weights` file made absolute, in
    place: the run's config then names the same data, network and weights from any folder
    (``cnncli evaluate RUN`` and ``--resume`` run elsewhere than training did)."""
    d = cfg.data
    if datasets.known_name(d.name) is None:
        d.name = os.path.abspath(os.path.expanduser(d.name))
    if d.data_dir:
        d.data_dir = os.path.abspath(os.path.expanduser(d.data_dir))
    if isinstance(cfg.model, str):
        cfg.model = _absolute_source(cfg.model)
    elif (section := cfg.start_from) is not None:
        section.from_ = _absolute_source(section.from_)
        if section.weights is not None and section.weights not in config.WEIGHTS_WORDS:
            section.weights = os.path.abspath(os.path.expanduser(section.weights))  # a file


def _absolute_source(source: str) -> str:
    """Where `source` (a `model:` or `model.from`) is, absolute, when it names a file or
    a run rather than a built-in or pretrained network. A run is the run it means now:
    `runs/mnist`, its latest run, recorded, so that a resume or a summary of this run
    starts from the same one after another mnist run."""
    from cnncli.model import architectures, pretrained

    path = Path(os.path.expanduser(source))
    run = runfolder.named(path)
    with contextlib.suppress(OSError):  # a name too long to be a path: not one, then
        if runfolder.is_run(run):
            return str(run.resolve())
        if source not in architectures.names() and source not in pretrained.REGISTRY \
                and path.exists():
            return os.path.abspath(path)
    return source


def plan(cfg: config.RunConfig, *, config_file: str | None = None) -> Plan:
    """Load the data, check the model and the training settings against it, and work out
    epochs and steps. The device and precision `auto` chose are written back into
    ``cfg.train`` (a run records them, so ``--resume`` continues with the same)."""
    absolute_paths(cfg)
    t = cfg.train
    placement = devices.setup(t.device, t.precision, multiworker=True)
    t.precision, t.device = placement.precision, placement.device_setting()
    return _worked_out(cfg, placement, config_file)


def shown(cfg: config.RunConfig, placement: devices.Placement, *,
          config_file: str | None = None) -> Plan | None:
    """The plan ``train --dry-run`` shows: `plan`'s, of a copy of `cfg`, on `placement`
    (one machine's: no cluster is joined), with the data read only if it is on this
    machine (nothing downloaded) and no cache made (nothing written). None when the
    data is not there to read: a path not made yet (`check` says so) or a known
    dataset training would download.

    Raises what `plan` raises about the data and the settings against it (more classes
    than outputs, fewer images than a batch, an unreadable folder)."""
    d = cfg.data
    name = datasets.known_name(d.name)
    if not datasets.exists(d.name) or (name and not d.offline and datasets.locate(
            name, data_dir=d.data_dir).kind == "download"):
        return None
    cfg = cfg.model_copy(deep=True)
    absolute_paths(cfg)
    return _worked_out(cfg, placement, config_file, shown_only=True)


def _worked_out(cfg: config.RunConfig, placement: devices.Placement,
                config_file: str | None, shown_only: bool = False) -> Plan:
    """`plan` on `placement`; `shown_only`: the feed's caches are not made and no
    weights are downloaded (ImageNet's not here yet are noted by `checking.dry_run`)."""
    t, d = cfg.train, cfg.data
    # runs written into a folder of class folders would be read as a class the next time
    try:
        datasets.check_output_outside(Path(cfg.output.dir), d.name,
                                      "`output.dir` (--set output.dir=DIR)")
    except ConfigError as exc:  # said at the config's line (or its --set), if it has one
        exc.message, exc.file = f"`output.dir`: {exc.message}", None
        raise_all(config.locate([exc], config_file, cfg.set_by))
    try:
        data = datasets.load(d.name, data_dir=d.data_dir, offline=d.offline, strict=d.strict)
    except DataError as exc:
        if not datasets.exists(d.name):  # it names nothing: say where it was named
            _named_at(exc, cfg, config_file)
        raise
    checks.check_every_class_trains(data, d.name)
    if data.resized and data.resized != d.resize:  # the model records d.resize for predict
        raise ConfigError(f"`data.resize` is {d.resize}, and the packed images were resized "
                          f"with {data.resized} when packed", file=config_file,
                          hint=f"set `data.resize: {data.resized}` (predict then resizes "
                               f"the same way), or pack again with --resize {d.resize}")
    network = specs.from_run_config(cfg, file=config_file, classes=data.num_classes)
    if network.input:  # another mode was refused above, with a hint for the config
        records.refuse_resized(data, d.resize, network.input[:2], d.name, error=ConfigError,
                               file=config_file)
    built = _checked(network, cfg, data, config_file)  # before any run folder
    feed = Feed.of(data, network.input, validation_split=d.validation_split, seed=t.seed,
                   limit=d.limit, resize=d.resize, cache=d.cache, store=not shown_only,
                   stratify=d.stratify)
    try:  # (its threads, caches and a pack's lock let go of if the plan goes no further)
        batch = placement.global_batch_size(t.batch_size)
        steps_per_epoch = len(feed.train) // batch
        if steps_per_epoch < 1:
            replicas = (f" ({t.batch_size} a replica x {placement.replicas} replicas)"
                        if placement.replicas > 1 else "")
            raise ConfigError(
                f"the {len(feed.train)} training images are fewer than one batch of "
                f"{batch}{replicas}", hint="use a smaller --batch-size or more data")
        total = t.steps or t.planned_epochs * steps_per_epoch
        per_call = _steps_per_call(t, placement, steps_per_epoch, total)
        preprocessing = d.preprocessing or network.preprocessing
        warnings = (list(built.warnings) + memory_warnings(built, placement, t.batch_size)
                    + _left_over(len(feed.train), batch)
                    + _untrained_outputs(data.class_names, network.classes)
                    + _classes_without_training_images(data, feed, d.limit))
        data_notes = [f"{'grey' if data.image_shape[-1] == 1 else 'colour'} images, converted "
                      f"to {'RGB' if network.input[-1] == 3 else 'grey'} for the model"] \
            if data.image_shape and data.image_shape[-1] != network.input[-1] else []
        if not data.image_shape and data.train.kind != "arrays" and network.input[-1] == 1:
            data_notes = ["decoded in grey: the model takes 1 channel"]  # photos' colour too
        epochs = math.ceil(total / steps_per_epoch)
        try:
            found = transfer.plan(cfg, built, epochs, steps_per_epoch=steps_per_epoch,
                                  file=config_file, download=not shown_only)  # checked
        except CnnError as exc:
            raise_all(config.locate(getattr(exc, "errors", [exc]), config_file, cfg.set_by))
        return Plan(cfg, data, network, placement, feed, preprocessing, steps_per_epoch, total,
                    epochs, per_call, warnings, found, data_notes)
    except BaseException:
        feed.close()
        raise


def _checked(network: specs.Spec, cfg: config.RunConfig, data: Dataset,
             config_file: str | None) -> builder.Built:
    """The built network, checked with the training settings against it and the data;
    every problem of the network and of the settings is raised at once, as `check` does.
    Its weights have no values (`builder.weightless`): training builds its own model
    (`cnncli.run.compile`), once a network too large for the memory has been refused
    (`memory_warnings`), not killed while its weights are made."""
    errors: list[CnnError] = []
    built = None
    try:
        with builder.weightless():
            built = builder.build_checked(network)
    except CnnError as exc:  # an input given too small: said as the config's
        errors += config.locate(checking.input_blamed(getattr(exc, "errors", [exc]),
                                                      cfg.model, network, cfg.data.image_size),
                                config_file, cfg.set_by)
    classes = built.model.output.shape[-1] if built else data.num_classes
    if data.num_classes > classes:
        beyond = ", ".join(f"'{n}'" for n in data.class_names[classes:][:3])
        errors.append(DataError(
            f"the data has {data.num_classes} classes but the model outputs {classes}: "
            f"{beyond}{' and more' if data.num_classes - classes > 3 else ''} would have no "
            "output", file=data.source, hint=f"set `model.classes: {data.num_classes}` (a "
            "network's own `classes:` gives way to it), or leave those classes out of the data"))
    try:
        compiling.check_training(cfg.train, classes, file=config_file)
    except CnnError as exc:
        errors += config.locate(getattr(exc, "errors", [exc]), config_file, cfg.set_by)
    raise_all(errors)
    built.warnings += transfer_spec.fresh_network_note(cfg.start_from) + specs.resized_note(cfg)
    return built



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


def _steps_per_call(t: config.TrainSection, placement: devices.Placement,
                    steps_per_epoch: int, total: int) -> int:
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
    return per_call


def _named_at(error: CnnError, cfg: config.RunConfig, config_file: str | None) -> None:
    """`error` placed where `data.name` was given: its option (``--data x``), else its
    line in `config_file`."""
    given = cfg.set_by.get("data.name")
    if given:
        error.file, error.line, error.where = None, None, given
    elif config_file:
        doc = yamlio.load(config_file)
        error.file, error.line = config_file, config.line_of(doc, "data.name")
        written = (doc.get("data") or {}).get("name") if isinstance(doc, dict) else None
        if isinstance(written, str):  # as written: `cfg` holds it made absolute
            error.hint = config.beside_config(written, config_file) or error.hint


#: The share of the training images an epoch may leave for the next before it is said.
LEFT_OVER_SHARE = 0.1


def _untrained_outputs(class_names, outputs: int | None) -> list[str]:
    """A warning when the network has more outputs than the data has classes (a
    `classes:` copied from another spec): no image ever teaches the extra ones, yet they
    take a share of every prediction.

    >>> print(_untrained_outputs(["cat", "dog", "fox"], 10)[0][:65])
    the network outputs 10 classes and the data has 3: outputs 3 to 9
    >>> _untrained_outputs(["cat", "dog"], 2)
    []
    """
    have = len(class_names)
    if not outputs or outputs <= have:
        return []
    extra = f"output {have}" if outputs == have + 1 else f"outputs {have} to {outputs - 1}"
    return [f"the network outputs {outputs} classes and the data has {have}: {extra} "
            "(numbered from 0) never get a training image, yet take a share of every "
            f"prediction; give the network {have} classes (`classes: {have}`, or no `classes` to "
            "take the data's; an output layer of `units: $classes` follows)"]


def _classes_without_training_images(data: Dataset, feed, limit: int | None) -> list[str]:
    """A warning naming the classes with training images of which none is left to train
    on: the validation split took them all (a class of one or two photos), or
    ``data.limit`` kept none (the first N of arrays sorted by class; a random N of 1,000
    classes' images). Their outputs are never trained, yet evaluate scores them. (A class
    with no image at all, a gap in arrays' labels, is not the split's doing.)"""
    n = len(data.class_names)
    had = np.bincount(np.asarray(data.train.labels, np.int64), minlength=n) > 0
    left = np.bincount(np.asarray(feed.train.labels, np.int64), minlength=n) > 0
    missing = [repr(data.class_names[i]) for i in np.flatnonzero(had & ~left)]
    if not missing:
        return []
    it, its = ("it", "its") if len(missing) == 1 else ("them", "their")
    named = text.some(missing) + (f" ({len(missing):,} of the {n:,} classes)"
                                  if len(missing) > 3 else "")
    if limit and limit < len(data.train):
        return [f"no training image is left of {named} (data.limit keeps "
                f"{text.count(limit, 'training image')} of {len(data.train):,}, and the "
                f"validation split takes its part): the model never learns {it}; raise "
                "data.limit, or lower data.validation_split"]
    return [f"no training image is left of {named} (the validation split took all of {its} "
            f"images): the model never learns {it}; add images of {it}, or lower "
            "data.validation_split"]


def _left_over(images: int, batch: int) -> list[str]:
    """A warning when the last, partial batch of an epoch (left for the next: every
    step takes a whole batch) is a large share of the training images, as with a few
    photos of one's own.

    >>> print(_left_over(78, 16)[0][:71])
    78 training images make 4 batches of 16 an epoch: 14 (18%) wait for the
    >>> _left_over(60_000, 128)
    []
    >>> print(_left_over(13, 8)[0][:45])
    13 training images make 1 batch of 8 an epoch
    """
    left = images % batch
    if left <= LEFT_OVER_SHARE * images:
        return []
    return [f"{images:,} training images make {text.count(images // batch, 'batch', 'batches')} "
            f"of {batch} an "
            f"epoch: {left} ({left / images:.0%}) wait for the next epoch each time, a "
            f"different {left} (they are shuffled); a batch size that divides {images:,} "
            "uses them all"]


def memory_warnings(built, placement: devices.Placement, batch_size: int,
                    available: int | None = None) -> list[str]:
    """Warn before training when a step will not fit the GPU's memory, or on the CPU the
    machine's memory available now (`available`: read from the system if not given),
    where running out ends TensorFlow with no message (``std::bad_alloc``). A network
    whose weights alone cannot train there is a `DeviceError`: on the CPU, building
    them would get the process killed."""
    on_cpu = not placement.gpus  # several machines' CPUs too
    if on_cpu:
        from cnncli.data.loader import available_memory

        memory = available or available_memory()
    else:
        memory = min((g.memory_bytes for g in placement.gpus if g.memory_bytes),
                     default=None)
    if memory is None:
        return []
    from cnncli.model import summary

    s = summary.summarize(built)
    largest = max(s.rows, key=lambda r: r.params, default=None)
    refused = devices.too_large(s.params, (largest.name, largest.params) if largest else
                                ("?", 0), memory, on_cpu=on_cpu)
    if refused:
        raise refused
    per_value = 2 if placement.precision.startswith("mixed") else 4
    estimate = devices.estimate_batch_memory(s.params, s.forward_bytes // 4, batch_size,
                                             bytes_per_value=per_value)
    warning = devices.check_fits(estimate, memory, on_cpu=on_cpu,
                                 precision=placement.precision,
                                 several_machines=placement.kind == "multiworker")
    return [warning] if warning else []
