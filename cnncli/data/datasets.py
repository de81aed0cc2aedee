"""Find, read and check image-classification datasets (numpy + PIL, no tf.data).

`load` takes a dataset name (``mnist``, ``fashion_mnist``, ``cifar10``,
``cifar100``) or a path (an image folder, an ``.npz`` file, a folder of IDX
files, a CIFAR batch folder) and returns a `Dataset` of uint8 arrays, or raises
one `DataError` that names the file and says how to fix it. Nothing is written,
except by Keras' own download into its cache.

A named dataset is looked for, in this order (`locate` tells where without
reading anything):

1. the ``data_dir`` argument, else ``$CNNCLI_DATA_DIR``: Keras' file names
   (``mnist.npz``, ``fashion-mnist/``, ``cifar-10-batches-py/`` ...),
   ``<name>/`` sub-folders, ``<name>.npz``, and bare IDX files;
2. Keras' cache, ``$KERAS_HOME/datasets`` (default ``~/.keras/datasets``);
3. system folders, `SYSTEM_DIRS` (``/usr/share/datasets/fashion-mnist`` comes
   from Debian's ``dataset-fashion-mnist``);
4. ``keras.datasets.<name>.load_data()``, which downloads (not when ``offline``);
5. for ``mnist`` only, the bundled 5,000-digit sample, with a `SampleDataWarning`.

Example:

>>> ds = load("mnist", offline=True)            # doctest: +SKIP
>>> ds.x_train.shape, ds.x_train.dtype, ds.num_classes    # doctest: +SKIP
((60000, 28, 28, 1), dtype('uint8'), 10)
>>> load("photos/", image_size=(64, 64)).class_names   # doctest: +SKIP
['cat', 'dog']
"""

from __future__ import annotations

import gzip
import math
import os
import re
import warnings
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from cnncli.errors import ConfigError, DataError

#: Environment variable naming a folder to look in first (``--data-dir`` wins over it).
DATA_DIR_ENV = "CNNCLI_DATA_DIR"

#: Folders holding ``<name>/`` dataset folders installed system-wide (tests replace it).
SYSTEM_DIRS: tuple[Path, ...] = (Path("/usr/share/datasets"),)

#: The bundled MNIST sample (see resources/NOTICE-mnist.txt).
SAMPLE_PATH = Path(__file__).parents[1] / "resources" / "mnist_sample.npz"

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp")
NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")


class DataWarning(UserWarning):
    """Something about the data the user should know, e.g. skipped files."""


class SampleDataWarning(DataWarning):
    """The bundled 5,000-digit MNIST sample is used instead of the full MNIST."""


# --------------------------------------------------------------------------- #
# The result
# --------------------------------------------------------------------------- #


@dataclass
class Dataset:
    """Train and test images (uint8, N×H×W×C with C = 1 or 3) and int64 labels.

    >>> import numpy as np
    >>> ds = Dataset("toy", np.zeros((4, 8, 8, 1), np.uint8), np.array([0, 1, 0, 1]),
    ...              np.zeros((2, 8, 8, 1), np.uint8), np.array([0, 1]), ["a", "b"], "test")
    >>> ds.num_classes, ds.image_shape
    (2, (8, 8, 1))
    """

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    class_names: list[str]
    source: str
    sample: bool = False
    test_ids: list[str] | None = None  # file names of the test images (image folders)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(int(d) for d in self.x_train.shape[1:])


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


# --------------------------------------------------------------------------- #
# Known datasets
# --------------------------------------------------------------------------- #

CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer",
                   "dog", "frog", "horse", "ship", "truck"]
FASHION_MNIST_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                         "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
CIFAR100_CLASSES = """
apple aquarium_fish baby bear beaver bed bee beetle bicycle bottle bowl boy bridge bus
butterfly camel can castle caterpillar cattle chair chimpanzee clock cloud cockroach couch
crab crocodile cup dinosaur dolphin elephant flatfish forest fox girl hamster house kangaroo
keyboard lamp lawn_mower leopard lion lizard lobster man maple_tree motorcycle mountain mouse
mushroom oak_tree orange orchid otter palm_tree pear pickup_truck pine_tree plain plate poppy
porcupine possum rabbit raccoon ray road rocket rose sea seal shark shrew skunk skyscraper
snail snake spider squirrel streetcar sunflower sweet_pepper table tank telephone television
tiger tractor train trout tulip turtle wardrobe whale willow_tree wolf woman worm
""".split()


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


# --------------------------------------------------------------------------- #
# Public entry points
# --------------------------------------------------------------------------- #


def load(
    source: str | os.PathLike,
    *,
    data_dir: str | os.PathLike | None = None,
    offline: bool = False,
    strict: bool = False,
    image_size: tuple[int, int] | None = None,
    test_fraction: float = 0.2,
    seed: int = 0,
) -> Dataset:
    """Load a dataset by name (see `KNOWN`) or from a path.

    A known name wins over a folder of the same name; write ``./mnist`` for the folder.
    ``strict`` turns skipped unreadable files into an error; ``image_size`` (H, W)
    resizes folder images; ``test_fraction`` and ``seed`` split a folder without
    ``train/`` and ``test/`` sub-folders.

    >>> load("mnist", offline=True).name           # doctest: +SKIP
    'mnist'
    """
    name = known_name(str(source))
    if name is not None:
        return _load_known(KNOWN[name], data_dir, offline)
    return load_path(source, strict=strict, image_size=image_size,
                     test_fraction=test_fraction, seed=seed)


def load_path(
    path: str | os.PathLike,
    *,
    strict: bool = False,
    image_size: tuple[int, int] | None = None,
    test_fraction: float = 0.2,
    seed: int = 0,
) -> Dataset:
    """Load an image folder, ``.npz`` file, IDX folder or CIFAR batch folder.

    A path like ``emnist/emnist-balanced`` picks the IDX files starting with that
    prefix from a folder holding several EMNIST splits.
    """
    path = Path(path).expanduser()
    if not path.exists():
        prefix_dir = path.parent
        if prefix_dir.is_dir() and _idx_files(prefix_dir, prefix=path.name + "-") is not None:
            return read_idx_folder(prefix_dir, prefix=path.name + "-")
        raise DataError(
            f"'{path}' is neither a dataset name cnncli knows nor an existing file or folder",
            file=str(path),
            hint=f"use one of {', '.join(KNOWN)}, or the path of an image folder, "
                 ".npz file or IDX folder")
    if not path.is_file() and not path.is_dir():
        raise DataError(f"'{path}' is not a regular file or a folder (a device, pipe or "
                        "socket?)", file=str(path),
                        hint="give an image folder, an .npz file or an IDX folder")
    fmt = _detect_format(path)
    if fmt == "npz":
        return read_npz(path)
    if fmt == "idx":
        return read_idx_folder(path)
    if fmt in ("cifar10", "cifar100"):
        return read_cifar(path, fmt)
    if path.is_file():
        raise DataError(
            f"{path.name} is not a dataset file cnncli can read", file=str(path),
            hint="give an .npz file with x_train, y_train, x_test, y_test, or a folder "
                 "(image folders with one sub-folder per class, IDX files, CIFAR batches)")
    return read_image_folder(path, strict=strict, image_size=image_size,
                             test_fraction=test_fraction, seed=seed)


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


def describe_all(data_dir: str | os.PathLike | None = None,
                 offline: bool = False) -> list[dict]:
    """One row per known dataset for the ``cnncli datasets`` table.

    Counts come from file headers where possible, so nothing large is read.
    Keys: name, found, kind, where, train, test, image_shape, num_classes, problem.

    >>> [row["name"] for row in describe_all(offline=True)]   # doctest: +SKIP
    ['mnist', 'fashion_mnist', 'cifar10', 'cifar100']
    """
    _user_data_dir(data_dir)  # a missing data dir is an error, not "not found" rows
    rows = []
    for known in KNOWN.values():
        row = {"name": known.name, "found": False, "kind": None, "where": "not found",
               "train": known.train, "test": known.test, "image_shape": known.image_shape,
               "num_classes": len(known.class_names), "problem": None}
        try:
            loc = locate(known.name, data_dir=data_dir, offline=offline)
        except DataError:
            rows.append(row)
            continue
        row.update(kind=loc.kind, where=loc.path or loc.description,
                   found=loc.kind not in ("download",))
        if loc.kind == "sample":
            row["where"] = f"bundled sample ({SAMPLE_PATH.name})"
        try:
            counts = _counts(loc)
        except DataError as err:
            row["problem"] = err.message
        else:
            if counts is not None:
                row.update(train=counts[0], test=counts[1], image_shape=counts[2])
        rows.append(row)
    return rows


# --------------------------------------------------------------------------- #
# Resolution of named datasets
# --------------------------------------------------------------------------- #


def _known_or_error(name: str) -> KnownDataset:
    key = known_name(name)
    if key is None:
        raise DataError(f"'{name}' is not a dataset cnncli knows by name",
                        hint=f"known names: {', '.join(KNOWN)}")
    return KNOWN[key]


def _user_data_dir(data_dir: str | os.PathLike | None) -> tuple[Path | None, str]:
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
    home = os.environ.get("KERAS_HOME")
    if home:
        base = Path(home).expanduser()
    else:
        user_home = Path.home()
        base = (user_home if os.access(user_home, os.W_OK) else Path("/tmp")) / ".keras"
    dirs = [base / "datasets"]
    if base.exists() and not os.access(base, os.W_OK):  # get_file falls back to /tmp
        dirs.append(Path("/tmp/.keras/datasets"))
    return dirs


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
    user_dir, label = _user_data_dir(data_dir)
    searched: list[str] = []
    for kind, path, nested in _candidates(known, user_dir):
        note = ""
        if path.exists():
            try:
                fmt = _detect_format(path)
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
    from cnncli.runtime import import_keras

    keras = import_keras()
    return getattr(keras.datasets, name).load_data()


def _load_known(known: KnownDataset, data_dir, offline: bool) -> Dataset:
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
            return _checked(known.name, x_train, y_train, x_test, y_test,
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
    must be the known ones (MNIST's and Fashion-MNIST's IDX files have the same names)."""
    counts = tuple(int(c) for c in np.bincount(ds.y_test, minlength=len(known.class_names)))
    if len(ds.y_test) != known.test or counts == known.test_per_class:
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
        hint=f"use --data {other.split()[0]} for these files, or give the folder that holds "
             f"{known.name}'s own files" if other else
             f"give the folder that holds {known.name}'s own, complete files")


def _read_location(known: KnownDataset, location: Location) -> Dataset:
    path = Path(location.path)
    if location.fmt == "npz":
        ds = read_npz(path, class_names=list(known.class_names), name=known.name)
    elif location.fmt == "idx":
        ds = read_idx_folder(path, class_names=list(known.class_names), name=known.name)
    else:
        ds = read_cifar(path, location.fmt)
    ds.source = location.description
    return ds


def _counts(location: Location) -> tuple[int, int, tuple[int, ...]] | None:
    """(train, test, image shape) from file headers, or None when only known by name."""
    if location.fmt == "npz":
        shapes = npz_shapes(Path(location.path))
        train, test = shapes["x_train"], shapes["x_test"]
        return train[0], test[0], _image_shape(train)
    if location.fmt == "idx":
        files = _idx_files(Path(location.path))
        train = idx_header(files["train_images"])
        test = idx_header(files["test_images"])
        return train[0], test[0], _image_shape(train)
    return None


def _image_shape(shape: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(shape[1:]) + ((1,) if len(shape) == 3 else ())


# --------------------------------------------------------------------------- #
# Format detection
# --------------------------------------------------------------------------- #


def _detect_format(path: Path) -> str | None:
    """``npz``, ``idx``, ``cifar10``, ``cifar100`` or None (maybe an image folder)."""
    if path.is_file():
        return "npz" if path.suffix.lower() == ".npz" else None
    if not path.is_dir():
        return None
    if _idx_files(path) is not None:
        return "idx"
    if (path / "data_batch_1").is_file() and (path / "test_batch").is_file():
        return "cifar10"
    if all((path / f).is_file() for f in ("train", "test", "meta")):
        return "cifar100"
    return None


# --------------------------------------------------------------------------- #
# .npz
# --------------------------------------------------------------------------- #


def _looks_like(path: Path) -> str:
    """`` (this one holds text)`` and the like, when the first bytes tell."""
    try:
        with open(path, "rb") as f:
            head = f.read(512)
    except OSError:
        return ""
    if not head:
        return " (this one is empty)"
    if head.startswith(b"PK"):
        return " (a zip archive)"
    if all(32 <= b < 127 or b in b"\t\r\n" for b in head):
        return " (this one holds text)"
    return ""


def npz_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    """Array shapes of an .npz file, from the .npy headers (no array is read)."""
    import zipfile

    shapes = {}
    try:
        with zipfile.ZipFile(path) as archive:
            for member in archive.namelist():
                with archive.open(member) as f:
                    version = np.lib.format.read_magic(f)
                    read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                                   else np.lib.format.read_array_header_2_0)
                    shape = read_header(f)[0]
                shapes[member.removesuffix(".npy")] = tuple(shape)
    except Exception as err:
        raise DataError(f"{path.name} is not a readable .npz file ({err})", file=str(path),
                        hint="re-create it with numpy.savez") from err
    missing = [k for k in ("x_train", "x_test") if k not in shapes]
    if missing:
        raise _missing_arrays(path, missing)
    return shapes


def _missing_arrays(path: Path, missing: list[str]) -> DataError:
    return DataError(
        f"{path.name} has no array named {', '.join(missing)}", file=str(path),
        hint="save it with numpy.savez(path, x_train=..., y_train=..., x_test=..., y_test=...)")


def read_npz(path: str | os.PathLike, *, class_names: list[str] | None = None,
             name: str | None = None) -> Dataset:
    """Read an .npz holding x_train, y_train, x_test, y_test (and maybe class_names).

    Loaded with ``allow_pickle=False``: an .npz that holds Python objects is refused.
    """
    path = Path(path)
    import zipfile

    if not zipfile.is_zipfile(path) and _looks_like(path) == " (a zip archive)":
        raise DataError(f"{path.name} is not a readable .npz file: its zip archive is "
                        "truncated or damaged", file=str(path),
                        hint="copy it again, or re-create it with numpy.savez")
    if not zipfile.is_zipfile(path):
        raise DataError(f"{path.name} is not an .npz file: an .npz is the zip archive "
                        "numpy.savez writes" + _looks_like(path), file=str(path),
                        hint="save the four arrays with numpy.savez(path, x_train=..., "
                             "y_train=..., x_test=..., y_test=...)")
    try:
        npz = np.load(path, allow_pickle=False)
    except Exception as err:
        raise DataError(f"{path.name} is not a readable .npz file ({err})", file=str(path),
                        hint="check that the file is complete, or re-create it with "
                             "numpy.savez") from err
    if not isinstance(npz, np.lib.npyio.NpzFile):
        raise DataError(f"{path.name} holds a single array, not an .npz archive",
                        file=str(path), hint="save the four arrays with numpy.savez")
    with npz:
        missing = [k for k in NPZ_KEYS if k not in npz.files]
        if missing:
            raise _missing_arrays(path, missing)
        try:
            arrays = {k: npz[k] for k in NPZ_KEYS}
            stored_names = npz["class_names"] if "class_names" in npz.files else None
        except Exception as err:  # truncated member, bad CRC, object array
            raise DataError(f"{path.name} cannot be read ({err})", file=str(path),
                            hint="check that the file is complete and holds no Python "
                                 "objects (it is read with allow_pickle=False)") from err
    if class_names is None and stored_names is not None:
        class_names = [c.decode() if isinstance(c, bytes) else str(c)
                       for c in stored_names.tolist()]
    return _checked(name or path.stem, arrays["x_train"], arrays["y_train"],
                    arrays["x_test"], arrays["y_test"], class_names, str(path),
                    file=str(path))


# --------------------------------------------------------------------------- #
# IDX (MNIST, Fashion-MNIST, EMNIST, KMNIST)
# --------------------------------------------------------------------------- #

_IDX_NAME = re.compile(
    r"^(?P<prefix>.*?)(?P<split>train|t10k|test)-(?P<what>images|labels)"
    r"[-.]idx(?P<ndim>[13])-ubyte(?:\.gz)?$")


def _idx_files(folder: Path, prefix: str | None = None) -> dict[str, Path] | None:
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
            head = f.read(4)
            ndim = _check_idx_magic(path, head)
            dims_bytes = f.read(4 * ndim)
    except (OSError, EOFError) as err:
        raise DataError(f"{path.name} cannot be read as an IDX file ({err})",
                        file=str(path), hint="download the file again") from err
    if len(dims_bytes) < 4 * ndim:
        raise _truncated(path, "its header is incomplete")
    return tuple(int(d) for d in np.frombuffer(dims_bytes, ">u4"))


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
            data = f.read()
    except EOFError as err:
        raise _truncated(path, "the gzip stream ends early") from err
    except OSError as err:  # includes gzip.BadGzipFile
        raise DataError(f"{path.name} cannot be read ({err})", file=str(path),
                        hint="download or copy the file again") from err
    ndim = _check_idx_magic(path, data[:4])
    header = 4 + 4 * ndim
    if len(data) < header:
        raise _truncated(path, "its header is incomplete")
    dims = tuple(int(d) for d in np.frombuffer(data, ">u4", count=ndim, offset=4))
    expected, found = math.prod(dims), len(data) - header
    if found < expected:
        raise _truncated(path, f"its header promises {'x'.join(map(str, dims))} = "
                               f"{expected:,} bytes of data but it holds {found:,}")
    if found > expected:
        raise DataError(f"{path.name} has {found - expected:,} bytes more than its header "
                        f"declares ({'x'.join(map(str, dims))})", file=str(path),
                        hint="download or copy the file again")
    return np.frombuffer(data, np.uint8, offset=header).reshape(dims).copy()


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
    except (ValueError, OSError):
        return None
    if not names:
        return None
    return [names.get(i, str(i)) for i in range(max(names) + 1)]


def read_idx_folder(folder: str | os.PathLike, *, prefix: str | None = None,
                    class_names: list[str] | None = None, name: str | None = None) -> Dataset:
    """Read a folder with train/t10k images/labels IDX files (MNIST layout).

    EMNIST names (``emnist-<split>-train-images-idx3-ubyte``) work too; their
    images are stored transposed and are turned upright here.
    """
    folder = Path(folder)
    files = _idx_files(folder, prefix)
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
    return _checked(name or default_name, arrays["train_images"], arrays["train_labels"],
                    arrays["test_images"], arrays["test_labels"], class_names, str(folder),
                    file=str(files["train_images"]), test_file=str(files["test_images"]))


# --------------------------------------------------------------------------- #
# CIFAR pickled batches (Keras' loader)
# --------------------------------------------------------------------------- #


def read_cifar(folder: str | os.PathLike, fmt: str) -> Dataset:
    """Read ``cifar-10-batches-py/`` or ``cifar-100-python/`` (fine labels) with Keras'
    restricted unpickler (it refuses anything but numpy arrays)."""
    from cnncli.runtime import import_keras

    import_keras()
    from keras.src.datasets.cifar import load_batch  # Keras' own CIFAR batch reader

    folder = Path(folder)
    if fmt == "cifar10":
        train_files = [folder / f"data_batch_{i}" for i in range(1, 6)]
        test_file, label_key, names = folder / "test_batch", "labels", CIFAR10_CLASSES
    else:
        train_files = [folder / "train"]
        test_file, label_key, names = folder / "test", "fine_labels", CIFAR100_CLASSES

    def read(path: Path) -> tuple[np.ndarray, np.ndarray]:
        if not path.is_file():
            raise DataError(f"{folder} lacks the CIFAR batch file {path.name}",
                            file=str(path), hint="extract the CIFAR archive again")
        try:
            data, labels = load_batch(str(path), label_key=label_key)
        except Exception as err:  # truncated pickle, wrong keys, refused objects
            raise DataError(f"{path.name} is not a readable CIFAR batch ({err})",
                            file=str(path), hint="extract the CIFAR archive again") from err
        return data.transpose(0, 2, 3, 1), np.asarray(labels)

    parts = [read(p) for p in train_files]
    x_test, y_test = read(test_file)
    x_train = np.concatenate([p[0] for p in parts])
    y_train = np.concatenate([p[1] for p in parts])
    return _checked(fmt, x_train, y_train, x_test, y_test, list(names), str(folder),
                    file=str(train_files[0]), test_file=str(test_file))


# --------------------------------------------------------------------------- #
# Image folders
# --------------------------------------------------------------------------- #


def _class_folders(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


def _files_under(folder: Path) -> list[Path]:
    """Every non-hidden file below `folder`, sorted (sub-folders included, like Keras)."""
    files = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        files.extend(Path(dirpath) / f for f in sorted(filenames) if not f.startswith("."))
    return files


def _decode(path: Path, size: tuple[int, int] | None) -> np.ndarray:
    """One image as uint8 H×W (grey) or H×W×3 (colour), resized if `size` is given."""
    with Image.open(path) as image:
        grey = image.mode in ("1", "L", "LA", "I", "I;16", "F")
        image = image.convert("L" if grey else "RGB")
        if size is not None and image.size != (size[1], size[0]):
            image = image.resize((size[1], size[0]), Image.Resampling.BILINEAR)
        return np.asarray(image, dtype=np.uint8)


def _read_images(paths: list[Path], size, strict: bool, root: Path):
    """Decode `paths` in threads; returns (arrays, indices of the paths kept)."""
    def attempt(path: Path):
        if path.suffix.lower() not in IMAGE_EXTENSIONS:
            return None, "is not an image file (unknown extension)"
        try:
            return _decode(path, size), None
        except Exception as err:  # PIL raises OSError, ValueError, SyntaxError, ...
            return None, f"cannot be decoded ({err})"

    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        results = list(pool.map(attempt, paths))
    images, kept, problems = [], [], []
    for i, (array, problem) in enumerate(results):
        if problem is None:
            images.append(array)
            kept.append(i)
        else:
            problems.append((paths[i], problem))
    if problems and strict:
        bad, why = problems[0]
        raise DataError(f"{bad.name} {why}", file=str(bad),
                        hint=f"remove it ({len(problems)} such file(s) in {root}), "
                             "or turn strict mode off (data.strict: false) to skip them")
    if problems:
        bad, why = problems[0]
        warnings.warn(f"skipped {len(problems)} unreadable or non-image file(s) in {root}, "
                      f"e.g. {bad} {why}", DataWarning, stacklevel=2)
    return images, kept


def _stack_images(images: list[np.ndarray], paths: list[Path], root: Path,
                  sized: bool) -> np.ndarray:
    """Stack same-size images into N×H×W×C (grey turns RGB if any image is colour)."""
    sizes = {a.shape[:2] for a in images}
    if len(sizes) > 1 and not sized:
        first = images[0].shape[:2]
        other = next(i for i, a in enumerate(images) if a.shape[:2] != first)
        raise DataError(
            f"images in {root.name} have different sizes: {_relative(paths[0], root)} is "
            f"{first[0]}x{first[1]}, {_relative(paths[other], root)} is "
            f"{images[other].shape[0]}x{images[other].shape[1]}", file=str(paths[other]),
            hint="set `data.image_size: [H, W]` in the run config (e.g. the model's "
                 "input size) to resize them all")
    colour = any(a.ndim == 3 for a in images)
    if colour:
        images = [np.repeat(a[..., None], 3, axis=2) if a.ndim == 2 else a for a in images]
        return np.stack(images)
    return np.stack(images)[..., None]


def _relative(path: Path, root: Path) -> str:
    """`path` below `root` (``cat/1.png``): file names repeat across class folders."""
    return path.relative_to(root).as_posix() if path.is_relative_to(root) else path.name


def _read_class_tree(root: Path, class_names: list[str] | None, size, strict: bool):
    """Images and labels of a folder with one sub-folder per class."""
    folders = _class_folders(root)
    if class_names is None:
        class_names = [f.name for f in folders]
    else:
        unknown = [f.name for f in folders if f.name not in class_names]
        if unknown:
            raise DataError(f"{root} has class folder(s) {', '.join(unknown)} that the "
                            "train folder lacks", file=str(root / unknown[0]),
                            hint="use the same class folders in train/ and test/")
    paths, labels = [], []
    for folder in folders:
        files = _files_under(folder)
        if not files:
            warnings.warn(f"class folder {folder} holds no files", DataWarning, stacklevel=2)
        paths += files
        labels += [class_names.index(folder.name)] * len(files)
    if not paths:
        raise DataError(f"{root.name} holds no image files", file=str(root),
                        hint="put the images in one sub-folder per class")
    images, kept = _read_images(paths, size, strict, root)
    if not images:
        raise DataError(f"{root.name} holds no readable images", file=str(root),
                        hint=f"supported: {', '.join(IMAGE_EXTENSIONS)}")
    paths = [paths[i] for i in kept]
    x = _stack_images(images, paths, root, sized=size is not None)
    return x, np.array([labels[i] for i in kept], np.int64), class_names, paths


def _split(y: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded split stratified by class: (train indices, test indices)."""
    rng = np.random.default_rng(seed)
    test = []
    for label in np.unique(y):
        rows = np.flatnonzero(y == label)
        n = int(round(len(rows) * fraction))
        if len(rows) >= 2:
            n = min(max(n, 1), len(rows) - 1)
        test.extend(rng.choice(rows, n, replace=False))
    is_test = np.zeros(len(y), bool)
    is_test[np.array(test, dtype=np.int64)] = True
    return np.flatnonzero(~is_test), np.flatnonzero(is_test)


def _one_class(root: Path, only: str) -> DataError:
    return DataError(f"{root.name} has only one class folder ({only})", file=str(root),
                     hint="a classifier needs at least two class sub-folders")


def read_image_folder(root: str | os.PathLike, *, strict: bool = False,
                      image_size: tuple[int, int] | None = None,
                      test_fraction: float = 0.2, seed: int = 0) -> Dataset:
    """Read a folder with one sub-folder per class (or ``train/`` and ``test/`` ones).

    Images (JPEG, PNG, BMP, GIF, WebP) are decoded with PIL in threads to uint8, grey
    or RGB. Without ``train/`` + ``test/``, a seeded, per-class ``test_fraction`` is
    held out. Unreadable files are skipped with a `DataWarning` (an error if strict).

    >>> read_image_folder("flowers", image_size=(64, 64)).x_train.shape  # doctest: +SKIP
    (2936, 64, 64, 3)
    """
    root = Path(root)
    if not 0 < test_fraction < 1:
        raise ConfigError(f"test fraction must be between 0 and 1, not {test_fraction}",
                          hint="use e.g. 0.2")
    if image_size is not None:
        image_size = (int(image_size[0]), int(image_size[1]))
    layout = "class folders"
    if (root / "train").is_dir() and (root / "test").is_dir():
        layout = "train/ and test/"
        x_train, y_train, names, _ = _read_class_tree(root / "train", None, image_size, strict)
        x_test, y_test, _, test_paths = _read_class_tree(root / "test", names, image_size,
                                                         strict)
        test_ids = [str(p) for p in test_paths]
    else:
        folders = _class_folders(root)
        if not folders:
            raise DataError(f"{root.name} has no class sub-folders", file=str(root),
                            hint="put the images in one sub-folder per class, e.g. "
                                 f"{root}/cat/1.jpg and {root}/dog/2.jpg")
        if len(folders) < 2:
            raise _one_class(root, folders[0].name)
        x, y, names, paths = _read_class_tree(root, None, image_size, strict)
        train_idx, test_idx = _split(y, test_fraction, seed)
        x_train, y_train, x_test, y_test = x[train_idx], y[train_idx], x[test_idx], y[test_idx]
        test_ids = [str(paths[i]) for i in test_idx]
    if len(names) < 2:
        raise _one_class(root, names[0])
    data = _checked(root.name, x_train, y_train, x_test, y_test, names,
                    f"{root} ({layout})", file=str(root))
    data.test_ids = test_ids
    return data


# --------------------------------------------------------------------------- #
# Checks shared by every source
# --------------------------------------------------------------------------- #


def _as_images(array: np.ndarray, file: str, what: str) -> np.ndarray:
    """N×H×W×C uint8, from N×H×W or N×H×W×C (C = 1 or 3)."""
    name = Path(file).name
    if array.ndim == 3:
        array = array[..., None]
    if array.ndim != 4 or array.shape[-1] not in (1, 3):
        hint = "store images as (N, H, W) or (N, H, W, C) with C = 1 or 3"
        if array.ndim == 4 and array.shape[1] in (1, 3):
            hint = "the images look channels-first: numpy.transpose(x, (0, 2, 3, 1))"
        raise DataError(f"{what} in {name} has shape {array.shape}, not images", file=file,
                        hint=hint)
    if array.shape[1] == 0 or array.shape[2] == 0:
        raise DataError(f"{what} in {name} holds images of {array.shape[1]}x{array.shape[2]} "
                        "pixels", file=file, hint="store images of at least 1x1 pixels")
    if array.dtype == np.uint8:
        return array
    if array.dtype.kind in "iu" and (array.size == 0 or (array.min() >= 0
                                                        and array.max() <= 255)):
        return array.astype(np.uint8)
    raise DataError(f"{what} in {name} has dtype {array.dtype}; cnncli needs uint8 pixels "
                    "0..255", file=file,
                    hint="convert with numpy.round(x * 255).astype('uint8') for 0..1 floats")


def _as_labels(array: np.ndarray, file: str, what: str) -> np.ndarray:
    """1-D int64 class indices, from (N,) or (N, 1)."""
    name = Path(file).name
    if array.ndim == 2 and array.shape[1] == 1:
        array = array[:, 0]
    if array.ndim != 1:
        hint = "labels must be class indices of shape (N,)"
        if array.ndim == 2:
            hint += "; for one-hot labels use y.argmax(axis=1)"
        raise DataError(f"{what} in {name} has shape {array.shape}, not one label per image",
                        file=file, hint=hint)
    if array.dtype.kind in "iu":
        return array.astype(np.int64)
    if array.dtype.kind == "f" and np.all(np.isfinite(array)) and np.all(array == np.round(array)):
        return array.astype(np.int64)
    raise DataError(f"{what} in {name} has dtype {array.dtype}, not integer class indices",
                    file=file, hint="store labels as integers 0..classes-1")


#: Labels may leave gaps (classes without examples), but a largest label this many times
#: the number of distinct ones is taken as a stray value, not as that many classes.
STRAY_LABEL_FACTOR = 10


def _check_label_range(y_train, y_test, top: int, file: str, test_file: str) -> None:
    """Refuse a largest label far beyond the labels used: it would make a model with
    millions of outputs, while it is most likely one bad value."""
    distinct = len(np.union1d(np.unique(y_train), np.unique(y_test)))
    if top + 1 <= max(100, STRAY_LABEL_FACTOR * distinct):
        return
    in_train = bool((y_train == top).any())
    where, labels = (file, y_train) if in_train else (test_file, y_test)
    index = int(np.flatnonzero(labels == top)[0])
    raise DataError(
        f"{'y_train' if in_train else 'y_test'} in {Path(where).name} has the label {top:,} "
        f"(at index {index:,}), while only {distinct} different labels are used: a stray "
        "value? cnncli takes the number of classes as the largest label + 1",
        file=where, hint="fix that label, or number the classes 0..N-1")


def _checked(name: str, x_train, y_train, x_test, y_test, class_names: list[str] | None,
             source: str, *, file: str, test_file: str | None = None) -> Dataset:
    """Normalise shapes and dtypes, check everything, and build the Dataset."""
    test_file = test_file or file
    x_train = _as_images(np.asarray(x_train), file, "x_train")
    x_test = _as_images(np.asarray(x_test), test_file, "x_test")
    y_train = _as_labels(np.asarray(y_train), file, "y_train")
    y_test = _as_labels(np.asarray(y_test), test_file, "y_test")
    for split, x, y, f in (("training", x_train, y_train, file),
                           ("test", x_test, y_test, test_file)):
        if len(x) != len(y):
            raise DataError(f"{Path(f).name} has {len(x):,} {split} images but {len(y):,} "
                            "labels", file=f, hint="give exactly one label per image")
        if len(x) == 0:
            raise DataError(f"{Path(f).name} has no {split} images", file=f)
    if x_train.shape[1:] != x_test.shape[1:]:
        raise DataError(f"{Path(file).name}: training images are {x_train.shape[1:]} but "
                        f"test images are {x_test.shape[1:]}", file=file,
                        hint="use one image size and channel count for both splits")
    for y, f, what in ((y_train, file, "y_train"), (y_test, test_file, "y_test")):
        if y.min() < 0:
            raise DataError(f"{what} in {Path(f).name} has a negative label ({y.min()})",
                            file=f, hint="labels must be class indices 0..classes-1")
    top = int(max(y_train.max(), y_test.max()))
    if class_names is None:
        _check_label_range(y_train, y_test, top, file, test_file)
        class_names = [str(i) for i in range(top + 1)]
    elif top >= len(class_names):
        bad_file = file if y_train.max() == top else test_file
        raise DataError(f"{Path(bad_file).name} has label {top}, out of range for "
                        f"{len(class_names)} classes", file=bad_file,
                        hint=f"labels must be 0..{len(class_names) - 1}")
    if len(class_names) < 2:
        raise DataError(f"{Path(file).name} has only one class", file=file,
                        hint="a classifier needs at least two classes")
    return Dataset(name, x_train, y_train, x_test, y_test, list(class_names), source)
