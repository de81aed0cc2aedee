"""The model of a run, compiled: optimizer, learning-rate schedule, loss and metrics, all
resolved by Keras' own lookups, and checked against the labels cnncli feeds before
anything is written (`check_training`, which ``cnncli check`` runs too).

>>> check_training(config.TrainSection(loss="categorical_crossentropy"), classes=10)
Traceback (most recent call last):
...
cnncli.errors.ConfigError: `train.loss`: categorical_crossentropy expects one-hot labels, ...
"""

from __future__ import annotations

import warnings

import numpy as np

from cnncli import config, devices
from cnncli.data import pipeline
from cnncli.devices import distributed
from cnncli.errors import CnnError, ConfigError, raise_all, suggest
from cnncli.model import builder, fused_norm, keras_layers
from cnncli.run import optimizers, schedules, transfer
from cnncli.runtime import import_keras
from cnncli.text import first_line, reads_as_number

keras = import_keras()


def compile_model(p):
    """Build and compile the model of a plan (`cnncli.run.plan.Plan`), seeded, under the
    placement's strategy, with the optimizer and metrics built (so a backup can be
    restored into them)."""
    t = p.cfg.train
    keras.utils.set_random_seed(t.seed)
    with devices.strategy(p.placement).scope():
        model = builder.build(p.spec)
        transfer.prepare(model, p.transfer)  # pretrained weights loaded, layers frozen
        compile_stage(p, model, t.optimizer.learning_rate, transfer.stage_steps(p, 0))
    return model


def compile_stage(p, model, lr: float, steps: int) -> None:
    """Compile `model` (under the placement's strategy scope) to train its trainable
    layers with a new optimizer at `lr`, on the schedule over `steps` steps, and build
    the optimizer and metrics (so a backup can be restored into them). A run with two
    stages (`cnncli.run.finetune`) calls it again for the second."""
    t = p.cfg.train
    s = t.schedule
    rate = schedules.make(s.name, replica_rate(p, lr), steps_per_epoch=p.steps_per_epoch,
                          total_steps=steps, warmup_epochs=s.warmup_epochs,
                          step_epochs=s.step_epochs, factor=s.factor, min_lr=s.min_lr)
    if t.fused_norm:
        fused_norm.fuse_batch_norm(model)  # 1.2-1.5x images/s with BatchNormalization
    jit = t.jit_compile
    if jit is True and p.placement.kind == "multiworker":  # metrics.json says what ran
        warnings.warn("train.jit_compile: true does not apply on several machines: cnncli's "
                      "own training loop runs there without XLA", stacklevel=2)
        jit = False
    with warnings.catch_warnings():
        if jit == "auto":  # a model XLA cannot compile quietly runs without it
            jit = devices.auto_jit_compile(p.placement)
            warnings.filterwarnings("ignore", "Model doesn't support `jit_compile=True`")
        # weighted: an image that could not be decoded (weight 0) counts in no figure, as
        # in the loss (Keras gives sample weights to `weighted_metrics` only)
        model.compile(optimizer=make_optimizer(t, rate), loss=make_loss(t),
                      weighted_metrics=[*t.metrics, *plain_loss(t)],
                      steps_per_execution=p.steps_per_execution, jit_compile=jit)
    model.optimizer.build(model.trainable_variables)
    distributed.build_metrics(model, pipeline.preprocess_batch(
        p.feed.first_images(1), p.spec.input, p.preprocessing),
        labels_like(p.feed.train.labels[:1], p.one_hot))


def replica_rate(p, lr: float) -> float:
    """The learning rate `lr` trains at on the plan's replicas (`train.scale_lr`)."""
    if p.placement.replicas > 1 and p.cfg.train.scale_lr:
        return devices.scale_learning_rate(lr, p.placement.replicas)
    return lr


def labels_like(labels: np.ndarray, one_hot: int | None):
    """Labels as the pipeline feeds them: class indices, or one-hot over `one_hot` classes."""
    return keras.utils.to_categorical(labels, one_hot) if one_hot else labels


def make_optimizer(t: config.TrainSection, rate):
    """The Keras optimizer `t.optimizer` names, with its own arguments (Adam fused)."""
    extra = t.optimizer.model_extra or {}
    cfg = {"learning_rate": rate, **extra}
    if t.weight_decay:
        if extra.get("weight_decay") not in (None, t.weight_decay):
            raise ConfigError(
                f"`train.weight_decay` is {t.weight_decay:g} and "
                f"`train.optimizer.weight_decay` {extra['weight_decay']}: which one?",
                hint="give the weight decay once (`train.weight_decay`)")
        cfg["weight_decay"] = t.weight_decay
    try:
        raise_all(_argument_problems(t.optimizer.name, extra))
        return optimizers.get(t.optimizer.name, cfg)
    except (ValueError, TypeError) as exc:
        if "Could not interpret" in str(exc):
            raise ConfigError(f"`train.optimizer.name`: unknown optimizer "
                              f"'{t.optimizer.name}'", hint=suggest(
                                  t.optimizer.name, keras_layers.keras_names("optimizers"),
                                  listing="Keras' optimizers")) from None
        raise ConfigError(f"`train.optimizer`: {first_line(exc, 200)}",
                          hint="give the optimizer its own argument names (see Keras' "
                          f"documentation of {t.optimizer.name})") from None


def _argument_problems(name: str, arguments: dict) -> list[ConfigError]:
    """The optimizer's own arguments given a value of the wrong kind: text for a boolean
    (Keras takes ``nesterov: no`` as true) or for a number (``epsilon: "1e-7"`` fails
    only in the first training step, deep in TensorFlow)."""
    kinds = optimizers.argument_kinds(name)
    problems = []
    for arg, value in arguments.items():
        kind = kinds.get(arg)
        if value is None or kind is None:
            continue
        if kind is bool and not isinstance(value, bool):
            problems.append(ConfigError(f"`train.optimizer.{arg}` is true or false, not "
                                        f"{value!r}", hint=config.BOOLEAN_HINT))
        elif kind is float and (isinstance(value, bool) or not isinstance(value, int | float)):
            quoted = isinstance(value, str) and reads_as_number(value)
            shown = str(value).lower() if isinstance(value, bool) else repr(value)  # as YAML
            problems.append(ConfigError(
                f"`train.optimizer.{arg}` is {'the text ' if quoted else ''}{shown}, not a "
                "number", hint="write the number without quotes" if quoted else
                "write a number, e.g. 0.5 or 1e-3"))
    return problems


#: A batch's loss is the mean over the images that count: an image that could not be
#: decoded comes with weight 0, and Keras' default ("sum_over_batch_size") would still
#: count it in the mean, showing a loss lower than the model's.
LOSS_REDUCTION = "mean_with_sample_weight"


#: Names of the cross-entropy of other libraries (PyTorch's CrossEntropyLoss, NLLLoss):
#: by spelling alone the closest Keras loss is binary_crossentropy, which cnncli's labels
#: (class indices) do not fit.
_CROSS_ENTROPY = dict.fromkeys(["crossentropy", "cross_entropy", "crossentropyloss",
                                "cross_entropy_loss", "ce", "nll", "nllloss", "nll_loss"],
                               "sparse_categorical_crossentropy")


def make_loss(t: config.TrainSection):
    """The Keras loss `t.loss` names (label smoothing: Keras' loss on one-hot labels),
    averaged over the images with weight (`LOSS_REDUCTION`).

    >>> loss = make_loss(config.TrainSection(loss="mean_squared_error"))
    >>> float(loss([[1.0], [1.0], [9.0]], [[0.0], [2.0], [0.0]], sample_weight=[1, 1, 0]))
    1.0
    """
    if t.label_smoothing:  # Keras smooths only one-hot labels: the pipeline makes them
        if t.loss != "sparse_categorical_crossentropy":
            raise ConfigError("`train.label_smoothing` works with the default loss only",
                              hint="remove `train.loss` or `train.label_smoothing`")
        return keras.losses.CategoricalCrossentropy(label_smoothing=t.label_smoothing,
                                                    reduction=LOSS_REDUCTION)
    try:
        found = keras.losses.get(t.loss)
    except (ValueError, TypeError):
        meant = _CROSS_ENTROPY.get(str(t.loss).lower().replace("-", "_"))
        raise ConfigError(f"`train.loss`: unknown loss '{t.loss}'", hint=f"did you mean "
                          f"'{meant}' (class indices, as cnncli's labels are)?" if meant else
                          suggest(t.loss, keras_layers.keras_names("losses"),
                                  listing="Keras' losses")) from None
    if isinstance(found, keras.losses.Loss):
        found.reduction = LOSS_REDUCTION
        return found
    from keras.src.losses.losses import LossFunctionWrapper  # private: keras<3.16 pinned

    return LossFunctionWrapper(found, reduction=LOSS_REDUCTION, name=t.loss)


def plain_loss(t: config.TrainSection) -> list:
    """With label smoothing, the cross-entropy of the labels as they are, as a metric
    (``crossentropy``, ``val_crossentropy``): the run's ``loss`` is then of the smoothed
    labels, another figure than evaluate's ``loss`` under the same name."""
    if not t.label_smoothing:
        return []
    return [keras.metrics.CategoricalCrossentropy(name="crossentropy")]


def check_training(t: config.TrainSection, classes: int, *, file: str | None = None) -> None:
    """Resolve the optimizer, loss and metrics with Keras and try the loss and each metric
    on labels as cnncli makes them (class indices; one-hot with label smoothing) against
    `classes` probabilities. Raises every problem found at once."""
    errors: list[CnnError] = _schedule_problems(t)
    try:
        make_optimizer(t, t.optimizer.learning_rate)
    except ConfigError as exc:
        errors += getattr(exc, "errors", [exc])
    try:
        loss = make_loss(t)
    except ConfigError as exc:
        errors.append(exc)
        loss = None
    for exc in errors:
        exc.file = exc.file or file
    one_hot = classes if t.label_smoothing else None
    labels = labels_like(np.arange(2) % classes, one_hot)
    probs = np.full((2, classes), 1 / classes, np.float32)
    try:
        if loss is not None:
            loss(labels, probs)
    except Exception as exc:  # Keras raises ValueError, TypeError, InvalidArgumentError...
        errors.append(ConfigError(
            f"`train.loss`: {t.loss} expects one-hot labels, but cnncli's labels are class "
            f"indices ({first_line(exc, 200)})", file=file,
            hint="use sparse_categorical_crossentropy, the same loss for class indices"))
    for name in t.metrics:
        problem = _metric_problem(name, labels, probs)
        if problem:
            unknown = problem.startswith("unknown")
            message, _, hint = problem.partition(". Hint: ") if unknown else (problem, "", "")
            errors.append(ConfigError(f"`train.metrics`: {message}", file=file, hint=hint or (
                "use metrics made for one-hot labels, which label smoothing gives: accuracy, "
                "top_k_categorical_accuracy, categorical_crossentropy" if one_hot else
                "use metrics made for class indices: accuracy, "
                "sparse_top_k_categorical_accuracy, sparse_categorical_crossentropy")))
    raise_all(errors)


#: The settings each schedule uses (`schedules.make`, the plateau callback); `name` aside.
USES = {"constant": set(), "step": {"step_epochs", "factor", "min_lr"},
        "cosine": {"warmup_epochs", "min_lr"}, "one_cycle": {"warmup_epochs", "min_lr"},
        "plateau": {"factor", "patience", "min_lr"}}


def _schedule_problems(t: config.TrainSection) -> list[CnnError]:
    """Schedule settings that would be ignored or turn the rate upside down."""
    s, lr, errors = t.schedule, t.optimizer.learning_rate, []
    defaults = type(s)()
    for key in sorted(set(type(s).model_fields) - {"name", "warmup_epochs"} - USES[s.name]):
        if getattr(s, key) != getattr(defaults, key):  # (set: a value the run would not use)
            takes = [name for name, keys in USES.items() if key in keys]
            errors.append(ConfigError(
                f"`train.schedule.{key}`: the {s.name} schedule does not use it (it would be "
                "ignored)", hint=f"remove {key}, or use a schedule that takes it: "
                f"{', '.join(takes)}"))
    if s.warmup_epochs and s.name not in schedules.WITH_WARMUP:
        errors.append(ConfigError(
            f"`train.schedule.warmup_epochs`: the {s.name} schedule has no warmup (it "
            "would be ignored)", hint="use `schedule: {name: cosine, warmup_epochs: N}` "
            "(or one_cycle), or remove warmup_epochs"))
    epochs = t.planned_epochs
    if s.warmup_epochs and epochs and s.warmup_epochs >= epochs and \
            s.name in schedules.WITH_WARMUP:
        errors.append(ConfigError(
            f"`train.schedule.warmup_epochs`: a warmup of {s.warmup_epochs:g} epochs is "
            f"as long as the training ({epochs}): the rate would never reach "
            f"{lr:g} or decay", hint=f"use fewer warmup epochs than {epochs}"))
    if s.min_lr and s.min_lr >= lr and s.name in (*schedules.WITH_WARMUP, "plateau", "step"):
        errors.append(ConfigError(
            f"`train.schedule.min_lr` ({s.min_lr:g}) is not below the learning rate "
            f"({lr:g}): the rate would not come down", hint="give a min_lr below the "
            "learning rate, e.g. a hundredth of it"))
    return errors


def _metric_problem(name: str, labels, probs) -> str | None:
    """Why Keras cannot compute metric `name` on these labels, or None."""
    model = keras.Sequential([keras.Input(probs.shape[1:]), keras.layers.Identity()])
    try:
        model.compile(loss="mse", weighted_metrics=[name])  # as training compiles it
        model.compute_metrics(probs, labels, probs, sample_weight=np.ones(len(probs)))
    except ValueError as exc:
        if "Unknown metric" in str(exc) or "Could not interpret" in str(exc):
            return f"unknown metric '{name}'. Hint: " + suggest(
                name, keras_layers.keras_names("metrics"), listing="Keras' metrics")
        return (f"'{name}' cannot take cnncli's labels, which are {_labels_are(labels)} "
                f"against {probs.shape[1]} probabilities per image ({first_line(exc, 200)})")
    except Exception as exc:  # shape errors surface as TypeError or TensorFlow errors too
        return (f"'{name}' cannot take cnncli's labels, which are {_labels_are(labels)} "
                f"against {probs.shape[1]} probabilities per image ({first_line(exc, 200)})")
    if "accuracy" in str(name).lower() and probs.shape[1] > 1:  # one that runs may still
        # read the labels otherwise (one output: no class to tell apart, said elsewhere)
        perfect = labels if np.ndim(labels) == 2 else np.eye(probs.shape[1])[labels]
        model.compile(loss="mse", weighted_metrics=[name])  # (its state anew)
        got = model.compute_metrics(perfect, labels, perfect.astype(np.float32),
                                    sample_weight=np.ones(len(probs)))
        worst = min(float(v) for k, v in got.items() if k != "loss")
        if worst < 1:  # (categorical_accuracy takes class indices as one-hot rows)
            return (f"'{name}' gives wrong figures for cnncli's labels, which are "
                    f"{_labels_are(labels)}: {worst:g} for predictions that are all right")
    return None


def _labels_are(labels) -> str:
    """What cnncli's `labels` are, as a message says it."""
    return "one-hot rows (label smoothing)" if np.ndim(labels) == 2 else "class indices"


