"""Reading YAML safely, with the line of every value, and without PyYAML's traps.

What this loader does differently from ``yaml.safe_load``:

* every mapping and list remembers where it came from (`YamlMap.line`,
  `YamlMap.key_line(key)`, `YamlList.item_line(i)`), so errors can name lines;
* a key given twice is an error (PyYAML silently keeps the last one);
* ``1e-3`` is a float (PyYAML reads it as a string) and only ``true``/``false``
  are booleans (PyYAML turns ``no``, ``off``, ``y`` into booleans): YAML 1.2 rules;
* files over `MAX_BYTES`, and aliases that expand to more than `MAX_NODES` nodes
  ("billion laughs"), are refused; Python tags are refused as in ``safe_load``.

>>> doc = loads("lr: 1e-3\\nflip: no\\nlayers:\\n  - Flatten\\n", "x.yaml")
>>> doc["lr"], doc["flip"], doc.key_line("layers"), doc["layers"].item_line(0)
(0.001, 'no', 3, 4)
"""

from __future__ import annotations

import codecs
import re
from pathlib import Path
from typing import Any

import yaml

from cnncli import files
from cnncli.errors import ConfigError, raise_all

MAX_BYTES = 1_000_000  # a spec or run config is a few kB; 1 MB leaves room for generated ones
MAX_NODES = 100_000  # after expanding aliases; a "billion laughs" file expands to 10**9


class YamlMap(dict):
    """A dict that knows the file and line it came from, and the line of each key."""

    file: str | None = None
    line: int | None = None

    def key_line(self, key: Any) -> int | None:
        return getattr(self, "_key_lines", {}).get(key, self.line)


class YamlList(list):
    """A list that knows the file and line it came from, and the line of each item."""

    file: str | None = None
    line: int | None = None

    def item_line(self, index: int) -> int | None:
        lines = getattr(self, "_item_lines", [])
        return lines[index] if 0 <= index < len(lines) else self.line


def line_of(value: Any, default: int | None = None) -> int | None:
    """The line a loaded mapping or list started on, else `default`."""
    return getattr(value, "line", None) or default


def key_line(mapping: Any, key: Any, default: int | None = None) -> int | None:
    """The line of `key` in a loaded mapping, else `default` (e.g. a dict made in code)."""
    if isinstance(mapping, YamlMap):
        return mapping.key_line(key)
    return default


def item_line(seq: Any, index: int, default: int | None = None) -> int | None:
    """The line of item `index` of a loaded list, else `default`."""
    if isinstance(seq, YamlList):
        return seq.item_line(index)
    return default


def type_name(value: Any) -> str:
    """What a YAML value is, in the user's words: mapping, list, string, int..."""
    for type_, name in ((dict, "mapping"), (list, "list"), (str, "string")):
        if isinstance(value, type_):
            return name
    return type(value).__name__


def shown(value: Any) -> str:
    """A value as the user wrote it in YAML, text marked as text.

    >>> shown(True), shown("3"), shown(2.5), shown(None)
    ('true', "the text '3'", '2.5', 'null')
    """
    if isinstance(value, bool) or value is None:
        return {True: "true", False: "false", None: "null"}[value]
    return f"the text {value!r}" if isinstance(value, str) else repr(value)


def is_int(value: Any) -> bool:
    """A whole number (YAML's `true` is a bool, not 1)."""
    return isinstance(value, int) and not isinstance(value, bool)


#: The tag PyYAML gives a merge key (``<<``).
MERGE_TAG = "tag:yaml.org,2002:merge"


class _Loader(yaml.SafeLoader):
    """SafeLoader with YAML 1.2 booleans and floats, line numbers and duplicate-key checks."""

    file_name: str = "<string>"

    def __init__(self, stream):
        super().__init__(stream)
        self.twice: list[ConfigError] = []  # every key given twice, said together

    def construct_mapping(self, node, deep=False):  # noqa: D102 - PyYAML hook
        if not isinstance(node, yaml.MappingNode):
            return super().construct_mapping(node, deep)
        result = YamlMap()
        result.file, result.line = self.file_name, node.start_mark.line + 1
        key_lines, own = {}, {}
        for key_node, value_node in node.value:
            if key_node.tag == MERGE_TAG:  # keys merged in: the mapping's own ones win
                for key, value, line in self._merged(value_node):
                    if key not in own:
                        result[key], key_lines[key] = value, line
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                hash(key)
            except TypeError:
                message = "a mapping key must be a plain value"
                raise _error(self.file_name, key_node, message) from None
            value = self.construct_object(value_node, deep=True)  # (its own repeats too)
            if key in own:
                self.twice.append(_error(
                    self.file_name,
                    key_node,
                    f"the key '{key}' appears twice (first on line {own[key]})",
                    hint="YAML keeps only the last of two equal keys; remove or rename one",
                ))
                continue
            own[key] = key_lines[key] = key_node.start_mark.line + 1
            result[key] = value
        result._key_lines = key_lines
        return result

    def _merged(self, node) -> list[tuple[Any, Any, int]]:
        """(key, value, line) of what a merge key (``<<: *base`` or ``<<: [*a, *b]``) brings
        in, the first mapping listed winning over later ones (YAML's merge rule). Built
        from the constructed mappings, without changing the shared anchored nodes (as
        PyYAML's own `flatten_mapping` does)."""
        sources = node.value if isinstance(node, yaml.SequenceNode) else [node]
        if not sources or not all(isinstance(n, yaml.MappingNode) for n in sources):
            raise _error(self.file_name, node, "a merge key (<<) takes a mapping or a list of "
                         "mappings", hint="write <<: *name, or <<: [*one, *two]")
        merged: dict = {}
        for source in sources:
            mapping = self.construct_object(source, deep=True)
            for key, value in mapping.items():
                if key not in merged:
                    merged[key] = (key, value, mapping.key_line(key))
        return list(merged.values())

    def construct_yaml_map(self, node):  # noqa: D102 - PyYAML hook
        yield self.construct_mapping(node, deep=True)

    def construct_yaml_seq(self, node):  # noqa: D102 - PyYAML hook
        result = YamlList()
        result.file, result.line = self.file_name, node.start_mark.line + 1
        result._item_lines = [child.start_mark.line + 1 for child in node.value]
        result.extend(self.construct_object(child, deep=True) for child in node.value)
        yield result


_Loader.add_constructor("tag:yaml.org,2002:map", _Loader.construct_yaml_map)
_Loader.add_constructor("tag:yaml.org,2002:seq", _Loader.construct_yaml_seq)

# YAML 1.2 core schema for booleans and floats (PyYAML implements YAML 1.1).
_Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag not in ("tag:yaml.org,2002:bool",
                                                              "tag:yaml.org,2002:float")]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
        r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"
    ),
    list("-+0123456789."),
)
# Integers must win over floats for plain digit strings: re-add the int resolver last is not
# enough (first match wins), so floats above require a dot or an exponent via this check.
_FLOAT_NEEDS = re.compile(r"[.eEnN]")


def _resolve(self, kind, value, implicit):
    tag = yaml.SafeLoader.resolve(self, kind, value, implicit)
    if tag == "tag:yaml.org,2002:float" and not _FLOAT_NEEDS.search(value):
        return "tag:yaml.org,2002:int"
    return tag


_Loader.resolve = _resolve


class _Dumper(yaml.SafeDumper):
    """Writes text that cnncli's reading (YAML 1.2 numbers and booleans, above) would take
    for another type in quotes: PyYAML's own writer quotes by YAML 1.1's rules, so a run
    named ``1e-3`` was written bare and read back as the number 0.001."""


_Dumper.yaml_implicit_resolvers = _Loader.yaml_implicit_resolvers
_Dumper.resolve = _resolve


def dumps(data: Any) -> str:
    """YAML text of `data` (keys in their order) that `loads` reads back as `data`.

    >>> print(dumps({"name": "1e-3", "lr": 0.001, "note": "yes", "on": "true"}), end="")
    name: '1e-3'
    lr: 0.001
    note: yes
    on: 'true'
    >>> loads(dumps({"name": "1e-3", "n": "10", "x": 1e-05}))
    {'name': '1e-3', 'n': '10', 'x': 1e-05}
    """
    return yaml.dump(data, Dumper=_Dumper, sort_keys=False, allow_unicode=True)


def _error(file: str, node, message: str, hint: str | None = None) -> ConfigError:
    return ConfigError(message, file=file, line=node.start_mark.line + 1, hint=hint)


def _count_nodes(node, seen: dict, budget: int) -> int:
    """Number of nodes `node` expands to, counting each alias use in full."""
    key = id(node)
    if key in seen:
        return seen[key]
    seen[key] = 1  # guards against recursive structures
    total = 1
    if isinstance(node, yaml.SequenceNode):
        children = node.value
    elif isinstance(node, yaml.MappingNode):
        children = [n for pair in node.value for n in pair]
    else:
        children = []
    for child in children:
        total += _count_nodes(child, seen, budget)
        if total > budget:
            break
    seen[key] = total
    return total


def loads(text: str, file: str = "<string>") -> Any:
    """Parse one YAML document from `text`; `file` names it in errors."""
    if len(text.encode("utf-8", "replace")) > MAX_BYTES:
        raise ConfigError(
            f"the file is {len(text.encode('utf-8', 'replace')) / 1e6:.1f} MB; "
            f"specs and configs are limited to {MAX_BYTES // 1_000_000} MB",
            file=file,
            hint="is this the right file? A spec is a few kilobytes of YAML",
        )
    loader = None
    try:
        loader = _Loader(text)  # the reader refuses control characters here already
        loader.file_name = file
        node = loader.get_single_node()
        if node is None:
            return None
        if _count_nodes(node, {}, MAX_NODES) > MAX_NODES:
            raise ConfigError(
                f"the YAML expands to more than {MAX_NODES:,} values through its aliases "
                "(&anchor / *alias); refused as a possible 'billion laughs' attack",
                file=file,
                line=node.start_mark.line + 1,
                hint="use fewer nested aliases",
            )
        document = loader.construct_document(node)
        raise_all(loader.twice)
        return document
    except yaml.constructor.ConstructorError as exc:
        raise _constructor_error(exc, file) from None
    except yaml.reader.ReaderError as exc:  # a control character, e.g. a NUL byte
        raise ConfigError(
            f"the text holds a character YAML does not allow ({exc.reason})",
            file=file, line=text.count("\n", 0, exc.position) + 1,
            hint="remove control characters; save the file as plain UTF-8 text",
        ) from None
    except yaml.YAMLError as exc:
        raise _yaml_syntax_error(exc, file, text) from None
    except RecursionError:
        raise ConfigError(
            "the YAML is nested too deeply to be read", file=file,
            hint="a spec or config needs only a few levels of [ ] or { }",
        ) from None
    except (ValueError, IndexError, TypeError, OverflowError) as exc:
        # PyYAML's constructors fail on e.g. `!!int` with no value, or an integer of more
        # than 4,300 digits (Python's limit)
        raise ConfigError(f"a value cannot be read ({type(exc).__name__}: {exc})", file=file,
                          hint="write plain numbers and text, without !!tags") from None
    finally:
        if loader is not None:
            loader.dispose()


def _constructor_error(exc: yaml.constructor.ConstructorError, file: str) -> ConfigError:
    """A tag, a recursive alias or a bad merge key (`<<:`) PyYAML cannot construct."""
    mark = exc.problem_mark or exc.context_mark
    line = mark.line + 1 if mark else None
    problem = str(exc.problem)
    if "recursive" in problem:
        return ConfigError("an alias (*name) is used inside its own anchor (&name)",
                           file=file, line=line, hint="a value cannot contain itself")
    if "merg" in problem:
        return ConfigError(f"`<<:` merges mappings only: {problem}", file=file, line=line,
                           hint="write `<<: *anchor` where &anchor names a mapping")
    return ConfigError(
        f"unsupported YAML tag: {problem}", file=file, line=line,
        hint="only plain YAML is accepted (no !!python tags); write the value itself",
    )


#: What PyYAML's words for a part never closed are (its `context`).
_OPENED = {"flow mapping": "a `{`", "flow sequence": "a `[`", "quoted scalar": "a quote"}


def _closed_later(text: str, start: int) -> bool:
    """Whether the `{` or `[` at `start` of `text` is closed further on (quoted text and
    comments skipped): a flow written over several lines, valid YAML, not one left open.

    >>> _closed_later("a: [1,\\n 2\\n 3]", 3), _closed_later("a: [1\\nb: 2", 3)
    (True, False)
    """
    depth, quote, i = 0, None, start
    while i < len(text):
        c = text[i]
        if quote:
            quote = None if c == quote else quote
        elif c in "'\"":
            quote = c
        elif c == "#" and text[i - 1] in " \n":  # a comment: to its line's end
            i = text.find("\n", i) if "\n" in text[i:] else len(text)
            continue
        elif c in "[{":
            depth += 1
        elif c in "]}":
            depth -= 1
            if depth == 0:
                return True
        i += 1
    return False


def _yaml_syntax_error(exc: yaml.YAMLError, file: str, text: str) -> ConfigError:
    mark = getattr(exc, "problem_mark", None)
    line = mark.line + 1 if mark else None
    problem = getattr(exc, "problem", None) or str(exc)
    hint = "check the indentation and the colons on that line"
    opened = getattr(exc, "context_mark", None)
    if ("<stream end>" in problem or "end of stream" in problem) and opened is not None:
        # a `{`, `[` or quote never closed: the line past the end says nothing, where it
        # opened does
        what = next((said for words, said in _OPENED.items() if words in str(exc.context)),
                    "something")
        return ConfigError(f"this is not valid YAML: {what} opened on this line is not "
                           f"closed before the file ends ({problem})", file=file,
                           line=opened.line + 1, hint="close it on the line it belongs to")
    if opened is not None and line is not None and "expected ','" in problem and \
            opened.line + 1 < line and not _closed_later(text, opened.index):  # (found
        # lines later, where the next key was read; closed later: a comma is missing)
        what = next((said for words, said in _OPENED.items() if words in str(exc.context)),
                    "something")
        return ConfigError(f"this is not valid YAML: {what} opened on this line is not "
                           f"closed on it ({problem}, on line {line})", file=file,
                           line=opened.line + 1, hint="close it on the line it belongs to")
    if mark is not None:
        bad_line = text.splitlines()[mark.line] if mark.line < len(text.splitlines()) else ""
        if "\t" in bad_line or "'\\t'" in problem:
            problem = "a tab character is used for indentation"
            hint = "YAML allows only spaces for indentation; replace the tabs with spaces"
    return ConfigError(f"this is not valid YAML: {problem}", file=file, line=line, hint=hint)


def load(path: str | Path) -> Any:
    """Read and parse the YAML file at `path` (see `loads`)."""
    path = Path(path)
    if not path.exists():
        raise ConfigError("the file does not exist", file=str(path),
                          hint="check the path, or use a built-in name (cnncli models)")
    if path.is_dir():
        raise ConfigError("this is a directory, not a YAML file", file=str(path))
    size = path.stat().st_size  # 0 for a pipe (`<(envsubst < cfg.yaml)`) or a device
    try:
        with files.open_no_wait(path) as f:
            raw = f.read(MAX_BYTES + 1) if size <= MAX_BYTES else b""  # no more, whatever
        if size > MAX_BYTES or len(raw) > MAX_BYTES:  # its size said (/dev/zero: 0)
            said = f"{size / 1e6:.1f} MB" if size > MAX_BYTES else \
                f"over {MAX_BYTES // 1_000_000} MB"
            raise ConfigError(
                f"the file is {said}; specs and configs are limited to "
                f"{MAX_BYTES // 1_000_000} MB", file=str(path),
                hint="is this the right file? A spec is a few kilobytes of YAML")
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        if raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
            raise ConfigError("the file is UTF-16 text (as PowerShell's > and some editors "
                              "save it), not UTF-8", file=str(path),
                              hint="save it as UTF-8 (PowerShell: Out-File -Encoding utf8)"
                              ) from None
        raise ConfigError(f"the file is not UTF-8 text (byte 0x{raw[exc.start]:02x})",
                          file=str(path), line=raw[:exc.start].count(b"\n") + 1,
                          hint="is this a YAML file? Save it as UTF-8") from None
    except OSError as exc:
        raise ConfigError(f"cannot read the file: {exc.strerror}", file=str(path)) from None
    return loads(text, str(path))
