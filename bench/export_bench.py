"""Export benchmark (issue 15): every format's speed, start-up, size and accuracy.

For the lecture's ConvNet (``mnist_net``, trained here on Fashion-MNIST) and VGG16
(``keras.applications.VGG16(weights=None)`` saved locally: random weights, so its
accuracy means nothing and only speed and size are measured), it exports every format
and quantization with ``cnncli export`` (each in its own process: TensorFlow's LiteRT
converter leaks memory per conversion, tensorflow#122598), then measures, in fresh
processes, 3 rounds interleaved (every variant once per round, in the same order):

- ``cnncli predict`` on 256 Fashion-MNIST test images (the process's wall time, start-up
  included), and the same images through the loaded model alone (images/s, batches of
  32), against Keras' own ``model.predict`` on the same images;
- single-image latency, the median of 50 calls, against Keras' ``model.predict``;
- start-up: ``cnncli predict one.png --model FILE`` against ``--model model.keras``;
- the file sizes, and for the quantized variants the test accuracy before and after (all
  10,000 Fashion-MNIST test images, as ``cnncli export`` checks them).

Run it on a quiet machine, alone (not timed yet as a whole; VGG16 is most of it):

    .venv/bin/python bench/export_bench.py                     # -> bench/EXPORT_RESULTS.md
    .venv/bin/python bench/export_bench.py --models mnist_net  # without VGG16
    .venv/bin/python bench/export_bench.py --quick --out /tmp/x   # smoke test, a few minutes

``--quick`` trains on 1,280 images for one epoch, checks on 200, measures 32 images and
5 latency calls in one round, 6 of the variants, without VGG16: the numbers mean nothing.
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

ROOT = Path(__file__).resolve().parent.parent
VARIANTS = {  # model -> (format, quantization) pairs; VGG16 has no training data for int8
    "mnist_net": [("saved_model", "none"), ("onnx", "none"), ("onnx", "float16"),
                  ("onnx", "dynamic"), ("onnx", "int8"), ("litert", "none"),
                  ("litert", "float16"), ("litert", "dynamic"), ("litert", "int8"),
                  ("openvino", "none"), ("openvino", "float16")],
    "vgg16": [("saved_model", "none"), ("onnx", "none"), ("onnx", "float16"),
              ("onnx", "dynamic"), ("litert", "none"), ("litert", "float16"),
              ("litert", "dynamic"), ("openvino", "none"), ("openvino", "float16")],
}
#: --quick: each format once and each kind of quantization once (the smoke test's 6).
QUICK = [("saved_model", "none"), ("onnx", "none"), ("onnx", "int8"), ("litert", "none"),
         ("litert", "dynamic"), ("openvino", "float16")]
SUFFIX = {"onnx": ".onnx", "litert": ".tflite", "openvino": ".xml"}


def parse(argv):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default="mnist_net,vgg16", help="mnist_net and/or vgg16")
    p.add_argument("--rounds", type=int, default=None, help="default 3 (--quick: 1)")
    p.add_argument("--images", type=int, default=None, help="images to predict (256)")
    p.add_argument("--latency-calls", type=int, default=None, help="default 50")
    p.add_argument("--epochs", type=int, default=None, help="mnist_net's training (5)")
    p.add_argument("--run", default=None, help="a trained mnist_net run to use instead")
    p.add_argument("--quick", action="store_true", help="smoke test (numbers mean nothing)")
    p.add_argument("--out", default=None, help="folder for EXPORT_RESULTS.md and "
                   "export_results.json (default bench/; --quick: a temporary folder)")
    p.add_argument("--work", default=None, help="folder for models and exports")
    p.add_argument("--worker", nargs=3, metavar=("MODE", "MODEL", "NPZ"),
                   help=argparse.SUPPRESS)  # internal: one measuring process
    args = p.parse_args(argv)
    quick = args.quick
    args.models = [m.strip() for m in args.models.split(",") if m.strip()]
    if quick:
        args.models = [m for m in args.models if m != "vgg16"]
    args.rounds = args.rounds or (1 if quick else 3)
    args.images = args.images or (32 if quick else 256)
    args.latency_calls = args.latency_calls or (5 if quick else 50)
    args.epochs = args.epochs or (1 if quick else 5)
    if args.out is None:
        import tempfile

        args.out = tempfile.mkdtemp(prefix="export-bench-") if quick else str(ROOT / "bench")
    args.work = Path(args.work or Path(args.out) / "export-bench-work")
    return args


# --- in a fresh process: one model's speed ------------------------------------------


def worker(mode: str, model: str, npz: str, calls: int) -> dict:
    """images/s over the images (batches of 32) and the median single-image latency."""
    import numpy as np

    from cnncli.infer import classifier, exported

    clf = classifier.load(model)  # TensorFlow-free for ONNX, LiteRT and OpenVINO files
    # At the model's input size and channels for everyone, outside the timing.
    images = exported.fit_images(np.load(npz)["images"], clf.input_shape)
    if mode == "keras-predict":  # what a user writes: preprocess, then model.predict
        from cnncli.data import pipeline

        net, shape, preprocessing = clf.model, clf.input_shape, clf.preprocessing

        def run(x):
            return net.predict(pipeline.preprocess_batch(x, shape, preprocessing),
                               batch_size=32, verbose=0)
    else:  # cnncli's classifier of the file: what `cnncli predict --model FILE` runs
        def run(x):
            return np.concatenate([clf.probabilities(x[i:i + 32])
                                   for i in range(0, len(x), 32)])

    run(images[:32])  # warm-up: graph tracing, allocation
    start = time.perf_counter()
    run(images)
    rate = len(images) / (time.perf_counter() - start)
    for _ in range(3):
        run(images[:1])
    times = []
    for i in range(calls):
        t = time.perf_counter()
        run(images[i % len(images):i % len(images) + 1])
        times.append(time.perf_counter() - t)
    return {"images_per_s": rate, "latency_ms": 1000 * statistics.median(times),
            "tensorflow_imported": "tensorflow" in sys.modules}


# --- the steps ------------------------------------------------------------------------


def sh(cmd: list[str], timeout: float = 3600, **kw) -> subprocess.CompletedProcess:
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=ROOT,
                          **kw)
    if done.returncode not in (0, 1):
        raise SystemExit(f"failed ({done.returncode}): {' '.join(cmd)}\n{done.stderr[-3000:]}")
    return done


def cnncli(*args: str, **kw) -> subprocess.CompletedProcess:
    return sh([sys.executable, "-m", "cnncli", *args], **kw)


def prepare(args) -> dict:
    """Train mnist_net (or take --run), save VGG16, write the images to predict."""
    import numpy as np
    from PIL import Image

    from cnncli.data import datasets

    work = args.work
    work.mkdir(parents=True, exist_ok=True)
    models = {}
    if "mnist_net" in args.models:
        run = args.run
        if run is None:
            limit = ["--set", "data.limit=1280"] if args.quick else []
            cnncli("train", "configs/fashion_mnist.yaml", "--epochs", str(args.epochs),
                   "--set", f"output.dir={work / 'runs'}", "--quiet", *limit)
            run = str(work / "runs" / "fashion_mnist" / "latest")
        models["mnist_net"] = Path(run).resolve() / "best.keras"
    if "vgg16" in args.models:
        models["vgg16"] = work / "vgg16.keras"
        if not models["vgg16"].exists():
            sh([sys.executable, __file__, "--worker", "make-vgg16", str(models["vgg16"]), "-"])
    ds = datasets.load("fashion_mnist", offline=True)
    pictures = work / "images"
    pictures.mkdir(exist_ok=True)
    for i, img in enumerate(ds.test.images[:args.images]):
        Image.fromarray(img[..., 0]).save(pictures / f"{i:04d}.png")
    np.savez(work / "images.npz", images=ds.test.images[:args.images])
    return models


def make_vgg16(path: str) -> None:
    from cnncli.model import imagenet, modelfile
    from cnncli.model.meta import ModelMeta
    from cnncli.runtime import import_keras

    keras = import_keras()
    keras.utils.set_random_seed(0)
    modelfile.save_model_atomic(
        keras.applications.VGG16(weights=None), path,
        ModelMeta(model="vgg16", input=(224, 224, 3), preprocessing="caffe",
                  class_names=tuple(imagenet.class_names())))


def chosen_variants(args, name: str) -> list[tuple[str, str]]:
    """The (format, quantization) pairs measured for model `name`."""
    return [v for v in VARIANTS[name] if not args.quick or v in QUICK]


def export_all(args, models: dict) -> dict:
    """Each variant exported (and checked) by `cnncli export` in its own process."""
    found = {}
    for name, model in models.items():
        out = args.work / "export" / name
        check = ["--check-images", "200" if args.quick else "0"] if name == "mnist_net" \
            else ["--images", str(args.work / "images")]
        for fmt, quant in chosen_variants(args, name):
            start = time.perf_counter()
            done = subprocess.run([sys.executable, "-m", "cnncli", "export", str(model),
                                   "--format", fmt, "--quantize", quant, "--output", str(out),
                                   "--force", "--json", *check], capture_output=True,
                                  text=True, timeout=3600, cwd=ROOT)
            try:  # a variant that cannot be exported is reported, not fatal
                result = json.loads(done.stdout)["exports"][0]
            except (json.JSONDecodeError, KeyError, IndexError):
                result = {"kept": False, "error": done.stderr.strip()[-500:]}
            result["process_seconds"] = time.perf_counter() - start
            found[(name, fmt, quant)] = result
            print(f"exported {name} {fmt} {quant}: {result.get('path')} "
                  f"({result.get('size_bytes', 0) / 1e6:.1f} MB)", flush=True)
    return found


def measure(args, models: dict, exports: dict) -> list[dict]:
    """3 interleaved rounds: per variant a speed worker, a predict and a start-up process."""
    rows = []
    one = str(args.work / "images" / "0000.png")
    for r in range(1, args.rounds + 1):
        for name, model in models.items():
            variants = [("keras", "predict", str(model), "keras-predict"),
                        ("keras", "cnncli", str(model), "file")]
            variants += [(fmt, quant, exports[(name, fmt, quant)]["path"], "file")
                         for fmt, quant in chosen_variants(args, name)
                         if exports[(name, fmt, quant)].get("kept")]
            for fmt, quant, path, mode in variants:
                row = {"round": r, "model": name, "format": fmt, "quantization": quant}
                done = sh([sys.executable, __file__, "--worker", mode, path,
                           str(args.work / "images.npz"), "--latency-calls",
                           str(args.latency_calls)])
                row.update(json.loads(done.stdout.strip().splitlines()[-1]))
                if mode == "file":
                    row["predict_s"] = _wall("predict", str(args.work / "images"), "--model",
                                             path, "-q", "--format", "jsonl")
                    row["startup_s"] = _wall("predict", one, "--model", path, "-q")
                rows.append(row)
                print(f"round {r} {name} {fmt} {quant}: {row['images_per_s']:.1f} img/s, "
                      f"{row['latency_ms']:.1f} ms", flush=True)
    return rows


def _wall(*args: str) -> float:
    start = time.perf_counter()
    cnncli(*args)
    return time.perf_counter() - start


def write(args, models: dict, exports: dict, rows: list[dict], started: str,
          seconds: float) -> None:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    lines = ["# Export benchmark", "",
             f"- Date: {started}, {seconds / 60:.1f} minutes, {args.rounds} round(s), "
             f"interleaved; {args.images} images; latency: median of {args.latency_calls}",
             f"- Command: `{' '.join([Path(sys.executable).name, *sys.argv])}`",
             "- Medians over the rounds (min-max when more than one round). predict: the "
             "wall time of `cnncli predict` on the images (start-up included); images/s "
             "and latency: the loaded model alone; start-up: `cnncli predict` of one image.",
             ""]
    if args.quick:
        lines += ["**Quick smoke test: these numbers mean nothing.**", ""]
    header = ["variant", "file", "size", "predict", "images/s", "latency ms", "start-up",
              "top-1 agreement", "accuracy before -> after"]
    for name, model in models.items():
        lines += [f"## {name}", "", "| " + " | ".join(header) + " |",
                  "| --- | --- | " + " | ".join(["---:"] * 6) + " | --- |"]
        keys = dict.fromkeys((r["format"], r["quantization"]) for r in rows
                             if r["model"] == name)
        for fmt, quant in keys:
            mine = [r for r in rows if r["model"] == name and r["format"] == fmt
                    and r["quantization"] == quant]
            e = exports.get((name, fmt, quant), {})
            check = e.get("check") or {}
            if fmt == "keras":
                label = "Keras model.predict" if quant == "predict" else \
                    "Keras model (cnncli predict)"
                path, size = Path(model), Path(model).stat().st_size
            else:
                label = fmt + ("" if quant == "none" else f" {quant}")
                path, size = Path(e["path"]), e["size_bytes"]
            agreement = f"{check['agreement']:.2%}" if "agreement" in check else ""
            accuracy = (f"{check['keras_accuracy']:.2%} -> {check['accuracy']:.2%}"
                        if check.get("accuracy") is not None else "")
            cells = [label, path.name, f"{size / 1e6:.1f} MB", _stat(mine, "predict_s", " s"),
                     _stat(mine, "images_per_s"), _stat(mine, "latency_ms"),
                     _stat(mine, "startup_s", " s"), agreement, accuracy]
            lines.append("| " + " | ".join(cells) + " |")
        failed = [f"{fmt} {quant}" for (m, fmt, quant), e in exports.items()
                  if m == name and not e.get("kept")]
        if failed:
            lines += ["", "Not kept (failed their check or could not be converted): "
                      + ", ".join(failed)]
        lines.append("")
    report.write(out / "EXPORT_RESULTS.md", "\n".join(lines) + "\n")
    (out / "export_results.json").write_text(json.dumps(
        {"exports": [{"model": k[0], **v} for k, v in exports.items()], "rows": rows},
        indent=2, default=str) + "\n")
    print((out / "EXPORT_RESULTS.md").read_text())


def _stat(rows: list[dict], key: str, unit: str = "") -> str:
    values = [r[key] for r in rows if r.get(key) is not None]
    if not values:
        return ""
    text = _num(statistics.median(values)) + unit
    return text + (f" ({_num(min(values))}-{_num(max(values))})" if len(values) > 1 else "")


def _num(value: float) -> str:
    """3 significant digits, thousands separated: 14,300, 3.52, 0.0481."""
    return f"{float(f'{value:.3g}'):,.0f}" if value >= 100 else f"{value:.3g}"


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--worker"]:
        mode, model, npz = argv[1:4]
        calls = int(argv[argv.index("--latency-calls") + 1]) if "--latency-calls" in argv \
            else 50
        if mode == "make-vgg16":
            make_vgg16(model)
            return 0
        print(json.dumps(worker(mode, model, npz, calls)))
        return 0
    args = parse(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    started, start = time.strftime("%Y-%m-%d %H:%M"), time.perf_counter()
    models = prepare(args)
    exports = export_all(args, models)
    rows = measure(args, models, exports)
    write(args, models, exports, rows, started, time.perf_counter() - start)
    return 0


if __name__ == "__main__":
    sys.exit(main())
