"""What this machine's TensorFlow does at its best: GFLOP/s of a float32 (or bfloat16) matmul.

An N x N by N x N float32 matmul is 2 N^3 floating-point operations (137.4 GFLOP for
N = 4096). One warm-up, then `--repeats` timed ones; each result is reduced to a
number, so the timing covers the whole product. Thread settings: TensorFlow's defaults.

    .venv/bin/python bench/contenders/matmul.py                 # 4096, 5 repeats
    .venv/bin/python bench/contenders/matmul.py --size 1024 --repeats 2   # smoke
"""

from __future__ import annotations

import argparse
import statistics
import time

import _common


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=4096)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"],
                   help="bfloat16: what the CPU's bfloat16 matrix units (AMX) give, if any")
    p.add_argument("--json-out", default=None)
    args = p.parse_args(argv)

    _common.quiet_tensorflow()
    import tensorflow as tf

    n = args.size
    a = tf.cast(tf.random.stateless_normal((n, n), seed=(0, 1)), args.dtype)
    b = tf.cast(tf.random.stateless_normal((n, n), seed=(0, 2)), args.dtype)
    float(tf.reduce_sum(tf.cast(tf.linalg.matmul(a, b), "float32")))  # warm-up
    times = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        float(tf.reduce_sum(tf.cast(tf.linalg.matmul(a, b), "float32")))
        times.append(time.perf_counter() - start)
    flop = 2 * n**3
    result = {
        "name": "matmul", "dtype": args.dtype, "size": n, "repeats": args.repeats, "seconds": times,
        "gflops_best": flop / min(times) / 1e9,
        "gflops_median": flop / statistics.median(times) / 1e9,
        "threads": _common.keras_threads(tf),
        "versions": _common.versions(tensorflow=tf.__version__),
    }
    _common.write_json(args.json_out, result)
    print(f"matmul {n}x{n} {args.dtype}: {result['gflops_median']:,.1f} GFLOP/s median, "
          f"{result['gflops_best']:,.1f} best of {args.repeats}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
