"""One function applied to many items by a few threads, the results in the items' order.

Decoding, resizing and compressing images (Pillow, zlib) and reading files release the
interpreter lock, so threads decode about as many times faster as there are cores, with
no images pickled between processes. Used where a stream of images is decoded one by one:
`datasets pack` and `predict`. `available_cpus` says how many can work at once.

>>> list(ordered_map(lambda x: x * x, range(6), threads=2))
[0, 1, 4, 9, 16, 25]
"""

from __future__ import annotations

import math
import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")


def available_cpus(cgroup: Path = Path("/sys/fs/cgroup")) -> int:
    """CPUs this process may run on: its affinity (else the machine's count), at most its
    container's CPU quota rounded up (a Kubernetes pod limited to 2 CPUs on a 64-core
    node: 2)."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    quota = cpu_quota(cgroup)
    return max(1, min(cpus, math.ceil(quota))) if quota else cpus


def cpu_quota(cgroup: Path = Path("/sys/fs/cgroup")) -> float | None:
    """The CPUs' worth of time the container may use (cgroup v2's ``cpu.max``, v1's CFS
    quota), None without a limit.

    >>> cpu_quota(Path("/nonexistent")) is None
    True
    """
    try:
        quota, period = (cgroup / "cpu.max").read_text().split()[:2]
    except (OSError, ValueError):
        try:
            quota = (cgroup / "cpu" / "cpu.cfs_quota_us").read_text().strip()
            period = (cgroup / "cpu" / "cpu.cfs_period_us").read_text().strip()
        except OSError:
            return None
    try:
        quota, period = int(quota), int(period)
    except ValueError:  # "max": no limit
        return None
    return quota / period if quota > 0 and period > 0 else None


#: Images decoded at once (training's loader, predict, pack): one per core, four at least
#: (predict also reads URLs, which wait on the network). On 2 cores, 2, 4 or 8 threads
#: decoded a training folder equally fast (bench/STREAM_RESULTS.md, 2026-12-04).
DECODE_THREADS = max(4, available_cpus())


def ordered_map(fn: Callable[[T], R], items: Iterable[T], *, threads: int,
                ahead: int | None = None) -> Iterator[R]:
    """`fn(item)` for each of `items`, in their order, `threads` at a time.

    At most `ahead` items (default: four per thread) are started before their result is
    taken, so memory stays bounded on millions of items and `items` may be a lazy
    iterator. An exception `fn` raises is raised here, at its item. Closing the iterator
    (a `for` left early, an error, Ctrl-C in the consumer) cancels what has not started
    and does not wait for what has: use it in a `with contextlib.closing(...)` block or
    iterate it to the end.
    """
    ahead = max(1, ahead or 4 * threads)
    pool = ThreadPoolExecutor(max(1, threads))
    pending: deque[Future] = deque()
    try:
        for item in items:
            pending.append(pool.submit(fn, item))
            if len(pending) >= ahead:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
