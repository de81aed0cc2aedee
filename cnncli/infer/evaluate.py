"""Evaluating a trained model on a test set: the figures, the confusions, the worst mistakes.

>>> report = evaluate("runs/mnist/latest")        # doctest: +SKIP
>>> report.result.accuracy                         # doctest: +SKIP
0.9912
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml

from cnncli import files, plots
from cnncli.data import datasets, pipeline
from cnncli.errors import ConfigError, DataError, ModelError
from cnncli.infer import metrics
from cnncli.model import modelfile
from cnncli.run import rundir

WORST = 32  # misclassified examples shown in the PNG grid


@dataclass
class Target:
    """A model to evaluate or run, and what is known about how it was trained."""

    model_path: Path
    run: Path | None
    metadata: dict  # input, preprocessing, class_names, dataset (may be empty)
    data: dict = field(default_factory=dict)  # the run config's data section


def resolve(target: str | Path) -> Target:
    """A run folder, its ``latest`` link, or a ``.keras`` file."""
    text = os.fspath(target)  # not Path(): it would turn gs://b/m into gs:/b/m
    path = Path(text)
    if modelfile.is_remote(text) or text.endswith(".keras") or path.is_file():
        modelfile.check_model_path(text)
        return Target(path, None, modelfile.read_metadata(path) or {})
    run = rundir.find(path)
    model = run / "best.keras"
    if not model.exists():
        model = run / "model.keras"
    if not model.exists():
        raise ModelError("this run has no model file yet (it did not finish an epoch)",
                         file=str(run), hint="train it further: cnncli train --resume "
                         f"{run}")
    saved = yaml.safe_load((run / rundir.CONFIG).read_text()) or {}
    return Target(model, run, modelfile.read_metadata(model) or {}, saved.get("data") or {})


def image_input(model, path) -> tuple[int, int, int]:
    """The model's input as (height, width, channels), or a `ModelError` if not an image."""
    shape = tuple(model.input_shape[1:])
    if len(shape) != 3 or shape[-1] not in (1, 3) or None in shape:
        raise ModelError(f"the model takes inputs of shape {shape}, not images (height, "
                         "width, 1 or 3 channels)", file=str(path),
                         hint="cnncli evaluates and runs image classifiers")
    return shape


@dataclass
class Report:
    target: Target
    result: metrics.EvalResult
    dataset: str
    files: dict[str, str]
    failures: list[str]

    def to_dict(self) -> dict:
        return {"model": str(self.target.model_path), "dataset": self.dataset,
                **self.result.to_dict(), "files": self.files, "failures": self.failures}


def evaluate(target: str | Path, *, data: str | None = None, data_dir: str | None = None,
             offline: bool = False, batch_size: int = 256, fail_under: list[str] = (),
             output: str | Path | None = None, model=None) -> Report:
    """Evaluate on the test split of the run's dataset (or `data`); see `Report`."""
    thresholds = metrics.parse_thresholds(list(fail_under))  # bad thresholds fail first
    if output is not None:
        try:
            Path(output).mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"cannot create the output folder: {exc.strerror or exc}",
                              file=str(output), hint="give --output a folder you can write "
                              "to") from None
    t = resolve(target)
    source = data or t.data.get("name") or t.metadata.get("dataset")
    if not source:
        raise ConfigError("which data? this model file does not say what it was trained on",
                          file=str(t.model_path), hint="pass --data NAME_OR_PATH")
    size = t.data.get("image_size")
    ds = datasets.load(source, data_dir=data_dir or t.data.get("data_dir"),
                       offline=offline or bool(t.data.get("offline")),
                       image_size=tuple(size) if size else None)
    model = model or modelfile.load_model(t.model_path)
    input_shape = image_input(model, t.model_path)
    classes = model.output_shape[-1]
    if ds.num_classes > classes:
        raise DataError(f"the data has {ds.num_classes} classes but the model predicts "
                        f"{classes}", file=ds.source,
                        hint="evaluate on the data the model was trained for (--data)")
    names = t.metadata.get("class_names") or ds.class_names
    if len(names) != classes:
        names = [str(i) for i in range(classes)]
    mode = t.metadata.get("preprocessing", "scale")
    batches = pipeline.make_dataset(ds.x_test, ds.y_test, batch_size=batch_size,
                                    input_shape=input_shape, training=False, seed=0,
                                    preprocessing=mode)
    probs = model.predict(batches, verbose=0)
    result = metrics.compute(ds.y_test, probs, names, ids=ds.test_ids)
    picked = np.clip(probs[np.arange(len(probs)), ds.y_test], 1e-7, 1.0)
    result.loss = float(-np.mean(np.log(picked)))
    written = {}
    folder = Path(output) if output else t.run
    if folder is not None:
        written = _write_files(folder, result, ds, names)
    return Report(t, result, f"{ds.name} ({ds.source})", written,
                  metrics.check_thresholds(result, thresholds))


def _write_files(folder: Path, result: metrics.EvalResult, ds, names) -> dict[str, str]:
    written = {
        "confusion_matrix": str(plots.confusion_matrix(result.confusion, names,
                                                       folder / "confusion.png")),
    }
    worst = result.misclassified[:WORST]
    if worst:
        images = ds.x_test[[w["index"] for w in worst]]
        titles = [plots.misclassified_title(w) for w in worst]
        written["misclassified"] = str(plots.image_grid(images, titles,
                                                      folder / "misclassified.png"))
    path = folder / "evaluation.json"
    files.write_json(path, result.to_dict())
    written["evaluation"] = str(path)
    return written
