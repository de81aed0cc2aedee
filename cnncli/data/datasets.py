"""Datasets by name or path: the one place that says which source reads what.

`load` takes a dataset name cnncli knows (``mnist``, ``fashion_mnist``, ``cifar10``,
``cifar100``; `cnncli.data.known` finds them) or a path, and asks each source in
`SOURCES` whether the path is its kind. A new source is one module with ``detect`` and
a reader, and one line here.

>>> ds = load("fashion_mnist", offline=True)            # doctest: +SKIP
>>> ds.train.kind, ds.num_classes, ds.image_shape        # doctest: +SKIP
('arrays', 10, (28, 28, 1))
>>> load("photos/").train.kind                           # doctest: +SKIP
'files'
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cnncli.data import cifar, csvfile, folder, idx, known, npz, records
from cnncli.data.dataset import Dataset, DataWarning
from cnncli.errors import CnnError, ConfigError, DataError

# The names other modules use, from where they live.
KNOWN, known_name, locate, describe_all = (known.KNOWN, known.known_name, known.locate,
                                           known.describe_all)


@dataclass(frozen=True)
class Source:
    """A kind of dataset path: how to recognise it, how to read it, and how errors name
    it among the kinds a path may be."""

    name: str
    detect: Callable[[Path], object]
    read: Callable[..., Dataset]  # read(path, strict=, test_fraction=, seed=)
    said: str  # "a CSV of path,label"


#: Asked in order; the first whose `detect` says yes reads the path.
#: The image folder comes last: its `detect` takes any folder.
SOURCES = (
    Source("npz", npz.detect, lambda p, **_: npz.read_npz(p),
           "an .npz (x_train, y_train, x_test, y_test)"),
    Source("csv", csvfile.detect, csvfile.read_csv, "a CSV of path,label"),
    Source("tfrecord", records.detect, lambda p, **_: records.read_records(p),
           "TFRecords from cnncli datasets pack"),
    Source("idx", idx.detect, lambda p, **_: idx.read_idx_folder(p),
           "a folder of IDX files"),
    Source("cifar", cifar.detect, lambda p, **_: cifar.read_cifar(p, cifar.detect(p)),
           "a folder of CIFAR batches"),
    Source("image folder", folder.detect, folder.read_image_folder,
           "an image folder (one sub-folder per class)"),
)


def load(source: str | os.PathLike, *, data_dir: str | os.PathLike | None = None,
         offline: bool = False, strict: bool = False, test_fraction: float = 0.2,
         seed: int = 0) -> Dataset:
    """Load a dataset by name (see `KNOWN`) or from a path.

    A known name wins over a folder of the same name; write ``./mnist`` for the folder.
    ``strict`` turns skipped unreadable files into an error; ``test_fraction`` and
    ``seed`` split a folder or CSV that does not say which images are for testing
    (``test_fraction=1``: all of them are, and one class is enough).
    """
    name = known_name(str(source))
    if name is not None:
        return known.load_known(KNOWN[name], data_dir, offline)
    return load_path(source, strict=strict, test_fraction=test_fraction, seed=seed)


def load_noting(source: str | os.PathLike, **options) -> tuple[Dataset, list[str]]:
    """`load`, and what it warned about the data (files skipped, the MNIST sample for
    the full set) as notes, for a report and its ``--json``; other warnings, and all of
    them when loading fails, are shown as they would have been."""
    failed = None
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always", DataWarning)
        try:
            ds = load(source, **options)
        except BaseException as exc:  # shown below, then raised
            failed = exc
    notes = []
    for w in said:
        if failed is None and issubclass(w.category, DataWarning):
            notes.append(str(w.message))
        else:
            warnings.showwarning(w.message, w.category, w.filename, w.lineno)
    if failed is not None:
        raise failed
    return ds, notes


def class_count(source: str | os.PathLike) -> int | None:
    """How many classes `source` has when that is cheap to know without reading images or
    labels (a name cnncli knows, a packed folder, a folder of class folders); else None.

    >>> class_count("cifar100")
    100
    """
    name = known_name(str(source))
    if name is not None:
        return len(KNOWN[name].class_names)
    path = Path(source).expanduser()
    try:
        kind = next((s.name for s in SOURCES if s.detect(path)), None)
        if kind == "tfrecord":
            return len(records.read_records(path, walk=False).class_names)
        if kind == "image folder":
            return len(folder.class_names(path))
    except (CnnError, OSError):
        pass  # found out, and said, when training reads the data
    return None


def exists(source: str | os.PathLike) -> bool:
    """Whether `source` is a name cnncli knows or a file or folder it could read (an IDX
    prefix such as ``emnist/emnist-balanced`` too), without reading it.

    >>> exists("cifar10"), exists("no/such/photos")
    (True, False)
    """
    if known_name(str(source)) is not None:
        return True
    path = Path(source).expanduser()
    if path.exists():
        return True
    try:
        return _idx_prefix(path) is not None
    except (CnnError, OSError):
        return True  # something is there: training says what is wrong with it


def check_output_outside(folder: Path, source: str | os.PathLike, option: str = "--output"
                         ) -> None:
    """A `ConfigError` for an output `folder` that is the data folder `source` or inside it,
    found before anything is made: in a folder of class folders, the files written there
    would be read as images (a class named after them) the next time. A known name is read
    from elsewhere, a file (a CSV, an npz) names its images, and a folder of IDX files,
    CIFAR batches or shards reads its own files: none is in the way."""
    path = os.path.expanduser(source)
    if known_name(str(source)) is not None or not os.path.isdir(path) or next(
            (s.name for s in SOURCES if s.detect(Path(path))), None) != "image folder":
        return
    data, out = Path(path).resolve(), Path(folder).expanduser().resolve()
    if out == data or data in out.parents:
        raise ConfigError(f"the output folder {folder} is inside the data folder {source}",
                          file=str(folder), hint=f"give {option} a folder outside the data "
                          "(in a folder of class folders, what is written there would be "
                          "read as images the next time)")


def _idx_prefix(path: Path) -> dict[str, Path] | None:
    """The IDX files a missing `path` names as a prefix (``emnist/emnist-balanced`` for
    ``emnist/emnist-balanced-train-images-idx3-ubyte`` and its three fellows), if any."""
    if not path.parent.is_dir():
        return None
    return idx.idx_files(path.parent, prefix=path.name + "-")


def load_path(path: str | os.PathLike, *, strict: bool = False, test_fraction: float = 0.2,
              seed: int = 0) -> Dataset:
    """Load a dataset file or folder (see `SOURCES`).

    A path like ``emnist/emnist-balanced`` picks the IDX files starting with that
    prefix from a folder holding several EMNIST splits.
    """
    path = Path(path).expanduser()
    if not path.exists():
        if _idx_prefix(path):
            return idx.read_idx_folder(path.parent, prefix=path.name + "-")
        raise DataError(
            f"'{path}' is neither a dataset name cnncli knows nor an existing file or folder",
            file=str(path), hint=f"use one of {', '.join(KNOWN)}, or a path: " + _kinds())
    if not path.is_file() and not path.is_dir():
        raise DataError(f"'{path}' is not a regular file or a folder (a device, pipe or "
                        "socket?)", file=str(path), hint="give " + _kinds())
    for source in SOURCES:
        if source.detect(path):
            return source.read(path, strict=strict, test_fraction=test_fraction, seed=seed)
    raise DataError(f"{path.name} is not a dataset cnncli can read", file=str(path),
                    hint="give " + _kinds())


def _kinds() -> str:
    """Every kind of path `SOURCES` reads, for error hints (the image folder first)."""
    said = [s.said for s in reversed(SOURCES)]
    return ", ".join(said[:-1]) + ", or " + said[-1]
