"""Your own photos, measured (issue 13): cnncli's streaming folders against Keras'
``image_dataset_from_directory`` feeding the same model through ``fit``.

Data written here once (under --work): the 70,000 Fashion-MNIST images as PNG files in
class folders, and JPEGs of mixed sizes around 256x256 made from Fashion-MNIST (tinted
and upscaled). Each measurement is a process of its own; rounds are interleaved:

- training images/s of the first epoch and of later ones, on the PNG folder (28x28,
  the lecture's ConvNet) and on 20,000 JPEGs (224x224, a small ConvNet whose compute is
  cheap, so the input pipeline is what is measured);
- the input pipeline alone (images/s, no model);
- seconds from the process's start to the first training step, on 20,000 JPEGs;
- peak RSS training one epoch on 5,000 and on 40,000 JPEGs at 224x224, with
  ``data.cache: disk`` and ``none``;
- cnncli's cached epochs against its in-memory arrays (Fashion-MNIST's own IDX files).

Writes bench/STREAM_RESULTS.md and stream_results.json. On a quiet machine, alone:

    .venv/bin/python bench/stream_bench.py                  # about an hour
    .venv/bin/python bench/stream_bench.py --quick --out /tmp/s   # smoke test, minutes
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import report  # noqa: E402  (bench/report.py: keeps the hand-written sections)

SCRIPT_START = time.time()
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "contenders"))

SMALL_NET = {  # compute cheap at 224x224: what is measured is the input pipeline
    "input": [224, 224, 3],
    "layers": [{"Conv2D": {"filters": 16, "kernel_size": 8, "strides": 8,
                           "activation": "relu"}},
               {"Conv2D": {"filters": 32, "kernel_size": 3, "strides": 2,
                           "activation": "relu"}},
               "GlobalAveragePooling2D", {"Dense": {"units": "$classes",
                                                    "activation": "softmax"}}]}


# --------------------------------------------------------------------------- data


def make_data(work: Path, pngs: int, jpeg_counts: set[int]) -> dict[str, Path]:
    """Write (once) the PNG folder and the JPEG folders; return their paths."""
    import numpy as np
    from PIL import Image

    from cnncli.data import datasets

    ds = datasets.load("fashion_mnist", offline=True)
    x = np.concatenate([ds.train.images, ds.test.images])[..., 0]
    y = np.concatenate([ds.train.labels, ds.test.labels])
    out = {"png": work / f"png{pngs}"}
    if not (out["png"] / "done").exists():
        for i in range(pngs):
            folder = out["png"] / str(y[i])
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(x[i]).save(folder / f"{i}.png")
        (out["png"] / "done").touch()
    rng = np.random.default_rng(0)
    for n in sorted(jpeg_counts):
        folder = work / f"jpeg{n}"
        out[f"jpeg{n}"] = folder
        if (folder / "done").exists():
            continue
        for i in range(n):
            side = int(rng.integers(220, 292))
            tint = rng.integers(80, 256, 3)
            image = Image.fromarray(x[i % len(x)]).resize((side, side), Image.BILINEAR)
            rgb = (np.asarray(image)[..., None] * tint / 255).astype(np.uint8)
            (folder / str(y[i % len(x)])).mkdir(parents=True, exist_ok=True)
            Image.fromarray(rgb).save(folder / str(y[i % len(x)]) / f"{i}.jpg", quality=90)
        (folder / "done").touch()
    return out


# --------------------------------------------------------------------------- contenders


def run_cnncli(args) -> dict:
    """cnncli's training (or its pipeline alone) on a folder, as `cnncli train` runs it."""
    from cnncli import config
    from cnncli.run import train as training
    from cnncli.run.callbacks import RunCallback

    model = "mnist_net" if args.size == 28 else {**SMALL_NET, "input": [args.size] * 2 + [3]}
    cfg = config.parse({
        "model": model, "data": {"name": args.folder, "validation_split": 0,
                                 "cache": args.cache, "limit": args.limit},
        "train": {"epochs": args.epochs, "batch_size": args.batch_size, "seed": 0,
                  "backup_every": 10**6},
        "output": {"dir": str(Path(args.json_out).parent / "runs"), "name": "bench"}})
    if args.pipeline_only:
        return _cnncli_pipeline(cfg, args)
    first = {}
    real = RunCallback.on_train_batch_end

    def timed(self, batch, logs=None):
        first.setdefault("seconds", time.time() - SCRIPT_START)
        return real(self, batch, logs)

    RunCallback.on_train_batch_end = timed
    result = training.train(cfg)
    return {"epochs": [{"images": r["images_per_s"] * r["seconds"], "seconds": r["seconds"]}
                       for r in result.history],
            "first_step_seconds": first.get("seconds")}


def _cnncli_pipeline(cfg, args) -> dict:
    from cnncli.data import datasets
    from cnncli.data.feed import Feed

    ds = datasets.load(args.folder)
    shape = (28, 28, 1) if args.size == 28 else (args.size, args.size, 3)
    feed = Feed.of(ds, shape, validation_split=0, seed=0, cache=args.cache)
    rows = []
    batches = iter(feed.training(batch_size=args.batch_size, seed=0, epochs=args.epochs))
    per_epoch = len(feed.train) // args.batch_size
    for _ in range(args.epochs):
        start = time.perf_counter()
        for _ in range(per_epoch):
            next(batches)
        rows.append({"images": per_epoch * args.batch_size,
                     "seconds": time.perf_counter() - start})
    return {"epochs": rows}


def run_cached_vs_arrays(args) -> dict:
    """cnncli's cached folder against its in-memory arrays in ONE process: the same model
    (`mnist_net`, planned and compiled as `cnncli train` does) trained alternately on the
    two feeds, `--epochs` passes of an epoch's steps each. Across processes these 2-core
    VMs vary by 5-10% from run to run, more than the difference this target is about;
    within one process, interleaved, both see the same machine. The folder's memory cache
    is filled first (its first epoch, the decoding, is measured by the other cases)."""
    import numpy as np

    from cnncli import config
    from cnncli.run.compile import compile_model
    from cnncli.run.plan import plan

    feeds = {}
    for name, source in (("cached", args.folder), ("arrays", "fashion_mnist")):
        p = plan(config.parse({
            "model": "mnist_net", "data": {"name": source, "validation_split": 0,
                                           "cache": "memory", "limit": args.limit},
            "train": {"batch_size": args.batch_size, "seed": 0}}))
        model = compile_model(p)
        if p.feed.train_loader is not None:
            p.feed.train_loader.batch(np.arange(len(p.feed.train)))
        ds = p.feed.training(batch_size=p.global_batch, seed=0, epochs=10**6,
                             preprocessing=p.preprocessing, one_hot=p.one_hot)
        model.fit(ds, steps_per_epoch=8, epochs=1, verbose=0, shuffle=False)  # traces
        feeds[name] = (model, ds, p.steps_per_epoch, p.global_batch)
    steps = min(f[2] for f in feeds.values())  # the same work for both
    passes: dict[str, list] = {name: [] for name in feeds}
    order = list(feeds)
    for k in range(args.epochs):
        for name in order if k % 2 == 0 else order[::-1]:  # neither always goes first
            model, ds, _, batch = feeds[name]
            start = time.perf_counter()
            model.fit(ds, steps_per_epoch=steps, epochs=1, verbose=0, shuffle=False)
            passes[name].append({"images": steps * batch,
                                 "seconds": time.perf_counter() - start})
    return {"passes": passes}


def run_keras(args) -> dict:
    """Keras' image_dataset_from_directory feeding the same model through fit, in
    `args.precision` (the global policy set before the model is built, the output layer
    in float32: what a Keras user who knows about the CPU's bfloat16 units writes)."""
    import _common

    _common.quiet_tensorflow()
    import keras
    import tensorflow as tf

    keras.mixed_precision.set_global_policy(args.precision)
    keras.utils.set_random_seed(0)
    colour = "grayscale" if args.size == 28 else "rgb"
    ds = keras.utils.image_dataset_from_directory(
        args.folder, image_size=(args.size, args.size), batch_size=args.batch_size,
        color_mode=colour, shuffle=True, seed=0, verbose=False)
    ds = ds.map(lambda x, y: (x / 255.0, y)).prefetch(tf.data.AUTOTUNE)
    count = sum(len(files) for _, _, files in os.walk(args.folder)) - 1  # minus "done"
    if args.pipeline_only:
        rows = []
        for _ in range(args.epochs):
            start, images = time.perf_counter(), 0
            for x, _ in ds:
                images += int(x.shape[0])
            rows.append({"images": images, "seconds": time.perf_counter() - start})
        return {"epochs": rows}
    if args.size == 28:
        model = _common.lecture_keras_model(keras)
    else:
        from cnncli.model import builder, spec

        model = builder.build(spec.parse({**SMALL_NET, "classes": 10,
                                          "input": [args.size, args.size, 3]}))
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    first = {}

    class FirstStep(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            first.setdefault("seconds", time.time() - SCRIPT_START)

    timer = _common.keras_epoch_timer(keras, count)
    model.fit(ds, epochs=args.epochs, callbacks=[timer, FirstStep()], verbose=0)
    return {"epochs": timer.rows, "first_step_seconds": first.get("seconds"),
            "precision": args.precision}


# --------------------------------------------------------------------------- driver


def measure(kind: str, out: Path, **opts) -> dict:
    """One contender in a process of its own; its result and peak RSS (MB)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    argv = [sys.executable, __file__, kind, "--json-out", str(out)]
    for key, value in opts.items():
        if value is True:
            argv.append(f"--{key.replace('_', '-')}")
        elif value not in (None, False):
            argv += [f"--{key.replace('_', '-')}", str(value)]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True, env={**os.environ, "CNNCLI_CACHE_DIR": str(out.parent
                                                                                 / "cache")})
    _, status, usage = os.wait4(proc.pid, 0)
    error = proc.stderr.read()
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{kind} {opts} failed:\n{error[-3000:]}")
    result = json.loads(out.read_text())
    result["peak_rss_mb"] = usage.ru_maxrss / 1024
    return result


def speeds(result: dict) -> tuple[float, float | None]:
    """(first epoch images/s, later epochs images/s)."""
    rows = result["epochs"]
    first = rows[0]["images"] / rows[0]["seconds"]
    later = rows[1:]
    return first, (sum(r["images"] for r in later) / sum(r["seconds"] for r in later)
                   if later else None)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("kind", nargs="?", default="all",
                   choices=["all", "run-cnncli", "run-keras", "run-cached-vs-arrays"])
    p.add_argument("--folder"), p.add_argument("--size", type=int, default=28)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--cache", default="auto")
    p.add_argument("--limit", type=int, help="use only the first N training images")
    p.add_argument("--pipeline-only", action="store_true")
    p.add_argument("--precision", default="float32", choices=("float32", "mixed_bfloat16"),
                   help="run-keras: the Keras model's precision")
    p.add_argument("--json-out")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--quick", action="store_true", help="small data, 1 round (smoke test)")
    p.add_argument("--work", default="/tmp/cnncli-stream-bench")
    p.add_argument("--out", default=str(HERE))
    args = p.parse_args(argv)
    if args.kind != "all":
        result = {"run-cnncli": run_cnncli, "run-keras": run_keras,
                  "run-cached-vs-arrays": run_cached_vs_arrays}[args.kind](args)
        Path(args.json_out).write_text(json.dumps(result))
        return 0
    return drive(args)


def drive(args) -> int:
    pngs, jpegs, rounds = (600, 300, 1) if args.quick else (70_000, 20_000, args.rounds)
    rss_sizes = (100, 400) if args.quick else (5_000, 40_000)
    work = Path(args.work)
    data = make_data(work, pngs, {jpegs, *rss_sizes})
    jobs = work / "jobs"
    # the Keras script trains in the precision cnncli's `auto` takes (bfloat16 on a CPU
    # with bfloat16 units): the ratios are then the input pipelines', not the precision's
    from cnncli.devices import hardware

    peer = "mixed_bfloat16" if hardware.cpu_bf16_units() else "float32"
    cases = {  # name: (kind, options)
        "png cnncli": ("run-cnncli", {"folder": data["png"], "size": 28}),
        "png keras": ("run-keras", {"folder": data["png"], "size": 28, "precision": peer}),
        "jpeg cnncli": ("run-cnncli", {"folder": data[f"jpeg{jpegs}"], "size": 224,
                                       "batch_size": 64}),
        "jpeg keras": ("run-keras", {"folder": data[f"jpeg{jpegs}"], "size": 224,
                                     "batch_size": 64, "precision": peer}),
        "png pipeline cnncli": ("run-cnncli", {"folder": data["png"], "size": 28,
                                               "pipeline_only": True}),
        "png pipeline keras": ("run-keras", {"folder": data["png"], "size": 28,
                                             "pipeline_only": True}),
        "jpeg pipeline cnncli": ("run-cnncli", {"folder": data[f"jpeg{jpegs}"], "size": 224,
                                                "batch_size": 64, "pipeline_only": True}),
        "jpeg pipeline keras": ("run-keras", {"folder": data[f"jpeg{jpegs}"], "size": 224,
                                              "batch_size": 64, "pipeline_only": True}),
        "arrays cnncli": ("run-cnncli", {"folder": "fashion_mnist", "size": 28,
                                         "limit": pngs if args.quick else None}),
        "cached vs arrays, one process": ("run-cached-vs-arrays", {
            "folder": data["png"], "limit": pngs if args.quick else 20_000,
            "epochs": 2 if args.quick else 6}),
    }
    for n in rss_sizes:
        for cache in ("disk", "none"):
            cases[f"rss {n} {cache}"] = ("run-cnncli", {"folder": data[f"jpeg{n}"],
                                                        "size": 224, "batch_size": 64,
                                                        "epochs": 1, "cache": cache})
    results: dict[str, list[dict]] = {name: [] for name in cases}
    for r in range(rounds):
        for name, (kind, opts) in cases.items():
            out = jobs / f"r{r}" / (name.replace(" ", "_") + ".json")
            if opts.get("cache") == "disk":  # a cold cache: its first epoch fills it
                shutil.rmtree(out.parent / "cache", ignore_errors=True)
            results[name].append(measure(kind, out, **opts))
            print(f"round {r + 1}: {name} done", flush=True)
        shutil.rmtree(jobs / f"r{r}" / "cache", ignore_errors=True)  # up to 6 GB a round
    write_report(Path(args.out), results, pngs, jpegs, rounds, rss_sizes)
    return 0


def _median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def write_report(out: Path, results: dict, pngs: int, jpegs: int, rounds: int,
                 rss_sizes: tuple[int, int]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "stream_results.json").write_text(json.dumps(results, indent=1, default=str))

    def speed(name, which):
        return _median([speeds(r)[which] for r in results[name]])

    def ratio(a, b):
        return f"{a / b:.2f}x" if a and b else "n/a"

    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(SCRIPT_START))
    command = " ".join(["python", f"bench/{Path(__file__).name}", *sys.argv[1:]])
    lines = [f"# Streaming image folders (issue 13): {pngs:,} PNGs, {jpegs:,} JPEGs; "
             f"medians of {rounds} round(s), interleaved, one process each", "",
             f"- {started}, {(time.time() - SCRIPT_START) / 60:.0f} minutes: `{command}`",
             f"- the Keras script trains in "
             f"{results['png keras'][0].get('precision', 'float32')}, cnncli in its "
             "`--precision auto`", "",
             "| | cnncli | Keras image_dataset_from_directory | ratio | target |",
             "| --- | --- | --- | --- | --- |"]
    for label, a, b, which, target in (
            ("PNG folder, 1st epoch, images/s", "png cnncli", "png keras", 0, ">= 1.0x"),
            ("PNG folder, later epochs, images/s", "png cnncli", "png keras", 1, ">= 2x"),
            ("JPEG folder 224x224, 1st epoch", "jpeg cnncli", "jpeg keras", 0, ">= 1.0x"),
            ("JPEG folder 224x224, later epochs", "jpeg cnncli", "jpeg keras", 1, ">= 2x"),
            ("PNG pipeline alone, 1st pass", "png pipeline cnncli", "png pipeline keras", 0,
             ""),
            ("PNG pipeline alone, later passes", "png pipeline cnncli", "png pipeline keras",
             1, ""),
            ("JPEG pipeline alone, 1st pass", "jpeg pipeline cnncli", "jpeg pipeline keras", 0,
             ""),
            ("JPEG pipeline alone, later passes", "jpeg pipeline cnncli",
             "jpeg pipeline keras", 1, "")):
        x, y = speed(a, which), speed(b, which)
        lines.append(f"| {label} | {x or 0:,.0f} | {y or 0:,.0f} | {ratio(x, y)} | {target} |")
    first = {k: _median([r.get("first_step_seconds") for r in results[k]])
             for k in ("jpeg cnncli", "jpeg keras")}
    lines += ["", f"Seconds from the process's start to the first training step on {jpegs:,} "
              f"JPEGs: cnncli {first['jpeg cnncli'] or 0:.1f} s, Keras "
              f"{first['jpeg keras'] or 0:.1f} s (target: cnncli within 10 s)."]
    arrays = speed("arrays cnncli", 1)
    cached = speed("png cnncli", 1)
    lines += ["", f"Cached PNG epochs {cached or 0:,.0f} images/s against in-memory arrays "
              f"(Fashion-MNIST's IDX files) {arrays or 0:,.0f}: {ratio(cached, arrays)} "
              "(target: no slower), each in a process of its own."]
    alternate = {which: _median([p["images"] / p["seconds"] for r in
                                 results["cached vs arrays, one process"]
                                 for p in r["passes"][which]])
                 for which in ("cached", "arrays")}
    lines += ["", "The same in one process, the same model trained alternately on the two "
              f"feeds (medians of every pass of every round): cached PNGs "
              f"{alternate['cached'] or 0:,.0f} images/s, arrays {alternate['arrays'] or 0:,.0f}"
              f": {ratio(alternate['cached'], alternate['arrays'])} (target: no slower)."]
    rss = {k: _median([r["peak_rss_mb"] for r in v]) for k, v in results.items()
           if k.startswith("rss")}
    lines += ["", "| peak RSS, one epoch at 224x224 | MB |", "| --- | --- |"]
    lines += [f"| {k[4:]} | {v:,.0f} |" for k, v in sorted(rss.items())]
    for cache in ("disk", "none"):
        small, large = (rss.get(f"rss {n} {cache}") for n in rss_sizes)
        if small and large:
            lines.append(f"\n{rss_sizes[1]:,} against {rss_sizes[0]:,} files, cache {cache}: "
                         f"{large / small:.2f}x (target: within 1.2x)")
    report.write(out / "STREAM_RESULTS.md", "\n".join(lines) + "\n")


if __name__ == "__main__":
    sys.exit(main())
