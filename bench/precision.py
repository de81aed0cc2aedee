"""Does bfloat16 inference cost anything that matters? (issue 17)

`cnncli predict` and `cnncli evaluate` compute in bfloat16 (`--precision auto`) on a CPU
with bfloat16 units. That is the default only if it agrees with float32:

* **mnist_net on Fashion-MNIST**: trained with cnncli (`configs/fashion_mnist.yaml`, in
  float32 so that the reference is a float32 model), then all 10,000 test images are
  classified by the same model in float32 and in mixed_bfloat16. Criteria: top-1
  agreement at least 99.5%, accuracy at most 0.2 points lower.
* **VGG16** (`cnncli predict --model vgg16`'s network) on 256 images drawn from the
  Fashion-MNIST test set, resized to 224x224 RGB. ImageNet weights cannot be fetched
  here, so the weights are random (seeded): the probabilities are close to uniform and
  the top-1 of near-ties is fragile, which makes this a harsh test of agreement and says
  nothing of accuracy. The largest probability difference is reported too.

    .venv/bin/python bench/precision.py                  # about 5 minutes
    .venv/bin/python bench/precision.py --quick --out /tmp/p

Writes bench/PRECISION_RESULTS.md and bench/precision.json (or into ``--out``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import report  # noqa: E402  (bench/report.py: keeps the hand-written sections)

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

import numpy as np  # noqa: E402

AGREEMENT, MAX_DROP = 0.995, 0.2  # the bar for making bfloat16 the default
BATCH = 64


def classify(clf, images: np.ndarray) -> np.ndarray:
    """Probabilities for all `images`, batch by batch, as predict and evaluate do."""
    return np.concatenate([clf.probabilities(images[i:i + BATCH])
                           for i in range(0, len(images), BATCH)])


def compare(name: str, load, images: np.ndarray, labels: np.ndarray | None) -> dict:
    """float32 against mixed_bfloat16 for one model (`load(precision)` gives a
    `Classifier`): agreement, accuracies, the largest probability difference, seconds."""
    out = {"model": name, "images": int(len(images))}
    probs = {}
    for precision in ("float32", "mixed_bfloat16"):
        clf = load(precision)
        classify(clf, images[:BATCH])  # trace and warm up outside the timing
        start = time.perf_counter()
        probs[precision] = classify(clf, images)
        out[f"{precision}_seconds"] = time.perf_counter() - start
    f32, bf16 = probs["float32"], probs["mixed_bfloat16"]
    out["agreement"] = float((f32.argmax(1) == bf16.argmax(1)).mean())
    out["max_probability_difference"] = float(np.abs(f32 - bf16).max())
    if labels is not None:
        out["accuracy_float32"] = float((f32.argmax(1) == labels).mean())
        out["accuracy_bfloat16"] = float((bf16.argmax(1) == labels).mean())
        out["drop_points"] = 100 * (out["accuracy_float32"] - out["accuracy_bfloat16"])
    print(json.dumps(out), flush=True)
    return out


def trained_mnist_net(folder: Path, epochs: int, train_images: int | None) -> Path:
    """A float32 mnist_net trained by cnncli on Fashion-MNIST (its run folder)."""
    from cnncli import config
    from cnncli.run import train as training

    overrides = [f"train.epochs={epochs}", "train.precision=float32", "data.offline=true",
                 f"output.dir={folder / 'runs'}"]
    if train_images:
        overrides.append(f"data.limit={train_images}")
    cfg = config.load(HERE.parent / "configs" / "fashion_mnist.yaml", overrides)
    return training.train(cfg, config_file=str(HERE.parent / "configs" /
                                                "fashion_mnist.yaml")).run


def vgg16_file(folder: Path) -> Path:
    """VGG16 with seeded random weights, saved as a weights file for `--weights`."""
    from cnncli.runtime import import_keras

    keras = import_keras()
    keras.utils.set_random_seed(0)
    path = folder / "vgg16_random.weights.h5"
    keras.applications.VGG16(weights=None).save_weights(path)
    keras.backend.clear_session()
    return path


def experiment(folder: Path, *, quick: bool) -> dict:
    from cnncli.data import datasets
    from cnncli.data.images import convert_channels, resize
    from cnncli.infer import classifier

    test = datasets.load("fashion_mnist", offline=True).test
    images, labels = test.images, test.labels
    if quick:
        images, labels = images[:500], labels[:500]
    run = trained_mnist_net(folder, epochs=1 if quick else 5,
                            train_images=2000 if quick else None)
    rows = [compare("mnist_net (trained, Fashion-MNIST test set)",
                    lambda p: classifier.load(str(run), precision=p), images, labels)]
    weights = vgg16_file(folder)
    count = 16 if quick else 256
    rgb = convert_channels(np.stack([resize(x, (224, 224)) for x in images[:count]]), 3)
    rows.append(compare("vgg16 (random weights, 224x224)",
                        lambda p: classifier.load("vgg16", weights=str(weights), offline=True,
                                                  precision=p), rgb, None))
    from cnncli.devices import cpu_bf16_units

    return {"rows": rows, "machine": f"{cpu_model()}, bfloat16 units: {cpu_bf16_units()}"}


def cpu_model() -> str:
    """The CPU's name from /proc/cpuinfo (or the platform's)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.machine()


def table(found: dict) -> str:
    lines = [
        "# bfloat16 inference against float32",
        "",
        "Written by `bench/precision.py` (issue 17), which says how. The same model, the same",
        "images, classified in float32 and in mixed_bfloat16 (the output layer and the",
        "probabilities stay float32). The bar for `--precision auto` choosing bfloat16: top-1",
        f"agreement at least {AGREEMENT:.1%}, accuracy at most {MAX_DROP} points lower.",
        "",
        "| model | images | top-1 agreement | accuracy float32 | accuracy bfloat16 | "
        "drop (points) | largest probability difference | seconds float32 | seconds bfloat16 |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in found["rows"]:
        acc = (f"{r['accuracy_float32']:.4f} | {r['accuracy_bfloat16']:.4f} | "
               f"{r['drop_points']:+.2f}" if "drop_points" in r else "n/a | n/a | n/a")
        lines.append(f"| {r['model']} | {r['images']} | {r['agreement']:.2%} | {acc} | "
                     f"{r['max_probability_difference']:.2g} | {r['float32_seconds']:.2f} | "
                     f"{r['mixed_bfloat16_seconds']:.2f} |")
    trained = found["rows"][0]
    passed = trained["agreement"] >= AGREEMENT and trained["drop_points"] <= MAX_DROP
    lines += [
        "",
        f"Trained network: {'meets' if passed else 'DOES NOT meet'} the bar "
        f"({trained['agreement']:.2%} agreement, {trained['drop_points']:+.2f} points).",
        "VGG16 has random weights here (no ImageNet weights offline): its near-uniform",
        "probabilities make top-1 a coin toss between near-ties, so its agreement is a lower",
        "bound and its accuracy is not measurable; the probability difference is the figure",
        "to read. With ImageNet weights, agreement should be measured again online.",
        "",
        f"Machine: {found['machine']}, {os.cpu_count()} cores.",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes (for the tests)")
    parser.add_argument("--out", type=Path, default=HERE)
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        found = experiment(Path(tmp), quick=args.quick)
    (args.out / "precision.json").write_text(json.dumps(found, indent=2))
    report.write(args.out / "PRECISION_RESULTS.md", table(found))
    print(table(found))
    return 0


if __name__ == "__main__":
    sys.exit(main())
