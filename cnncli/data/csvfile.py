"""A CSV of labels, for images not arranged in class folders: ``path,label`` columns
(paths relative to the CSV), and an optional ``split`` column (``train`` or ``test`` on
every row; without it a seeded, per-class fifth is held out for testing). Each image is
used once. Streamed like folders.

    path,label,split
    img/0001.jpg,cat,train
    img/0002.jpg,dog,test

>>> read_csv("labels.csv").class_names           # doctest: +SKIP
['cat', 'dog']
"""

from __future__ import annotations

import csv
import os
import unicodedata
import warnings
from pathlib import Path

import numpy as np

from cnncli.data.checks import names_alike
from cnncli.data.dataset import Dataset, DataWarning, Split
from cnncli.data.folder import readable
from cnncli.data.splits import split_off_test
from cnncli.errors import DataError
from cnncli.text import composed, count

SPLITS = ("train", "test")
#: The columns cnncli reads (others are left alone).
COLUMNS = ("path", "label", "split")


def detect(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() == ".csv"


def read_csv(path: str | os.PathLike, *, strict: bool = False, test_fraction: float = 0.2,
             seed: int = 0) -> Dataset:
    """Read a CSV of image paths and labels (see the module docstring). Without a split
    column, a seeded `test_fraction` of each label is held out (1: every row is a test
    image, and one label is enough: `cnncli evaluate --data`)."""
    path = Path(path)
    rows = _once(_rows(path), path)
    names = sorted({label for _, label, _, _ in rows})
    names_alike(names, str(path))
    if len(names) < (1 if test_fraction == 1 else 2):
        raise DataError(f"{path.name} has only one label ({names[0] if names else 'none'})",
                        file=str(path), hint="a classifier needs at least two classes (to "
                        "evaluate a model on images of one: cnncli evaluate RUN --data CSV "
                        "--all-images)")
    index = {name: i for i, name in enumerate(names)}
    paths = [str((path.parent / file).resolve()) if not os.path.isabs(file) else file
             for file, _, _, _ in rows]
    labels = np.array([index[label] for _, label, _, _ in rows], np.int64)
    splits = [split for _, _, split, _ in rows]
    blank = next((line for _, _, split, line in rows if split is None), None)
    if blank is not None and any(s is not None for s in splits):
        raise DataError("a row without a split, where other rows have one", file=str(path),
                        line=blank, hint="write train or test on every row, or leave the "
                                         "split column out for a seeded split")
    if all(s is None for s in splits):
        train_idx, test_idx = split_off_test(labels, test_fraction, seed)
    else:
        train_idx = np.array([i for i, s in enumerate(splits) if s == "train"], np.int64)
        test_idx = np.array([i for i, s in enumerate(splits) if s == "test"], np.int64)
    try:  # every row at once: one count of the files skipped
        good = set(readable(paths, list(labels), path, strict)[0])
    except DataError as exc:  # strict: name the CSV's line, not only the image
        line = next((row[3] for row, p in zip(rows, paths, strict=True) if p == exc.file),
                    None)
        if line is None:
            raise
        raise DataError(f"{exc.file}: {exc.message}", file=str(path), line=line,
                        hint="fix the image or remove its row, or skip such images with "
                             "data.strict: false") from None
    parts = []
    for which, indices in (("training", train_idx), ("test", test_idx)):
        if len(indices) == 0 and which == "training" and test_fraction == 1:
            parts.append(Split([], np.zeros(0, np.int64), ids=[]))  # all are test images
            continue
        if len(indices) == 0:
            raise DataError(f"{path.name} has no {which} images", file=str(path),
                            hint="mark some rows `train` and some `test` in the split column, "
                                 "or leave the column out")
        kept = [i for i in indices if paths[i] in good]
        if not kept:
            raise DataError(f"none of the {len(indices)} {which} images of {path.name} can "
                            "be read", file=str(path), hint="check the paths of its rows "
                                                            "(relative to the CSV's folder)")
        parts.append(Split([paths[i] for i in kept], labels[kept], ids=[paths[i] for i in kept]))
    return Dataset(path.stem, parts[0], parts[1], names, f"{path} (CSV, streamed)",
                   held_out=test_fraction if all(s is None for s in splits) and
                   test_fraction < 1 else 0.0)


def _as_on_disk(file: str, folder: Path) -> str:
    """`file` as it names a file when only another spelling of it does: with Windows'
    backslashes as slashes (``img\\cat\\1.jpg``, as a CSV saved on Windows lists it), or
    its accents in the other Unicode form (``é`` one character or two: a CSV written on
    one system, the files copied from a Mac); else as it is. A path of plain ASCII with
    no backslash is not looked up (a CSV of a million rows)."""
    if (file.isascii() and "\\" not in file) or (folder / file).exists():
        return file
    slashed = file.replace("\\", "/")
    for other in dict.fromkeys(unicodedata.normalize(form, text) for text in (slashed, file)
                               for form in ("NFC", "NFD")):
        if other != file and (folder / other).exists():
            return other
    return file


def _first_line_not_utf8(path: Path) -> int | None:
    """The number of the first line of `path` that is not UTF-8 (None: none is)."""
    with open(path, "rb") as f:
        for number, line in enumerate(f, start=1):
            try:
                line.decode("utf-8")
            except UnicodeDecodeError:
                return number
    return None


def _once(rows: list, path: Path) -> list:
    """The rows with each image once: a path listed again (however written: ``a/x.png``,
    ``./a/../a/x.png``) with the same label and split is dropped; with another label or
    split it is an error naming both lines (the image would be learned as two classes,
    or tested on after being trained on)."""
    first: dict[str, tuple] = {}
    kept = []
    for row in rows:
        file, label, split, line = row
        key = os.path.realpath(path.parent / file)
        seen = first.setdefault(key, row)
        if seen is row:
            kept.append(row)
        elif (seen[1], seen[2]) != (label, split):
            raise DataError(f"{file} is listed on line {seen[3]} as {seen[1]} ({seen[2] or 'no'}"
                            f" split) and on line {line} as {label} ({split or 'no'} split)",
                            file=str(path), line=line, hint="list each image once")
    if len(kept) < len(rows):
        extra = len(rows) - len(kept)
        warnings.warn(f"{count(extra, 'row')} of {path} {'lists' if extra == 1 else 'list'} "
                      "an image listed before (same label and split): each image is used "
                      "once",
                      DataWarning, stacklevel=3)
    return kept


def _rows(path: Path) -> list[tuple[str, str, str | None, int]]:
    """(file, label, split or None, line) for each data row."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:  # Excel starts with a BOM
            reader = csv.DictReader(f)
            fields = [name.strip().lower() for name in reader.fieldnames or []]
            twice = sorted({f for f in fields if f in COLUMNS and fields.count(f) > 1})
            if twice:  # which one is meant? (the last one would win, silently)
                raise DataError(f"{path.name} names the column {twice[0]} "
                                f"{fields.count(twice[0])} times", file=str(path), line=1,
                                hint="keep one column of each name (path, label, split); "
                                     "names are read without case or spaces")
            missing = [c for c in ("path", "label") if c not in fields]
            if missing:
                other = next((s for s in (";", "\t", "|") if len(fields) == 1
                              and s in fields[0]), None)
                raise DataError(f"{path.name} has no column {', '.join(missing)}", file=str(path),
                                line=1, hint=f"cnncli reads comma-separated CSVs, and this "
                                f"one's columns are separated by {other!r}: save it with "
                                f"commas" if other else "the first line names the columns: "
                                "path,label (and optionally split)")
            rows = []
            for row in reader:  # (blank lines are skipped: count the file's lines)
                number = reader.line_num
                if row.get(None):  # DictReader's place for fields beyond the header's
                    raise DataError(f"a row with more fields than the {len(fields)} columns",
                                    file=str(path), line=number,
                                    hint='quote a path or label holding a comma: "a,b/x.png"')
                values = [v or "" for k, v in row.items() if k]
                spanning = max(values, key=lambda v: v.count("\n"), default="")
                row = {k.strip().lower(): (v or "").strip() for k, v in row.items() if k}
                if "\n" in spanning and (not row.get("path") or not row.get("label")
                                         or "\n" in row["label"]):
                    opened = number - spanning.count("\n") + spanning.endswith("\n")
                    if (row.get("path") and row.get("label") and "," not in spanning
                            and not spanning.endswith("\n")):  # closed, not run to the end
                        raise DataError(f"a quoted label on this line holds a line break (its "
                                        f"quote closes on line {number}): a class name is one "
                                        "line", file=str(path), line=opened,
                                        hint="remove the line break inside the quotes")
                    raise DataError(f"a quoted field opened on this line runs on to line "
                                    f"{number}: a closing quote is probably missing",
                                    file=str(path), line=opened, hint='close the quote, as '
                                    'in "a,b/x.png",cat, or remove it')
                if not row.get("path") or not row.get("label"):
                    raise DataError("a row without a path or a label", file=str(path),
                                    line=number, hint="give both on every row")
                if "\0" in row["path"]:  # (no file name holds one: the system refuses it)
                    raise DataError("the path holds a NUL character", file=str(path),
                                    line=number, hint="was the file saved as text? write "
                                    "the image's path as it is")
                split = (row.get("split") or "").lower() or None
                if split is not None and split not in SPLITS:  # (said as written)
                    raise DataError(f"split '{row['split']}' is neither train nor test",
                                    file=str(path), line=number, hint="use train or test")
                rows.append((_as_on_disk(row["path"], path.parent),
                             composed(row["label"]), split, number))  # ('é' typed two ways:
                # one label, as it prints)
    except UnicodeDecodeError as err:
        raise DataError(f"{path.name} is not UTF-8 text ({err.reason})", file=str(path),
                        line=_first_line_not_utf8(path), hint="save it as UTF-8") from None
    except csv.Error as err:
        raise DataError(f"{path.name} is not a readable CSV ({err})", file=str(path)) from None
    if not rows:
        raise DataError(f"{path.name} lists no images", file=str(path),
                        hint="one row per image: path,label")
    return rows
