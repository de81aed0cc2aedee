"""A tiny, learnable dataset and run config for training tests (seconds, not minutes)."""

import textwrap
from pathlib import Path

import numpy as np

#: The start of a script run in a subprocess: Keras on TensorFlow, with this machine's
#: CPU split into two logical devices ("/cpu:0", "/cpu:1") to mirror over.
TWO_LOGICAL_CPUS = """
from cnncli.runtime import import_keras, import_tf
tf = import_tf()
keras = import_keras()
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(
    cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
"""

SPEC = """
  input: [8, 8, 1]
  classes: 3
  layers:
    - Conv2D: {filters: 4, kernel_size: 3, padding: same, activation: relu}
    - MaxPooling2D
    - Flatten
    - Dropout: 0.1
    - Dense: {units: $classes, activation: softmax}
"""


def make_npz(folder: Path, n_train: int = 320, n_test: int = 60, seed: int = 0) -> Path:
    """Three classes of 8x8 images: a bright top row, middle row or bottom row, plus noise."""
    rng = np.random.default_rng(seed)

    def split(n):
        y = rng.integers(0, 3, n)
        x = rng.integers(0, 60, (n, 8, 8, 1))
        for i, label in enumerate(y):
            x[i, 1 + 3 * label: 3 + 3 * label, :, 0] += 180
        return x.astype(np.uint8), y.astype(np.int64)

    x_train, y_train = split(n_train)
    x_test, y_test = split(n_test)
    path = folder / "toy.npz"
    np.savez(path, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    return path


def write_config(folder: Path, *, epochs: int = 3, batch_size: int = 16, lr: float = 0.01,
                 optimizer: str = "adam", extra_train: str = "", backup_every: int = 1000,
                 name: str = "toy", spec: str = SPEC) -> Path:
    data = make_npz(folder)
    text = f"""
model:{textwrap.indent(spec, "  ")}
data:
  name: {data}
  validation_split: 0.2
train:
{"" if "steps:" in extra_train else f"  epochs: {epochs}"}
  batch_size: {batch_size}
  optimizer: {{name: {optimizer}, learning_rate: {lr}}}
  backup_every: {backup_every}
  seed: 1
{textwrap.indent(textwrap.dedent(extra_train).strip(), "  ")}
output:
  dir: {folder / "runs"}
  name: {name}
"""
    path = folder / f"{name}.yaml"
    path.write_text(text)
    return path


def history_rows(run: Path) -> list[dict]:
    """history.csv without the timing columns (which differ between runs)."""
    import csv

    with open(run / "history.csv") as f:
        return [{k: v for k, v in row.items() if k not in ("seconds", "images_per_s")}
                for row in csv.DictReader(f)]


def weights(run: Path, name: str = "model.keras") -> list:
    from cnncli.model import modelfile

    return modelfile.load_model(run / name).get_weights()
