"""``cnncli check``: everything ``cnncli train`` would refuse before its first step that
can be known without the data, for a spec or a whole run config, all problems at once.

A run config is checked as training checks it: the config's keys and ranges
(`cnncli.config`), the network (`cnncli.model.builder`), the optimizer, loss and
metrics resolved by Keras and tried on labels as cnncli makes them
(`cnncli.run.compile.check_training`), and what is frozen in each stage and the
backbone's weights file (`cnncli.run.transfer`; ImageNet weights not yet on this machine
are a warning: training downloads them). The model it returns is frozen as the run's
first stage would be.

>>> checked = check("configs/mnist.yaml")        # doctest: +SKIP
>>> checked.model.name, checked.warnings          # doctest: +SKIP
('mnist_net', [])
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from cnncli import config, runfolder, yamlio
from cnncli.data import datasets
from cnncli.errors import CnnError, ConfigError, InputTooSmall, raise_all, suggest
from cnncli.model import architectures, builder, pretrained, spec, transfer_spec
from cnncli.run import transfer
from cnncli.run.compile import check_training

#: Classes assumed for a run config whose data cnncli does not know by name (the data is
#: not read by `check`): enough for every loss and metric to be tried.
DEFAULT_CLASSES = 10


@dataclass
class Checked:
    """A valid spec or run config: the model it builds, its name as the spec gives it (the
    Keras model's keeps ASCII letters only), and warnings worth showing."""

    model: object
    warnings: list[str] = field(default_factory=list)
    name: str = ""

    @property
    def params(self) -> int:
        return int(self.model.count_params())

    @property
    def trainable_params(self) -> int:
        return int(sum(math.prod(w.shape) for w in self.model.trainable_weights))

    @property
    def frozen_params(self) -> int:
        return self.params - self.trainable_params

    @property
    def layers(self) -> int:
        """The layers after the input."""
        return len(self.model.layers) - 1

    def to_dict(self, file: str) -> dict:
        """``cnncli check --json``'s document for the checked `file`."""
        return {"valid": True, "file": file, "model": self.name or self.model.name,
                "layers": self.layers,
                "params": self.params, "trainable_params": self.trainable_params,
                "frozen_params": self.frozen_params, "warnings": self.warnings}


def check(path_or_name: str) -> Checked:
    """Check a spec or run config; raise every problem found (`ManyErrors` for several).
    The model is built without values for its weights (`builder.weightless`)."""
    path = architectures.resolve(path_or_name)
    doc = yamlio.load(path)
    if not _is_run_config(doc):
        built = _bare_spec(doc, path)
        return Checked(built.model, built.warnings, built.expanded.name)
    try:
        cfg = config.parse(doc, file=str(path))
    except CnnError as exc:  # go on with the rest, so every problem is reported at once
        raise_all(_every_problem(exc, doc, path))
    built, errors = _refused(cfg, str(path), classes=_trained_classes(path), shown=False,
                             doc=doc)
    raise_all(errors)
    return Checked(built.model, built.warnings, built.expanded.name)


def _no_config_hint(given: str) -> str:
    """What to say of a run config that does not exist: a network's name is not one."""
    example = "a run config is a YAML file such as configs/mnist.yaml, whose `model:` names " \
        "the network"
    if given in architectures.names() or given in pretrained.REGISTRY:
        return f"'{given}' is a network, not a run config: {example} (`model: {given}`)"
    return f"check the path; {example}"


def load_config(path: str, overrides: list[str] = (), origins: dict | None = None,
                values: dict | None = None) -> config.RunConfig:
    """`config.load` for ``train``: a config that fails validation has its optimizer,
    loss and metric names and its inline network checked too, so that every problem is
    reported at once, as `check` reports them."""
    if not Path(path).exists():  # (yamlio's hint offers built-in names: networks, not runs)
        raise ConfigError("the file does not exist", file=str(path), hint=_no_config_hint(
            str(path)))
    doc, set_by = config.load_document(path, overrides, origins, values)
    try:
        return config.parse(doc, file=str(path), set_by=set_by)
    except CnnError as exc:
        raise_all(_every_problem(exc, doc, Path(path), set_by))
        raise


def _every_problem(exc: CnnError, doc, path: Path, set_by: dict[str, str] | None = None
                   ) -> list[CnnError]:
    """The problems of a run config that failed validation (`exc`), with those of its
    optimizer, loss and metric names and of its inline network, each once."""
    errors = list(getattr(exc, "errors", [exc]))
    said = {str(e) for e in errors}
    errors += [e for e in _name_problems(doc, str(path), set_by) if str(e) not in said]
    return errors + _inline_network_problems(doc, path, errors)


def _network(cfg: config.RunConfig, file: str | None, classes: int | None = None, *,
             shown: bool = True, doc=None) -> tuple[spec.Spec, list[str]]:
    """The run config's network and notes about its data. Its classes are `classes` if
    given, else the config's `model.classes`, else the dataset's when they are cheap to
    know (`datasets.class_count`: a known name, a folder of class folders, packed
    records), else the network's own, else `DEFAULT_CLASSES`; when the network is `shown`
    (``summary``, ``train --dry-run``), a note says when its classes are a guess (no
    images or labels are read here). A `data.name` that names nothing is a note, not an
    error: the data may be made after the check (configs/transfer.yaml's photos), named
    by its line in `doc` (the loaded `file`, read again if not given) or its option."""
    name = cfg.data.name
    notes = [] if datasets.exists(name) else [_no_data(name, cfg, file, doc)]
    counted = datasets.class_count(name)
    network = spec.from_run_config(cfg, file=file, classes=counted)
    if classes is not None:
        return network.with_overrides(classes=classes), notes
    if network.classes is None:
        network = network.with_overrides(classes=DEFAULT_CLASSES)
    given = cfg.start_from is not None and cfg.start_from.classes is not None
    if shown and counted is None and not given:
        notes.append(f"the output layer has {network.classes} classes here: how many "
                     f"'{name}' has is known only when training reads it (set "
                     "`model.classes` to say)")
    return network, notes


def _no_data(name: str, cfg: config.RunConfig, file: str | None, doc) -> str:
    """The note for a `data.name` that is neither a known dataset nor a path here."""
    from cnncli.data.known import KNOWN

    given = cfg.set_by.get("data.name")
    if given is None and file:
        line = config.line_of(doc if doc is not None else yamlio.load(file), "data.name")
        given = f"{file}:{line}" if line else file
    close = (config.beside_config(name, file) if "data.name" not in cfg.set_by else None) \
        or suggest(name, list(KNOWN), listing="known datasets")
    return (f"{given + ': ' if given else ''}`data.name` '{name}' is neither a dataset "
            f"cnncli knows nor a file or folder under {Path.cwd()}: training would stop "
            f"there (make the data first, or give its path; {close})")


def build(path_or_name: str, *, classes: int | None = None) -> builder.Built:
    """The built network of a spec, built-in name or run config (`classes` overriding),
    for a run config frozen as its first stage would be (``cnncli summary``); its weights
    have no values (`builder.weightless`)."""
    path = architectures.resolve(path_or_name)
    doc = yamlio.load(path)
    if not _is_run_config(doc):
        return _bare_spec(doc, path, classes)
    return build_config(config.parse(doc, file=str(path)), str(path),
                        classes=classes or _trained_classes(path))


def _bare_spec(doc, path: Path, classes: int | None = None) -> builder.Built:
    """A spec file's network built without values for its weights, with `classes` if
    given; a spec whose ``$classes`` has no ``classes:`` (the data's count fills it in
    when a run config trains it) is built with `DEFAULT_CLASSES`, and a note says so."""
    network = spec.parse(doc, file=str(path), default_name=Path(path).stem)
    guessed = classes is None and network.classes is None and _uses_classes(doc)
    if guessed:
        classes = DEFAULT_CLASSES
    with builder.weightless():  # shapes and counts need no values
        built = builder.build_checked(network.with_overrides(classes=classes))
    if guessed:
        built.warnings.insert(0, f"the spec has no `classes:`, so `$classes` is "
                                 f"{DEFAULT_CLASSES} here: a run config training it takes "
                                 "the data's count (`summary --classes N` shows another)")
    return built


def _uses_classes(node) -> bool:
    """True if a value of the loaded spec is ``$classes`` (as the expander reads a
    parameter: the whole value; a description mentioning it is no use of it)."""
    if isinstance(node, dict):
        return any(_uses_classes(v) for v in node.values())
    if isinstance(node, list):
        return any(_uses_classes(v) for v in node)
    return node == "$classes"


def _trained_classes(path: Path) -> int | None:
    """The classes a run's model was trained for, when `path` is a run's config.yaml and
    the run has a model file recording them (its data may be gone, or not cheap to count:
    an npz)."""
    from cnncli.model import backbone, modelfile

    if Path(path).name != runfolder.CONFIG:
        return None
    try:  # the run's best.keras, else its model.keras
        meta = modelfile.read_meta(backbone.model_file(str(Path(path).parent)))
    except CnnError:  # no model file (yet), or a record that cannot be read
        return None
    return len(meta.class_names) if meta is not None and meta.class_names else None


def build_config(cfg: config.RunConfig, file: str | None, *, classes: int | None = None,
                 epochs: int | None = None) -> builder.Built:
    """The built network of a run config, frozen as its first stage would be; its
    weights have no values (`builder.weightless`): it is for showing, not running. With
    `epochs` (the run's), a fine-tuning stage that would never start is refused too."""
    built, errors = _assemble(cfg, file, classes=classes, epochs=epochs)
    raise_all(errors)
    return built


def _assemble(cfg: config.RunConfig, file: str | None, *, classes: int | None,
              epochs: int | None, shown: bool = True, doc=None
              ) -> tuple[builder.Built | None, list[CnnError]]:
    """The run config's network built without values for its weights (None if it cannot
    be: its problems are returned), with the notes about its data (`_network`) among its
    warnings, frozen as the first stage would be unless `train.freeze`/`fine_tune` do not
    fit it (those problems are returned); errors name their key's line in `doc` (the
    loaded `file`, read again if not given) or its option."""
    def located(errors: list[CnnError]) -> list[CnnError]:
        return _located(errors, doc, file, cfg.set_by)

    network = None
    try:
        with builder.weightless():  # a network cut from a model file: no values either
            network, notes = _network(cfg, file, classes, shown=shown, doc=doc)
            built = builder.build_checked(network)
    except CnnError as exc:
        return None, located(input_blamed(getattr(exc, "errors", [exc]), cfg.model, network,
                                          cfg.data.image_size))
    built.warnings[:0] = notes + transfer_spec.fresh_network_note(cfg.start_from) + \
        spec.resized_note(cfg)
    errors = located(transfer.problems(cfg.train, built.model, epochs, set_by=cfg.set_by))
    random = transfer.random_frozen_backbone(cfg.train, built)
    built.warnings += [random] if random else []
    if not errors:
        transfer.freeze_first_stage(built.model, cfg.train)
    return built, errors


def input_blamed(errors: list[CnnError], model: str | config.ModelSection | dict,
                 network: spec.Spec | None,
                 image_size: list[int] | None = None) -> list[CnnError]:
    """`errors`, with a window larger than what reaches it (`InputTooSmall`) said as the
    fault of the run config's setting that gave the input: `data.image_size` (`image_size`,
    which sizes every network's input), else `model.input` when it gives one for a network
    it names (``{from: vgg16, input: [8, 8, 3]}``): the layer's file is not what to change,
    and may be cnncli's own. The hint gives the smallest square input that fits
    (`builder.smallest_input`)."""
    source = model.from_ if isinstance(model, config.ModelSection) else None
    given = model.input if source else None  # (an inline spec's layers are the
    if image_size:  # user's own: said at their lines, unless the size came from the data)
        key, given, example = "data.image_size", list(image_size), "image_size: [{0}, {0}]"
    else:
        key, example = "model.input", "input: [{0}, {0}, " + f"{network and network.input[-1]}]"
    if not given or network is None or not any(
            isinstance(e, InputTooSmall) for e in errors):
        return errors
    name = source or (network.name if isinstance(model, str) else "the network")  # (inline:
    # named after its config file)
    side = builder.smallest_input(network)
    fits = (f"{name} fits {side}x{side} or larger (e.g. `{example.format(side)}`)" if side
            else f"no input up to {builder.LARGEST_SIDE}x{builder.LARGEST_SIDE} fits {name}")
    return [ConfigError(f"`{key}` {list(given)} is too small for {name}: "
                        f"{'at ' + e.where + ', ' if e.where else ''}{e.message}", hint=fits)
            if isinstance(e, InputTooSmall) else e for e in errors]


def dry_run(cfg: config.RunConfig, file: str | None, classes: int | None = None
            ) -> builder.Built:
    """What ``train --dry-run`` shows: the network built (`build_config`, with `classes`
    when the data has been read), once every problem of it and of the training settings
    that training would refuse without reading the data has been raised at once, as
    training raises them."""
    built, errors = _refused(cfg, file, classes=classes)  # as `check` finds them
    raise_all(errors)
    return built


def _refused(cfg: config.RunConfig, file: str | None, *, classes: int | None,
             shown: bool = True, doc=None) -> tuple[builder.Built | None, list[CnnError]]:
    """The network (`_assemble`) and every problem training would refuse it for without
    reading the data (what `check` and ``train --dry-run`` say): the network's, the
    freezing's, the training settings' and the weights files', each at its line of the
    config `file` (`doc`, read again if not given) or the option that gave it."""
    built, errors = _assemble(cfg, file, classes=classes, epochs=cfg.train.planned_epochs,
                              shown=shown, doc=doc)
    outputs = built.model.output.shape[-1] if built else DEFAULT_CLASSES
    errors += _training_problems(cfg.train, outputs, doc, file, cfg.set_by)
    return built, errors + _weights_problems(built, cfg, file)


def _weights_problems(built: builder.Built | None, cfg: config.RunConfig,
                      file: str | None) -> list[CnnError]:
    """The problems of the backbones' weights files (not there, not fitting; ImageNet's
    not yet on this machine is a note, added to `built`'s warnings: downloaded later)."""
    if built is None:
        return []
    found, notes = transfer.check_weights(built, cfg, file)
    found = config.locate(found, file, cfg.set_by)  # a missing `model.weights`: its line
    built.warnings += notes
    return found


def _training_problems(train: config.TrainSection, classes: int, doc, file: str | None,
                       set_by: dict[str, str] | None = None) -> list:
    """`check_training`'s problems, each with the line of the key it names in `doc` (the
    config `file`, read again when None) or, for a key set on the command line, how it was
    given: `set_by`."""
    try:
        check_training(train, classes, file=file)
    except CnnError as exc:
        return _located(getattr(exc, "errors", [exc]), doc, file, set_by)
    return []


def _located(errors: list[CnnError], doc, file: str | None,
             set_by: dict[str, str] | None) -> list[CnnError]:
    """`errors` at their keys' lines of `doc`, the loaded config `file` (read again, if
    there are errors, when `doc` is None), or at the options that set them (`set_by`)."""
    if doc is None:
        return config.locate(errors, file, set_by)
    return config.with_lines(errors, doc, set_by, file)


def _inline_network_problems(doc, path: Path, found: list[CnnError]) -> list[CnnError]:
    """The problems of a run config's inline network (a `model:` mapping with `layers:`)
    when the config has others: said with them, not after they are mended. None when the
    problems found already include the model's own."""
    model = doc.get("model") if isinstance(doc, dict) else None  # (an empty file: None)
    if not (isinstance(model, dict) and "layers" in model) or "from" in model or any(
            e.message.startswith("`model") for e in found):
        return []  # (`from:` with `layers:` beside it: that key is said to be unknown)
    try:
        _bare_spec(model, path)
    except CnnError as exc:
        return list(getattr(exc, "errors", [exc]))
    return []


def _name_problems(doc, file: str, set_by: dict[str, str] | None = None) -> list:
    """The optimizer, loss and metric names of a config that failed validation elsewhere."""
    train = doc.get("train") if isinstance(doc, dict) else None
    if not isinstance(train, dict):
        return []
    fields = {}
    if isinstance(train.get("loss"), str):
        fields["loss"] = train["loss"]
    metrics = train.get("metrics")
    if isinstance(metrics, list) and all(isinstance(m, str) for m in metrics):
        fields["metrics"] = metrics
    optimizer = train.get("optimizer")
    name = optimizer.get("name") if isinstance(optimizer, dict) else optimizer
    if isinstance(name, str):
        fields["optimizer"] = config.OptimizerSection.model_construct(name=name)
    if not fields:
        return []
    defaults = config.TrainSection()  # its sections as sections, not dicts
    section = config.TrainSection.model_construct(**{
        **{key: getattr(defaults, key) for key in config.TrainSection.model_fields}, **fields})
    return _training_problems(section, DEFAULT_CLASSES, doc, file, set_by)


#: The sections of a run config: a document with any of them and no `layers:` is one (a
#: run config that forgot `model:` is told so, not read as a spec with unknown keys).
RUN_CONFIG_SECTIONS = ("model", "data", "train", "output")


def _is_run_config(doc) -> bool:
    return isinstance(doc, dict) and "layers" not in doc and any(
        section in doc for section in RUN_CONFIG_SECTIONS)
