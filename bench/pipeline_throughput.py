"""Throughput of the cnncli input pipeline alone (no model), in images per second.

Feeds the full Fashion-MNIST training set (60,000 images) through
`cnncli.data.pipeline.training_batches`, the path `cnncli train` uses (seeded epoch
order, gather, preprocess, fixed prefetch), or with ``--path dataset`` through
`make_dataset` (evaluation's path, and training's with ``--augment``); skips a
warm-up (by default one epoch), then times a fixed number of batches.

Target: at least 20x the images/s that training consumes (7,100 at batch 128 in
bfloat16 on the AMX Xeon, bench/BF16_RESULTS.md; 2,600 in float32 when this was
written), so the pipeline never is what a training step waits for.

Run it on a quiet machine (nothing else busy on the 2 cores)::

    .venv/bin/python bench/pipeline_throughput.py
    .venv/bin/python bench/pipeline_throughput.py --batches 5        # smoke run
    .venv/bin/python bench/pipeline_throughput.py --input-shape 32 32 3 --augment
"""

from __future__ import annotations

import argparse
import math
import time

TRAINING_IMAGES_PER_S = 7_100  # cnncli training at batch 128, bfloat16 (bench/BF16_RESULTS.md)
TARGET_FACTOR = 20


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Images/s of the cnncli input pipeline.")
    parser.add_argument("--batches", type=int, default=1000, help="batches timed")
    parser.add_argument("--warmup", type=int, default=None,
                        help="batches skipped first (default: one epoch)")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--input-shape", type=int, nargs=3, default=(28, 28, 1),
                        metavar=("H", "W", "C"), help="the model input (resize/channels)")
    parser.add_argument("--preprocessing", default="scale")
    parser.add_argument("--augment", action="store_true",
                        help="add flip, translate, rotate, zoom and contrast")
    parser.add_argument("--data-dir", default=None, help="where Fashion-MNIST is")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--path", choices=("training", "dataset"), default="training",
                        help="training_batches (cnncli train) or make_dataset")
    args = parser.parse_args(argv)

    from cnncli.data import datasets
    from cnncli.data.pipeline import make_dataset, training_batches

    data = datasets.load("fashion_mnist", data_dir=args.data_dir, offline=True)
    from cnncli.config import AugmentSection

    augment = (AugmentSection(flip="horizontal", translate=0.1, rotate=0.05, zoom=0.1,
                              contrast=0.1) if args.augment else None)
    warmup = args.warmup
    if warmup is None:
        warmup = math.ceil(len(data.train.images) / args.batch_size)
    common = dict(batch_size=args.batch_size, input_shape=tuple(args.input_shape),
                  seed=args.seed, preprocessing=args.preprocessing, augment=augment)
    if args.path == "training":
        epochs = math.ceil((warmup + args.batches) / (len(data.train.images) // args.batch_size))
        ds = training_batches(data.train.images, data.train.labels, epochs=epochs + 1, **common)
    else:
        ds = make_dataset(data.train.images, data.train.labels, training=True, repeat=True,
                          **common)

    batches = iter(ds)
    start = time.perf_counter()
    for _ in range(warmup):
        next(batches)
    warm = time.perf_counter() - start
    start = time.perf_counter()
    images = 0
    for _ in range(args.batches):
        x, _y = next(batches)
        images += int(x.shape[0])
    seconds = time.perf_counter() - start

    rate = images / seconds
    target = TARGET_FACTOR * TRAINING_IMAGES_PER_S
    print(f"data: {data.source}, {len(data.train.images):,} training images")
    print(f"pipeline: {args.path}, batch {args.batch_size}, input {tuple(args.input_shape)}, "
          f"preprocessing {args.preprocessing}, augment {'on' if augment else 'off'}")
    print(f"warm-up: {warmup} batches in {warm:.2f} s")
    print(f"timed:   {args.batches} batches, {images:,} images in {seconds:.3f} s")
    print(f"throughput: {rate:,.0f} images/s")
    print(f"target: >= {target:,} images/s ({TARGET_FACTOR}x the ~{TRAINING_IMAGES_PER_S:,} "
          f"images/s training consumes): {'met' if rate >= target else 'NOT met'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
