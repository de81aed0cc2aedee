"""How a run's training and validation images reach the model: the one owner of that.

`Feed.of` splits a dataset's training images into training and validation parts
(seeded) and chooses the path for each kind of data:

* arrays at the model's size: gathered in memory by TensorFlow (the fastest path);
* files, or arrays of another size: decoded and resized by the one decoder as they are
  used, in parallel, cached (`cnncli.data.loader`);
* TFRecord shards: read in a seeded order, decoded like files.

>>> feed = Feed.of(ds, (28, 28, 1), validation_split=0.1, seed=0)   # doctest: +SKIP
>>> batches = feed.training(batch_size=128, seed=0, epochs=3,
...                         preprocessing="scale")                   # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cnncli.config import AugmentSection
from cnncli.data import records, splits
from cnncli.data.checks import mostly_unreadable
from cnncli.data.dataset import Dataset, Split
from cnncli.data.loader import ImageLoader, needs_loader
from cnncli.errors import ConfigError, DataError
from cnncli.text import count, some

#: Training stops when more than `checks.UNREADABLE_SHARE` of the images tried so far
#: could not be decoded, judged once this many images were tried (or at an epoch's end),
#: so that two bad files among the first three stop nothing.
UNREADABLE_AFTER = 100


@dataclass
class Feed:
    """The training and validation parts of a dataset, and how each is read.

    Args:
        train, val: the two parts (for records: the whole split, with `keep` masks).
        shape: the model's input (H, W, C).
        loaders: the loader of each part, or None for arrays at the model's size.
        keep: for records, the record indices of each part (boolean masks).
        records: for records, the whole split (its labels by record index: what each
            record read is checked against).
    """

    train: Split
    val: Split
    shape: tuple[int, int, int]
    train_loader: ImageLoader | None = None
    val_loader: ImageLoader | None = None
    keep: tuple[np.ndarray, np.ndarray] | None = None
    records: Split | None = None
    #: what the feed holds until `close`: a pack's lock (`cnncli.data.records.held`)
    held: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)

    @classmethod
    def of(cls, ds: Dataset, shape, *, validation_split: float, seed: int,
           limit: int | None = None, resize: str = "stretch", cache: str = "auto",
           store: bool = True, stratify: bool = True) -> Feed:
        """The feed of `ds`'s training split for a model taking `shape` images; without
        `store`, its caches are not made (a plan only shown: `ImageLoader`'s `store`);
        `stratify`: the validation part keeps each class's share (`validation_indices`)."""
        shape = tuple(int(d) for d in shape)
        split = ds.train
        n = min(len(split), limit) if limit else len(split)
        pool = np.arange(n)  # the first n of arrays; files come class by class: a random n
        if n < len(split) and split.kind != "arrays":
            pool = np.sort(np.random.default_rng(seed).permutation(len(split))[:n])
        train_idx, val_idx = validation_indices(split.labels[pool], validation_split, seed,
                                                stratify=stratify)
        train_idx, val_idx = pool[train_idx], pool[val_idx]
        if split.kind == "records":
            masks = tuple(_mask(len(split), idx) for idx in (train_idx, val_idx))
            train = Split(split.images, split.labels[masks[0]])
            val = Split(split.images, split.labels[masks[1]])
            held = contextlib.ExitStack()
            try:
                if store and split.images.shards:  # a training's: no pack --force under it
                    folder = Path(split.images.shards[0]).parent
                    try:
                        held.enter_context(records.held(folder))
                        same = records.index_version(folder) == split.images.index_version
                    except FileNotFoundError:  # (its index moved away meanwhile)
                        same = False
                    if not same:
                        raise DataError(f"the pack {folder} was replaced while the training "
                                        "started (cnncli datasets pack --force)",
                                        file=str(folder), hint="start the training again")
                loader = ImageLoader(split, shape, resize, cache, store)
            except BaseException:
                held.close()
                raise
            return cls(train, val, shape, loader, loader, masks, split, held)
        train, val = split.take(train_idx), split.take(val_idx)
        if not needs_loader(split, shape):
            return cls(train, val, shape)
        # arrays of another size are resized keeping their channels (converted in the
        # graph, as arrays of the model's size are): an export then takes what they were
        at = shape if split.kind != "arrays" else (*shape[:2], split.images.shape[-1])
        train_loader = ImageLoader(train, at, resize, cache, store)
        try:
            val_loader = ImageLoader(val, at, resize, cache, store) if len(val) else None
        except BaseException:  # no room for its cache: the training images' is not kept
            train_loader.discard()  # on the disk the error asks to free
            raise
        return cls(train, val, shape, train_loader, val_loader)

    def close(self) -> None:
        """Let go of the loaders' threads and caches (`ImageLoader.close`): the run ended."""
        for loader in dict.fromkeys([self.train_loader, self.val_loader]):  # (one if same)
            if loader is not None:
                loader.close()
        self.held.close()

    @property
    def image_channels(self) -> int:
        """The channels of the images that reach the model's graph: files are decoded at
        the model's; arrays keep theirs, resized or not (grey MNIST into an RGB network:
        1), converted inside the graph (`pipeline.preprocess_batch`)."""
        if self.train.kind == "arrays":
            return int(self.train.images.shape[-1])
        return self.shape[-1]

    def fingerprint(self, absolute: bool = False) -> dict:
        """What a run's backups record of its data, for ``--resume`` to check it is the
        same: the number of training and validation images, and a hash of the images
        (pixels of arrays, paths of files below the folder holding them all, names and
        sizes of shards), their labels and how they are split between the two parts.
        A data folder moved elsewhere is the same data; `absolute`: the hash of files by
        their full paths, as backups made by cnncli before 2026-12-05 recorded it.

        >>> x = np.zeros((4, 2, 2, 1), np.uint8)
        >>> feed = Feed.of(Dataset("toy", Split(x, np.array([0, 1, 0, 1])), None, ["a", "b"],
        ...                        "test"), (2, 2, 1), validation_split=0.5, seed=0)
        >>> print(feed.fingerprint())
        {'train': 2, 'validation': 2, 'digest': '...', 'paths': 'relative'}
        """
        digest = hashlib.sha256()
        files = [path for part in (self.train, self.val) if part.kind == "files"
                 for path in part.images]
        root = "" if absolute or not files else _folder_of_all(files)
        for part in (self.train, self.val):
            digest.update(np.ascontiguousarray(part.labels, np.int64).tobytes() + b"|")
            if part.kind == "arrays":
                digest.update(np.ascontiguousarray(part.images).data)
            elif part.kind == "files":
                digest.update("\0".join(p[len(root):] for p in part.images)
                              .encode("utf-8", "surrogateescape"))
            else:
                for shard in part.images.shards:
                    digest.update(f"{os.path.basename(shard)}\0{os.path.getsize(shard)}\n"
                                  .encode("utf-8", "surrogateescape"))
        for mask in self.keep or ():
            digest.update(np.packbits(mask).tobytes())
        found = {"train": len(self.train), "validation": len(self.val),
                 "digest": digest.hexdigest()[:16]}
        return found if absolute else found | {"paths": "relative"}

    def describe(self) -> str:
        """How images are read, for the Data line ("" for arrays in memory)."""
        return self.train_loader.describe() if self.train_loader else ""

    @property
    def failures(self) -> int:
        """Images that could not be decoded so far (skipped: weight 0)."""
        return len(self.unreadable())

    def unreadable(self) -> list[DataError]:
        """Why each image that could not be decoded so far failed, in the order found
        (the training images', then the validation images')."""
        loaders = dict.fromkeys([self.train_loader, self.val_loader])  # one if the same
        return [exc for loader in loaders if loader is not None
                for exc in loader.failures.values()]

    @property
    def tried(self) -> int:
        """Different images a decode was tried on so far."""
        loaders = dict.fromkeys([self.train_loader, self.val_loader])  # one if the same
        return sum(loader.tried for loader in loaders if loader is not None)

    def unreadable_error(self, strict: bool = False, epoch_end: bool = False,
                         totals: tuple[int, int] | None = None) -> DataError | None:
        """The error to stop training with because images could not be decoded: at the
        first one with `strict`, else when more than `checks.UNREADABLE_SHARE` of those tried
        failed (judged after `UNREADABLE_AFTER` or at an epoch's end); None while training
        may go on. `totals`: the images that failed and those tried on every machine of a
        cluster (each decodes its own part), judged instead of this machine's."""
        failures = self.unreadable()
        failed, tried = totals or (len(failures), self.tried)
        if not failed:
            return None
        if strict:
            first = failures[0] if failures else DataError(
                f"{count(failed, 'image')} could not be decoded on other machines of the cluster "
                "(their logs name them)")
            return DataError(first.message, file=first.file,
                             hint="fix or replace that file, or skip such files with "
                                  "data.strict: false")
        if tried < UNREADABLE_AFTER and not epoch_end:
            return None
        return mostly_unreadable(failures, tried, "images read so far", failed=failed)

    @property
    def cache_error(self) -> str | None:
        """Why the image cache stopped mid-run (a disk error), or None."""
        return next((loader.cache_error for loader in (self.train_loader, self.val_loader)
                     if loader is not None and loader.cache_error), None)

    @property
    def changed_note(self) -> str | None:
        """A note when image files changed on disk since the run began (a folder swapped
        for another, files replaced): decoded as they are now, not kept in the shared
        image cache, which holds the images of the files as they were; None if none did."""
        loaders = [x for x in dict.fromkeys([self.train_loader, self.val_loader]) if x]
        paths = [loader.split.images[i] for loader in loaders for i in sorted(loader.changed)]
        if not paths:
            return None
        return (f"{count(len(paths), 'image file')} changed on disk since the run began (e.g. "
                f"{some(paths, shown=2)}): trained on as they are now, not kept in the image "
                "cache")

    def first_images(self, n: int) -> np.ndarray:
        """`n` training images as the model gets them (uint8), e.g. to build metrics."""
        if self.train_loader is None:
            return self.train.images[:n]
        if self.keep is not None:  # records: no random access; any images of the size do
            return np.zeros((n, *self.shape), np.uint8)
        return self.train_loader.batch(np.arange(n))[0]

    def training(self, *, batch_size: int, seed: int, epochs: int, start_epoch: int = 0,
                 start_step: int = 0, preprocessing: str = "scale",
                 augment: AugmentSection | None = None, one_hot: int | None = None,
                 part: tuple[int, int, int] | None = None):
        """Every remaining training batch of the run (`pipeline.training_batches`); with
        `part`, only that part of each batch."""
        common = dict(batch_size=batch_size, seed=seed, epochs=epochs, start_epoch=start_epoch,
                      start_step=start_step, preprocessing=preprocessing, augment=augment,
                      one_hot=one_hot)
        if self.keep is not None:
            return _pipeline().record_batches(self.records, self.keep[0],
                                              self.train_loader, part=part, **common)
        x = self.train.images if self.train_loader is None else None
        return _pipeline().training_batches(x, self.train.labels, input_shape=self.shape,
                                            loader=self.train_loader, part=part, **common)

    def validation(self, *, batch_size: int, seed: int, preprocessing: str = "scale",
                   one_hot: int | None = None):
        """The validation batches, or None without a validation part."""
        if not len(self.val):
            return None
        if self.keep is not None:
            return _pipeline().record_batches(self.records, self.keep[1], self.val_loader,
                                           batch_size=batch_size, seed=seed,
                                           preprocessing=preprocessing, one_hot=one_hot,
                                           training=False)
        if self.val_loader is not None:
            return _pipeline().eval_batches(self.val_loader, self.val.labels,
                                            input_shape=self.shape, batch_size=batch_size,
                                            preprocessing=preprocessing, one_hot=one_hot)
        return _pipeline().make_dataset(self.val.images, self.val.labels, batch_size=batch_size,
                                     input_shape=self.shape, training=False, seed=seed,
                                     preprocessing=preprocessing, one_hot=one_hot)


def _pipeline():
    """`cnncli.data.pipeline`, imported when a tf.data dataset is made: evaluating an
    exported model on files or arrays needs no TensorFlow."""
    from cnncli.data import pipeline

    return pipeline


def _folder_of_all(paths: list[str]) -> str:
    """The deepest folder holding every one of `paths`, with its separator at the end.

    >>> _folder_of_all(["/d/photos/cat/1.jpg", "/d/photos/car/2.jpg"])
    '/d/photos/'
    """
    prefix = os.path.commonprefix(paths)  # of the characters: cut back to a folder
    return prefix[:prefix.rfind(os.sep) + 1]


def _smallest_fraction(n: int) -> float:
    """The smallest validation fraction (two significant digits) that holds out one of
    `n` images, as `validation_indices` rounds.

    >>> _smallest_fraction(2), _smallest_fraction(30), _smallest_fraction(60_000)
    (0.26, 0.017, 8.4e-06)
    """
    fraction = 0.5 / n
    digits = max(2, 1 - math.floor(math.log10(fraction)))
    step = 10.0 ** -digits
    fraction = math.ceil(round(fraction / step, 6)) * step
    while round(n * fraction) < 1:
        fraction += step
    return round(fraction, digits)


def validation_indices(labels: np.ndarray, fraction: float, seed: int, *,
                       stratify: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Hold out a seeded `fraction` of the images whose classes are `labels`: (train
    indices, validation indices), each sorted. With `stratify`, each class gives its
    share (`splits.share_quotas`: the total as without, a class's last image never taken);
    else a random `fraction` of all (runs made before 2026-12-07: `data.stratify`).

    >>> labels = np.array([0] * 8 + [1] * 2)
    >>> [a.tolist() for a in validation_indices(labels, 0.5, seed=0)]  # 4 and 1
    [[0, 4, 6, 7, 9], [1, 2, 3, 5, 8]]
    """
    n = len(labels)
    if not 0 <= fraction < 1:
        raise ConfigError(f"validation fraction must be in [0, 1), not {fraction}",
                          hint="use e.g. 0.1")
    n_val = int(round(n * fraction))
    if fraction > 0 and n < 2:
        raise ConfigError(f"`data.validation_split` {fraction}: {count(n, 'image')} cannot be "
                        "split into training and validation images",
                        hint="use more data, or 0 (no validation)")
    if fraction > 0 and n_val == 0:
        raise ConfigError(f"`data.validation_split` {fraction} of {count(n, 'image')} is not "
                        "one image to validate on", hint=f"use at least "
                        f"{_smallest_fraction(n)} (or 0: no validation), or more data")
    if fraction > 0 and n_val == n:
        raise ConfigError(f"`data.validation_split` {fraction} of {count(n, 'image')} leaves "
                        "no image to train on", hint="use a smaller fraction, or more data")
    if stratify:
        return splits.split_off_validation(labels, n_val, seed)
    order = np.random.default_rng(seed).permutation(n)
    return np.sort(order[n_val:]), np.sort(order[:n_val])


def _mask(n: int, indices: np.ndarray) -> np.ndarray:
    mask = np.zeros(n, bool)
    mask[indices] = True
    return mask


def split_batches(split: Split, shape, *, resize: str = "stretch", batch_size: int = 256):
    """(uint8 images at `shape`, labels, weights) of a whole split, in order: what
    evaluation runs a model on. Files and records go through the one decoder (no cache: a
    test split is read once); a file that cannot be decoded has weight 0."""
    shape = tuple(int(d) for d in shape)
    if split.kind == "records":
        yield from _record_batches(split, shape, resize, batch_size)
        return
    loader = ImageLoader(split, shape, resize, cache="none") \
        if needs_loader(split, shape) else None
    for start in range(0, len(split), batch_size):
        index = np.arange(start, min(start + batch_size, len(split)))
        if loader is None:
            images, weights = split.images[index], np.ones(len(index), np.float32)
        else:
            images, weights = loader.batch(index)
        yield images, split.labels[index], weights


def _record_batches(split: Split, shape, resize: str, batch_size: int):
    from cnncli.data.records import read_error

    loader = ImageLoader(split, shape, resize, cache="none")
    keep = np.ones(len(split), bool)
    ds = _pipeline().record_batches(split, keep, loader, batch_size=batch_size, seed=0,
                                    preprocessing="none", training=False)
    try:
        for images, labels, weights in ds.as_numpy_iterator():
            yield images.astype(np.uint8), labels, weights
    except Exception as exc:
        said = read_error(exc, split)
        if said is None:
            raise
        raise said from None


def images_at(split: Split, indices, shape, *, resize: str = "stretch"
              ) -> tuple[np.ndarray, np.ndarray]:
    """The images at `indices` as the model saw them (e.g. the worst mistakes), and which
    of them could be read (a file that cannot be decoded is a black image: False)."""
    indices = np.asarray(indices, dtype=np.int64)
    if split.kind == "arrays" and not needs_loader(split, shape):
        return split.images[indices], np.ones(len(indices), bool)
    if split.kind != "records":
        images, weights = ImageLoader(split, shape, resize, cache="none").batch(indices)
        return images, weights > 0
    wanted = {int(i): k for k, i in enumerate(indices)}
    out = np.zeros((len(indices), *shape), np.uint8)
    read = np.zeros(len(indices), bool)
    start = 0
    for images, _, weights in split_batches(split, shape, resize=resize):
        for j in range(len(images)):
            if start + j in wanted:
                out[wanted[start + j]] = images[j]
                read[wanted[start + j]] = weights[j] > 0
        start += len(images)
    return out, read
