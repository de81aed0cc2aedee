"""Small trained runs and hostile model files for the export tests (seconds each)."""

import textwrap
from pathlib import Path

import numpy as np
from trainkit import make_npz

#: A network big enough for LiteRT and ONNX Runtime to quantize its weights (they leave
#: tensors under 1,024 values in float), with dropout.
QUANTIZABLE = """
  input: [8, 8, 1]
  classes: 3
  layers:
    - Conv2D: {filters: 8, kernel_size: 3, padding: same, activation: relu}
    - MaxPooling2D
    - Flatten
    - Dense: {units: 32, activation: relu}
    - Dropout: 0.3
    - Dense: {units: $classes, activation: softmax}
"""

#: An RGB network trained on grey images with caffe preprocessing (BGR minus the ImageNet
#: mean) and augmentation layers inside the model.
RGB_CAFFE_AUGMENTED = """
  input: [8, 8, 3]
  classes: 3
  preprocessing: caffe
  layers:
    - RandomFlip: horizontal
    - RandomTranslation: {height_factor: 0.25, width_factor: 0.25}
    - Conv2D: {filters: 8, kernel_size: 3, padding: same, activation: relu}
    - MaxPooling2D
    - Flatten
    - Dropout: 0.5
    - Dense: {units: $classes, activation: softmax}
"""


def train_run(folder: Path, spec: str = QUANTIZABLE, *, epochs: int = 3, lr: float = 0.01,
              precision: str = "float32", name: str = "toy") -> Path:
    """Train `spec` on trainkit's three-row dataset; the finished run's folder."""
    from cnncli import config
    from cnncli.run import train as training

    folder.mkdir(parents=True, exist_ok=True)
    data = make_npz(folder)
    text = f"""
model:{textwrap.indent(spec, "  ")}
data:
  name: {data}
  validation_split: 0.2
train:
  epochs: {epochs}
  batch_size: 16
  optimizer: {{name: adam, learning_rate: {lr}}}
  precision: {precision}
  seed: 1
output:
  dir: {folder / "runs"}
  name: {name}
"""
    path = folder / f"{name}.yaml"
    path.write_text(text)
    return training.train(config.load(path), config_file=str(path)).run


def sample_images(run: Path, n: int = 12, seed: int = 3) -> np.ndarray:
    """`n` random uint8 images plus the run's first test images, (N, 8, 8, 1)."""
    with np.load(Path(run).parent.parent.parent / "toy.npz") as data:
        x_test = data["x_test"][:n]
    noise = np.random.default_rng(seed).integers(0, 256, (n, 8, 8, 1), dtype=np.uint8)
    return np.concatenate([x_test, noise])
