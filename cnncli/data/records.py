"""Packed datasets, read: ``data.name: OUT/`` trains from the TFRecord shards that
``cnncli datasets pack`` wrote (`cnncli.data.packing`).

OUT/ holds ``dataset.json`` (format, class names, image size if one, and per split the
shards with their sizes and record counts), ``<split>-labels.npy`` (the labels in
record order) and ``<split>-NNNNN-of-NNNNN.tfrecord`` shards. A record has the image's
encoded bytes (``image``: the file's own bytes, or PNG for arrays and resized images),
its ``label``, its ``index`` in the split and its ``id`` (file name). Only the index and
the labels are read up front; the records are read by the training pipeline
(`cnncli.data.pipeline.record_batches`).

>>> read_records("packed/").train.kind                 # doctest: +SKIP
'records'
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import os
import re
from pathlib import Path

import numpy as np

from cnncli import files
from cnncli.data.dataset import Dataset, Records, Split
from cnncli.errors import CnnError, ConfigError, DataError
from cnncli.text import first_line

FORMAT = "cnncli-tfrecord"
INDEX = "dataset.json"


def detect(path: Path) -> bool:
    """A packed folder: its index says so, or (damaged) it holds packed labels beside it,
    or shards and labels without their index (a folder of photos with a ``dataset.json``
    of the user's own is no pack)."""
    if not path.is_dir():
        return False
    labels = any(path.glob("*-labels.npy"))
    if (path / INDEX).is_file():
        return is_a_pack(path) or labels
    return labels and any(path.glob("*.tfrecord"))


def read_records(folder: str | os.PathLike, *, walk: bool = True) -> Dataset:
    """The packed dataset in `folder`: labels and shard lists. No record is read; with
    `walk`, their headers are (`_record_count`). A shard missing, of another size than
    when it was written (truncated) or, walked, holding a record that runs past its end
    or another count than the index's, is an error naming it."""
    folder = Path(folder)
    if not (folder / INDEX).exists():
        raise DataError(f"{folder.name} holds packed shards and labels but not their index, "
                        f"{INDEX}", file=str(folder), hint="copy the packed folder again, "
                        "whole, or pack the data again (cnncli datasets pack SOURCE OUT)")
    try:
        version = index_version(folder)
        index = files.read_json(folder / INDEX)
    except (OSError, ValueError) as exc:
        raise DataError(f"{INDEX} cannot be read ({exc})", file=str(folder / INDEX),
                        hint="pack the data again with cnncli datasets pack") from None
    if not isinstance(index, dict) or index.get("format") != FORMAT:
        raise DataError(f"{INDEX} is not a cnncli TFRecord index", file=str(folder / INDEX),
                        hint="pack the data with cnncli datasets pack")
    problem = _index_problem(index)
    if problem:
        raise DataError(f"{INDEX} is damaged: {problem}", file=str(folder / INDEX),
                        hint="copy the packed folder again, or pack the data again")
    shape = tuple(index["image_shape"]) if index.get("image_shape") else None
    named = index.get("named_classes") is True
    splits = [_split(folder, index["splits"][name], name, shape, named, walk)
              for name in ("train", "test")]
    for split in splits:
        split.images = dataclasses.replace(split.images, index_version=version)
    top = max((int(s.labels.max()) for s in splits if len(s.labels)), default=-1)
    low = min((int(s.labels.min()) for s in splits if len(s.labels)), default=0)
    if low < 0:
        raise DataError(f"the labels hold {low}, and a label is a class's number from 0",
                        file=str(folder / INDEX), hint="copy the packed folder again, or "
                        "pack the data again")
    if top >= len(index["class_names"]):
        raise DataError(f"{INDEX} names {len(index['class_names'])} classes, and the labels go "
                        f"up to {top}", file=str(folder / INDEX),
                        hint="copy the packed folder again, or pack the data again")
    return Dataset(folder.name, *splits, list(index["class_names"]),
                   f"{folder} (TFRecord shards)", resized=index.get("resize"))


def _index_problem(index: dict) -> str | None:
    """What a hand-edited or damaged index lacks that reading needs; None if nothing.

    >>> _index_problem({"class_names": ["a", "b"], "splits": {"train": {"count": 0,
    ...                                                                  "shards": []}}})
    "no 'test' split"
    """
    names = index.get("class_names")
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        return "class_names is not a list of names"
    splits = index.get("splits")
    if not isinstance(splits, dict):
        return "no splits"
    for name in ("train", "test"):
        entry = splits.get(name)
        if not isinstance(entry, dict):
            return f"no '{name}' split"
        if not isinstance(entry.get("count"), int) or not isinstance(entry.get("shards"), list):
            return f"the '{name}' split has no count or shard list"
        if not all(isinstance(s, dict) and isinstance(s.get("file"), str)
                   and isinstance(s.get("bytes"), int) for s in entry["shards"]):
            return f"a shard of the '{name}' split has no file name or size"
        elsewhere = next((s["file"] for s in entry["shards"]
                          if not _SHARD_NAME.fullmatch(s["file"])), None)
        if elsewhere is not None:  # ../../x, /etc/x: a pack reads its own folder only
            return f"the shard {elsewhere!r} is not a shard file name in the pack's folder"
    shape = index.get("image_shape")
    if shape is not None and not (isinstance(shape, list) and len(shape) == 3):
        return "image_shape is not [height, width, channels]"
    return None


#: What `pack` names its shards (train-00000-of-00004.tfrecord): a file in the pack.
_SHARD_NAME = re.compile(r"[\w-]+(\.[\w-]+)*\.tfrecord")


def _split(folder: Path, entry: dict, name: str, shape, named: bool = False,
           walk: bool = True) -> Split:
    shards, count = [], 0
    for shard in entry["shards"]:
        path = folder / shard["file"]
        if not path.is_file():
            raise DataError(f"the shard {shard['file']} is missing", file=str(path),
                            hint="copy the whole packed folder again")
        if path.stat().st_size != shard["bytes"]:
            raise DataError(f"the shard {shard['file']} is truncated or damaged: "
                            f"{path.stat().st_size:,} bytes, written with {shard['bytes']:,}",
                            file=str(path), hint="copy it again, or pack the data again")
        count += _record_count(path) if walk else 0
        shards.append(str(path))
    if walk and count != entry["count"]:
        raise DataError(f"the '{name}' shards hold {count:,} records and the index says "
                        f"{entry['count']:,}", file=str(folder / INDEX),
                        hint="pack the data again")
    file = folder / f"{name}-labels.npy"
    try:
        labels = np.load(file, allow_pickle=False).astype(np.int64)
    except (OSError, ValueError, TypeError) as exc:
        raise DataError(f"{file.name} cannot be read ({first_line(exc)})",
                        file=str(file), hint="copy it again, or pack the data again") from None
    if labels.ndim != 1 or len(labels) != entry["count"]:
        raise DataError(f"{name}-labels.npy has {len(labels)} labels for {entry['count']} "
                        "records", file=str(folder), hint="pack the data again")
    return Split(Records(tuple(shards), entry["count"], shape, named), labels)


def _record_count(path: Path) -> int:
    """The records in the shard at `path`, counted from their headers alone (a length,
    its checksum, the data, the data's checksum), or a `DataError` naming the shard when
    a length runs past its end: TensorFlow would try to allocate it (a hand-made shard
    declaring a terabyte ended the process, no word said). One read of 8 bytes a record."""
    size, offset, count = path.stat().st_size, 0, 0
    fd = os.open(path, os.O_RDONLY)
    try:
        while offset < size:
            head = os.pread(fd, 8, offset)
            length = int.from_bytes(head, "little")
            if len(head) < 8 or offset + length + 16 > size:
                why = (f"it ends inside the header of record {count + 1:,} ({size - offset} "
                       "stray bytes)" if len(head) < 8 or offset + 16 > size else
                       f"its record {count + 1:,} declares {length:,} bytes, past its end")
                raise DataError(f"the shard {path.name} is damaged: {why}", file=str(path),
                                hint="copy it again, or pack the data again")
            offset, count = offset + length + 16, count + 1
    finally:
        os.close(fd)
    return count


def resize_problem(ds: Dataset, mode: str, size: tuple[int, int]) -> str | None:
    """Why the images of `ds`, resized when packed, are not what photos resized to `size`
    (H, W) the `mode` way are (None: they are, as near as resizing twice gives).

    Resized another way, or padded or cropped to another shape (then padded or cropped
    again), a model would train or be evaluated on other pictures than predict gives it.

    >>> import dataclasses, numpy as np
    >>> from cnncli.data.checks import from_arrays
    >>> ds = dataclasses.replace(from_arrays("p", np.zeros((2, 32, 32), np.uint8), [0, 1],
    ...     np.zeros((2, 32, 32), np.uint8), [0, 1], None, "p", file="p"), resized="pad")
    >>> resize_problem(ds, "pad", (64, 64)) is None, resize_problem(ds, "pad", (24, 32))
    (True, 'they were padded to 32x32 when packed, and 24x32 is another shape: they would \
be padded twice, photos once')
    >>> wide = dataclasses.replace(ds, train=dataclasses.replace(
    ...     ds.train, images=np.zeros((2, 16, 32), np.uint8)))  # packed 16 high, 32 wide
    >>> resize_problem(wide, "pad", (32, 64)) is None, resize_problem(wide, "pad", (64, 32))[:26]
    (True, 'they were padded to 16x32 ')
    """
    if not ds.resized:
        return None
    if ds.resized != mode:
        return f"they were resized with {ds.resized} when packed, not {mode}"
    (h, w), (height, width) = ds.image_shape[:2], size
    if mode != "stretch" and h * width != w * height:
        done = {"pad": "padded", "center_crop": "cropped"}[mode]
        return (f"they were {done} to {h}x{w} when packed, and {height}x{width} is another "
                f"shape: they would be {done} twice, photos once")
    return None


def refuse_resized(ds: Dataset, mode: str, size: tuple[int, int], name: str, *,
                   error: type[CnnError] = DataError, **where) -> None:
    """Raise `error` (at `where`: file, line) if `resize_problem` finds one: a model
    would train, be evaluated or checked on other pictures than its photos give it."""
    if problem := resize_problem(ds, mode, size):
        h, w = size
        raise error(f"the packed images of {name} are not the pictures this model gets from "
                    f"photos: {problem}", hint=f"pack the original images with --image-size "
                    f"{h} {w} --resize {mode}, or without --image-size", **where)



def ids_at(split: Split, indices) -> list[str]:
    """The ids the records at `indices` of a packed split were written with (a file's
    name, an array's place; its position in the split if none): what evaluate names its
    worst mistakes by, as it does for the files themselves."""
    from cnncli.runtime import import_tf

    tf = import_tf()
    wanted, found = {int(i) for i in indices}, {}
    spec = {"id": tf.io.FixedLenFeature([], tf.string, default_value=b"")}
    try:
        for i, record in enumerate(tf.data.TFRecordDataset(list(split.images.shards))):
            if i in wanted:
                ident = tf.io.parse_single_example(record, spec)["id"].numpy()
                found[i] = ident.decode(errors="surrogateescape") or str(i)
                if len(found) == len(wanted):
                    break
    except tf.errors.DataLossError as exc:
        raise damaged_shard(split.images.shards, exc) from None
    return [found.get(int(i), str(i)) for i in indices]


#: In TensorFlow's error for a record whose index or label is not the pack's (`read_error`).
MISMATCH = "cnncli: a record disagrees with the labels of its pack"  # (no quote: TF
# escapes one in its message)


def read_error(exc: BaseException, split: Split) -> DataError | None:
    """What went wrong reading the records of `split`, as an error naming the shard or
    the pack (None for an error that is not the records'): a record failing its checksum
    (`damaged_shard`), or one whose index or label disagrees with the pack's
    ``<split>-labels.npy`` (edited, or shards of two packs mixed)."""
    from cnncli.runtime import import_tf

    tf = import_tf()
    if isinstance(exc, tf.errors.DataLossError):
        return damaged_shard(split.images.shards, exc)
    text = getattr(exc, "message", None) or str(exc)
    if not isinstance(exc, tf.errors.InvalidArgumentError) or MISMATCH not in text:
        return None
    found = re.findall(r"\[(-?\d+)\]", text.split(MISMATCH, 1)[1])[:2]
    index, label = found if len(found) == 2 else ("?", "?")
    folder = Path(split.images.shards[0]).parent
    name = Path(split.images.shards[0]).name.split("-", 1)[0]
    return DataError(f"a record of {folder.name} (index {index}, label {label}) disagrees "
                     f"with its {name}-labels.npy ({len(split.labels):,} labels, from 0 to "
                     f"{int(split.labels.max()) if len(split.labels) else 0}): the shards "
                     "were changed, or are another pack's", file=str(folder),
                     hint="pack the data again (cnncli datasets pack SOURCE OUT)")


def damaged_shard(shards, cause: Exception) -> DataError:
    """The error for records that fail their checksum (`tf.errors.DataLossError`): a shard
    damaged in place, its size unchanged. Found by reading each shard whole (only after
    such a failure), so the error names it."""
    from cnncli.runtime import import_tf

    tf = import_tf()
    for path in shards:
        try:
            tf.data.TFRecordDataset(path).reduce(0, lambda n, _: n + 1)
        except tf.errors.DataLossError as exc:
            return DataError(f"the shard {Path(path).name} is damaged ({_reason(exc)})",
                             file=str(path), hint="copy it again, or pack the data again")
    return DataError(f"a shard is damaged ({_reason(cause)})",
                     file=str(Path(shards[0]).parent), hint="copy the packed folder again")


def _reason(exc: Exception) -> str:
    """``corrupted record at 12`` from TensorFlow's message (which names its own graph)."""
    text = getattr(exc, "message", None) or str(exc)
    found = re.search(r"corrupted record at \d+", text)
    return found.group() if found else (text.strip().splitlines() or [type(exc).__name__])[-1]



def is_a_pack(folder: Path) -> bool:
    """True if `folder`'s ``dataset.json`` is a pack's index (a folder of the user's with a
    ``dataset.json`` of their own is not a pack)."""
    try:
        index = files.read_json(folder / INDEX)
        return isinstance(index, dict) and index.get("format") == FORMAT
    except (OSError, ValueError):
        return False



def index_version(folder: str | os.PathLike) -> int:
    """The version of the pack in `folder`: its index file's identity and times (a pack
    replaced with --force writes a new one)."""
    stat = os.stat(Path(folder) / INDEX)
    return hash((stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns))


@contextlib.contextmanager
def held(folder: str | os.PathLike, *, replacing: bool = False):
    """Hold a lock on the pack in `folder` (on its index) while the block runs: shared by
    the trainings reading it, exclusive for a pack replacing it (``--force``), so that
    neither happens under the other (a training went on from the new pack's images,
    another data set, without a word). Neither waits: an error says who holds it."""
    fd = os.open(Path(folder) / INDEX, (os.O_RDWR if replacing else os.O_RDONLY)  # (NFS
                 | os.O_NOFOLLOW | os.O_NONBLOCK)  # locks a file exclusively only if opened
    try:  # for writing)
        try:
            fcntl.flock(fd, (fcntl.LOCK_EX if replacing else fcntl.LOCK_SH) | fcntl.LOCK_NB)
        except BlockingIOError:
            if replacing:
                raise ConfigError(f"{folder} is read by a training now: replaced, its data "
                                  "would change mid-run", file=str(folder), hint="wait for "
                                  "the training to finish, or pack into another folder"
                                  ) from None
            raise DataError(f"the pack {folder} is being replaced now (cnncli datasets pack "
                            "--force)", file=str(folder), hint="wait for the pack to finish, "
                            "then start the training again") from None
        except OSError:  # a file system without locks (some NFS mounts): none held
            pass
        yield
    finally:
        os.close(fd)
