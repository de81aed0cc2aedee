"""Plain Keras prediction: the script a user writes instead of `cnncli predict`.

Builds ``keras.applications.VGG16(weights=None)`` (or ResNet50 with ``--network
resnet50``), loads a weights file, reads every image in a folder with PIL (RGB,
bilinear resize to 224 x 224, as cnncli does), applies the network's
``preprocess_input``, runs ``model.predict`` in batches of 32 and
prints each image's top 5 ImageNet classes as JSON lines (as
``cnncli predict --format jsonl`` does). The JSON result has the
time of each part (``seconds``: import, load model, read images, predict, top-k);
the benchmark compares the process's wall time with `cnncli predict`'s.

``--precision mixed_bfloat16`` sets ``keras.mixed_precision.set_global_policy`` before
building the model: what a Keras user who knows about the CPU's bfloat16 units writes.

``--by-batch`` calls ``model.predict_on_batch`` on each batch instead of one
``model.predict``: no tf.data pipeline, so none of the wait ``model.predict`` may add
when its iterator ends (its autotuner's thread sleeps in doubling periods, and the
iterator's deletion waits for it to wake: about 18 s of 41 for VGG16 in float32 on
the AMX Xeon, in two rounds of three, bench/PREDICT_RESULTS.md). What a Keras user who
met that wait writes.

``--make-weights FILE`` only writes the weights of a fresh (randomly initialised)
network to FILE (a ``.weights.h5``), for both contenders to load.

    .venv/bin/python bench/contenders/predict_raw.py --make-weights /tmp/vgg16.weights.h5
    .venv/bin/python bench/contenders/predict_raw.py IMAGES_DIR --weights /tmp/vgg16.weights.h5
    .venv/bin/python bench/contenders/predict_raw.py IMAGES_DIR --network resnet50 \
        --weights /tmp/resnet50.weights.h5
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import _common

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp"}
#: --network -> (the keras.applications class, its module with preprocess_input)
NETWORKS = {"vgg16": ("VGG16", "vgg16"), "resnet50": ("ResNet50", "resnet50")}
CLASS_INDEX = Path(__file__).resolve().parents[2] / "cnncli" / "resources" / \
    "imagenet_class_index.json"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("images", nargs="?", help="a folder of images")
    p.add_argument("--network", default="vgg16", choices=tuple(NETWORKS))
    p.add_argument("--weights", help="the network's .weights.h5 file")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--top", type=int, default=5)
    p.add_argument("--precision", default="float32", choices=("float32", "mixed_bfloat16"))
    p.add_argument("--by-batch", action="store_true",
                   help="model.predict_on_batch per batch instead of one model.predict")
    p.add_argument("--make-weights", metavar="FILE", default=None,
                   help="write a fresh network's weights to FILE and stop")
    p.add_argument("--json-out", default=None)
    args = p.parse_args(argv)

    seconds = {}
    start = time.perf_counter()
    _common.quiet_tensorflow()
    import keras
    import numpy as np
    from PIL import Image

    seconds["import"] = time.perf_counter() - start
    build_name, module_name = NETWORKS[args.network]
    build = getattr(keras.applications, build_name)
    preprocess = getattr(keras.applications, module_name).preprocess_input

    if args.make_weights:
        build(weights=None).save_weights(args.make_weights)
        print(f"wrote {args.make_weights}")
        return 0
    if not args.images or not args.weights:
        p.error("give IMAGES and --weights (or --make-weights FILE)")

    t = time.perf_counter()
    keras.mixed_precision.set_global_policy(args.precision)
    model = build(weights=None)
    model.load_weights(args.weights)
    seconds["load_model"] = time.perf_counter() - t

    t = time.perf_counter()
    files = sorted(f for f in Path(args.images).rglob("*") if f.suffix.lower() in IMAGE_SUFFIXES)
    images = []
    for f in files:
        with Image.open(f) as img:
            rgb = img.convert("RGB").resize((224, 224), Image.Resampling.BILINEAR)
            images.append(np.asarray(rgb))
    batch = np.stack(images).astype("float32")
    seconds["read_images"] = time.perf_counter() - t

    t = time.perf_counter()
    x = preprocess(batch)
    if args.by_batch:
        probs = np.concatenate([np.asarray(model.predict_on_batch(x[i:i + args.batch_size]),
                                           np.float32)
                                for i in range(0, len(x), args.batch_size)])
    else:
        probs = np.asarray(model.predict(x, batch_size=args.batch_size, verbose=0), np.float32)
    seconds["predict"] = time.perf_counter() - t

    t = time.perf_counter()
    index = json.loads(CLASS_INDEX.read_text())
    names = [index[str(i)][1] for i in range(len(index))]
    for f, row in zip(files, probs, strict=True):  # the rows of `cnncli predict --format jsonl`
        best = np.argsort(-row, kind="stable")[:args.top]
        for rank, i in enumerate(best, start=1):
            print(json.dumps({"file": str(f), "rank": rank, "class": names[i],
                              "probability": round(float(row[i]), 6)}))
    seconds["top_k"] = time.perf_counter() - t

    result = {"name": "predict_raw", "network": args.network, "images": len(files),
              "batch_size": args.batch_size,
              "precision": args.precision, "by_batch": args.by_batch,
              "seconds": {k: round(v, 4) for k, v in seconds.items()},
              "in_process_seconds": round(time.perf_counter() - start, 4),
              "peak_rss_mb": _common.peak_rss_mb(),
              "versions": _common.versions(keras=keras.__version__)}
    _common.write_json(args.json_out, result)
    print(f"predict_raw: {len(files)} images, " + ", ".join(
        f"{k} {v:.2f} s" for k, v in seconds.items()), file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
