"""Seeded splits of a dataset's images class by class: the test split of a folder or a
CSV (`split_off_test`) and a run's validation images (`split_off_validation`). Both take
each class's quota of images at random with one generator, class after class
(`held_out`); they differ in how the quotas are worked out.

>>> labels = np.array([0, 0, 0, 0, 1, 1])
>>> [a.tolist() for a in split_off_test(labels, 0.5, seed=0)]
[[0, 1, 5], [2, 3, 4]]
"""

from __future__ import annotations

import numpy as np


def held_out(labels: np.ndarray, quotas: np.ndarray, rng: np.random.Generator
             ) -> tuple[np.ndarray, np.ndarray]:
    """(kept indices, held-out indices), each sorted: `quotas[c]` images of the c-th class
    of ``np.unique(labels)`` held out, drawn by `rng` class after class."""
    classes, of_class = np.unique(labels, return_inverse=True)
    order = np.argsort(of_class, kind="stable")  # each class's rows, grouped, in order
    starts = np.searchsorted(of_class[order], np.arange(len(classes) + 1))
    held = np.zeros(len(labels), bool)
    for c, quota in enumerate(quotas):
        held[rng.choice(order[starts[c]:starts[c + 1]], quota, replace=False)] = True
    return np.flatnonzero(~held), np.flatnonzero(held)


def split_off_test(labels: np.ndarray, fraction: float, seed: int
               ) -> tuple[np.ndarray, np.ndarray]:
    """A folder's or CSV's test split: (train indices, test indices), `fraction` of each
    class rounded, at least one image of a class of two or more, and never a class's
    last one; a `fraction` of 1 tests every image. (Evaluating a run reads its test
    split again: this rule stays as it is.)

    >>> [len(part) for part in split_off_test(np.array([0, 0, 0]), 0.9, seed=0)]
    [1, 2]
    """
    if fraction == 1:
        return np.zeros(0, np.int64), np.arange(len(labels))
    counts = np.unique(labels, return_counts=True)[1]
    quotas = np.rint(counts * fraction).astype(np.int64)  # (Python's round: half to even)
    quotas = np.where(counts >= 2, np.clip(quotas, 1, counts - 1), quotas)
    return held_out(labels, quotas, np.random.default_rng(seed))


def split_off_validation(labels: np.ndarray, total: int, seed: int
                         ) -> tuple[np.ndarray, np.ndarray]:
    """A run's validation images: `total` of them, each class giving its share
    (`share_quotas`), as (train indices, validation indices)."""
    rng = np.random.default_rng(seed)
    counts = np.unique(labels, return_counts=True)[1]
    return held_out(labels, share_quotas(counts, total, rng), rng)


def share_quotas(counts: np.ndarray, total: int, rng: np.random.Generator) -> np.ndarray:
    """How many of each class's `counts` images to hold out so that `total` are, in
    proportion: the largest remainders rounded up (ties drawn by `rng`, so no class is
    always the one left out), never a class's last image while another can give one.

    >>> rng = np.random.default_rng(0)
    >>> share_quotas(np.array([8, 2]), 2, rng).tolist()
    [2, 0]
    >>> share_quotas(np.array([1, 9]), 5, rng).tolist()   # a class of one keeps its image
    [0, 5]
    >>> sorted(share_quotas(np.array([5, 5, 5]), 2, rng).tolist())   # which two: drawn
    [0, 1, 1]
    """
    exact = counts * total / counts.sum()
    quotas = np.floor(exact).astype(np.int64)
    ties = rng.permutation(len(counts))  # the second key: equal remainders in a drawn order
    for c in np.lexsort((ties, -(exact - quotas)))[:total - quotas.sum()]:
        quotas[c] += 1
    room = counts - 1  # each class keeps one image to train on, when it can
    while (quotas > np.maximum(room, 0)).any() and (quotas < room).any():
        quotas[int(np.argmax(quotas - room))] -= 1
        short = np.where(quotas < room, exact - quotas, -np.inf)
        quotas[int(np.lexsort((ties, -short))[0])] += 1
    return quotas
