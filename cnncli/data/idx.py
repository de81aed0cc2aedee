"""Folders of IDX files: MNIST, Fashion-MNIST, EMNIST, KMNIST (gzipped or not).

>>> read_idx_folder("/usr/share/datasets/fashion-mnist").name    # doctest: +SKIP
'fashion-mnist'
"""

from __future__ import annotations

import gzip
import math
import os
import re
from pathlib import Path

import numpy as np

from cnncli.data import loader
from cnncli.data.checks import STRAY_LABEL_FACTOR, from_arrays
from cnncli.data.dataset import Dataset
from cnncli.errors import DataError


def detect(path: Path) -> bool:
    return path.is_dir() and idx_files(path) is not None


_IDX_NAME = re.compile(
    r"^(?P<prefix>.*?)(?P<split>train|t10k|test)-(?P<what>images|labels)"
    r"[-.]idx(?P<ndim>[13])-ubyte(?:\.gz)?$")


def idx_files(folder: Path, prefix: str | None = None) -> dict[str, Path] | None:
    """The 4 IDX files of `folder` (train/test images/labels), or None if there are none.

    Raises DataError when some but not all are there, or several sets are.
    """
    sets: dict[str, dict[str, Path]] = {}
    for entry in sorted(folder.iterdir()):
        match = _IDX_NAME.match(entry.name)
        if not match or not entry.is_file():
            continue
        if prefix is not None and match["prefix"] != prefix:
            continue
        split = "train" if match["split"] == "train" else "test"
        sets.setdefault(match["prefix"], {}).setdefault(f"{split}_{match['what']}", entry)
    if not sets:
        return None
    if len(sets) > 1:
        choices = ", ".join(str(folder / p.rstrip("-")) for p in sets)
        raise DataError(f"{folder} holds several IDX datasets", file=str(folder),
                        hint=f"give one of {choices} as the path")
    (found_prefix, files), = sets.items()
    missing = {"train_images", "train_labels", "test_images", "test_labels"} - files.keys()
    if missing:
        names = ", ".join(f"{found_prefix}{m.replace('_', '-')}" for m in sorted(missing))
        raise DataError(f"{folder} lacks the IDX file(s) {names}", file=str(folder),
                        hint="copy all 4 files (train/t10k images and labels) there")
    return files


def _open_idx(path: Path):
    return gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")


def idx_header(path: Path) -> tuple[int, ...]:
    """The dimensions an IDX file's header declares (reads only the header)."""
    try:
        with _open_idx(path) as f:
            return _dims(f, path)
    except (OSError, EOFError) as err:
        raise DataError(f"{path.name} cannot be read as an IDX file ({err})",
                        file=str(path), hint="download the file again") from err


def _dims(f, path: Path) -> tuple[int, ...]:
    """The dimensions in the header at the start of the open IDX file `f`."""
    ndim = _check_idx_magic(path, f.read(4))
    raw = f.read(4 * ndim)
    if len(raw) < 4 * ndim:
        raise _truncated(path, "its header is incomplete")
    return tuple(int(d) for d in np.frombuffer(raw, ">u4"))


def _check_idx_magic(path: Path, head: bytes) -> int:
    if len(head) < 4:
        raise _truncated(path, "it is shorter than an IDX header")
    if head[0] != 0 or head[1] != 0 or not 1 <= head[3] <= 4:
        raise DataError(f"{path.name} is not an IDX file (bad magic number {head.hex()})",
                        file=str(path), hint="download the file again")
    if head[2] != 0x08:
        raise DataError(f"{path.name} holds IDX type 0x{head[2]:02x}; cnncli reads only "
                        "unsigned bytes (0x08)", file=str(path))
    return head[3]


def _truncated(path: Path, why: str) -> DataError:
    return DataError(f"{path.name} is truncated: {why}", file=str(path),
                     hint="download or copy the file again")


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read one IDX file (gzipped or not) into a uint8 array, checking its size.

    >>> read_idx("t10k-labels-idx1-ubyte.gz").shape   # doctest: +SKIP
    (10000,)
    """
    path = Path(path)
    try:
        with _open_idx(path) as f:
            dims = _dims(f, path)
            expected = math.prod(dims)
            loader.refuse_beyond_memory(expected, path)  # before a gzip bomb is read
            data = f.read(expected)
            extra = len(f.read(_EXTRA_SAID + 1))  # more than declared: said, not read all
            # (a gzip bomb's gigabytes of zeros after the data took minutes to count)
    except EOFError as err:
        raise _truncated(path, "the gzip stream ends early") from err
    except OSError as err:  # includes gzip.BadGzipFile
        raise DataError(f"{path.name} cannot be read ({err})", file=str(path),
                        hint="download or copy the file again") from err
    found = len(data)
    if found < expected:
        raise _truncated(path, f"its header promises {'x'.join(map(str, dims))} = "
                               f"{expected:,} bytes of data but it holds {found:,}")
    if extra:
        more = f"{extra:,} bytes" if extra <= _EXTRA_SAID else \
            f"over {_EXTRA_SAID // (1 << 20)} MB"
        raise DataError(f"{path.name} has {more} more than its header "
                        f"declares ({'x'.join(map(str, dims))})", file=str(path),
                        hint="download or copy the file again")
    return np.frombuffer(data, np.uint8).reshape(dims).copy()


#: How many bytes beyond its data an IDX file's error counts (more: "over 1 MB").
_EXTRA_SAID = 1 << 20


def _idx_class_names(folder: Path, prefix: str) -> list[str] | None:
    """Class names from EMNIST's ``*-mapping.txt`` or KMNIST's ``*classmap.csv``."""
    mapping = folder / f"{prefix}mapping.txt"
    classmap = next(iter(sorted(folder.glob("*classmap.csv"))), None)
    names: dict[int, str] = {}
    try:
        if mapping.is_file():  # "label ascii [ascii...]" per line
            for line in mapping.read_text().split("\n"):
                if line.strip():
                    label, *codes = line.split()
                    names[int(label)] = "".join(chr(int(c)) for c in codes)
        elif classmap is not None:  # "index,codepoint,char" with a header line
            for line in classmap.read_text(encoding="utf-8").split("\n")[1:]:
                if line.strip():
                    index, _codepoint, char = line.split(",")[:3]
                    names[int(index)] = char.strip()
    except (ValueError, OverflowError, OSError):  # (a code beyond Unicode: OverflowError)
        return None
    if not names:
        return None
    top = max(names)
    if min(names) < 0 or top + 1 > max(100, STRAY_LABEL_FACTOR * len(names)):
        file = mapping if mapping.is_file() else classmap
        raise DataError(f"{file.name} names the class {top if min(names) >= 0 else min(names)}"
                        f" among {len(names)} classes: a stray line? cnncli takes the number "
                        "of classes as its largest label + 1", file=str(file),
                        hint="fix that line, or remove the file (the classes are then "
                             "numbered)")
    return [names.get(i, str(i)) for i in range(top + 1)]


def read_idx_folder(folder: str | os.PathLike, *, prefix: str | None = None,
                    class_names: list[str] | None = None, name: str | None = None) -> Dataset:
    """Read a folder with train/t10k images/labels IDX files (MNIST layout).

    EMNIST names (``emnist-<split>-train-images-idx3-ubyte``) work too; their
    images are stored transposed and are turned upright here.
    """
    folder = Path(folder)
    files = idx_files(folder, prefix)
    if files is None:
        raise DataError(f"{folder} holds no IDX files", file=str(folder),
                        hint="expected train-images-idx3-ubyte[.gz], train-labels-idx1-ubyte"
                             "[.gz], t10k-images-idx3-ubyte[.gz], t10k-labels-idx1-ubyte[.gz]")
    found_prefix = _IDX_NAME.match(files["train_images"].name)["prefix"]
    arrays = {}
    for key, path in files.items():
        array = read_idx(path)
        want = 3 if key.endswith("images") else 1
        if array.ndim != want:
            raise DataError(f"{path.name} has {array.ndim} dimensions, expected {want}",
                            file=str(path))
        arrays[key] = array
    if found_prefix.startswith("emnist"):
        for key in ("train_images", "test_images"):
            arrays[key] = np.ascontiguousarray(arrays[key].transpose(0, 2, 1))
    if class_names is None:
        class_names = _idx_class_names(folder, found_prefix)
    default_name = found_prefix.rstrip("-") or folder.name
    return from_arrays(name or default_name, arrays["train_images"], arrays["train_labels"],
                    arrays["test_images"], arrays["test_labels"], class_names, str(folder),
                    file=str(files["train_images"]), test_file=str(files["test_images"]))
