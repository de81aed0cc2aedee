"""Reading a run config: the YAML file, ``--set`` overrides and options, then
validation as a whole (every problem at once)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from cnncli import yamlio
from cnncli.config.located import (
    as_config_errors,
    given_by,
    node_and_line,
    odd_key,
    with_lines,
)
from cnncli.config.sections import (
    EMPTY_MODEL,
    PARTS,
    RunConfig,
    as_written,
    folder_name_problem,
)
from cnncli.errors import ConfigError, ManyErrors, raise_all, suggest


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
    if "model" not in doc and "layers" in doc:  # a network spec (what `check` takes too)
        name = Path(file).name if file else "net.yaml"
        raise ConfigError(
            "this is a network spec (`layers:` at its top), not a run config: training "
            "needs the data and settings too", file=file, line=yamlio.key_line(doc, "layers"),
            hint=f"write a run config naming it, `model: {name}` with `data:` and `train:` "
                 "(configs/mnist.yaml is one); `cnncli check` and `summary` take the spec "
                 "itself")
    if "digest" in doc:  # a run's own saved config.yaml has one (the caller's kept whole)
        doc = copy.copy(doc)  # (a YamlMap keeps its lines)
        del doc["digest"]
    model = doc.get("model")
    odd = next((k for k in model if not isinstance(k, str)), "") if isinstance(
        model, dict) else ""  # an inline spec's `1: 2`: pydantic words it as a union's
    empty = "model" in doc and (model is None or model == {} or (
        isinstance(model, str) and not model.strip()))  # `model:`, `model: ''`, `{}`
    if empty or odd != "":  # pydantic: "not a string", "not a dict"
        given = given_by("model", set_by)
        message, hint = ("`model` is empty", EMPTY_MODEL) if empty else \
            odd_key(odd, "`model`")
        line = node_and_line(doc, ["model"])[1] if empty else yamlio.key_line(model, odd)
        first = ConfigError(message, file=None if given else file, where=given,
                            line=None if given else line, hint=hint)
        try:  # the rest, with a model in its place: every problem is reported at once
            RunConfig.model_validate({**doc, "model": "linear"})
        except ValidationError as exc:
            rest = as_config_errors(exc, doc, file, set_by=set_by or {})
            raise ManyErrors([first, *getattr(rest, "errors", [rest])]) from None
        raise first
    errors: list = []
    try:
        cfg = RunConfig.model_validate(doc)
    except ValidationError as exc:
        rest = as_config_errors(exc, doc, file, set_by=set_by or {})
        errors = getattr(rest, "errors", [rest])
        if isinstance(model, dict) and "from" in model:  # its own checks too: all at once
            try:
                check_part(("model",), model, doc, file, set_by)
            except ConfigError as part:
                errors = [*getattr(part, "errors", [part]), *errors]
    raise_all(errors)
    cfg._set_by = dict(set_by or {})
    if isinstance(cfg.model, dict) and "from" in cfg.model:  # not a valid `ModelSection`:
        check_part(("model",), cfg.model, doc, file, set_by)  # `{from: vgg16, classes: 0}`
    _check_monitor(cfg, doc, file, set_by)
    if cfg.output.name is None and file:  # the documented default, for every caller
        cfg.output.name = _name_from(file)
    return cfg


def _name_from(file: str) -> str:
    """`output.name` by default: the config file's name without its suffix, when that is
    a folder name (``..yaml`` is not: its runs would go outside `output.dir`)."""
    name = Path(file).stem
    if problem := folder_name_problem(name):
        raise ConfigError(f"`output.name` is not set, and the name the config's file gives "
                          f"its runs, '{name}', {problem}", file=file,
                          hint="set `output.name` in the config, or rename the file")
    return name


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
    if isinstance(doc, dict) and as_written(doc):  # a run's own config
        older_run_defaults(doc)
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


#: Settings a run's config.yaml written before they existed has as cnncli then worked:
#: a run reads on as it was made (`--resume`, and its data split the same way).
OLDER_RUNS = {"data": {"stratify": False}}  # (2026-12-07: the validation split by class)


def older_run_defaults(doc):
    """`doc`, a run's own config as loaded, with `OLDER_RUNS`' values where it has none.

    >>> older_run_defaults({"data": {"name": "mnist"}})
    {'data': {'name': 'mnist', 'stratify': False}}
    """
    if isinstance(doc, dict):
        for section, values in OLDER_RUNS.items():
            if isinstance(doc.get(section), dict):
                for key, value in values.items():
                    doc[section].setdefault(key, value)
    return doc


def inherit_older_run(cfg: RunConfig, saved: RunConfig) -> None:
    """`cfg` (a config file given to resume the run whose own config is `saved`) takes
    `OLDER_RUNS`' settings from `saved` where it does not set them itself: resuming a run
    made before a setting existed with the file it was started from goes on as it was
    made (its data split the same way), not refused for a setting nobody changed."""
    for section, values in OLDER_RUNS.items():
        mine, theirs = getattr(cfg, section), getattr(saved, section)
        for key in values:
            if key not in mine.model_fields_set and f"{section}.{key}" not in cfg.set_by:
                setattr(mine, key, getattr(theirs, key))


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
    return parse(older_run_defaults(doc), file=str(path))


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



def check_part(where: tuple, value: dict, doc: Any, file: str | None,
               set_by: dict[str, str] | None = None):
    """Validate the mapping at `where` (a key of `PARTS`), errors named like the rest
    (one set on the command line by how it was given: `set_by` as in `parse`)."""
    try:
        return PARTS[where].model_validate(value)
    except ValidationError as exc:
        raise as_config_errors(exc, doc, file, prefix=where, set_by=set_by) from None
