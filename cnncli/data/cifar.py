"""CIFAR-10 and CIFAR-100 batch folders, read with Keras' restricted unpickler.

>>> read_cifar("cifar-10-batches-py", "cifar10").num_classes     # doctest: +SKIP
10
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from cnncli.data.checks import from_arrays
from cnncli.data.dataset import Dataset
from cnncli.errors import DataError

CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer",
                   "dog", "frog", "horse", "ship", "truck"]


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


def detect(path: Path) -> str | None:
    """``cifar10``, ``cifar100`` or None."""
    if not path.is_dir():
        return None
    if (path / "data_batch_1").is_file() and (path / "test_batch").is_file():
        return "cifar10"
    if all((path / f).is_file() for f in ("train", "test", "meta")):
        return "cifar100"
    return None


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
    return from_arrays(fmt, x_train, y_train, x_test, y_test, list(names), str(folder),
                    file=str(train_files[0]), test_file=str(test_file))
