"""A run config's errors in its own words: each names its key and the line it is
on, or the command-line option that set it."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from cnncli import yamlio
from cnncli.config.sections import PARTS, RunConfig
from cnncli.config.settings import BOOLEAN_HINT, PATTERN_WORDS, SettingError
from cnncli.errors import CnnError, ConfigError, ManyErrors, suggest


def as_config_errors(exc: ValidationError, doc: dict, file: str | None,
                      prefix: tuple = (), set_by: dict[str, str] | None = None
                      ) -> ConfigError:
    """One ConfigError per pydantic error; `prefix` is where the validated part sits;
    `set_by` as in `parse`."""
    errors = []
    for err in exc.errors():
        loc = [*prefix, *_user_path(node_and_line(doc, list(prefix))[0], err["loc"])]
        key = ".".join(str(p) for p in loc) or "(top level)"
        given = given_by(key, set_by)
        message, hint, line = _worded(err, doc, loc, key, given)
        if isinstance(err.get("ctx", {}).get("error"), SettingError):
            hint = err["ctx"]["error"].hint
        if given:  # from the command line: not in the file
            errors.append(ConfigError(message, where=given, hint=hint))
        else:
            errors.append(ConfigError(message, file=file, line=line, hint=hint))
    unique = {str(e): e for e in errors}
    values = list(unique.values())
    return values[0] if len(values) == 1 else ManyErrors(values)


def _worded(err: dict, doc: dict, loc: list, key: str, given: str | None
            ) -> tuple[str, str | None, int | None]:
    """One pydantic error in the config's words: (message, hint, line of the file)."""
    line = node_and_line(doc, loc)[1]
    message = err["msg"].removeprefix("Value error, ")  # our own validators' words
    kind, value = err["type"], err.get("input", ...)
    if kind == "invalid_key":  # `~: 3`, `1: 2`: pydantic's loc holds str(key)
        return _odd_key_error(err, doc, loc)
    if kind == "extra_forbidden":
        return f"unknown key '{key}'", _unknown_key_hint(loc), line
    if kind == "missing" and loc == ["model"]:
        return ("`model` is missing: the network to train", "add `model:` with a built-in "
                "name (`model: mnist_net`, `cnncli models` lists them), a spec file, or "
                "`layers:` under it", line)
    if value is None and kind == "model_type":  # `train:` with nothing under it
        return f"`{key}` is empty", (
            f"set one of its keys: --set {key}.KEY=VALUE" if given else
            f"write its settings under it, or leave `{loc[-1]}:` out for the defaults"), line
    pattern = err.get("ctx", {}).get("pattern")
    if kind == "string_pattern_mismatch" and pattern in PATTERN_WORDS:  # not the regex
        words, say = PATTERN_WORDS[pattern]
        return f"`{key}`: {value!r} is not one of {words}", say(value) or None, line
    if message.startswith("is empty: "):  # our validators': `from:` with nothing
        return f"`{key}` is empty", message.removeprefix("is empty: "), line
    if value is not ... and kind != "missing" and not isinstance(value, dict):
        return (f"`{key}`: {message.lower()}, got {value!r}",
                _unquote_hint(kind, value) or SHAPES.get(key), line)
    return f"`{key}`: {message.lower()}", SHAPES.get(key), line


#: How to write the settings that are lists of sizes (pydantic says only what is wrong).
SHAPES = {"data.image_size": "write [height, width], e.g. [224, 224]",
          "model.input": "write [height, width, channels], e.g. [224, 224, 3]"}


def _odd_key_error(err: dict, doc: dict, loc: list) -> tuple[str, str, int | None]:
    """A key that is no name (``~: 3``, ``1: 2``), on its own line."""
    where, found = node_and_line(doc, loc[:-1])
    odd = next((k for k in (where if isinstance(where, dict) else ())
                if not isinstance(k, str) and str(k) == str(loc[-1])), err["input"])
    section = ".".join(map(str, loc[:-1]))
    message, hint = odd_key(odd, f"`{section}`" if section else "")
    return message, hint, yamlio.key_line(where, odd, found)


def _unknown_key_hint(loc: list) -> str | None:
    """Where an unknown key belongs (`train.learning_rate`: in `train.optimizer`), or the
    closest valid key here."""
    choices = _fields_at(loc[:-1])
    inside = next((c for c in choices if str(loc[-1]) in _fields_at([*loc[:-1], c])), None)
    if inside:
        return f"did you mean '{'.'.join(map(str, [*loc[:-1], inside, loc[-1]]))}'?"
    return suggest(loc[-1], choices, listing="valid keys here" if choices else None)


def _unquote_hint(kind: str, value: Any) -> str | None:
    """A number or a boolean given in quotes: how to write it."""
    if isinstance(value, str) and kind.startswith(("int", "float")):
        return "write a number without quotes, e.g. 10, 0.001 or 1e-3"
    if isinstance(value, str) and kind.startswith("bool"):
        return BOOLEAN_HINT
    return None


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


def node_and_line(doc: Any, loc: list) -> tuple[Any, int | None]:
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
        given = given_by(key.group(1), set_by, named_in=error.message) if key else None
        if key and not given and not _in(doc, key.group(1)):  # only the command line
            given = given_by(key.group(1), set_by)  # made it (--set train.fine_tune.x=1)
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


def given_by(key: str, set_by: dict[str, str] | None, named_in: str | None = None
           ) -> str | None:
    """How `key` was set on the command line (``--set train.epochs=0``), if it was: at or
    above the key, or in it (with `named_in`, a message, only a setting it names: `--lr`
    is not what is wrong with a file's `momentum`).

    >>> given = {"train.optimizer.learning_rate": "--lr 0.01"}
    >>> given_by("train.optimizer", given), given_by("train.optimizer", given, "`momentum`: ...")
    ('--lr 0.01', None)
    """
    return next((how for k, how in (set_by or {}).items()
                 if key == k or key.startswith(k + ".") or (
                     k.startswith(key + ".")
                     and (named_in is None or k.rsplit(".", 1)[-1] in named_in))), None)


def line_of(doc: Any, key: str) -> int | None:
    """The line of the dotted `key` (``train.optimizer.name``) in a loaded config, or of
    the deepest part of it that exists."""
    return node_and_line(doc, key.split("."))[1]


def _fields_at(loc: list) -> list[str]:
    model: type[BaseModel] = RunConfig
    for where, part_model in PARTS.items():
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
