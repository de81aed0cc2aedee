"""Run configs: one YAML file with `model`, `data`, `train` and `output` sections.

Validated as a whole (pydantic) before anything starts; every problem is reported
with the key and the line it is on.

>>> cfg = parse({"model": "mnist_net", "data": {"name": "mnist"}, "train": {"epochs": 2}})
>>> cfg.train.epochs, cfg.train.optimizer.name, cfg.train.optimizer.learning_rate
(2, 'adam', 0.001)
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from cnncli import yamlio
from cnncli.errors import CnnError, ConfigError, ManyErrors, suggest
from cnncli.files import MODEL_FILES

#: How pixels 0..255 become model inputs (cnncli.data.pipeline implements them).
#: scale: x / 255; none: float 0..255; tf: [-1, 1]; caffe: RGB->BGR minus the ImageNet
#: mean (keras.applications.vgg16.preprocess_input); torch: x / 255, then the ImageNet
#: mean / std per channel.
PREPROCESSING_MODES = ("scale", "none", "tf", "caffe", "torch")
#: The words ``train.freeze`` takes besides a number of layers or a list of names.
FREEZE_WORDS = ("backbone", "none")
#: Values of ``train.precision`` (and ``--precision``); auto: see cnncli.devices.
PRECISIONS = ("auto", "float32", "mixed_float16", "mixed_bfloat16")
#: Values of ``train.device`` (and ``--device``): auto, cpu, gpu, gpu:N.
DEVICE_PATTERN = r"^(auto|cpu|gpu|/?gpu:\d+)$"
DEVICE_FORMS = "auto, cpu, gpu or gpu:N (N = 0, 1, ... as TensorFlow numbers them)"


def device_hint(value: object) -> str:
    """What to say about a device that is none of `DEVICE_FORMS` (the did-you-mean).

    >>> device_hint("cpus"), device_hint("/cpu:0"), device_hint("TPU")
    ("did you mean 'cpu'?", "did you mean 'cpu'?", 'cnncli runs on GPUs and CPUs, not TPUs')
    >>> device_hint("gpu:0,1"), device_hint("gpus 0, 1,")[-35:]
    ("several GPUs: 'gpu' (all visible), or CUDA_VISIBLE_DEVICES=0,1 with 'gpu'", \
"CUDA_VISIBLE_DEVICES=0,1 with 'gpu'")
    """
    text = str(value).strip().lower().lstrip("/")
    if text.startswith("tpu"):
        return "cnncli runs on GPUs and CPUs, not TPUs"
    if text.startswith("gpu") and "," in text:  # gpu:0,1 / GPU 0,1: a list of GPUs
        numbers = ",".join(re.findall(r"\d+", text))
        return (f"several GPUs: 'gpu' (all visible), or CUDA_VISIBLE_DEVICES={numbers} "
                "with 'gpu'")
    if text.startswith("cpu"):  # cpu:0, /cpu:0 (TensorFlow's names): one CPU device
        return "did you mean 'cpu'?"
    return suggest(text, ["auto", "cpu", "gpu", "gpu:0"])


#: What a pattern's values are, in words, and what to say about another value.
_PATTERN_WORDS = {DEVICE_PATTERN: (DEVICE_FORMS, device_hint)}
#: The largest run cnncli accepts: more is a typo (and the data order of every epoch
#: must fit the step counters).
MAX_EPOCHS = 1_000_000
MAX_STEPS = 10**9
MAX_SEED = 2**32 - 1  # what Keras' and NumPy's seeding take
MAX_IMAGE_SIDE = 16384


#: How images of another size are brought to the model's (`cnncli.data.images.resize`).
ResizeMode = Literal["stretch", "center_crop", "pad"]
RESIZE_MODES: tuple[str, ...] = get_args(ResizeMode)

class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)


#: `model.weights` words (anything else is a weights file).
WEIGHTS_WORDS = ("imagenet", "none")


class SettingError(ValueError):
    """A validator's ValueError with a hint (a did-you-mean) to show apart from it."""

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.hint = hint


def weights_setting(value: str) -> str:
    """A pretrained network's `weights` (`model.weights`, a spec's ``pretrained:``):
    imagenet or none in any case, or a weights file, whose name has a suffix
    (``.weights.h5``, ``.h5``, ``.keras``): ``imagenett`` is a typo, a ValueError.

    >>> weights_setting(" ImageNet"), weights_setting("mine.weights.h5")
    ('imagenet', 'mine.weights.h5')
    """
    if value.strip().lower() in WEIGHTS_WORDS:
        return value.strip().lower()
    if not value.strip():
        raise ValueError("is empty: give imagenet, none or a weights file")
    if not Path(value).suffix:
        raise SettingError("should be imagenet, none or a weights file (a name with its "
                           "suffix, e.g. mobilenet_v2_notop.weights.h5)",
                           suggest(value, WEIGHTS_WORDS))
    return value


class ModelSection(_Strict):
    """`model:` a built-in name or spec path, with overrides; or a network to start from:
    a pretrained one (resnet50...) or a run folder or .keras file, with a new head."""

    from_: str | None = Field(None, alias="from", description="built-in name, spec file, "
                              "pretrained network (resnet50...), run folder or .keras file")
    classes: int | None = Field(None, ge=1, description="number of classes (default: dataset's)")
    input: list[int] | None = Field(None, description="input volume [h, w, c]")
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


class EarlyStoppingSection(_Strict):
    patience: int = Field(5, ge=1)
    monitor: str = "val_loss"
    min_delta: float = Field(0.0, ge=0)
    mode: Literal["auto", "min", "max"] = Field(
        "auto", description="auto: the direction Keras knows for the metric (loss: min, "
        "accuracy and AUC: max)")


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
        """``acc`` (Keras' short name) is ``accuracy``: one column, one figure to follow."""
        if isinstance(value, list):
            return ["accuracy" if m == "acc" else m for m in value]
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
        # runs go to dir/name/<n>: a name with a path in it would write elsewhere
        if value is not None and (value in ("", ".", "..") or any(c in value for c in "/\\\0")):
            raise ValueError("should be a plain folder name (no /, \\, . or ..); put the "
                             "folder in `output.dir`")
        return value


_EMPTY_MODEL = "give a built-in name (mnist_net), a spec file, or an inline spec"


class RunConfig(_Strict):
    model: str | dict[str, Any] = Field(description="built-in name, spec file, or inline spec")
    data: DataSection = DataSection()
    train: TrainSection = TrainSection()
    output: OutputSection = OutputSection()

    @field_validator("model")
    @classmethod
    def _model_not_empty(cls, value):
        if not value:
            raise ValueError(_EMPTY_MODEL)
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


def parse(doc: Any, *, file: str | None = None, set_by: dict[str, str] | None = None
          ) -> RunConfig:
    """Validate a loaded YAML document as a run config; raise all problems found.
    `set_by` maps keys given on the command line to how they were given (``--epochs 0``):
    their errors name that, not a line of `file`."""
    if doc is None:
        raise ConfigError("the config is empty", file=file,
                          hint="a run config needs at least `model:`; see configs/mnist.yaml")
    if not isinstance(doc, dict):
        raise ConfigError("a run config must be a mapping with `model:`, `data:`, `train:`",
                          file=file, line=yamlio.line_of(doc))
    doc.pop("digest", None)  # a run's own saved config.yaml has one
    model = doc.get("model")
    odd = next((k for k in model if not isinstance(k, str)), "") if isinstance(
        model, dict) else ""  # an inline spec's `1: 2`: pydantic words it as a union's
    empty = "model" in doc and (model is None or model == {} or (
        isinstance(model, str) and not model.strip()))  # `model:`, `model: ''`, `{}`
    if empty or odd != "":  # pydantic: "not a string", "not a dict"
        given = _given("model", set_by)
        message, hint = ("`model` is empty", _EMPTY_MODEL) if empty else \
            odd_key(odd, "`model`")
        line = _locate(doc, ["model"])[1] if empty else yamlio.key_line(model, odd)
        first = ConfigError(message, file=None if given else file, where=given,
                            line=None if given else line, hint=hint)
        try:  # the rest, with a model in its place: every problem is reported at once
            RunConfig.model_validate({**doc, "model": "linear"})
        except ValidationError as exc:
            rest = _as_config_errors(exc, doc, file, set_by=set_by or {})
            raise ManyErrors([first, *getattr(rest, "errors", [rest])]) from None
        raise first
    try:
        cfg = RunConfig.model_validate(doc)
    except ValidationError as exc:
        raise _as_config_errors(exc, doc, file, set_by=set_by or {}) from None
    cfg._set_by = dict(set_by or {})
    if isinstance(cfg.model, dict) and "from" in cfg.model:
        check_part(("model",), cfg.model, doc, file)  # `model: {from: vgg16, classes: 0}`
    _check_monitor(cfg, doc, file, set_by)
    return cfg


def _check_monitor(cfg: RunConfig, doc: Any, file: str | None,
                   set_by: dict[str, str] | None = None) -> None:
    """`train.early_stopping.monitor` must be a figure training records, or it never stops."""
    es = cfg.train.early_stopping
    if es is None:
        return
    figures = ["loss", *cfg.train.metrics]
    if cfg.data.validation_split > 0:
        figures += [f"val_{f}" for f in figures]
    if es.monitor not in figures:
        raise with_lines([ConfigError(
            f"`train.early_stopping.monitor`: '{es.monitor}' is not a figure this run records",
            hint=suggest(es.monitor, figures, listing="recorded"))], doc, set_by, file)[0]


def load(path: str | Path, overrides: list[str] = (),
         origins: dict[str, str] | None = None, values: dict[str, Any] | None = None
         ) -> RunConfig:
    """Read a run config file and apply ``key.sub=value`` overrides (the value read as
    YAML), then `values` (dotted key -> value as it is: an option's text is text, never
    YAML); an error in either names it as given (``--set train.epochs=0``, or
    `origins[key]`, e.g. ``--epochs 0`` for a shortcut), not a line of the file.

    A run's own saved config (``runs/x/1/config.yaml``) carries a `digest` key,
    which `parse` drops.
    """
    doc, set_by = load_document(path, overrides, origins, values)
    return parse(doc, file=str(path), set_by=set_by)


def load_document(path: str | Path, overrides: list[str] = (),
                  origins: dict[str, str] | None = None, values: dict[str, Any] | None = None
                  ) -> tuple[Any, dict[str, str]]:
    """`load`'s document with the overrides and values applied, not validated yet, and
    what set each key (`parse`'s `set_by`)."""
    doc = yamlio.load(path)
    set_by = {}
    if isinstance(doc, dict):
        for item in overrides:
            apply_override(doc, item, said=(origins or {}).get(item.partition("=")[0]
                                                                .strip()))
            key = item.partition("=")[0].strip()
            set_by[key] = (origins or {}).get(key, f"--set {item}")
        for key, value in (values or {}).items():
            said = (origins or {}).get(key, f"--set {key}={value}")
            set_value(doc, key, value, said=said)
            set_by[key] = said
    return doc, set_by


def load_run_config(path: str | Path) -> RunConfig:
    """A run's own ``config.yaml`` (what ``--resume`` continues), refused if it is not
    what the run wrote: a backup continues only the settings it was made with."""
    doc = yamlio.load(path)
    if isinstance(doc, dict) and not as_written(doc):
        raise ConfigError(
            "the run's config.yaml is not the one the run wrote (it was edited, or cut "
            "short): a backup continues only the settings it was made with", file=str(path),
            hint="put the file back as it was; to change a setting on resuming, give it on "
                 "the command line (cnncli train --resume RUN --set KEY=VALUE --force), or "
                 "start a new run")
    return parse(doc, file=str(path))


def apply_override(doc: dict, item: str, said: str | None = None) -> None:
    """Set ``train.epochs=3`` style overrides (the value is read as YAML); `said`: how the
    user gave it, for errors (``--weights FILE``), else ``--set key``."""
    if "=" not in item or not item.partition("=")[0].strip():
        raise ConfigError(f"--set '{item}' is not of the form key=value",
                          hint="e.g. --set train.epochs=3")
    key, _, text = item.partition("=")
    set_value(doc, key, yamlio.loads(text, f"--set {key}") if text else None,
              said=said or f"--set {item}")


def set_value(doc: dict, key: str, value: Any, said: str) -> None:
    """Set the dotted `key` (``train.epochs``) of `doc` to `value`, making sections on the
    way; `said`: how the user gave it, for errors."""
    *sections, last = key.strip().split(".")
    if not all(part.strip() for part in [*sections, last]):  # `.x`, `train..epochs`
        raise ConfigError(f"{said}: `{key.strip()}` is not a key (a name between each dot)",
                          hint="e.g. --set train.epochs=3")
    target = doc
    for part in sections:
        target = target.setdefault(part, {})
        if not isinstance(target, dict):
            raise ConfigError(f"{said}: `{part}` in the config is "
                              f"{target!r}, not a section with `{last}`",
                              hint=OVERRIDE_HINTS.get(key.strip(), f"write `{part}` as a "
                                                      "section in the config"))
    target[last] = value


#: What to do when an option's section is a plain value in the config.
OVERRIDE_HINTS = {"model.weights": "--weights goes with a pretrained network to start from: "
                  "model: {from: mobilenet_v2} (see `cnncli models`)"}


#: Parts of a run config that RunConfig takes as plain mappings, and their own checks.
_PARTS: dict[tuple, type[BaseModel]] = {("model",): ModelSection}


def check_part(where: tuple, value: dict, doc: Any, file: str | None):
    """Validate the mapping at `where` (a key of `_PARTS`), errors named like the rest."""
    try:
        return _PARTS[where].model_validate(value)
    except ValidationError as exc:
        raise _as_config_errors(exc, doc, file, prefix=where) from None


def _as_config_errors(exc: ValidationError, doc: dict, file: str | None,
                      prefix: tuple = (), set_by: dict[str, str] | None = None
                      ) -> ConfigError:
    """One ConfigError per pydantic error; `prefix` is where the validated part sits;
    `set_by` as in `parse`."""
    errors = []
    for err in exc.errors():
        loc = [*prefix, *_user_path(_locate(doc, list(prefix))[0], err["loc"])]
        key = ".".join(str(p) for p in loc) or "(top level)"
        parent, line = _locate(doc, loc)
        given = _given(key, set_by)
        message = err["msg"].removeprefix("Value error, ")  # our own validators' words
        hint = None
        if err["type"] == "invalid_key":  # `~: 3`, `1: 2`: pydantic's loc holds str(key)
            where, found = _locate(doc, loc[:-1])
            odd = next((k for k in (where if isinstance(where, dict) else ())
                        if not isinstance(k, str) and str(k) == str(loc[-1])), err["input"])
            line = yamlio.key_line(where, odd, found)
            section = ".".join(map(str, loc[:-1]))
            message, hint = odd_key(odd, f"`{section}`" if section else "")
        elif err["type"] == "extra_forbidden":
            choices = _fields_at(loc[:-1])
            message = f"unknown key '{key}'"
            inside = next((c for c in choices if str(loc[-1]) in _fields_at([*loc[:-1], c])),
                          None)  # train.learning_rate: it sits in train.optimizer
            hint = (f"did you mean '{'.'.join(map(str, [*loc[:-1], inside, loc[-1]]))}'?"
                    if inside else suggest(loc[-1], choices,
                                           listing="valid keys here" if choices else None))
        elif err["type"] == "missing" and loc == ["model"]:
            message = "`model` is missing: the network to train"
            hint = ("add `model:` with a built-in name (`model: mnist_net`, `cnncli models` "
                    "lists them), a spec file, or `layers:` under it")
        elif err.get("input", ...) is None and err["type"] == "model_type":
            message = f"`{key}` is empty"  # `train:` with nothing under it
            hint = (f"set one of its keys: --set {key}.KEY=VALUE" if given else
                    f"write its settings under it, or leave `{loc[-1]}:` out for the defaults")
        elif err["type"] == "string_pattern_mismatch" and err.get("ctx", {}).get(
                "pattern") in _PATTERN_WORDS:  # not the regular expression
            words, say = _PATTERN_WORDS[err["ctx"]["pattern"]]
            message = f"`{key}`: {err['input']!r} is not one of {words}"
            hint = say(err["input"]) or None
        elif message.startswith("is empty: "):  # our validators': `from:` with nothing
            message, hint = f"`{key}` is empty", message.removeprefix("is empty: ")
        elif "input" in err and err["type"] not in ("missing",) and not isinstance(
                err["input"], dict):
            message = f"`{key}`: {message.lower()}, got {err['input']!r}"
            if isinstance(err["input"], str) and err["type"].startswith(("int", "float")):
                hint = "write a number without quotes, e.g. 10, 0.001 or 1e-3"
            elif isinstance(err["input"], str) and err["type"].startswith("bool"):
                hint = BOOLEAN_HINT
        else:
            message = f"`{key}`: {message.lower()}"
        if isinstance(err.get("ctx", {}).get("error"), SettingError):
            hint = err["ctx"]["error"].hint
        if given:  # from the command line: not in the file
            errors.append(ConfigError(message, where=given, hint=hint))
        else:
            errors.append(ConfigError(message, file=file, line=line, hint=hint))
    unique = {str(e): e for e in errors}
    values = list(unique.values())
    return values[0] if len(values) == 1 else ManyErrors(values)


#: What to write for a setting that takes a boolean and was given something else.
BOOLEAN_HINT = "write true or false (YAML's yes/no/on/off are not booleans here)"

#: How a key that YAML read as another type than text is described.
_KINDS = {bool: "true or false", int: "a number", float: "a number"}


def odd_key(key: Any, inside: str) -> tuple[str, str]:
    """What to say about a `key` that is not text (``~: 3``, ``1: 2``) in the mapping
    `inside` names (```train```, "the spec"; "" for the top level): (message, hint)."""
    where = f" in {inside}" if inside else ""
    if key is None:
        return (f"a key{where} is empty",
                "write the key's name before the colon (`~` and `null` are no name)")
    return (f"the key {key!r}{where} is {_KINDS.get(type(key), 'a value')}, not a name",
            "put the key in quotes if it is meant as a name")


def _user_path(node: Any, parts) -> list:
    """A pydantic error location as the user's keys: pydantic also puts the union member
    it tried ('str', 'dict[str,any]') into it, which is dropped unless the user's document
    has such a key there (a key may be called '[')."""
    kept = []
    for part in parts:
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            node = node[part]
        elif isinstance(part, str) and ("[" in part or part == "str"):
            continue
        else:
            node = None
        kept.append(part)
    return kept


def _locate(doc: Any, loc: list) -> tuple[Any, int | None]:
    node, line = doc, yamlio.line_of(doc)
    for part in loc:
        if isinstance(node, yamlio.YamlMap) and part in node:
            line = node.key_line(part)
            node = node[part]
        elif isinstance(node, yamlio.YamlList) and isinstance(part, int) and part < len(node):
            line = node.item_line(part)
            node = node[part]
        else:
            break
    return node, line


def _in(doc: Any, key: str) -> bool:
    """Whether the dotted `key` is written in the loaded config `doc`."""
    node = doc
    for part in key.split("."):
        if not (isinstance(node, dict) and part in node):
            return False
        node = node[part]
    return True


def with_lines(errors: list[CnnError], doc: Any, set_by: dict[str, str] | None = None,
               file: str | None = None) -> list[CnnError]:
    """`errors`, each whose message starts with the key it is about (`` `train.loss`: ``)
    given that key's line in `doc` (the loaded config `file`) if it has none, or, for a
    key set on the command line (`set_by` as in `parse`), named by how it was given."""
    for error in errors:
        key = re.match(r"`([\w.]+)", error.message)
        given = _given(key.group(1), set_by, named_in=error.message) if key else None
        if key and not given and not _in(doc, key.group(1)):  # only the command line
            given = _given(key.group(1), set_by)  # made it (--set train.fine_tune.x=1)
        if given and not error.line:
            error.file, error.where = None, given
        else:
            error.line = error.line or (line_of(doc, key.group(1)) if key else None)
            error.file = error.file or file
    return errors


def locate(errors: list[CnnError], file: str | None, set_by: dict[str, str] | None = None
           ) -> list[CnnError]:
    """`with_lines` for errors about the settings of the config `file` (read again only
    when there are errors)."""
    return with_lines(errors, yamlio.load(file), set_by, file) if errors and file else errors


def _given(key: str, set_by: dict[str, str] | None, named_in: str | None = None
           ) -> str | None:
    """How `key` was set on the command line (``--set train.epochs=0``), if it was: at or
    above the key, or in it (with `named_in`, a message, only a setting it names: `--lr`
    is not what is wrong with a file's `momentum`).

    >>> given = {"train.optimizer.learning_rate": "--lr 0.01"}
    >>> _given("train.optimizer", given), _given("train.optimizer", given, "`momentum`: ...")
    ('--lr 0.01', None)
    """
    return next((how for k, how in (set_by or {}).items()
                 if key == k or key.startswith(k + ".") or (
                     k.startswith(key + ".")
                     and (named_in is None or k.rsplit(".", 1)[-1] in named_in))), None)


def line_of(doc: Any, key: str) -> int | None:
    """The line of the dotted `key` (``train.optimizer.name``) in a loaded config, or of
    the deepest part of it that exists."""
    return _locate(doc, key.split("."))[1]


def _fields_at(loc: list) -> list[str]:
    model: type[BaseModel] = RunConfig
    for where, part_model in _PARTS.items():
        if tuple(loc[:len(where)]) == where:
            model, loc = part_model, loc[len(where):]
    for part in loc:
        field = model.model_fields.get(str(part))
        annotation = getattr(field, "annotation", None) if field else None
        candidates = [a for a in getattr(annotation, "__args__", (annotation,))
                      if isinstance(a, type) and issubclass(a, BaseModel)]
        if not candidates:
            return []
        model = candidates[0]
    return [f.alias or name for name, f in model.model_fields.items()]


def beside_config(text: str, config_file: str | None) -> str | None:
    """A hint for a relative path in a run config that names nothing from the current
    folder but a file from the config's folder (paths are read from the current folder,
    as on the command line), or None.

    >>> beside_config("nets/a.yaml", None) is None
    True
    """
    if not config_file or Path(text).is_absolute():
        return None
    there = Path(config_file).parent / text
    try:
        if not there.exists():
            return None
    except OSError:  # a name too long to be a file name
        return None
    return (f"'{text}' is there from the config's folder ({there}); paths in a config are "
            f"read from the folder cnncli runs in: write '{os.path.relpath(there)}', or run "
            f"cnncli from {Path(config_file).parent}")
