"""Packed datasets, written: ``cnncli datasets pack SOURCE OUT/`` writes any dataset cnncli
reads as sharded TFRecords (the layout: `cnncli.data.records`, which reads them).

Records are written in a seeded random order, so that windows of them hold every class;
images are decoded once while packing (one training could not decode is left out here,
counted), resized if asked. The pack is written into a staging folder and moved into
place, its index last: never half a packed folder.

>>> pack(load("photos/"), "packed/", shard_mb=200)    # doctest: +SKIP
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
from cnncli.data import images, records
from cnncli.data.checks import mostly_unreadable
from cnncli.data.dataset import Dataset, Split
from cnncli.data.records import FORMAT, INDEX, damaged_shard, is_a_pack, resize_problem
from cnncli.errors import ConfigError, DataError, WriteError
from cnncli.text import count, some


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
    if out.is_dir() and not out.is_symlink() and files.remove_dead_staging(out, STAGED):
        # (a killed pack's went; one left is a live pack's: its files would mix with these)
        raise ConfigError(f"another `cnncli datasets pack` is writing into {out} now",
                          file=str(out), hint="wait for it to finish (then --force replaces "
                          "what it wrote), or pack into another folder")
    replacing = _check_out(out, force, source)
    with records.held(out, replacing=True) if replacing else contextlib.nullcontext():
        return _write(ds, out, image_size, resize, shard_mb, source, progress, replacing)


def _write(ds: Dataset, out: Path, image_size, resize: str, shard_mb: float, source,
           progress, replacing: bool) -> Packed:
    """`pack`'s writing, once `out` is known to be one it may write (`_check_out`)."""
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
        replaceable = out.is_dir() and not out.is_symlink() and is_a_pack(out)
        raise ConfigError(f"{out} exists", file=str(out), hint="pass --force to replace it, "
                          "or give another folder" if replaceable else "give another folder "
                          "(--force replaces only an earlier pack)")
    if not out.is_dir() or out.is_symlink():
        what = "a link" if out.is_symlink() else "not a folder"
        raise ConfigError(f"{out} is {what}: --force replaces only an earlier "
                          "`cnncli datasets pack` folder", file=str(out),
                          hint="give another folder, or remove it yourself if it can go")
    if not is_a_pack(out) and any(out.iterdir()):
        raise ConfigError(f"{out} is not a packed dataset (it has no index of `cnncli datasets "
                          "pack`): --force replaces only an earlier pack", file=str(out),
                          hint="give another folder, or remove it yourself if it can go")
    others = _not_of_a_pack(out)
    if others:
        raise ConfigError(f"{out} holds files a pack did not write ({some(others)}): --force "
                          "replaces only a pack as `cnncli datasets pack` wrote it",
                          file=str(out), hint="move them out of it, give another folder, or "
                                              "remove the folder yourself if it can go")
    return is_a_pack(out)


#: The names of a pack's shards and labels (any shard: one left by an earlier pack too).
_PACK_FILE = re.compile(r".*\.tfrecord|(train|test)-labels\.npy")



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
    # deterministic: the same bytes from every process (the order of a map's entries
    # is otherwise drawn anew), so a pack made twice is the same files
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString(
        deterministic=True)


def _png(image: np.ndarray) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image).save(buffer, "PNG")
    return buffer.getvalue()
