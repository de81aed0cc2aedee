"""`cnncli.parallel`: many items, a few threads, results in order; the CPUs there are."""

from __future__ import annotations

import itertools
import os
import threading
import time

import pytest

from cnncli.parallel import available_cpus, cpu_quota, ordered_map


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


AFFINITY = len(os.sched_getaffinity(0))


@pytest.mark.parametrize("files,quota", [
    ({"cpu.max": "150000 100000\n"}, 1.5),                       # cgroup v2
    ({"cpu.max": "max 100000\n"}, None),                          # v2, no limit
    ({"cpu/cpu.cfs_quota_us": "50000\n", "cpu/cpu.cfs_period_us": "100000\n"}, 0.5),  # v1
    ({"cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n"}, None),
    ({}, None),
])
def test_the_containers_cpu_quota_is_read_from_its_cgroup(tmp_path, files, quota):
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_text(text)
    assert cpu_quota(tmp_path) == quota


def test_available_cpus_are_at_most_the_quota_rounded_up(tmp_path):
    (tmp_path / "cpu.max").write_text("50000 100000\n")
    assert available_cpus(tmp_path) == 1
    (tmp_path / "cpu.max").write_text(f"{AFFINITY * 400000} 100000\n")
    assert available_cpus(tmp_path) == AFFINITY  # a quota above the CPUs changes nothing
