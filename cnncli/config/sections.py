"""The sections of a run config (`model`, `data`, `train`, `output`) as pydantic
models: the keys each takes, their types, limits and defaults."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    field_serializer,
    field_validator,
    model_validator,
)

from cnncli.config.settings import (
    BOOLEAN_HINT,
    DEVICE_PATTERN,
    FREEZE_WORDS,
    MAX_EPOCHS,
    MAX_IMAGE_SIDE,
    MAX_SEED,
    MAX_STEPS,
    PRECISIONS,
    PREPROCESSING_MODES,
    ResizeMode,
    SettingError,
    weights_setting,
)
from cnncli.errors import suggest
from cnncli.files import MODEL_FILES


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)


class ModelSection(_Strict):
    """`model:` a built-in name or spec path, with overrides; or a network to start from:
    a pretrained one (resnet50...) or a run folder or .keras file, with a new head."""

    from_: str = Field(alias="from", description="built-in name, spec file, pretrained "
                       "network (resnet50...), run folder or .keras file")
    classes: int | None = Field(None, ge=1, description="number of classes (default: dataset's)")
    input: list[Annotated[int, Field(ge=1, le=MAX_IMAGE_SIDE)]] | None = Field(
        None, min_length=3, max_length=3, description="input volume [h, w, c]")
    weights: str | None = Field(None, description="a pretrained network's weights: imagenet "
                                "(default), none, or a weights file (its no-top file)")
    cut: str | None = Field(None, description="a run or .keras file: the last layer kept "
                            "(default: the last convolution or pooling layer before Flatten "
                            "and the fully-connected layers)")
    dropout: float | None = Field(None, ge=0, lt=1, description="a pretrained network: "
                                  "dropout before the new softmax layer")

    model_config = ConfigDict(extra="forbid", strict=True, populate_by_name=True)

    @field_validator("from_", mode="before")
    @classmethod
    def _from_something(cls, value):
        """``from:`` with nothing after it (None, or blank) names no network."""
        if value is None or (isinstance(value, str) and not value.strip()):
            raise ValueError("is empty: name a pretrained network (mobilenet_v2), a run "
                             "folder or a .keras file")
        return value

    @field_validator("input")
    @classmethod
    def _image_channels(cls, value):
        if value is not None and value[2] not in (1, 3):
            raise SettingError(f"has {value[2]} channels, and cnncli feeds images with 1 "
                               "(grey) or 3 (colour)", f"use [{value[0]}, {value[1]}, 1] or "
                               f"[{value[0]}, {value[1]}, 3]")
        return value

    @field_validator("weights", mode="before")
    @classmethod
    def _weights_setting(cls, value):
        return weights_setting(value) if isinstance(value, str) else value


class OptimizerSection(_Strict):
    name: str = Field("adam", description="a Keras optimizer name: adam, sgd, adamw, rmsprop...")
    learning_rate: float = Field(1e-3, gt=0)
    # the optimizer's own arguments are allowed too (checked against Keras by `check`)
    model_config = ConfigDict(extra="allow", strict=True, allow_inf_nan=False)


class ScheduleSection(_Strict):
    name: Literal["constant", "step", "cosine", "one_cycle", "plateau"] = "constant"
    warmup_epochs: float = Field(0, ge=0)
    step_epochs: float = Field(10, gt=0, description="step: epochs between drops")
    factor: float = Field(0.1, gt=0, lt=1, description="step/plateau: multiplier at each drop")
    patience: int = Field(2, ge=1, description="plateau: epochs without improvement")
    min_lr: float = Field(0.0, ge=0)


#: Keras' short names of the figures cnncli records by their long ones (`acc` is
#: `accuracy`: one column, one figure to follow), in configs and in older runs' history.
SHORT_NAMES = {"acc": "accuracy", "val_acc": "val_accuracy"}


class EarlyStoppingSection(_Strict):
    patience: int = Field(5, ge=1)
    monitor: str = "val_loss"
    min_delta: float = Field(0.0, ge=0)
    mode: Literal["auto", "min", "max"] = Field(
        "auto", description="auto: the direction Keras knows for the metric (loss: min, "
        "accuracy and AUC: max)")

    @field_validator("monitor")
    @classmethod
    def _accuracy_by_its_name(cls, value: str) -> str:
        """``val_acc`` is ``val_accuracy``, as the metric ``acc`` is ``accuracy``."""
        return SHORT_NAMES.get(value, value)


class AugmentSection(_Strict):
    """`data.augment:` random changes of the training images (the ranges Keras' layers
    take: RandomTranslation, RandomRotation, RandomZoom, RandomContrast accept 0..1)."""

    flip: Literal["horizontal", "vertical", "horizontal_and_vertical"] | None = None
    translate: float = Field(0, ge=0, le=1, description="fraction of the image size")
    rotate: float = Field(0, ge=0, le=1, description="fraction of a full turn")
    zoom: float = Field(0, ge=0, le=1)
    contrast: float = Field(0, ge=0, le=1)

    def any(self) -> bool:
        """True when at least one change is asked for."""
        return bool(self.flip or self.translate or self.rotate or self.zoom or self.contrast)


class DataSection(_Strict):
    name: str = Field("mnist", description="mnist, fashion_mnist, cifar10, cifar100, or a path")
    data_dir: str | None = None
    validation_split: float = Field(0.1, ge=0, lt=1)
    stratify: bool = Field(True, description="the validation images keep each class's "
                           "share of the training images (false: a random share of all, "
                           "as runs made before 2026-12-07 were split)")
    limit: int | None = Field(None, ge=1, description="use only N training images: the first "
                              "N of arrays, a seeded random N of files or packed records")
    preprocessing: Literal[PREPROCESSING_MODES] | None = Field(
        None, description="default: the spec's")
    augment: AugmentSection | None = None
    image_size: list[Annotated[int, Field(ge=1, le=MAX_IMAGE_SIDE)]] | None = Field(
        None, min_length=2, max_length=2,
        description="[height, width] of the model's input (default: the network's); images "
        "of another size are resized to it")
    resize: ResizeMode = Field(
        "stretch", description="how images of another size reach the model's: stretch, "
        "center_crop (no distortion, edges cut) or pad (whole image, black borders); "
        "stored with the model, so prediction does the same")
    cache: Literal["auto", "memory", "disk", "none"] = Field(
        "auto", description="decoded, resized images of folders kept for later epochs: "
        "auto = memory when under a quarter of the free memory, else disk")
    offline: bool = False
    strict: bool = False


class FineTuneSection(_Strict):
    """`train.fine_tune:` the second stage: unfreeze, then go on at a low learning rate."""

    after_epochs: int = Field(ge=1, description="epochs of the first stage (frozen)")
    unfreeze: int | str = Field(
        "all", description="all, N (the last N frozen layers) or a layer name (it and every "
        "layer after it); BatchNormalization layers stay frozen")
    learning_rate: float = Field(1e-5, gt=0, description="the second stage's learning rate")

    @field_validator("unfreeze", mode="before")
    @classmethod
    def _all_number_or_name(cls, value):
        if (type(value) is int and value >= 1) or (isinstance(value, str) and value):
            return value
        raise ValueError("should be all, a number of layers (1 or more) or a layer name")


#: The epochs of a run that sets neither `epochs` nor `steps`.
DEFAULT_EPOCHS = 10


class TrainSection(_Strict):
    epochs: int | None = Field(None, ge=1, le=MAX_EPOCHS)
    steps: int | None = Field(None, ge=1, le=MAX_STEPS,
                              description="total optimizer steps (instead of epochs)")
    batch_size: int = Field(128, ge=1)
    optimizer: OptimizerSection = OptimizerSection()
    loss: str = "sparse_categorical_crossentropy"
    metrics: list[str] = ["accuracy"]
    schedule: ScheduleSection = ScheduleSection()
    weight_decay: float = Field(0.0, ge=0)
    label_smoothing: float = Field(0.0, ge=0, lt=1)
    early_stopping: EarlyStoppingSection | None = None
    seed: int = Field(0, ge=0, le=MAX_SEED)
    backup_every: int = Field(500, ge=1, description="steps between resumable backups")
    steps_per_execution: Literal["auto"] | int = Field(
        "auto", description="training steps per call into TensorFlow; auto: 4 or 2 "
        "when that divides an epoch's steps, else 1")
    jit_compile: Literal["auto"] | bool = Field(
        "auto", description="XLA: auto = on one GPU when the model supports it; not on "
        "the CPU (slower there) nor over several devices")
    fused_norm: bool = Field(
        True, description="train BatchNormalization with TensorFlow's fused kernel "
        "(1.2-1.5x the images/s); false: Keras' own operations")
    scale_lr: bool = Field(False, description="multiply the learning rate by the number of "
                           "replicas (GPUs), as the batch grows with them")
    precision: Literal[PRECISIONS] = Field(
        "auto", description="auto: mixed precision where it pays off (GPUs, CPUs with "
        "bfloat16 matrix units), else float32; a run records what auto chose")
    device: str = Field("auto", pattern=DEVICE_PATTERN,
                        description="auto, cpu, gpu or gpu:N; a run records what auto chose")
    freeze: int | str | list[str] | None = Field(
        None, description="layers not trained: backbone (default when the model has one), "
        "none, N (the first N layers) or a list of layer names or name prefixes")
    fine_tune: FineTuneSection | None = None

    @property
    def planned_epochs(self) -> int | None:
        """The epochs the run trains: `epochs`, else `DEFAULT_EPOCHS`; None when `steps`
        sets the length (its epochs depend on the data's size)."""
        return self.epochs or (None if self.steps else DEFAULT_EPOCHS)

    @field_validator("metrics", mode="before")
    @classmethod
    def _accuracy_by_its_name(cls, value):
        """``acc`` (Keras' short name) is ``accuracy``: one column, one figure to follow; a
        metric given twice is one (Keras would add a second, ``weighted_accuracy``)."""
        if isinstance(value, list):
            named = [SHORT_NAMES.get(m, m) if isinstance(m, str) else m for m in value]
            return [m for i, m in enumerate(named) if not isinstance(m, str)
                    or m not in named[:i]]
        return value

    @field_validator("optimizer", "schedule", mode="before")
    @classmethod
    def _a_name_alone(cls, value):
        """``optimizer: sgd`` is ``optimizer: {name: sgd}`` (the same for `schedule`)."""
        return {"name": value} if isinstance(value, str) else value

    @field_validator("jit_compile", mode="before")
    @classmethod
    def _auto_or_boolean(cls, value):
        """One error for anything else (not one per kind of value it may be)."""
        if value == "auto" or isinstance(value, bool):
            return value
        raise SettingError("should be auto, true or false", BOOLEAN_HINT)

    @field_validator("freeze", mode="before")
    @classmethod
    def _freeze_setting(cls, value):
        if value is None or value in FREEZE_WORDS or (type(value) is int and value >= 0) or (
                isinstance(value, list) and value
                and all(isinstance(v, str) and v for v in value)):
            return value
        close = suggest(value, FREEZE_WORDS) if isinstance(value, str) else ""
        raise ValueError("should be backbone, none, a number of layers (0 or more) or a "
                         "list of layer names" + (f" ({close})" if close else ""))

    @model_validator(mode="after")
    def _epochs_or_steps(self):
        if self.epochs is not None and self.steps is not None:
            raise SettingError("give `epochs` or `steps`, not both",
                               "--epochs N on the command line replaces `steps`; or remove "
                               "one of them (--set train.steps=null)")
        return self

    @field_validator("device", mode="before")
    @classmethod
    def _device_in_any_case(cls, value):
        """``GPU``, `` cpu`` are gpu, cpu (as ``--device`` of predict takes them); another
        value is kept as written, for the error to quote it."""
        if isinstance(value, str) and re.match(DEVICE_PATTERN, value.strip().lower()):
            return value.strip().lower()
        return value

    @field_validator("steps_per_execution", mode="before")
    @classmethod
    def _auto_or_positive(cls, value):
        if value == "auto" or (type(value) is int and value >= 1):
            return value
        raise ValueError("should be auto or a whole number >= 1")


class OutputSection(_Strict):
    dir: str = "runs"
    name: str | None = Field(None, description="a folder name inside `dir` (default: the "
                             "config file's name)")

    @field_validator("name")
    @classmethod
    def _plain_folder_name(cls, value):
        if value is not None and (problem := folder_name_problem(value)):
            raise ValueError(problem)
        return value


#: The longest folder name most file systems take (ext4, XFS, APFS: 255 bytes).
LONGEST_NAME = 255


def folder_name_problem(name: str) -> str | None:
    """Why `name` cannot be `output.name`, a folder of `output.dir` (runs go to
    ``dir/name/<n>``: a name with a path in it would write elsewhere), or None.

    >>> folder_name_problem("mnist"), folder_name_problem("..")
    (None, 'is not a plain folder name (no /, \\\\, . or ..): a path goes in `output.dir`')
    """
    if name in ("", ".", "..") or any(c in name for c in "/\\\0"):
        return "is not a plain folder name (no /, \\, . or ..): a path goes in `output.dir`"
    if (n := len(name.encode("utf-8", "surrogateescape"))) > LONGEST_NAME:
        return f"is {n} bytes long, longer than a folder name may be ({LONGEST_NAME} bytes)"
    return None


EMPTY_MODEL = "give a built-in name (mnist_net), a spec file, or an inline spec"


class RunConfig(_Strict):
    """A whole run config. `model` is one of three things: a built-in name or spec file
    (str), a network to start from (`ModelSection`, a mapping with `from:`), or an inline
    spec (a mapping with `layers:`, checked by `cnncli.model.spec`)."""

    model: str | ModelSection | dict[str, Any] = Field(
        description="built-in name, spec file, `from:` a network, or inline spec")
    data: DataSection = DataSection()
    train: TrainSection = TrainSection()
    output: OutputSection = OutputSection()

    @field_validator("model", mode="before")
    @classmethod
    def _name_or_mapping(cls, value):
        """One error for a value of another type (not one per member of the union)."""
        if not isinstance(value, str | dict | ModelSection):
            raise ValueError("should be a built-in name or a spec file (text), or a mapping: "
                             "`from:` a network, or an inline spec")
        return value

    @field_validator("model")
    @classmethod
    def _model_not_empty(cls, value):
        if not value:
            raise ValueError(EMPTY_MODEL)
        if isinstance(value, str) and Path(value).suffix.lower() in MODEL_FILES:
            raise ValueError("a model file is not a network (to start from a trained "
                             "model, write `model: {from: ...}` with its path)")
        return value

    _set_by: dict[str, str] = PrivateAttr(default_factory=dict)

    @property
    def set_by(self) -> dict[str, str]:
        """Keys given on the command line and how (`parse`'s `set_by`): their errors
        name that, not a line of the file."""
        return self._set_by

    @property
    def start_from(self) -> ModelSection | None:
        """The `model:` section when it names a network to start from (``from:``). A
        config built in Python with such a mapping (not read by `parse`, which says its
        errors at their lines) gets it checked and typed here.

        >>> RunConfig(model={"from": "vgg16"}).start_from.from_
        'vgg16'
        """
        if isinstance(self.model, dict) and "from" in self.model:
            self.model = ModelSection.model_validate(self.model)  # (its errors: pydantic's)
        return self.model if isinstance(self.model, ModelSection) else None

    @field_serializer("model")
    def _model_as_written(self, value):
        """A `from:` section as the user writes it: the keys given, not every default."""
        if isinstance(value, ModelSection):
            return value.model_dump(mode="json", by_alias=True, exclude_none=True)
        return value

    def resolved(self) -> dict:
        """The config as plain data (what is written to the run directory)."""
        return self.model_dump(mode="json", by_alias=True)

    def digest(self) -> str:
        """A hash of what shapes the run (used to refuse resuming a changed config)."""
        return digest_of(self.resolved())


def digest_of(data: dict) -> str:
    """The hash a run's ``config.yaml`` carries of its settings (`RunConfig.digest`)."""
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


def as_written(doc: dict) -> bool:
    """True if `doc`, a run's ``config.yaml`` as loaded, is what the run wrote: its
    `digest` matches its settings (not edited by hand, not cut short). Computed from the
    file's own settings, so a newer cnncli with more settings reads an older run alike.

    >>> doc = {"model": "mnist_net", "train": {"epochs": 3}}
    >>> as_written({**doc, "digest": digest_of(doc)}), as_written({**doc, "digest": "0"})
    (True, False)
    >>> as_written({**doc, 1: "a number as a key", "digest": "0"})
    False
    """
    try:
        return doc.get("digest") == digest_of({k: v for k, v in doc.items() if k != "digest"})
    except (TypeError, ValueError):  # a date or a number as a key: not a file cnncli wrote
        return False


def schema() -> dict:
    """JSON Schema of run configs, for editors (``cnncli schema``)."""
    return RunConfig.model_json_schema(by_alias=True)


#: Parts of a run config that RunConfig takes as plain mappings, and their own checks.
PARTS: dict[tuple, type[BaseModel]] = {("model",): ModelSection}
