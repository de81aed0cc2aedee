"""Checks every array source goes through: uint8 images of 1 or 3 channels, integer labels
in range, the same image size in both splits (and, for training, at least two classes:
`check_every_class_trains`). One `DataError` that names the file and says how to fix it.
Also the rule for data most of whose images cannot be decoded (`mostly_unreadable`).

>>> import numpy as np
>>> ds = from_arrays("toy", np.zeros((4, 8, 8), np.uint8), [0, 1, 0, 1],
...                  np.zeros((2, 8, 8), np.uint8), [1, 0], None, "toy.npz", file="toy.npz")
>>> ds.class_names, ds.image_shape
(['0', '1'], (8, 8, 1))
"""

from __future__ import annotations

import collections
from pathlib import Path

import numpy as np

from cnncli.data.dataset import Dataset, Split
from cnncli.errors import DataError
from cnncli.text import composed, some

#: Data of which more than this share of the images could not be decoded is broken (a
#: truncated copy, the wrong folder), not a few files: training stops on it and `datasets
#: pack` refuses it (a run on what is left would be a waste of hours).
UNREADABLE_SHARE = 0.5


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


def from_arrays(name: str, x_train, y_train, x_test, y_test, class_names: list[str] | None,
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
            raise DataError(f"{Path(f).name} has no {split} images", file=f,
                            hint="a dataset file needs images in both splits, to evaluate "
                            "too (in an npz: x_train, y_train, x_test, y_test); was it "
                            "written whole?")
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
    counts = collections.Counter(class_names)  # (not list.count: 20,000 names took seconds)
    twice = sorted(n for n, k in counts.items() if k > 1)
    if twice:
        raise DataError(f"{Path(file).name} names class {twice[0]!r} more than once",
                        file=file, hint="give each class its own name")
    return Dataset(name, Split(x_train, y_train), Split(x_test, y_test),
                   list(class_names), source)


def check_every_class_trains(ds: Dataset, file: str) -> None:
    """A `DataError` naming the classes of `ds` that the model is asked to know but has no
    training image of: one with test images, or, for files (a class folder, a CSV's
    label), any (an empty class folder, a class whose files could not be read). A class
    of arrays with no image at all is a gap in the labels (EMNIST's letters start at 1),
    allowed. Checked before ``data.limit`` and the validation split take their part.

    >>> x = np.zeros((2, 8, 8, 1), np.uint8)
    >>> toy = Dataset("toy", Split(x, np.array([1, 1])), Split(x, np.array([1, 2])),
    ...               ["0", "cat", "dog"], "toy")
    >>> try:
    ...     check_every_class_trains(toy, "toy.npz")
    ... except DataError as exc:
    ...     print(exc.message)
    1 of the 3 classes has no training image (dog): a model would never learn it
    """
    n = ds.num_classes
    if n < 2:  # (evaluating a model on images of one class is fine)
        raise DataError(f"{Path(file).name} has only one class ({ds.class_names[0]})",
                        file=file, hint="a classifier needs at least two classes to learn")
    train = np.bincount(ds.train.labels, minlength=n)
    test = np.bincount(ds.test.labels, minlength=n) if len(ds.test) else np.zeros(n, int)
    missing = [ds.class_names[i] for i in range(n)
               if train[i] == 0 and (ds.train.named_classes or test[i])]
    if missing:
        shown = some(missing, shown=5)
        one = len(missing) == 1
        raise DataError(f"{len(missing)} of the {n} classes "
                        f"{'has' if one else 'have'} no training image ({shown}): a model "
                        f"would never learn {'it' if one else 'them'}", file=file,
                        hint="give every class training images, or leave the class out (its "
                             "folder, its rows, its test images)")


def names_alike(names: list[str], source: str, *, warn: bool = True) -> None:
    """Refuse two class names that print the same (`composed`: 'é' as one character or
    as 'e' and an accent, as macOS writes a folder's); warn (with `warn`) of two that
    differ only in case ('Dog' and 'dog': two classes, maybe meant as one). `source`: the
    folder."""
    import warnings

    from cnncli.data.dataset import DataWarning

    same: dict[str, list[str]] = collections.defaultdict(list)
    for name in names:
        same[composed(name)].append(name)
    twins = next((found for found in same.values() if len(found) > 1), None)
    if twins:
        raise DataError(f"the class folders {twins[0]!r} and {twins[1]!r} have the same name "
                        "in other Unicode characters (an accent written apart, as macOS "
                        "writes it): they would be two classes that print alike",
                        file=source, hint="move the images of one into the other")
    cases: dict[str, list[str]] = collections.defaultdict(list)
    for name in same:
        cases[name.casefold()].append(name)
    pairs = [found for found in cases.values() if len(found) > 1]
    if pairs and warn:
        warnings.warn(f"the classes {some(' and '.join(map(repr, p)) for p in pairs)} differ "
                      f"only in case: each is a class of its own (if they are one, name "
                      "them alike)", DataWarning, stacklevel=3)


def looks_like(path: Path) -> str:
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


def mostly_unreadable(failures: list[DataError], tried: int, what: str = "images",
                      failed: int | None = None) -> DataError | None:
    """The error for data of which more than `UNREADABLE_SHARE` of the `tried` images
    could not be decoded (`failures`, or `failed` of them when they were counted on
    several machines, `failures` this one's); None for fewer (they are left out, and
    said)."""
    failed = len(failures) if failed is None else failed
    if failed <= UNREADABLE_SHARE * tried:
        return None
    examples = "; ".join(f"{exc.file}: {exc.message}" for exc in failures[:2]) or \
        "on other machines of the cluster (their logs name them)"
    return DataError(f"{failed:,} of the {tried:,} {what} could not be decoded, "
                     f"e.g. {examples}", hint="check the data (a copy cut short? the right "
                     "folder?), fix or remove the files that fail")
