"""TFRecord shards: ``cnncli datasets pack SOURCE OUT/`` writes any dataset cnncli reads as
sharded TFRecords, and ``data.name: OUT/`` trains from them.

OUT/ holds ``dataset.json`` (format, class names, image size if one, and per split the
shards with their sizes and record counts), ``<split>-labels.npy`` (the labels in
record order) and ``<split>-NNNNN-of-NNNNN.tfrecord`` shards. Records are written in a
seeded random order, so that windows of them hold every class. A record has the image's
encoded bytes (``image``: the file's own bytes, or PNG for arrays and resized images),
its ``label``, its ``index`` in the split and its ``id`` (file name).

>>> pack(load("photos/"), "packed/", shard_mb=200)    # doctest: +SKIP
>>> read_records("packed/").train.kind                 # doctest: +SKIP
'records'
"""

from __future__ import annotations

import contextlib
import errno
import io
import json
import os
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cnncli import files, parallel
from cnncli.data import images
from cnncli.data.checks import mostly_unreadable
from cnncli.data.dataset import Dataset, Records, Split
from cnncli.errors import CnnError, ConfigError, DataError, WriteError
from cnncli.text import count, first_line, some

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
        return _is_a_pack(path) or labels
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


def pack_resize_mode(image_size: tuple[int, int] | None, resize: str | None) -> str:
    """The resize mode `pack` uses: `resize` (default stretch), checked; a `ConfigError`
    for a mode without an `image_size` (the images would be packed as they are)."""
    if resize is not None and image_size is None:
        raise ConfigError("--resize says how --image-size resizes, and no --image-size was "
                          "given: the images would be packed as they are",
                          hint="add --image-size H W, or leave --resize out")
    return images.resize_mode("stretch" if resize is None else resize)


def outside_note(ds: Dataset, source: str | os.PathLike) -> list[str]:
    """A note when images of `ds`, read from the folder or CSV `source`, lie outside the
    folder it is in (a CSV row's absolute or ``../`` path, a link in a class folder):
    the pack holds copies of them, which whoever it is given to gets too (a CSV from
    someone else can name any image of this machine).

    >>> outside_note(Dataset("d", Split(["/etc/x.png"], np.zeros(1)), Split([], np.zeros(0)),
    ...              ["a"], "labels.csv"), "/data/labels.csv")[0][:40]
    '1 image of /data/labels.csv lies outside'
    """
    root = Path(source)
    root = os.path.realpath(root.parent if root.is_file() or root.suffix.lower() == ".csv"
                            else root)
    outside = [path for split in (ds.train, ds.test) if split.kind == "files"
               for path in split.images
               if os.path.commonpath([root, os.path.realpath(path)]) != root]
    if not outside:
        return []
    verb = "lies" if len(outside) == 1 else "lie"
    return [f"{count(len(outside), 'image')} of {source} {verb} outside its folder "
            f"{root} (e.g. {some(outside, shown=2)}): the pack holds copies of "
            f"{'it' if len(outside) == 1 else 'them'}, for whoever it is given to"]


@dataclass(frozen=True)
class Packed:
    """What `pack` wrote: its folder, class names, images per split, shard count, and the
    images left out because they could not be read (a count, a few examples)."""

    out: Path
    class_names: list[str]
    counts: dict[str, int]  # "train", "test"
    shards: int
    skipped: int = 0
    examples: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        """``cnncli datasets pack --json``'s record."""
        return {"out": str(self.out), "class_names": self.class_names,
                **{f"{k}_images": v for k, v in self.counts.items()},
                "shards": self.shards, "skipped": self.skipped}


def pack(ds: Dataset, out: str | os.PathLike, *, image_size: tuple[int, int] | None = None,
         resize: str | None = None, shard_mb: float = 200, force: bool = False,
         source: str | os.PathLike | None = None,
         progress: Callable[[int, int], None] | None = None) -> Packed:
    """Write `ds` into `out` as TFRecord shards of about `shard_mb` MB (see the module
    docstring); images are resized to `image_size` (H, W) if given, the `resize` way
    (recorded: training from them must resize the same way, as predict will). Written into a
    temporary folder beside a new `out`, then renamed: never half a packed folder. An
    existing `out` (empty, or an earlier pack `force` replaces) is staged inside and the
    files moved into place, the index last (a mount point, a Docker volume, cannot be
    renamed over nor removed, and its disk is the one meant for the pack); `force`
    replaces only an earlier packed folder, and `out` may not be
    `source` (the path the data was read from), nor inside it, nor hold it."""
    from cnncli.config import MAX_IMAGE_SIDE

    out = Path(out)
    resize = pack_resize_mode(image_size, resize)
    if image_size and (problem := resize_problem(ds, resize, tuple(image_size))):
        raise ConfigError(f"the packed images of {ds.name} cannot be packed again at "
                          f"--image-size {image_size[0]} {image_size[1]} --resize {resize}: "
                          f"{problem}", hint="pack the original images, or pack these "
                          "again without --image-size")
    if image_size and max(image_size) > MAX_IMAGE_SIDE:
        raise ConfigError(f"--image-size {image_size[0]} {image_size[1]} is larger than "
                          f"{MAX_IMAGE_SIDE} pixels a side", hint="give the size the model "
                          "takes, e.g. --image-size 224 224")
    if out.is_dir() and not out.is_symlink():
        files.remove_dead_staging(out, STAGED)  # a killed pack into this empty folder's
    replacing = _check_out(out, force, source)
    into = out.is_dir()  # an empty folder, or an earlier pack `force` replaces: staged
    # inside it (a mount point cannot be renamed over, nor removed)
    made = files.missing_folders(out.parent)  # removed again should packing fail
    try:
        files.writable_folder(out if into else out.parent)  # (a file in the way, no right)
        tmp = files.staging_folder(out, STAGED) if into else \
            files.staging_folder(out.parent, f".{out.name}.")  # (a killed pack's: gone)
    except BaseException:
        files.remove_empty(made)
        raise
    os.chmod(tmp, 0o777 & ~files.umask())  # as mkdir would make it, not mkdtemp's 0700
    counter = _Progress(len(ds.train) + len(ds.test), progress)
    try:
        index = {"format": FORMAT, "version": 1, "source": ds.source,
                 "class_names": list(ds.class_names), "splits": {},
                 "image_shape": _packed_shape(ds, image_size),
                 "resize": resize if image_size else ds.resized,
                 "named_classes": ds.train.named_classes}
        skipped: list[DataError] = []
        for name, split in (("train", ds.train), ("test", ds.test)):
            shards, labels = _write_split(_shuffled(split), tmp, name, image_size, resize,
                                          shard_mb, counter, skipped, source)
            index["splits"][name] = {"count": len(labels), "shards": _name_shards(
                shards, name), "per_class": np.bincount(
                labels, minlength=len(ds.class_names)).tolist()}
            np.save(tmp / f"{name}-labels.npy", labels)
        if error := mostly_unreadable(skipped, len(ds.train) + len(ds.test)):
            raise error  # as training would stop: nothing is packed
        examples = [f"{exc.file}: {exc.message}" for exc in skipped[:3]]
        if skipped:
            index["skipped"] = {"count": len(skipped), "examples": examples}
        (tmp / INDEX).write_text(json.dumps(index, indent=1))
        if into:
            _move_into(tmp, out, replacing)
        else:
            (tmp / files.PID_FILE).unlink()
            try:
                os.replace(tmp, out)
            except OSError as exc:  # made meanwhile, by another pack or someone
                if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                    raise
                raise WriteError(f"{out} was made while packing, with something in it; it "
                                 "was left as it is", file=str(out),
                                 hint="pack again into an empty or new folder") from None
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        files.remove_empty(made)
        if files.disk_full(exc, tmp):  # (TensorFlow's writer says it in its own error)
            raise WriteError(f"cannot write the packed dataset: {os.strerror(errno.ENOSPC)}",
                             file=str(out), hint="free some space there (nothing was "
                             "kept), or pack into another folder") from None
        raise
    splits = index["splits"]
    return Packed(out, list(ds.class_names), {k: v["count"] for k, v in splits.items()},
                  sum(len(v["shards"]) for v in splits.values()), len(skipped), examples)


#: The folder a pack into an existing folder is staged in, inside it.
STAGED = ".packing."


def _move_into(tmp: Path, out: Path, replacing: bool = False) -> None:
    """Move the pack staged in `tmp` (inside `out`) into `out`, its index last: until
    then `out` is not a pack. `replacing`: `out` holds an earlier pack, whose files go
    first (its index first). A `WriteError` if anything else was written into `out`
    meanwhile (left as it is); a failure while moving takes back what was moved."""
    if replacing:
        (out / INDEX).unlink(missing_ok=True)
        for path in out.iterdir():
            if path != tmp and path.is_file() and _PACK_FILE.fullmatch(path.name):
                path.unlink()
    others = [p.name for p in out.iterdir() if p != tmp]
    if others:
        raise WriteError(f"{out} is no longer empty: something was written into it while "
                         f"packing ({some(others)}); it was left as it is", file=str(out),
                         hint="pack again into an empty or new folder")
    moved = []
    try:
        for item in sorted(tmp.iterdir(), key=lambda p: p.name == INDEX):
            if item.name != files.PID_FILE:  # (kept to the end: a killed pack's is removed)
                os.replace(item, out / item.name)
                moved.append(out / item.name)
    except BaseException:
        for path in moved:
            path.unlink(missing_ok=True)
        raise
    shutil.rmtree(tmp)


class _Progress:
    """Images done out of `total`, told to `report` (a progress bar) after each one."""

    def __init__(self, total: int, report: Callable[[int, int], None] | None):
        self.total, self.done, self.report = total, 0, report

    def step(self) -> None:
        self.done += 1
        if self.report:
            self.report(self.done, self.total)


def _write_split(split: Split, tmp: Path, name: str, image_size, resize: str,
                 shard_mb: float, counter: _Progress, skipped: list[DataError],
                 source) -> tuple[list[Path], np.ndarray]:
    """Write `split` as the shards of `name` in `tmp`: the shard paths and the labels in
    record order. An image that cannot be read is left out and added to `skipped`, as
    training would; a split of which none can be read is refused."""
    from cnncli.runtime import import_tf

    tf = import_tf()
    shards, writer, written, labels = [], None, 0, []
    # closed on any error here (a full disk, Ctrl-C), not left to the garbage collector:
    # the decoding threads stop at once
    with contextlib.closing(_encoded(tf, split, image_size, resize)) as stream:
        try:
            for i, (encoded, ident) in enumerate(stream):
                counter.step()
                if isinstance(encoded, DataError):  # as training would: left out, counted
                    skipped.append(encoded)
                    continue
                if writer is None or written >= shard_mb * 1e6:
                    if writer is not None:
                        writer.close()
                    shards.append(tmp / f"{name}-{len(shards) + 1:05d}.tfrecord")
                    writer, written = tf.io.TFRecordWriter(str(shards[-1])), 0
                labels.append(int(split.labels[i]))
                record = _record(tf, encoded, labels[-1], len(labels) - 1, ident)
                writer.write(record)
                written += len(record)
        finally:
            if writer is not None:
                writer.close()
    if len(split) and not labels:
        raise DataError(f"none of the {len(split)} {name} images could be read, e.g. "
                        f"{skipped[-1].file}: {skipped[-1].message}",
                        file=str(source) if source else skipped[-1].file,
                        hint="check the data (a copy cut short? the right folder?)")
    return shards, np.array(labels, np.int64)


def _shuffled(split: Split) -> Split:
    """The split in a seeded random order: a folder's files come class by class, and
    training reads shards in windows (`pipeline.SHUFFLE_RECORDS`), so packed in order, the
    last batches of every epoch would hold one class. Packed records keep their order
    (they were shuffled when packed)."""
    if split.kind == "records" or len(split) < 2:
        return split
    if split.ids is None:  # arrays: each keeps its place in them as its id (x_test[7]: 7)
        split = Split(split.images, split.labels, ids=[str(i) for i in range(len(split))])
    return split.take(np.random.default_rng(0).permutation(len(split)))


def _name_shards(shards: list[Path], name: str) -> list[dict]:
    """``train-00001-of-00004.tfrecord``-style names (renamed now the count is known)."""
    entries = []
    for k, path in enumerate(shards, start=1):
        final = path.with_name(f"{name}-{k:05d}-of-{len(shards):05d}.tfrecord")
        path.rename(final)
        entries.append({"file": final.name, "bytes": final.stat().st_size})
    return entries


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


def _packed_shape(ds: Dataset, image_size) -> list[int] | None:
    shape = ds.image_shape
    if image_size:  # arrays keep their channels; files are decoded as RGB
        channels = shape[2] if shape and ds.train.kind == "arrays" else 3
        return [int(image_size[0]), int(image_size[1]), channels]
    return list(shape) if shape else None


def _check_out(out: Path, force: bool, source) -> bool:
    """Refuse an `out` that would overwrite the data or anything but an earlier pack;
    True when `out` is an earlier pack that `force` replaces."""
    if source is not None and Path(source).exists():
        src, dst = Path(source).resolve(), out.resolve()
        if dst == src or src in dst.parents or dst in src.parents:
            what = ("the data folder" if dst == src else "inside the data"
                    if src in dst.parents else "a folder holding the data")
            raise ConfigError(f"{out} is {what} ({source})", file=str(out),
                              hint="write the packed data to a folder outside the source")
    if not out.exists() and not out.is_symlink():
        return False
    if out.is_dir() and not out.is_symlink() and not any(out.iterdir()) and \
            out.resolve().parent == out.parent.resolve():  # (not `.`: staged inside it)
        return False  # made for it (`mkdir packed`): nothing in it to lose
    if not force:
        replaceable = out.is_dir() and not out.is_symlink() and _is_a_pack(out)
        raise ConfigError(f"{out} exists", file=str(out), hint="pass --force to replace it, "
                          "or give another folder" if replaceable else "give another folder "
                          "(--force replaces only an earlier pack)")
    if not out.is_dir() or out.is_symlink():
        what = "a link" if out.is_symlink() else "not a folder"
        raise ConfigError(f"{out} is {what}: --force replaces only an earlier "
                          "`cnncli datasets pack` folder", file=str(out),
                          hint="give another folder, or remove it yourself if it can go")
    if not _is_a_pack(out) and any(out.iterdir()):
        raise ConfigError(f"{out} is not a packed dataset (it has no index of `cnncli datasets "
                          "pack`): --force replaces only an earlier pack", file=str(out),
                          hint="give another folder, or remove it yourself if it can go")
    others = _not_of_a_pack(out)
    if others:
        raise ConfigError(f"{out} holds files a pack did not write ({some(others)}): --force "
                          "replaces only a pack as `cnncli datasets pack` wrote it",
                          file=str(out), hint="move them out of it, give another folder, or "
                                              "remove the folder yourself if it can go")
    return _is_a_pack(out)


#: The names of a pack's shards and labels (any shard: one left by an earlier pack too).
_PACK_FILE = re.compile(r".*\.tfrecord|(train|test)-labels\.npy")


def _is_a_pack(folder: Path) -> bool:
    """True if `folder`'s ``dataset.json`` is a pack's index (a folder of the user's with a
    ``dataset.json`` of their own is not a pack)."""
    try:
        index = files.read_json(folder / INDEX)
        return isinstance(index, dict) and index.get("format") == FORMAT
    except (OSError, ValueError):
        return False


def _not_of_a_pack(folder: Path) -> list[str]:
    """The names in a pack's `folder` that `pack` did not write, sorted: anything but its
    index and regular files named as shards and labels are (a folder named as a shard
    is not one)."""
    return sorted(p.name for p in folder.iterdir() if not (
        p.is_file() and not p.is_symlink() and (p.name == INDEX
                                                or _PACK_FILE.fullmatch(p.name))))


def _encoded(tf, split: Split, image_size, mode: str = "stretch"):
    """(encoded image, id) of each of the split's images, in order: a file's own bytes,
    a packed record's bytes, or PNG (arrays, and any image resized to `image_size`); for
    a file that cannot be read or decoded, a `DataError` in place of the bytes. Decoded,
    resized and compressed in `parallel.DECODE_THREADS` threads (Pillow and zlib release
    the GIL)."""
    if split.kind == "records":
        spec = {"image": tf.io.FixedLenFeature([], tf.string),
                "id": tf.io.FixedLenFeature([], tf.string, default_value=b"")}
        records = tf.data.TFRecordDataset(list(split.images.shards)).map(
            lambda r: tf.io.parse_single_example(r, spec))
        folder = Path(split.images.shards[0]).parent if split.images.shards else Path()

        def encode(numbered):
            i, record = numbered
            ident = record["id"].decode(errors="surrogateescape") or str(i)
            try:
                return _resized(record["image"], image_size, mode,
                                name=f"{folder}, record {i} ({ident})"), ident
            except DataError as exc:  # bytes that are not an image: left out, counted
                return exc, ident

        items = enumerate(records.as_numpy_iterator())
    elif split.kind == "files":
        def encode(i):
            ident = split.ids[i] if split.ids else str(i)
            try:
                with open(split.images[i], "rb") as f:
                    return _resized(f.read(), image_size, mode, name=split.images[i]), ident
            except DataError as exc:  # not an image, or cut short
                return exc, ident
            except OSError as exc:  # gone since it was listed, unreadable
                return DataError(f"cannot be read ({exc.strerror or exc})",
                                 file=split.images[i]), ident

        items = range(len(split))
    else:
        def encode(i):
            image = split.images[i]
            return (_png(images.resize(image, image_size, mode)) if image_size
                    else _png(image)), split.ids[i] if split.ids else str(i)

        items = range(len(split))
    stream = parallel.ordered_map(encode, items, threads=parallel.DECODE_THREADS)
    with contextlib.closing(stream) as out:
        try:
            yield from out
        except tf.errors.DataLossError as exc:  # a shard damaged in place: which one
            raise damaged_shard(split.images.shards, exc) from None


def _resized(encoded: bytes, image_size, mode: str, name: str | None = None) -> bytes:
    """The bytes as they are (decoded once all the same: one that training could not
    decode is left out here, not skipped in every epoch), or decoded, resized and stored
    as PNG."""
    if image_size is None:
        images.load_image(encoded, name=name, channels=3)
        return encoded
    # as training from the files resizes (a large JPEG decoded at a reduced scale first)
    return _png(images.load_resized(encoded, image_size, mode, name=name, channels=3))


def _record(tf, encoded: bytes, label: int, index: int, ident: str) -> bytes:
    """One serialized tf.train.Example."""
    feature = {
        "image": tf.train.Feature(bytes_list=tf.train.BytesList(value=[encoded])),
        "label": tf.train.Feature(int64_list=tf.train.Int64List(value=[label])),
        "index": tf.train.Feature(int64_list=tf.train.Int64List(value=[index])),
        "id": tf.train.Feature(bytes_list=tf.train.BytesList(
            value=[ident.encode(errors="surrogateescape")])),
    }
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def _png(image: np.ndarray) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image).save(buffer, "PNG")
    return buffer.getvalue()
