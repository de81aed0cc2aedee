"""A CSV of labels, for images not arranged in class folders: ``path,label`` columns
(paths relative to the CSV), and an optional ``split`` column (``train`` or ``test``;
without it a seeded, per-class fifth is held out for testing). Streamed like folders.

    path,label,split
    img/0001.jpg,cat,train
    img/0002.jpg,dog,test

>>> read_csv("labels.csv").class_names           # doctest: +SKIP
['cat', 'dog']
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np

from cnncli.data.dataset import Dataset, Split
from cnncli.data.folder import readable, stratified_split
from cnncli.errors import DataError

SPLITS = ("train", "test")


def detect(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() == ".csv"


def read_csv(path: str | os.PathLike, *, strict: bool = False, test_fraction: float = 0.2,
             seed: int = 0) -> Dataset:
    """Read a CSV of image paths and labels (see the module docstring)."""
    path = Path(path)
    rows = _rows(path)
    names = sorted({label for _, label, _, _ in rows})
    if len(names) < 2:
        raise DataError(f"{path.name} has only one label ({names[0] if names else 'none'})",
                        file=str(path), hint="a classifier needs at least two classes")
    index = {name: i for i, name in enumerate(names)}
    paths = [str((path.parent / file).resolve()) if not os.path.isabs(file) else file
             for file, _, _, _ in rows]
    labels = np.array([index[label] for _, label, _, _ in rows], np.int64)
    splits = [split for _, _, split, _ in rows]
    if all(s is None for s in splits):
        train_idx, test_idx = stratified_split(labels, test_fraction, seed)
    else:
        train_idx = np.array([i for i, s in enumerate(splits) if s == "train"], np.int64)
        test_idx = np.array([i for i, s in enumerate(splits) if s == "test"], np.int64)
    parts = []
    for which, indices in (("training", train_idx), ("test", test_idx)):
        if len(indices) == 0:
            raise DataError(f"{path.name} has no {which} images", file=str(path),
                            hint="mark some rows `train` and some `test` in the split column, "
                                 "or leave the column out")
        kept, kept_labels = readable([paths[i] for i in indices], list(labels[indices]),
                                      path, strict)
        parts.append(Split(kept, np.array(kept_labels, np.int64), ids=kept))
    return Dataset(path.stem, parts[0], parts[1], names, f"{path} (CSV, streamed)")


def _rows(path: Path) -> list[tuple[str, str, str | None, int]]:
    """(file, label, split or None, line) for each data row."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:  # Excel starts with a BOM
            reader = csv.DictReader(f)
            fields = [name.strip().lower() for name in reader.fieldnames or []]
            missing = [c for c in ("path", "label") if c not in fields]
            if missing:
                raise DataError(f"{path.name} has no column {', '.join(missing)}", file=str(path),
                                line=1, hint="the first line names the columns: path,label "
                                             "(and optionally split)")
            rows = []
            for number, row in enumerate(reader, start=2):
                row = {k.strip().lower(): (v or "").strip() for k, v in row.items() if k}
                if not row.get("path") or not row.get("label"):
                    raise DataError("a row without a path or a label", file=str(path),
                                    line=number, hint="give both on every row")
                split = row.get("split") or None
                if split is not None and split not in SPLITS:
                    raise DataError(f"split '{split}' is neither train nor test",
                                    file=str(path), line=number, hint="use train or test")
                rows.append((row["path"], row["label"], split, number))
    except UnicodeDecodeError as err:
        raise DataError(f"{path.name} is not UTF-8 text ({err.reason})", file=str(path),
                        hint="save it as UTF-8") from None
    except csv.Error as err:
        raise DataError(f"{path.name} is not a readable CSV ({err})", file=str(path)) from None
    if not rows:
        raise DataError(f"{path.name} lists no images", file=str(path),
                        hint="one row per image: path,label")
    return rows
