"""What the contender scripts share: arguments, the data, per-epoch timing, the result file.

Every contender is its own process and writes one JSON file (``--json-out``) with the
same keys, so `bench/run.py` can compare them:

- ``epochs``: one row per epoch: ``images``, ``seconds`` (training only, from the
  epoch's start to its end, minus any test-set evaluation the benchmark asked for),
  ``eval_seconds``, ``end_time`` (``time.time()`` at the epoch's end) and, when the
  test set was evaluated, ``test_accuracy``;
- ``steady_images_per_s``: images / seconds over the epochs after the first (the first
  one traces the graph and fills caches: it is warm-up and not counted);
- ``peak_rss_mb``: the process's peak resident memory (``ru_maxrss``);
- ``threads``: the thread settings the framework ran with (all left at their defaults).

>>> steady_images_per_s([{"images": 10, "seconds": 5.0}, {"images": 10, "seconds": 1.0}])
10.0
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path

SCRIPT_START = time.time()  # as early as this module is imported (after the interpreter)

#: Epochs at the start of a run that are warm-up (graph tracing, caches) and not counted.
WARMUP_EPOCHS = 1


def quiet_tensorflow() -> None:
    """Call before importing TensorFlow: hides its C++ start-up notices (no effect on
    speed) and makes Keras use TensorFlow. Not done at import, so the environment that
    `cnncli_train.py` and `run.py` pass to cnncli stays the user's.

    Also gives the peers TensorFlow's own CPU allocator, as a plain script has, even
    when they borrowed cnncli's data loading first (importing cnncli chooses the BFC
    allocator, one of cnncli's levers: bench/LEVERS.md). TensorFlow reads the setting
    at its first tensor, so this must come before any."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # as cnncli sets it
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    os.environ["TF_CPU_ALLOCATOR_USE_BFC"] = "false"


def parser(description: str, *, batch_size: int, epochs: int) -> argparse.ArgumentParser:
    """The arguments every contender takes."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--batch-size", type=int, default=batch_size)
    p.add_argument("--epochs", type=int, default=epochs,
                   help="epochs to train (the first one is warm-up); with --target-accuracy "
                        "the most epochs to try")
    p.add_argument("--limit", type=int, default=None,
                   help="use only the first N training images (for smoke tests)")
    p.add_argument("--data-dir", default=None, help="where Fashion-MNIST is (default: "
                   "cnncli's search: CNNCLI_DATA_DIR, ~/.keras/datasets, "
                   "/usr/share/datasets/fashion-mnist)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json-out", default=None, help="write the result here (JSON)")
    p.add_argument("--network", default="lecture", choices=sorted(NETWORKS),
                   help="the network to train (default: the lecture's ConvNet); the others "
                        "need --npz")
    p.add_argument("--npz", default=None, help="train on this .npz (x_train, y_train: "
                   "uint8 images, int labels) instead of Fashion-MNIST; see write_synthetic")
    return p


class Network:
    """A network the contenders train: its input, and the optimizer every contender uses
    for it (the same work in each framework)."""

    def __init__(self, input_shape: tuple[int, int, int], optimizer: str):
        self.input_shape, self.optimizer = input_shape, optimizer


#: name -> the network. `cifar_vgg` is configs/cifar10_vgg.yaml's; `resnet50` is Keras'
#: ResNet50 (v1: the stride in each stage's first 1x1 convolution) with 10 classes.
NETWORKS = {"lecture": Network((28, 28, 1), "adam"), "cifar_vgg": Network((32, 32, 3), "sgd"),
            "resnet50": Network((224, 224, 3), "sgd")}
#: The optimizers, as every contender sets them: Adam 1e-3 (the lecture's), or SGD with
#: momentum and weight decay (configs/cifar10_vgg.yaml's, the usual for these networks).
OPTIMIZERS = {"adam": {"learning_rate": 1e-3},
              "sgd": {"learning_rate": 0.05, "momentum": 0.9, "weight_decay": 5e-4}}


def write_synthetic(path: str | os.PathLike, network: str, images: int, *, classes: int = 10,
                    seed: int = 0) -> Path:
    """An .npz of random uint8 images shaped for `network`, and random labels: what a
    throughput run needs (the speed of a step does not depend on the pixels).

    >>> import tempfile, numpy
    >>> f = write_synthetic(tempfile.mkdtemp() + "/c.npz", "cifar_vgg", 4)
    >>> numpy.load(f)["x_train"].shape
    (4, 32, 32, 3)
    """
    import numpy as np

    rng = np.random.default_rng(seed)
    shape = NETWORKS[network].input_shape
    path = Path(path)
    tests = max(1, images // 10)
    np.savez(path, x_train=rng.integers(0, 256, (images, *shape), dtype=np.uint8),
             y_train=rng.integers(0, classes, images).astype(np.uint8),
             x_test=rng.integers(0, 256, (tests, *shape), dtype=np.uint8),
             y_test=rng.integers(0, classes, tests).astype(np.uint8))
    return path


def load_training_data(args):
    """(x_train, y_train, source) as `args` ask: --npz, else Fashion-MNIST (--limit
    applies to both)."""
    if args.npz is None and args.network != "lecture":
        raise SystemExit(f"--network {args.network} needs --npz (bench/networks.py writes "
                         "one with write_synthetic)")
    if args.npz is None:
        x, y, _x_test, _y_test, source = load_fashion_mnist(args.limit, args.data_dir)
        return x, y, source
    import numpy as np

    with np.load(args.npz) as data:
        x, y = data["x_train"], data["y_train"]
    if args.limit:
        x, y = x[:args.limit], y[:args.limit]
    if x.ndim == 3:
        x = x[..., None]
    return x, y, f"{Path(args.npz).name} (synthetic)"


def load_fashion_mnist(limit: int | None = None, data_dir: str | None = None):
    """(x_train, y_train, x_test, y_test, source): uint8 NHWC images, int labels."""
    from cnncli.data import datasets

    data = datasets.load("fashion_mnist", data_dir=data_dir, offline=True)
    x, y = data.train.images, data.train.labels
    if limit:
        x, y = x[:limit], y[:limit]
    return x, y, data.test.images, data.test.labels, data.source


def steady_images_per_s(epochs: list[dict], warmup: int = WARMUP_EPOCHS) -> float | None:
    """Images per second over the epochs after `warmup`; None when there are none."""
    counted = epochs[warmup:]
    seconds = sum(e["seconds"] for e in counted)
    if not counted or seconds <= 0:
        return None
    return sum(e["images"] for e in counted) / seconds


def peak_rss_mb(children: bool = False) -> float:
    """Peak resident memory in MB of this process (or of its largest waited-for child)."""
    who = resource.RUSAGE_CHILDREN if children else resource.RUSAGE_SELF
    return resource.getrusage(who).ru_maxrss / 1024  # Linux reports KiB


def versions(**extra: str) -> dict:
    return {"python": platform.python_version(), **extra}


def write_json(path: str | os.PathLike | None, result: dict) -> None:
    """Write `result` to `path` atomically (temp file, then rename); print it if no path."""
    text = json.dumps(result, indent=2)
    if path is None:
        print(text)
        return
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def report_line(result: dict) -> str:
    """One line for the terminal."""
    ips = result.get("steady_images_per_s")
    speed = f"{ips:,.0f} images/s (steady)" if ips else "no steady-state epoch"
    acc = result.get("test_accuracy")
    extra = f", test accuracy {acc:.4f}" if acc is not None else ""
    return (f"{result['name']}: batch {result['batch_size']}, {len(result['epochs'])} epochs, "
            f"{speed}{extra}, peak RSS {result['peak_rss_mb']:,.0f} MB")


def keras_epoch_timer(keras, images_per_epoch: int, target_accuracy: float | None = None):
    """A Keras callback timing each epoch; with `target_accuracy`, it stops training at
    the first epoch whose ``val_accuracy`` (the test set, given as validation data)
    reaches it. Evaluation time is measured (on_test_begin/end) and not counted as
    training time."""

    class EpochTimer(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.rows: list[dict] = []

        def on_epoch_begin(self, epoch, logs=None):
            self.start = time.perf_counter()
            self.eval_seconds = 0.0

        def on_test_begin(self, logs=None):
            self.eval_start = time.perf_counter()

        def on_test_end(self, logs=None):
            self.eval_seconds += time.perf_counter() - self.eval_start

        def on_epoch_end(self, epoch, logs=None):
            logs = logs or {}
            total = time.perf_counter() - self.start
            row = {"epoch": epoch + 1, "images": images_per_epoch,
                   "seconds": round(total - self.eval_seconds, 4),
                   "eval_seconds": round(self.eval_seconds, 4), "end_time": time.time(),
                   "loss": float(logs.get("loss", float("nan")))}
            if "val_accuracy" in logs:
                row["test_accuracy"] = float(logs["val_accuracy"])
                if target_accuracy is not None and row["test_accuracy"] >= target_accuracy:
                    self.model.stop_training = True
            self.rows.append(row)
            print(f"epoch {row['epoch']}: {row['seconds']:.2f} s, "
                  f"{images_per_epoch / row['seconds']:,.0f} images/s"
                  + (f", test accuracy {row['test_accuracy']:.4f}"
                     if "test_accuracy" in row else ""), file=sys.stderr, flush=True)

    return EpochTimer()


def keras_threads(tf) -> dict:
    """TensorFlow's thread settings (0 means: TensorFlow picks, i.e. all cores)."""
    return {"intra_op": tf.config.threading.get_intra_op_parallelism_threads(),
            "inter_op": tf.config.threading.get_inter_op_parallelism_threads(),
            "note": "TensorFlow defaults (0 = one thread per core)"}


def keras_model(keras, network: str, classes: int = 10):
    """`network` as a Keras user writes it. Under a mixed policy the last layer computes
    in float32, as Keras' mixed-precision guide says to."""
    if network == "lecture":
        return lecture_keras_model(keras)
    if network == "resnet50":
        return keras.applications.ResNet50(weights=None, input_shape=(224, 224, 3),
                                           classes=classes)
    layers = [keras.Input(shape=NETWORKS[network].input_shape)]
    for filters in (32, 64, 128):
        for _ in range(2):
            layers += [keras.layers.Conv2D(filters, 3, padding="same", use_bias=False),
                       keras.layers.BatchNormalization(), keras.layers.ReLU()]
        layers += [keras.layers.MaxPooling2D(2), keras.layers.Dropout(0.2)]
    layers += [keras.layers.Flatten(), keras.layers.Dense(128, activation="relu"),
               keras.layers.Dropout(0.3),
               keras.layers.Dense(classes, activation="softmax", dtype="float32")]
    return keras.Sequential(layers)


def keras_optimizer(keras, network: str):
    name = NETWORKS[network].optimizer
    settings = OPTIMIZERS[name]
    return (keras.optimizers.Adam(**settings) if name == "adam"
            else keras.optimizers.SGD(**settings))


def optimizer_text(network: str) -> str:
    """The network's optimizer in words.

    >>> optimizer_text("cifar_vgg")
    'SGD learning rate 0.05, momentum 0.9, weight decay 0.0005'
    """
    name = NETWORKS[network].optimizer
    return (name.upper() if name == "sgd" else name.capitalize()) + " " + ", ".join(
        f"{k.replace('_', ' ')} {v:g}" for k, v in OPTIMIZERS[name].items())


def lecture_keras_model(keras, input_shape=(28, 28, 1), pool_first=False):
    """The lecture's MNIST ConvNet, as a Keras user writes it (same as cnncli's mnist_net).
    Its layers follow Keras' image data format (channels_last unless set otherwise).
    Under a mixed policy the last layer computes in float32, as Keras' mixed-precision
    guide says to. `pool_first`: each convolution's ReLU after its pooling instead of
    before (the same values and gradients: ReLU and max commute), on a quarter of the
    elements."""
    def conv_pool(filters):
        if pool_first:
            return [keras.layers.Conv2D(filters, 5, padding="same"),
                    keras.layers.MaxPooling2D(2), keras.layers.ReLU()]
        return [keras.layers.Conv2D(filters, 5, padding="same", activation="relu"),
                keras.layers.MaxPooling2D(2)]

    return keras.Sequential([
        keras.Input(shape=input_shape), *conv_pool(32), *conv_pool(64),
        keras.layers.Flatten(),
        keras.layers.Dense(1024, activation="relu"),
        keras.layers.Dense(10, activation="softmax", dtype="float32"),
    ])
