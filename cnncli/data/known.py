"""Datasets cnncli knows by name (``mnist``, ``fashion_mnist``, ``cifar10``, ``cifar100``),
and where each is found: without reading anything (`locate`), or read (`load_known`).

A named dataset is looked for, in this order:

1. the ``data_dir`` argument, else ``$CNNCLI_DATA_DIR``: Keras' file names
   (``mnist.npz``, ``fashion-mnist/``, ``cifar-10-batches-py/`` ...),
   ``<name>/`` sub-folders, ``<name>.npz``, and bare IDX files;
2. Keras' cache, ``$KERAS_HOME/datasets`` (default ``~/.keras/datasets``);
3. system folders, `SYSTEM_DIRS` (``/usr/share/datasets/fashion-mnist`` comes
   from Debian's ``dataset-fashion-mnist``);
4. ``keras.datasets.<name>.load_data()``, which downloads (not when ``offline``);
5. for ``mnist`` only, the bundled 5,000-digit sample, with a `SampleDataWarning`.

>>> locate("fashion_mnist", offline=True).path   # doctest: +SKIP
'/usr/share/datasets/fashion-mnist'
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from cnncli.data import cifar, idx, npz
from cnncli.data.checks import from_arrays
from cnncli.data.cifar import CIFAR10_CLASSES, CIFAR100_CLASSES
from cnncli.data.dataset import Dataset, SampleDataWarning
from cnncli.errors import DataError
from cnncli.runtime import keras_cache_dirs
from cnncli.text import dims_text

#: Environment variable naming a folder to look in first (``--data-dir`` wins over it).
DATA_DIR_ENV = "CNNCLI_DATA_DIR"


#: Folders holding ``<name>/`` dataset folders installed system-wide (tests replace it).
SYSTEM_DIRS: tuple[Path, ...] = (Path("/usr/share/datasets"),)


#: The bundled MNIST sample (see resources/NOTICE-mnist.txt).
SAMPLE_PATH = Path(__file__).parents[1] / "resources" / "mnist_sample.npz"


@dataclass(frozen=True)
class Location:
    """Where a named dataset will be read from.

    kind: ``data_dir``, ``keras_cache``, ``system``, ``download`` or ``sample``;
    fmt: the reader, ``npz``, ``idx``, ``cifar10``, ``cifar100`` or ``keras``;
    path: the file or folder (None for a download); description: for people.
    """

    kind: str
    path: str | None
    description: str
    fmt: str = "npz"


FASHION_MNIST_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                         "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]


@dataclass(frozen=True)
class KnownDataset:
    """A dataset cnncli knows by name, and where Keras keeps it."""

    name: str
    class_names: tuple[str, ...]
    image_shape: tuple[int, int, int]
    train: int
    test: int
    keras_paths: tuple[str, ...]  # under $KERAS_HOME/datasets, as Keras names them
    folder_names: tuple[str, ...]  # <name>/ folders tried in data and system dirs
    download_mb: int  # what keras.datasets.<name>.load_data() fetches
    how_to_supply: str
    #: test images per class: a fingerprint telling this dataset from one with the same
    #: file names and shapes (Fashion-MNIST ships IDX files named like MNIST's)
    test_per_class: tuple[int, ...] = ()


KNOWN: dict[str, KnownDataset] = {
    "mnist": KnownDataset(
        "mnist", tuple(str(d) for d in range(10)), (28, 28, 1), 60000, 10000,
        ("mnist.npz",), ("mnist",), 11,
        "put Keras' mnist.npz in ~/.keras/datasets/, or pass --data-dir DIR with mnist.npz "
        "or the 4 MNIST IDX files in it",
        (980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009)),
    "fashion_mnist": KnownDataset(
        "fashion_mnist", tuple(FASHION_MNIST_CLASSES), (28, 28, 1), 60000, 10000,
        ("fashion-mnist",), ("fashion-mnist", "fashion_mnist"), 30,
        "put the 4 Fashion-MNIST IDX .gz files in ~/.keras/datasets/fashion-mnist/, "
        "install Debian's dataset-fashion-mnist package, or pass --data-dir DIR",
        (1000,) * 10),
    "cifar10": KnownDataset(
        "cifar10", tuple(CIFAR10_CLASSES), (32, 32, 3), 50000, 10000,
        ("cifar-10-batches-py-target/cifar-10-batches-py", "cifar-10-batches-py"),
        ("cifar10", "cifar-10", "cifar-10-batches-py"), 170,
        "extract cifar-10-python.tar.gz into ~/.keras/datasets/ (giving "
        "cifar-10-batches-py/), or pass --data-dir DIR", (1000,) * 10),
    "cifar100": KnownDataset(
        "cifar100", tuple(CIFAR100_CLASSES), (32, 32, 3), 50000, 10000,
        ("cifar-100-python-target/cifar-100-python", "cifar-100-python"),
        ("cifar100", "cifar-100", "cifar-100-python"), 169,
        "extract cifar-100-python.tar.gz into ~/.keras/datasets/ (giving "
        "cifar-100-python/), or pass --data-dir DIR", (100,) * 100),
}


def known_name(source: str) -> str | None:
    """The `KNOWN` key for `source` (``Fashion-MNIST`` -> ``fashion_mnist``), or None.

    >>> known_name("Fashion-MNIST"), known_name("cifar-10"), known_name("photos/")
    ('fashion_mnist', 'cifar10', None)
    """
    key = str(source).strip().lower().replace("-", "_")
    key = {"cifar_10": "cifar10", "cifar_100": "cifar100"}.get(key, key)
    return key if key in KNOWN else None


def locate(name: str, *, data_dir: str | os.PathLike | None = None,
           offline: bool = False) -> Location:
    """Where `load(name)` would take the data from, without reading or downloading it.

    >>> locate("fashion_mnist", offline=True).path   # doctest: +SKIP
    '/usr/share/datasets/fashion-mnist'
    """
    known = _known_or_error(name)
    location, searched = _find_local(known, data_dir)
    if location is not None:
        return location
    if not offline:
        return Location("download", None,
                        f"will download {known.download_mb} MB (Keras)", "keras")
    if known.name == "mnist":
        return _sample_location()
    raise _not_found(known, searched, ["Keras download: skipped (offline)"], offline)


@dataclass(frozen=True)
class DatasetRow:
    """A known dataset as ``cnncli datasets`` lists it: where it is found (`kind`: the
    `locate` kind, None when not found; `where`: a path or what would be downloaded),
    its sizes, and a `problem` with the files found."""

    name: str
    found: bool
    kind: str | None
    where: str
    train: int
    test: int
    image_shape: tuple[int, ...]
    num_classes: int
    problem: str | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def describe_all(data_dir: str | os.PathLike | None = None,
                 offline: bool = False) -> list[DatasetRow]:
    """One row per known dataset for the ``cnncli datasets`` table.

    Counts come from file headers where possible, so nothing large is read.

    >>> [row.name for row in describe_all(offline=True)]   # doctest: +SKIP
    ['mnist', 'fashion_mnist', 'cifar10', 'cifar100']
    """
    user_data_dir(data_dir)  # a missing data dir is an error, not "not found" rows
    return [_describe(known, data_dir, offline) for known in KNOWN.values()]


def _describe(known: KnownDataset, data_dir, offline: bool) -> DatasetRow:
    row = DatasetRow(known.name, False, None, "not found", known.train, known.test,
                     known.image_shape, len(known.class_names))
    try:
        loc = locate(known.name, data_dir=data_dir, offline=offline)
    except DataError:
        return row
    row = replace(row, kind=loc.kind, found=loc.kind not in ("download",),
                  where=f"bundled sample ({SAMPLE_PATH.name})" if loc.kind == "sample"
                  else loc.path or loc.description)
    try:
        counts = _counts(loc)
        if loc.fmt == "idx" and loc.kind != "sample":  # MNIST's and Fashion-MNIST's
            _check_identity(known, _read_location(known, loc), loc)  # files: same names
    except DataError as err:
        return replace(row, problem=err.message)
    if counts is None:
        return row
    problem = _other_shape(known, tuple(counts[2]))
    return replace(row, train=counts[0], test=counts[1], image_shape=counts[2],
                   problem=problem.message if problem else None)


def _format(path: Path) -> str | None:
    """The reader a known dataset's file or folder needs: npz, idx, cifar10, cifar100."""
    if npz.detect(path):
        return "npz"
    if idx.detect(path):
        return "idx"
    return cifar.detect(path)


def _known_or_error(name: str) -> KnownDataset:
    key = known_name(name)
    if key is None:
        raise DataError(f"'{name}' is not a dataset cnncli knows by name",
                        hint=f"known names: {', '.join(KNOWN)}")
    return KNOWN[key]


def user_data_dir(data_dir: str | os.PathLike | None) -> tuple[Path | None, str]:
    """The data dir to search (argument, else environment) and what it is called."""
    label = "--data-dir"
    if data_dir is None and os.environ.get(DATA_DIR_ENV):
        data_dir, label = os.environ[DATA_DIR_ENV], f"${DATA_DIR_ENV}"
    if data_dir is None:
        return None, label
    path = Path(data_dir).expanduser()
    if not path.is_dir():
        what = "is a file, not a folder" if path.exists() else "does not exist"
        raise DataError(f"the data folder given by {label} {what}", file=str(path),
                        hint="give the folder that holds the dataset files")
    return path, label


def keras_dataset_dirs() -> list[Path]:
    """Keras' download cache folders, as `keras.utils.get_file` chooses them."""
    return keras_cache_dirs("datasets")


def _candidates(known: KnownDataset,
                data_dir: Path | None) -> Iterator[tuple[str, Path, bool]]:
    """(kind, path, nested) in resolution order; nested paths sit inside another
    candidate folder and are only worth naming in an error if that folder exists."""
    if data_dir is not None:
        for rel in known.keras_paths:
            yield "data_dir", data_dir / rel, False
        for folder in known.folder_names:
            yield "data_dir", data_dir / folder, False
            yield "data_dir", data_dir / f"{folder}.npz", False
            for rel in known.keras_paths:
                yield "data_dir", data_dir / folder / rel, True
        yield "data_dir", data_dir, False
    for cache in keras_dataset_dirs():
        for rel in known.keras_paths:
            yield "keras_cache", cache / rel, False
    for system in SYSTEM_DIRS:
        for folder in known.folder_names:
            yield "system", system / folder, False
            for rel in known.keras_paths:
                yield "system", system / folder / rel, True


def _acceptable_formats(known: KnownDataset) -> tuple[str, ...]:
    if known.name.startswith("cifar"):
        return (known.name, "npz")
    return ("npz", "idx")


def _find_local(known: KnownDataset, data_dir) -> tuple[Location | None, list[str]]:
    """The first local place holding `known`, and every place looked at."""
    user_dir, label = user_data_dir(data_dir)
    searched: list[str] = []
    for kind, path, nested in _candidates(known, user_dir):
        note = ""
        if path.exists():
            try:
                fmt = _format(path)
            except DataError as err:  # e.g. 3 of the 4 IDX files
                fmt, note = None, f" ({err.message})"
            if fmt in _acceptable_formats(known):
                where = {"data_dir": label, "keras_cache": "Keras cache",
                         "system": "system folder"}[kind]
                return Location(kind, str(path), f"{where}: {path}", fmt), searched
        if not nested or path.parent.exists():  # keep the list short
            searched.append(f"{path}{note}")
    return None, searched


def _sample_location() -> Location:
    return Location("sample", str(SAMPLE_PATH),
                    "bundled 5,000-digit MNIST sample (4,000 train / 1,000 test)", "npz")


def _not_found(known: KnownDataset, searched: list[str], also: list[str],
               offline: bool) -> DataError:
    places = "; ".join(searched + also)
    hint = known.how_to_supply
    if offline:
        hint += ", or run once with network access and without offline mode so Keras " \
                "downloads it"
    return DataError(f"dataset '{known.name}' was not found; searched: {places}", hint=hint)


def _keras_download(name: str):
    """``keras.datasets.<name>.load_data()``: downloads into Keras' cache if needed."""
    from cnncli.runtime import downloads_on_stderr, import_keras

    keras = import_keras()
    with downloads_on_stderr():
        return getattr(keras.datasets, name).load_data()


def load_known(known: KnownDataset, data_dir, offline: bool) -> Dataset:
    location, searched = _find_local(known, data_dir)
    if location is not None:
        return _check_identity(known, _read_location(known, location), location)

    also = []
    if offline:
        also.append("Keras download: skipped (offline)")
    else:
        try:
            (x_train, y_train), (x_test, y_test) = _keras_download(known.name)
        except Exception as err:  # no network, bad cache file: say so and move on
            also.append(f"Keras download: failed ({type(err).__name__}: {err})")
        else:
            cache = keras_dataset_dirs()[0]
            return from_arrays(known.name, x_train, y_train, x_test, y_test,
                            list(known.class_names), f"Keras download into {cache}",
                            file=str(cache))

    if known.name == "mnist":
        warnings.warn(
            "USING THE BUNDLED MNIST SAMPLE (4,000 train / 1,000 test images, not the "
            "full 60,000 / 10,000): the full MNIST was not found (" + "; ".join(also)
            + "). Accuracy will be lower than on full MNIST. To use the full MNIST, "
            + known.how_to_supply + ".",
            SampleDataWarning, stacklevel=3)
        ds = _read_location(known, _sample_location())
        ds.sample = True
        return ds
    raise _not_found(known, searched, also, offline)


def _check_identity(known: KnownDataset, ds: Dataset, location: Location) -> Dataset:
    """Files found by their names must also be the dataset: its test labels per class
    must be the known ones (MNIST's and Fashion-MNIST's IDX files have the same names),
    and its images of the known shape (an ``mnist.npz`` of other images)."""
    problem = _other_shape(known, tuple(ds.image_shape or ()), location.path)
    if problem:
        raise problem
    counts = tuple(int(c) for c in np.bincount(ds.test.labels, minlength=len(known.class_names)))
    if len(ds.test.labels) != known.test or counts == known.test_per_class:
        return ds  # a subset or another size is not mistaken for the known set
    other = next((k.name for k in KNOWN.values() if k.test_per_class == counts
                  and k.name != known.name and len(set(counts)) > 1), None)
    if other is None and counts == (1000,) * 10 and known.name == "mnist":
        other = "fashion_mnist (or cifar10)"
    raise DataError(
        f"the files found for {known.name} are not {known.name}: their test images per "
        f"class are {list(counts)[:10]}{'...' if len(counts) > 10 else ''}, "
        f"{known.name}'s are {list(known.test_per_class)[:10]}"
        + (f"; they look like {other}" if other else ""), file=location.path,
        hint=f"name the data {other.split()[0]} for these files (--data, `data.name`, or "
             f"datasets pack's SOURCE), or give the folder that holds {known.name}'s own "
             "files" if other else
             f"give the folder that holds {known.name}'s own, complete files")


def _other_shape(known: KnownDataset, shape: tuple, file: str | None = None
                 ) -> DataError | None:
    """The error for files found by a known dataset's name whose images are of another
    shape (an ``mnist.npz`` of 16x16 colour pictures is not MNIST); None if the same."""
    if not shape or tuple(shape) == known.image_shape:
        return None
    said = dims_text(shape)
    return DataError(f"the files found for {known.name} are not {known.name}: their images "
                     f"are {said}, {known.name}'s {dims_text(known.image_shape)}",
                     file=file, hint=f"give these files by their path (--data {file or 'FILE'}), "
                                     f"or give the folder that holds {known.name}'s own files")


def _read_location(known: KnownDataset, location: Location) -> Dataset:
    path = Path(location.path)
    if location.fmt == "npz":
        ds = npz.read_npz(path, class_names=list(known.class_names), name=known.name)
    elif location.fmt == "idx":
        ds = idx.read_idx_folder(path, class_names=list(known.class_names), name=known.name)
    else:
        ds = cifar.read_cifar(path, location.fmt)
    ds.source = location.description
    return ds


def _counts(location: Location) -> tuple[int, int, tuple[int, ...]] | None:
    """(train, test, image shape) from file headers, or None when only known by name."""
    if location.fmt == "npz":
        shapes = npz.npz_shapes(Path(location.path))
        train, test = shapes["x_train"], shapes["x_test"]
        return train[0], test[0], _image_shape(train)
    if location.fmt == "idx":
        files = idx.idx_files(Path(location.path))
        train = idx.idx_header(files["train_images"])
        test = idx.idx_header(files["test_images"])
        return train[0], test[0], _image_shape(train)
    return None


def _image_shape(shape: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(shape[1:]) + ((1,) if len(shape) == 3 else ())
