"""What every data source gives: a `Dataset` of two `Split`s, train and test.

A split's images are either a uint8 array in memory (MNIST, CIFAR, an .npz: small) or
a list of image files decoded when they are used (folders and CSVs of photos: any
size), or TFRecord shards (`cnncli datasets pack`). Labels are always in memory.

>>> import numpy as np
>>> split = Split(np.zeros((4, 8, 8, 1), np.uint8), np.array([0, 1, 0, 1]))
>>> len(split), split.kind, split.take(np.array([1, 3])).labels.tolist()
(4, 'arrays', [1, 1])
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np


class DataWarning(UserWarning):
    """Something about the data the user should know, e.g. skipped files."""


class SampleDataWarning(DataWarning):
    """The bundled 5,000-digit MNIST sample is used instead of the full MNIST."""


@dataclass(frozen=True)
class Records:
    """TFRecord shards written by `cnncli datasets pack` (one split's).

    Args:
        shards: the shard files, in order.
        count: the records in all of them.
        image_shape: (H, W, C) when every image was packed at one size, else None.
        named_classes: packed from files (class folders, a CSV's labels), where every
            class was named by the user: a class with no training image is then a
            mistake (an empty folder), not a gap in numbered labels.
    """

    shards: tuple[str, ...]
    count: int
    image_shape: tuple[int, int, int] | None = None
    named_classes: bool = False
    #: the index's version as read (`cnncli.data.records.index_version`): a training
    #: checks that it still is, once it holds the pack's lock
    index_version: int = 0


@dataclass
class Split:
    """The images of one split and their labels (int64 class indices).

    Args:
        images: an (N, H, W, C) uint8 array, a list of N image file paths, or `Records`.
        labels: N labels.
        ids: how to name each image (file names), if not by position.
    """

    images: np.ndarray | list[str] | Records
    labels: np.ndarray
    ids: list[str] | None = None

    @property
    def kind(self) -> str:
        """``arrays``, ``files`` or ``records``."""
        if isinstance(self.images, np.ndarray):
            return "arrays"
        return "records" if isinstance(self.images, Records) else "files"

    @property
    def named_classes(self) -> bool:
        """Every class is one the user named (a class folder, a CSV's label), as for files
        and what was packed from them: a class without images is then a mistake (an
        empty folder), not a gap in numbered labels (EMNIST's letters start at 1)."""
        return self.kind == "files" or (self.kind == "records" and self.images.named_classes)

    def __len__(self) -> int:
        return len(self.labels)

    def take(self, indices: np.ndarray) -> Split:
        """The images and labels at `indices` (arrays and files; records are filtered in
        the pipeline instead)."""
        if self.kind == "records":
            raise ValueError("records are split by the pipeline, not by index")
        images = (self.images[indices] if self.kind == "arrays"
                  else [self.images[i] for i in indices])
        ids = [self.ids[i] for i in indices] if self.ids is not None else None
        return Split(images, self.labels[indices], ids)


@dataclass
class Dataset:
    """Train and test splits, class names, and where they came from.

    >>> x = np.zeros((4, 8, 8, 1), np.uint8)
    >>> ds = Dataset("toy", Split(x, np.array([0, 1, 0, 1])), Split(x[:2], np.array([0, 1])),
    ...              ["a", "b"], "test")
    >>> ds.num_classes, ds.image_shape
    (2, (8, 8, 1))
    """

    name: str
    train: Split
    test: Split
    class_names: list[str]
    source: str
    sample: bool = False
    resized: str | None = None  # how images were resized when packed (`data.resize` mode)
    held_out: float = 0.0  # the share of each class cnncli held out as the test split (a
    # seeded part), when the data has no test split of its own; 0: it has one

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def held_out_names(self) -> str | None:
        """A digest of the held-out test images' names (each as ``class/file``), None
        when the data has a test split of its own: a run records it, so that evaluate can
        tell a folder that changed since (an image added or removed moves the seeded fifth
        onto images the run trained on)."""
        if not self.held_out or self.test.kind != "files":
            return None
        import hashlib

        names = sorted(f"{self.class_names[label]}/{os.path.basename(path)}"
                       for path, label in zip(self.test.images, self.test.labels, strict=True))
        text = "\n".join(names)  # (a name's bytes that are not UTF-8: as they are on disk)
        return hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()[:16]

    @property
    def image_shape(self) -> tuple[int, int, int] | None:
        """(H, W, C) when every image has it (arrays, records packed at one size)."""
        if self.train.kind == "arrays":
            return tuple(int(d) for d in self.train.images.shape[1:])
        if self.train.kind == "records":
            return self.train.images.image_shape
        return None
