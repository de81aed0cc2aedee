"""`cnncli.parallel.ordered_map`: many items, a few threads, results in order."""

from __future__ import annotations

import itertools
import threading
import time

import pytest

from cnncli.parallel import ordered_map


def test_results_come_in_the_items_order_when_later_ones_finish_first():
    def slower_first(x):
        time.sleep(0.02 * (5 - x))
        return x * 10

    assert list(ordered_map(slower_first, range(6), threads=3)) == [0, 10, 20, 30, 40, 50]


def test_no_more_than_ahead_items_are_started_before_their_result_is_taken():
    drawn = []
    items = (drawn.append(x) or x for x in itertools.count())  # endless: must stay lazy
    results = ordered_map(lambda x: x, items, threads=2, ahead=3)
    assert [next(results) for _ in range(2)] == [0, 1]
    assert drawn == [0, 1, 2, 3]  # three ahead of the first, then one per result taken
    results.close()


def test_an_error_is_raised_at_its_item_after_the_results_before_it():
    def fails_at_three(x):
        if x == 3:
            raise ValueError("three")
        return x

    seen = []
    with pytest.raises(ValueError, match="three"):
        for x in ordered_map(fails_at_three, range(8), threads=2):
            seen.append(x)
    assert seen == [0, 1, 2]


def test_closing_early_cancels_the_items_not_started():
    started, gate = [], threading.Event()

    def waits_after_the_first(x):
        started.append(x)
        if x:
            gate.wait(5)
        return x

    results = ordered_map(waits_after_the_first, range(100), threads=1, ahead=10)
    assert next(results) == 0
    results.close()  # item 1 may be running (waiting at the gate), the rest are queued
    gate.set()
    time.sleep(0.3)  # time for queued items to start, were they not cancelled
    assert started in ([0], [0, 1])
