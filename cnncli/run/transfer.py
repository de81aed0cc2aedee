"""Training from a trained network: which layers are frozen in each stage, the weights
it starts from, and what the run records about them.

Checked before anything is written (`problems`, which ``cnncli check`` runs too), then
applied when the model is built (`prepare`): the pretrained weights loaded, the frozen
layers made non-trainable. A frozen BatchNormalization layer is itself non-trainable, so
Keras runs it in inference mode and its moving mean and variance stay as loaded; calling
the backbone with ``training=False``, as Keras' guide does, does not keep them fixed
once ``fit`` runs after unfreezing (keras-team/keras#20285, checked with Keras 3.15.1).
Unfreezing for the second stage (`train.fine_tune`) leaves BatchNormalization layers
frozen, as Keras' guide advises.

Layers are named by their path: ``fc1`` for a layer of the model, ``resnet50/conv1_conv``
for one inside a backbone; a name in ``train.freeze`` also matches every layer whose path
or own name starts with it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from cnncli import config, text, yamlio
from cnncli.errors import CnnError, ConfigError, ManyErrors, ModelError, raise_all, suggest
from cnncli.model import backbone, backbone_weights


@dataclass(frozen=True)
class SourceModel:
    """The model file a network was cut from, as a run records it (metrics.json)."""

    backbone: str  # what `model.from` said: a run folder or a .keras file
    cut: str  # the last layer kept
    file: str
    sha256: str

    def to_json(self) -> dict:
        return {"backbone": self.backbone, "cut": self.cut, "file": self.file,
                "sha256": self.sha256}


@dataclass
class Transfer:
    """What a run starts from and freezes, worked out before anything is written.

    Args:
        backbone: the backbone's name (``resnet50``) or the model it was cut from.
        freeze: the setting applied (``train.freeze``, ``auto`` resolved).
        frozen: paths of the layers frozen in the first stage.
        unfrozen: paths of the layers the second stage unfreezes.
        fine_tune: ``train.fine_tune``, or None for one stage.
        weights: each pretrained backbone's weights file (with its SHA-256).
        sources: each model cut from (its file and SHA-256).
    """

    backbone: str | None
    freeze: str | int | list
    frozen: list[str]
    unfrozen: list[str] = field(default_factory=list)
    fine_tune: config.FineTuneSection | None = None
    weights: list[backbone_weights.WeightsFile] = field(default_factory=list)
    sources: list[SourceModel] = field(default_factory=list)

    def frozen_in(self, stage: int) -> set[str]:
        """The paths of the layers frozen in `stage` (0: first, 1: fine-tuning)."""
        return set(self.frozen) - (set(self.unfrozen) if stage else set())

    def to_json(self, *, fine_tuned: bool) -> dict:
        """The record of a run (`fine_tuned`: its second stage started; a run that early
        stopping ended in the first unfroze nothing)."""
        ft = self.fine_tune
        return {"backbone": self.backbone, "freeze": self.freeze,
                "frozen_layers": len(self.frozen),
                "weights": [w.to_json() for w in [*self.weights, *self.sources]],
                "fine_tune": ft.model_dump() if ft else None,
                "fine_tuned_from_epoch": ft.after_epochs + 1 if ft and fine_tuned else None,
                "unfrozen_layers": len(self.unfrozen) if fine_tuned else 0}


def freeze_setting(train: config.TrainSection, model) -> str | int | list:
    """`train.freeze`, where unset: ``backbone`` when the model has one, else ``none``."""
    if train.freeze is not None:
        return train.freeze
    return "backbone" if backbone.backbones(model) else "none"


def most_to_freeze(model) -> str:
    """How many layers `train.freeze: N` may freeze and something still learns: those
    before the last layer with weights (the classifier)."""
    leaves = backbone.leaf_layers(model)
    last = max((i for i, (_, layer) in enumerate(leaves) if layer.weights), default=0)
    also = ", or `freeze: backbone` (the pretrained layers only)" \
        if backbone.backbones(model) else ""
    return f"freeze at most {last} (the layers before {leaves[last][0]}, which must learn)" \
        f"{also}" if leaves else "use `freeze: none`"


def frozen_paths(model, setting) -> list[str]:
    """The layer paths `setting` (``train.freeze``) freezes, in network order."""
    leaves = backbone.leaf_layers(model)
    paths = [path for path, _ in leaves]
    if setting == "none":
        return []
    if setting == "backbone":
        inside = {f"{b.name}/" for b in backbone.backbones(model)}
        if not inside:
            raise ConfigError("`train.freeze: backbone`: this model has no backbone (no "
                              "`pretrained:` layer, no `model.from` network)",
                              hint="freeze layers by name or number, or use `freeze: none`")
        return [p for p in paths if any(p.startswith(b) for b in inside)]
    if isinstance(setting, int):
        if setting > len(paths):
            raise ConfigError(f"`train.freeze: {setting}`: the model has {len(paths)} "
                              "layers", hint=most_to_freeze(model))
        return paths[:setting]
    unknown = [n for n in dict.fromkeys(setting) if not any(_matches(p, n) for p in paths)]
    if unknown:  # each said; a prefix gets a prefix as its "did you mean"
        raise_all([ConfigError(f"`train.freeze`: no layer is named '{name}' or starts with "
                               "it", hint=suggest(name, _names(paths) + _prefixes(paths, name)))
                   for name in unknown])
    return [p for p in paths if any(_matches(p, n) for n in setting)]


def unfrozen_paths(model, frozen: list[str], fine_tune) -> list[str]:
    """The frozen layers `fine_tune.unfreeze` makes trainable (never BatchNormalization)."""
    leaves = dict(backbone.leaf_layers(model))
    order = list(leaves)
    unfreeze = fine_tune.unfreeze
    if unfreeze == "all":
        chosen = frozen
    elif isinstance(unfreeze, int):
        if unfreeze > len(frozen):
            raise ConfigError(f"`train.fine_tune.unfreeze: {unfreeze}`: only {len(frozen)} "
                              "layers are frozen", hint="use `all` or a smaller number")
        chosen = frozen[-unfreeze:]
    else:
        start = next((p for p in order if p == unfreeze or p.split("/")[-1] == unfreeze),
                     None)
        if start is None:
            raise ConfigError(f"`train.fine_tune.unfreeze`: no layer is named '{unfreeze}'",
                              hint=suggest(unfreeze, _names(order)))
        later = set(order[order.index(start):])
        chosen = [p for p in frozen if p in later]
    # a layer without weights (ReLU, pooling) learns nothing when "unfrozen": not counted
    return [p for p in chosen if not _is_batch_norm(leaves[p]) and leaves[p].weights]


def problems(train: config.TrainSection, model, epochs: int | None, *,
             steps_per_epoch: int | None = None, set_by: dict[str, str] | None = None
             ) -> list[CnnError]:
    """Everything wrong with `train.freeze` and `train.fine_tune` for `model` (run for
    `epochs`, when known: `train.steps` of `steps_per_epoch` each, or `train.epochs`, set on
    the command line as `set_by` says): unknown layer names, nothing to unfreeze, a second
    stage that would never start."""
    errors: list[CnnError] = []
    try:
        frozen = frozen_paths(model, freeze_setting(train, model))
    except ConfigError as exc:  # (or several) said with the fine-tuning's own problems
        errors += exc.errors if isinstance(exc, ManyErrors) else [exc]
        frozen = None
    learning = [p for p, layer in backbone.leaf_layers(model)
                if layer.weights and p not in set(frozen or [])]
    if frozen and not learning:
        errors.append(ConfigError(
            f"`train.freeze` freezes every layer with weights ({len(frozen)} layers), the "
            "new classifier too: nothing would learn", hint=most_to_freeze(model)))
    ft = train.fine_tune
    if ft is None:
        return errors
    if epochs is not None and ft.after_epochs >= epochs:
        errors.append(_never_starts(ft.after_epochs, epochs, train.steps, steps_per_epoch,
                                    config.given_by("train.epochs", set_by)))
    if frozen is None:  # what `unfreeze` names can still be checked
        if isinstance(ft.unfreeze, str) and ft.unfreeze != "all":
            try:
                unfrozen_paths(model, [], ft)
            except ConfigError as exc:
                errors.append(exc)
        return errors
    if not frozen:
        errors.append(ConfigError("`train.fine_tune` unfreezes layers, but `train.freeze` "
                                  "freezes none", hint="freeze the backbone (`freeze: "
                                  "backbone`) or some layers for the first stage"))
        return errors
    try:
        if not unfrozen_paths(model, frozen, ft):
            errors.append(ConfigError(
                "`train.fine_tune.unfreeze` unfreezes no layer with weights "
                "(BatchNormalization layers stay frozen)",
                hint="unfreeze more layers, e.g. `unfreeze: all`"))
    except ConfigError as exc:
        errors.append(exc)
    return errors


def plan(cfg: config.RunConfig, built, epochs: int, *, steps_per_epoch: int | None = None,
         file: str | None = None, download: bool = True) -> Transfer | None:
    """The run's `Transfer` (None when nothing is pretrained or frozen): checks, then
    finds each pretrained backbone's weights file (Keras downloads it when missing, not
    offline and `download`: else ImageNet's not here yet is left out, for a plan only
    shown, whose `check_weights` notes it) and checks that it fits. Raises every problem
    found."""
    model, t = built.model, cfg.train
    errors = problems(t, model, epochs, steps_per_epoch=steps_per_epoch, set_by=cfg.set_by)
    for error in errors:
        error.file = error.file or file
    raise_all(errors)
    setting = freeze_setting(t, model)
    nodes = [n for n in built.expanded.nodes if n.layer == backbone.LAYER]
    random = random_frozen_backbone(t, built)
    if random:
        import warnings

        warnings.warn(random, stacklevel=2)
    if not nodes and setting in ("none", 0) and t.fine_tune is None:
        return None
    frozen = frozen_paths(model, setting)
    unfrozen = unfrozen_paths(model, frozen, t.fine_tune) if t.fine_tune else []
    weights, sources = [], []
    for node in nodes:
        sub = model.get_layer(node.name)
        if "name" in node.args:
            path = None  # (ImageNet's file not here yet: found by a training's download)
            try:
                path = backbone_weights.locate(node.args["name"], node.args["weights"],
                                               tuple(sub.input_shape[1:]),
                                               offline=cfg.data.offline, download=download)
                if path is not None:
                    backbone_weights.check_fit(sub, node.args["name"], path)
            except ModelError as exc:
                if download or node.args["weights"] != "imagenet" or cfg.data.offline \
                        or path is not None:  # (offline: training stops)
                    raise given_at(exc, cfg, file) from None
                continue  # not here yet: training downloads it
            if path is not None:
                weights.append(backbone_weights.record(node.name, node.args["name"],
                                                       node.args["weights"], path))
        else:
            path = backbone.model_file(node.args["model"])
            sources.append(SourceModel(node.args["model"], _cut(sub), str(path),
                                       backbone_weights.sha256(path)))
    name = (nodes[0].args.get("name") or nodes[0].args["model"]) if nodes else None
    return Transfer(name, setting, frozen, unfrozen, t.fine_tune, weights, sources)


def _never_starts(after: int, epochs: int, steps: int | None, steps_per_epoch: int | None,
                  given: str | None) -> ConfigError:
    """The error for a second stage after the run's last epoch, saying what made the run's
    `epochs`: `train.steps` (of `steps_per_epoch` each), or `train.epochs` as `given` on the
    command line (``--epochs 2``) or in the config.

    >>> error = _never_starts(3, 2, 20, 10, None)
    >>> error.message.split(": ")[0], error.hint
    ("`train.fine_tune.after_epochs` (3) is not below the run's 2 epochs (`train.steps", \
'train for more than 30 steps, or unfreeze sooner')
    """
    if steps and steps_per_epoch:
        made = f"the run's {text.count(epochs, 'epoch')} (`train.steps: {steps}` at " \
               f"{text.count(steps_per_epoch, 'step')} an epoch)"
        more = f"more than {after * steps_per_epoch} steps"
    else:
        made = f"the number of epochs ({epochs}{', given by ' + given if given else ''})"
        more = f"more epochs than {after}"
    return ConfigError(f"`train.fine_tune.after_epochs` ({after}) is not below {made}: the "
                       "fine-tuning stage would never start",
                       hint=f"train for {more}, or unfreeze sooner")


def given_at(error: ModelError, cfg: config.RunConfig, file: str | None) -> ModelError:
    """`error`, about the weights file `model.weights` names (not there, unreadable, not
    fitting), made to be said where it was given (by `config.locate`: its line of the
    config `file`, or the ``--weights`` or ``--set`` that gave it), the file as written in
    the config (`cfg` may hold it made absolute); when it is there from the config's
    folder but not from the current one, the hint says so (as for `data.name`)."""
    named = cfg.start_from and cfg.start_from.weights
    if not named or error.file is None or Path(error.file) != Path(named):  # (a layer's
        return error  # `pretrained:` weights: as they are)
    error.file = None  # where it was given says it (`config.locate`: the line, the option)
    if config.given_by("model.weights", cfg.set_by):  # --weights FILE names it
        error.message = f"`model.weights`: {error.message}"
        return error
    if not file:  # (a config made in Python: no line to say)
        error.message = f"`model.weights` ({named}): {error.message}"
        return error
    doc = yamlio.load(file)
    written = doc.get("model") if isinstance(doc, dict) else None
    written = written.get("weights") if isinstance(written, dict) else None
    error.message = f"`model.weights` ({written or named}): {error.message}"
    if isinstance(written, str) and not Path(named).is_file():
        error.hint = config.beside_config(written, file) or error.hint
    return error


def random_frozen_backbone(train: config.TrainSection, built) -> str | None:
    """A warning when ``weights: none`` leaves a backbone random and ``freeze: backbone``
    (the default, or said) keeps it so: only the head would learn, on random features."""
    if train.freeze not in (None, "backbone"):
        return None
    random = [n.args["name"] for n in built.expanded.nodes if n.layer == backbone.LAYER
              and "name" in n.args and n.args.get("weights") == backbone.NO_WEIGHTS]
    if not random:
        return None
    why = "`train.freeze` defaults to `backbone`" if train.freeze is None else \
        "`train.freeze: backbone`"
    return (f"{random[0]} has `weights: none` (random) and is frozen ({why}): only the "
            "head will learn. Set `train.freeze: none` to train it all, or give it weights")


def check_weights(built, cfg: config.RunConfig, file: str | None = None
                  ) -> tuple[list[CnnError], list[str]]:
    """For ``cnncli check``: problems with the backbones' weights files (a file that does
    not fit, or is not there when named; a model file cut from whose weights Keras cannot
    load), and warnings for ImageNet files not yet cached (training downloads them;
    offline, it stops with where to put them). `file`: the run config `cfg` came from."""
    offline = cfg.data.offline
    errors, notes = [], []
    for node in built.expanded.nodes:
        if node.layer == backbone.LAYER and "model" in node.args:
            try:  # summary reads only its layers; training its weights: are they whole?
                backbone.load_source(backbone.model_file(node.args["model"]))
            except ModelError as exc:
                errors.append(exc)
        if node.layer != backbone.LAYER or "name" not in node.args:
            continue
        sub = built.model.get_layer(node.name)
        try:
            path = backbone_weights.locate(node.args["name"], node.args["weights"],
                                           tuple(sub.input_shape[1:]), offline=offline,
                                           download=False)
            if path is not None:
                backbone_weights.check_fit(sub, node.args["name"], path)
        except ModelError as exc:
            if node.args["weights"] != "imagenet":
                errors.append(given_at(exc, cfg, file))
            else:
                notes.append(f"{exc.message}: `cnncli train` "
                             + ("stops there, offline" if offline else "downloads them")
                             + f" ({exc.file}). Hint: {exc.hint}")
    return errors, notes


def prepare(model, transfer: Transfer | None, stage: int = 0) -> None:
    """Load the pretrained weights into the built `model` and freeze as in `stage`."""
    if transfer is None:
        return
    for record in transfer.weights:
        backbone_weights.load(model.get_layer(record.layer), record.backbone,
                              Path(record.path))
    set_stage(model, transfer, stage)


def freeze_first_stage(model, train: config.TrainSection) -> None:
    """Freeze `model` as `train.freeze` does in the first stage (``check``, ``summary``)."""
    set_stage(model, Transfer(None, train.freeze, frozen_paths(
        model, freeze_setting(train, model))), 0)


def set_stage(model, transfer: Transfer, stage: int) -> None:
    """Make every layer trainable but those frozen in `stage` (BatchNormalization layers
    included, so their statistics stay as loaded)."""
    frozen = transfer.frozen_in(stage)
    for path, layer in backbone.leaf_layers(model):
        layer.trainable = path not in frozen


def _cut(sub) -> str:
    return backbone.top_layers(sub)[-1].name


def _matches(path: str, name: str) -> bool:
    return path.startswith(name) or path.split("/")[-1].startswith(name)


def _names(paths: list[str]) -> list[str]:
    return sorted({p.split("/")[0] for p in paths} | {p.split("/")[-1] for p in paths})


def _prefixes(paths: list[str], name: str) -> list[str]:
    """The layers' names cut to the length of `name` or a letter more (a typo may drop
    one), which `train.freeze` may be the beginning of (``blok_1_`` is closest to
    ``block_1_``, not to ``block_1_pad``, nor to ``block_1``, which also begins
    ``block_10``). Not shorter: a shorter beginning freezes more layers.

    >>> _prefixes(["m/block_1_pad"], "blok_1_")
    ['block_1', 'block_1_']
    """
    names = _names(paths)
    return sorted({n[:size] for n in names for size in (len(name), len(name) + 1)}
                  - set(names))


def _is_batch_norm(layer) -> bool:
    return "BatchNormalization" in type(layer).__name__


def stage_steps(p, stage: int) -> int:
    """The optimizer steps of `stage` of the plan `p` (the schedule runs over them)."""
    t = p.transfer
    if t is None or t.fine_tune is None:
        return p.total_steps
    first = min(t.fine_tune.after_epochs * p.steps_per_epoch, p.total_steps)
    return first if stage == 0 else p.total_steps - first
