"""Checking an ``.onnx`` file before ONNX Runtime opens it, without the ``onnx`` package.

An ONNX file is a protobuf ``ModelProto``. Opening it with ONNX Runtime loads whatever it
names: operators from custom domains (which need a custom-op library, that is, code) and
tensors stored in "external data" files at paths it chooses. `check` refuses, before
anything is loaded:

- a file that is not a ``ModelProto`` (not protobuf, truncated, no graph);
- nodes from operator domains other than ONNX's own, ``ai.onnx.ml`` and ONNX Runtime's
  built-in ``com.microsoft`` operators (model-local functions are allowed; an opset
  import that no node uses is harmless, and ONNX Runtime's quantizer writes several);
- external-data locations that are absolute, climb out with ``..``, or resolve (symlinks
  included) outside the model's folder, or name a file that is not there.

It walks the protobuf wire format itself (a few dozen lines; the layout is in ONNX's
``onnx.proto``), because ``import onnx`` costs ~0.7 s of the start-up that is the point of
predicting from ONNX, and it never copies the weights. Every message that can hold
nodes or tensors is visited: graphs, their subgraphs (``If``/``Loop``/``Scan`` attributes),
sparse initializers, training graphs and functions.

>>> check("export/model.onnx")     # doctest: +SKIP
"""

from __future__ import annotations

import mmap
import os
from dataclasses import dataclass, field
from pathlib import Path

from cnncli.errors import ModelError

#: Operator domains ONNX Runtime implements itself; anything else needs a custom-op library.
ALLOWED_DOMAINS = frozenset({"", "ai.onnx", "ai.onnx.ml", "com.microsoft"})

# Field numbers of the messages visited (onnx.proto). Each maps a field to its message.
_MODEL = {7: "graph", 20: "training", 25: "function"}
_GRAPH = {1: "node", 5: "tensor", 15: "sparse"}
_NODE = {5: "attribute"}
_ATTRIBUTE = {5: "tensor", 6: "graph", 10: "tensor", 11: "graph", 22: "sparse", 23: "sparse"}
_SPARSE = {1: "tensor", 2: "tensor"}
_TRAINING = {1: "graph", 2: "graph"}
_FUNCTION = {7: "node", 11: "attribute"}
_CHILDREN = {"graph": _GRAPH, "node": _NODE, "attribute": _ATTRIBUTE, "sparse": _SPARSE,
             "training": _TRAINING, "function": _FUNCTION}
_EXTERNAL = 1  # TensorProto.DataLocation.EXTERNAL
_MODEL_WIRE_TYPES = {1: 0, 2: 2, 3: 2, 4: 2, 5: 0, 6: 2, 7: 2, 8: 2, 14: 2, 20: 2, 25: 2,
                     26: 2}


class _Damaged(Exception):
    """The bytes are not a well-formed protobuf message."""


@dataclass
class Scan:
    """What `scan` found: node domains, external-data locations, local functions."""

    domains: set[str] = field(default_factory=set)  # of nodes: the operators used
    external: list[str] = field(default_factory=list)
    functions: set[str] = field(default_factory=set)  # domains of model-local functions
    nodes: int = 0


def check(path: str | os.PathLike) -> Scan:
    """Refuse (`ModelError`) an ``.onnx`` file that is not safe to open; see the module."""
    path = Path(path)
    found = scan(path)
    foreign = sorted(found.domains - ALLOWED_DOMAINS - found.functions)
    if foreign:
        raise ModelError(
            "refusing to load the model: it uses operators from the custom domain(s) "
            + ", ".join(repr(d) for d in foreign) + ", which need code from outside the "
            "file (a custom-op library)", file=str(path),
            hint="export the model with standard ONNX operators (cnncli export does)")
    bad = [loc for loc in found.external if not _inside(path.parent, loc)]
    if bad:
        raise ModelError(
            "refusing to load the model: its external data points outside its folder ("
            + ", ".join(repr(b) for b in bad[:3]) + ")", file=str(path),
            hint="keep the weights files in the model's folder, named by relative paths")
    missing = sorted({loc for loc in found.external
                      if not (path.parent / loc).is_file()})
    if missing:
        raise ModelError("the model's external data file(s) are missing: "
                         + ", ".join(repr(m) for m in missing[:3]), file=str(path),
                         hint="copy them into the model's folder")
    return found


def _inside(folder: Path, location: str) -> bool:
    if not location or os.path.isabs(location) or location.startswith(("/", "\\")) \
            or ":" in location or ".." in Path(location.replace("\\", "/")).parts:
        return False
    base = os.path.realpath(folder)
    real = os.path.realpath(os.path.join(base, location))
    return os.path.commonpath([base, real]) == base


def scan(path: str | os.PathLike) -> Scan:
    """The domains and external-data locations of the ONNX model at `path`."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            if os.fstat(f.fileno()).st_size == 0:
                raise _Damaged("the file is empty")
            with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
                view = memoryview(data)
                try:
                    return _scan_model(view)
                finally:
                    view.release()
    except OSError as exc:
        raise ModelError(f"cannot read the model: {exc.strerror or exc}",
                         file=str(path)) from None
    except _Damaged as exc:
        raise ModelError(f"this is not an ONNX model, or it is truncated ({exc})",
                         file=str(path), hint="export it again (cnncli export --format onnx) "
                         "or copy the whole file") from None


def _scan_model(buf: memoryview) -> Scan:
    found = Scan()
    seen = set()
    for number, wire, value in _fields(buf, 0, len(buf)):
        expected = _MODEL_WIRE_TYPES.get(number)
        if expected is not None and wire != expected:
            raise _Damaged(f"field {number} has the wrong type")
        seen.add(number)
        if number in _MODEL:
            _visit(buf, value, _MODEL[number], found)
    if 1 not in seen or 7 not in seen:
        raise _Damaged("no " + ("IR version" if 1 not in seen else "graph"))
    if not found.nodes:
        raise _Damaged("the graph has no nodes")
    return found


def _visit(buf: memoryview, span: tuple[int, int], kind: str, found: Scan) -> None:
    """Collect what a message of `kind` at `span` holds, and visit its children."""
    start, end = span
    if kind == "tensor":
        _tensor(buf, start, end, found)
        return
    if kind == "node":
        found.nodes += 1
        found.domains.add(_string_field(buf, start, end, 7))
    elif kind == "function":
        found.functions.add(_string_field(buf, start, end, 10))
    children = _CHILDREN[kind]
    for number, wire, value in _fields(buf, start, end):
        if number in children and wire == 2:
            _visit(buf, value, children[number], found)


def _tensor(buf: memoryview, start: int, end: int, found: Scan) -> None:
    location, external = None, False
    for number, wire, value in _fields(buf, start, end):
        if number == 14 and wire == 0:
            external = value == _EXTERNAL
        elif number == 13 and wire == 2:
            key, text = (_string_field(buf, *value, n) for n in (1, 2))
            external = True
            if key == "location":
                location = text
    if external:
        found.external.append(location or "")


def _string_field(buf: memoryview, start: int, end: int, number: int) -> str:
    """The last value of string field `number` in the message at start:end ("" if none)."""
    text = ""
    for n, wire, value in _fields(buf, start, end):
        if n == number and wire == 2:
            try:
                text = bytes(buf[value[0]:value[1]]).decode("utf-8")
            except UnicodeDecodeError:
                raise _Damaged(f"field {number} is not text") from None
    return text


def _fields(buf: memoryview, pos: int, end: int):
    """(field number, wire type, value) of each field: ints for varints, (start, end) for
    length-delimited fields, None for fixed-size ones."""
    while pos < end:
        key, pos = _varint(buf, pos, end)
        number, wire = key >> 3, key & 7
        if number == 0:
            raise _Damaged("field number 0")
        if wire == 0:
            value, pos = _varint(buf, pos, end)
        elif wire in (1, 5):
            value, pos = None, pos + (8 if wire == 1 else 4)
        elif wire == 2:
            size, pos = _varint(buf, pos, end)
            value, pos = (pos, pos + size), pos + size
        else:
            raise _Damaged(f"wire type {wire}")
        if pos > end:
            raise _Damaged("a field runs past the end")
        yield number, wire, value


def _varint(buf: memoryview, pos: int, end: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= end or shift > 63:
            raise _Damaged("a number runs past the end")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
