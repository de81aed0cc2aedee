"""Which levers make the lecture's ConvNet train faster on this machine, one at a time.

Each lever runs in its own process (thread settings and precision policies must be set
before TensorFlow starts), on the same data (Fashion-MNIST, uint8 in memory, batches
gathered and scaled on the fly as cnncli does), the same model and Adam 1e-3. A run is
one warm-up stretch (tracing, caches) and then ``--measure`` steps timed; images/s of
the timed steps is the figure. Rounds are interleaved (A B C ... A B C ...), so a noisy
neighbour hits every lever alike; the table shows medians and the spread.

    .venv/bin/python bench/levers.py                       # every lever, 3 rounds
    .venv/bin/python bench/levers.py --only base,spe8 --rounds 1 --measure 100

Writes bench/LEVERS.md and bench/levers.json; `make bench-levers` runs it.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import report  # noqa: E402  (bench/report.py: keeps the hand-written sections)

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "contenders"))

#: name -> (what it is, settings). Settings not given take the base values.
BASE = {"batch": 128, "spe": 1, "intra": 0, "inter": 0, "precision": "float32",
        "jit": False, "optimizer": "adam", "input": "uint8", "onednn_bf16": False,
        "loss": "categorical", "layout": "channels_last", "pool_first": False}
LEVERS: dict[str, tuple[str, dict]] = {
    "base": ("float32, TensorFlow's thread defaults, steps_per_execution 1, Keras Adam", {}),
    "spe4": ("steps_per_execution 4", {"spe": 4}),
    "spe16": ("steps_per_execution 16", {"spe": 16}),
    "intra2_inter1": ("intra-op 2, inter-op 1 threads", {"intra": 2, "inter": 1}),
    "intra1_inter2": ("intra-op 1, inter-op 2 threads", {"intra": 1, "inter": 2}),
    "float_input": ("float32 arrays in memory instead of uint8 scaled per batch",
                    {"input": "float32"}),
    "sparse_loss": ("integer labels and sparse cross-entropy instead of one-hot",
                    {"loss": "sparse"}),
    "channels_first": ("channels_first (NCHW) layers instead of Keras' channels_last",
                       {"layout": "channels_first"}),
    "mixed_bf16": ("Keras mixed_bfloat16 policy", {"precision": "mixed_bfloat16"}),
    "onednn_bf16": ("oneDNN auto-mixed-precision bfloat16 graph rewrite",
                    {"onednn_bf16": True}),
    "xla": ("jit_compile=True (XLA)", {"jit": True}),
    "sgd": ("SGD instead of Adam (what the optimizer step costs)", {"optimizer": "sgd"}),
    "fused_adam": ("Adam as one fused kernel per variable (ResourceApplyAdam)",
                   {"optimizer": "fused_adam"}),
    "bf16_fused": ("mixed_bfloat16 + fused Adam",
                   {"precision": "mixed_bfloat16", "optimizer": "fused_adam"}),
    "bf16_fused_spe4": ("mixed_bfloat16 + fused Adam + steps_per_execution 4",
                        {"precision": "mixed_bfloat16", "optimizer": "fused_adam", "spe": 4}),
    "bf16_fused_inter1": ("mixed_bfloat16 + fused Adam + intra-op 2, inter-op 1",
                          {"precision": "mixed_bfloat16", "optimizer": "fused_adam",
                           "intra": 2, "inter": 1}),
    "bf16_fused_pool_first": ("mixed_bfloat16 + fused Adam + each ReLU after its pooling "
                              "(same values and gradients, a quarter of the elements)",
                              {"precision": "mixed_bfloat16", "optimizer": "fused_adam",
                               "pool_first": True}),
}


def child(settings: dict, measure: int, warmup: int) -> dict:
    """Train in this process with `settings`; images/s of `measure` steps after warm-up."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    import _common
    import numpy as np
    import tensorflow as tf

    if settings["intra"]:
        tf.config.threading.set_intra_op_parallelism_threads(settings["intra"])
    if settings["inter"]:
        tf.config.threading.set_inter_op_parallelism_threads(settings["inter"])
    if settings["onednn_bf16"]:
        tf.config.optimizer.set_experimental_options(
            {"auto_mixed_precision_onednn_bfloat16": True})
    import keras

    from cnncli.run import optimizers

    keras.utils.set_random_seed(0)
    if settings["precision"] != "float32":
        keras.mixed_precision.set_global_policy(settings["precision"])
    x, y, *_ = _common.load_fashion_mnist()
    batch = settings["batch"]
    steps = len(x) // batch
    if settings["input"] == "float32":
        x = x.astype("float32") / 255
    images, labels = tf.constant(x.reshape(-1, 28, 28, 1)), tf.constant(y.astype("int32"))
    order = np.concatenate([np.random.default_rng([0, e]).permutation(len(x))[:steps * batch]
                            for e in range(4)]).reshape(-1, batch).astype("int32")
    ds = tf.data.Dataset.from_tensor_slices(order)

    def gather(idx):
        xb, yb = tf.gather(images, idx), tf.gather(labels, idx)
        if settings["input"] == "uint8":
            xb = tf.cast(xb, "float32") / 255.0
        if settings["loss"] == "categorical":
            yb = tf.one_hot(yb, 10)
        return xb, yb

    ds = ds.map(gather, num_parallel_calls=tf.data.AUTOTUNE).repeat().prefetch(2)
    shape = (28, 28, 1)
    if settings["layout"] == "channels_first":
        keras.config.set_image_data_format("channels_first")
        ds = ds.map(lambda xb, yb: (tf.transpose(xb, [0, 3, 1, 2]), yb))
        shape = (1, 28, 28)
    model = _common.lecture_keras_model(keras, shape, pool_first=settings["pool_first"])
    optimizer = {"adam": lambda: keras.optimizers.Adam(1e-3),
                 "sgd": lambda: keras.optimizers.SGD(1e-2),
                 "fused_adam": lambda: optimizers.fuse(keras.optimizers.Adam(1e-3)),
                 }[settings["optimizer"]]()
    loss = ("categorical_crossentropy" if settings["loss"] == "categorical"
            else "sparse_categorical_crossentropy")
    model.compile(optimizer=optimizer, loss=loss, metrics=["accuracy"],
                  steps_per_execution=settings["spe"], jit_compile=settings["jit"])

    class Clock(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.seconds = time.perf_counter() - self.start

    clock = Clock()
    # Keras runs whole executions of `spe` steps (200 steps at 16 a call: 13 calls, 208
    # steps): the counts are rounded up to what runs, and those are the images counted
    spe = settings["spe"]
    warmup, measure = (-(-n // spe) * spe for n in (warmup, measure))
    model.fit(ds, steps_per_epoch=warmup, epochs=1, verbose=0)
    model.fit(ds, steps_per_epoch=measure, epochs=1, verbose=0, callbacks=[clock])
    return {"images_per_s": measure * batch / clock.seconds, "seconds": clock.seconds,
            "steps": measure, "peak_rss_mb": _common.peak_rss_mb()}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--only", default=None, help="comma-separated lever names")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--batch-sizes", default="128,50")
    p.add_argument("--warmup", type=int, default=40, help="untimed steps first")
    p.add_argument("--measure", type=int, default=300, help="timed steps")
    p.add_argument("--out", default=str(HERE), help="folder for LEVERS.md and levers.json")
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        print(json.dumps(child(json.loads(args.child), args.measure, args.warmup)))
        return 0

    names = args.only.split(",") if args.only else list(LEVERS)
    unknown = [n for n in names if n not in LEVERS]
    if unknown:
        p.error(f"unknown lever(s) {', '.join(unknown)}; known: {', '.join(LEVERS)}")
    batches = [int(b) for b in args.batch_sizes.split(",")]
    results: dict[str, list[dict]] = {}
    started = time.time()
    for r in range(args.rounds):
        for batch in batches:
            for name in names:
                settings = {**BASE, **LEVERS[name][1], "batch": batch}
                cmd = [sys.executable, __file__, "--child", json.dumps(settings),
                       "--measure", str(args.measure), "--warmup", str(args.warmup)]
                out = subprocess.run(cmd, capture_output=True, text=True)
                key = f"{batch}/{name}"
                if out.returncode:
                    row = {"error": out.stderr.strip().splitlines()[-1:]}
                else:
                    row = json.loads(out.stdout.strip().splitlines()[-1])
                results.setdefault(key, []).append(row)
                shown = (f"{row['images_per_s']:,.0f} images/s" if "images_per_s" in row
                         else f"failed: {row['error']}")
                print(f"round {r + 1} batch {batch} {name}: {shown}", flush=True)
    write(Path(args.out), results, names, batches, args, time.time() - started)
    return 0


def write(out: Path, results: dict, names: list[str], batches: list[int], args,
          seconds: float) -> None:
    """LEVERS.md (a table per batch size, ratio per round to `base`, or to the first lever
    when `base` was not run) and levers.json."""
    import platform

    out.mkdir(parents=True, exist_ok=True)
    (out / "levers.json").write_text(json.dumps(
        {"settings": {"base": BASE, "levers": {n: LEVERS[n] for n in names},
                      "warmup": args.warmup, "measure": args.measure,
                      "rounds": args.rounds},
         "results": results}, indent=2))
    lines = ["# Levers: what each one gives (issue 7)", "",
             f"Written by `bench/levers.py` ({' '.join(sys.argv[1:]) or 'defaults'}); "
             f"{args.rounds} round(s), interleaved, {seconds / 60:.1f} minutes, "
             f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {platform.node()}.",
             f"Each run: {args.warmup} warm-up steps, then {args.measure} timed steps of "
             "the lecture's ConvNet on Fashion-MNIST (Adam 1e-3 unless said).", ""]
    reference = "base" if "base" in names else names[0]
    for batch in batches:
        lines += [f"## Batch {batch}", "",
                  "| lever | what | images/s (median) | min - max | "
                  f"/ {reference} (median of rounds) |", "| --- | --- | --- | --- | --- |"]
        base = results.get(f"{batch}/{reference}", [])
        for name in names:
            rows = results.get(f"{batch}/{name}", [])
            speeds = [r.get("images_per_s") for r in rows]
            if not speeds or None in speeds:
                lines.append(f"| {name} | {LEVERS[name][0]} | failed | | |")
                continue
            ratios = [s / b["images_per_s"] for s, b in zip(speeds, base, strict=False)
                      if "images_per_s" in b]
            ratio = f"{statistics.median(ratios):.2f}x" if ratios else ""
            lines.append(f"| {name} | {LEVERS[name][0]} | {statistics.median(speeds):,.0f} | "
                         f"{min(speeds):,.0f} - {max(speeds):,.0f} | {ratio} |")
        lines.append("")
    report.write(out / "LEVERS.md", "\n".join(lines))


if __name__ == "__main__":
    raise SystemExit(main())
