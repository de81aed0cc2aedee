"""What an exported model file is: the small JSON written beside it (its "sidecar").

`cnncli export` writes one per file (``model.onnx`` -> ``model.onnx.json``; a SavedModel
folder ``saved_model`` -> ``saved_model.json``, and a copy in its ``assets/``); `cnncli
predict` and `evaluate` read it back for the class names and the input size. A deployed
client reads it too: it says what goes in (uint8 NHWC images named ``image``) and what
comes out (``probabilities``). Reading it never runs anything; a value of the wrong type
is a `ModelError`.

>>> info = ExportInfo("onnx", input_shape=(28, 28, 1), class_names=("0", "1"))
>>> ExportInfo.from_json(info.to_json()) == info
True
>>> info.to_json()["input"]
{'name': 'image', 'dtype': 'uint8', 'layout': 'NHWC', 'shape': [None, 28, 28, 1]}
>>> sidecar_path("export/model.int8.tflite").name
'model.int8.tflite.json'
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cnncli import __version__, files
from cnncli.config import MAX_IMAGE_SIDE, RESIZE_MODES
from cnncli.errors import ModelError
from cnncli.model.meta import ModelMeta

#: The names every export gives its input and output (README "Deploying").
INPUT_NAME = "image"
OUTPUT_NAME = "probabilities"
#: The sidecar's copy inside a SavedModel folder (TensorFlow Serving keeps assets/ with it).
SAVED_MODEL_ASSET = "cnncli.json"
LABELS_FILE = "labels.txt"
#: The key of the sidecar's JSON stored inside a file (ONNX ``metadata_props``, OpenVINO
#: ``rt_info``).
EMBEDDED_KEY = "cnncli"
MAX_BYTES = 16 * 1024**2  # a sidecar holds names and figures; ImageNet's is 40 kB


@dataclass(frozen=True)
class ExportInfo:
    """One exported file: its format and variant, what it takes and gives, where from.

    Args:
        format: ``saved_model``, ``onnx``, ``litert`` or ``openvino``.
        quantization: ``none``, ``float16``, ``dynamic`` or ``int8``.
        input_shape: (height, width, channels) of the uint8 images it takes.
        class_names: the name of each probability, in order.
        preprocessing: the run's preprocessing, done inside the exported graph.
        model_input: the Keras model's own input; its channels may differ from
            `input_shape` (grey images into an RGB network: converted in the graph).
        model, dataset, resize, held_out: as in `ModelMeta`.
        source: the ``.keras`` file it was exported from.
        check: the figures of the check made at export time, for people to read.
        scores: the model's outputs are raw scores (its last layer has no softmax), not
            probabilities: the JSON's ``output.values``.
    """

    format: str
    quantization: str = "none"
    input_shape: tuple[int, ...] = ()
    class_names: tuple[str, ...] = ()
    preprocessing: str = "scale"
    model_input: tuple[int, ...] = ()
    model: str = "model"
    dataset: str | None = None
    resize: str = "stretch"
    held_out: str | None = None
    source: str | None = None
    check: dict[str, Any] = field(default_factory=dict, compare=False)
    scores: bool = False
    cnncli: str = __version__

    def to_json(self) -> dict:
        """The sidecar's JSON (README "Deploying" documents it)."""
        return {
            "format": self.format, "quantization": self.quantization,
            "input": {"name": INPUT_NAME, "dtype": "uint8", "layout": "NHWC",
                      "shape": [None, *self.input_shape]},
            "output": {"name": OUTPUT_NAME, "dtype": "float32",
                       "shape": [None, len(self.class_names)],
                       "values": "scores" if self.scores else "probabilities"},
            "class_names": list(self.class_names),
            "preprocessing": self.preprocessing, "preprocessing_in_graph": True,
            "model": self.model, "model_input": list(self.model_input),
            "dataset": self.dataset, "resize": self.resize, "held_out": self.held_out,
            "source": self.source,
            "check": dict(self.check), "cnncli": self.cnncli,
        }

    @classmethod
    def from_json(cls, data: object, *, file: str | None = None) -> ExportInfo:
        """The record in a parsed sidecar; unknown keys are ignored."""
        def bad(what: str) -> ModelError:
            return ModelError(f"the export's JSON has a bad {what}", file=file,
                              hint="export the model again with cnncli export, or remove "
                                   "the JSON to use what the model file itself says")

        if not isinstance(data, dict) or not isinstance(data.get("format"), str):
            raise bad("layout (no `format`)")
        shape = (data.get("input") or {}).get("shape") if isinstance(
            data.get("input"), dict) else None
        if not (isinstance(shape, list) and len(shape) == 4 and _dims(shape[1:])):
            raise bad("`input.shape` (expected [null, height, width, 1 or 3 channels], "
                      f"sides up to {MAX_IMAGE_SIDE:,})")
        names = data.get("class_names", [])
        if not (isinstance(names, list) and all(isinstance(n, str | int) for n in names)):
            raise bad("`class_names` (expected a list of names)")
        text = {k: data.get(k) for k in ("quantization", "preprocessing", "model",
                                         "dataset", "resize", "held_out", "source",
                                         "cnncli")}
        if any(v is not None and not isinstance(v, str) for v in text.values()):
            raise bad("value (quantization, preprocessing, model, dataset, resize, "
                      "held_out, source and cnncli are text)")
        if text["resize"] is not None and text["resize"] not in RESIZE_MODES:
            raise bad(f"`resize` ({text['resize']!r}; expected {', '.join(RESIZE_MODES)})")
        model_input = data.get("model_input") or []
        check = data.get("check") if isinstance(data.get("check"), dict) else {}
        output = data.get("output") if isinstance(data.get("output"), dict) else {}
        return cls(data["format"], input_shape=tuple(shape[1:]),
                   class_names=tuple(str(n) for n in names),
                   model_input=tuple(model_input) if _dims(model_input) else (),
                   check=check, scores=output.get("values") == "scores",
                   **{k: v for k, v in text.items() if v is not None})

    def meta(self) -> ModelMeta:
        """The `ModelMeta` a classifier of this file carries."""
        return ModelMeta(model=self.model, input=tuple(self.input_shape),
                         preprocessing=self.preprocessing, class_names=self.class_names,
                         dataset=self.dataset, resize=self.resize, held_out=self.held_out,
                         cnncli=self.cnncli)


def _dims(values: object) -> bool:
    """[height, width, channels] of an image: positive whole numbers, 1 or 3 channels, no
    side larger than cnncli reads images at."""
    return isinstance(values, list) and len(values) == 3 and all(
        isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in values) and \
        values[-1] in (1, 3) and max(values[:2]) <= MAX_IMAGE_SIDE


def sidecar_path(model_path: str | os.PathLike) -> Path:
    """``model.onnx`` -> ``model.onnx.json``; a SavedModel folder ``sm`` -> ``sm.json``."""
    path = Path(model_path)
    return path.with_name(path.name + ".json")


def read(model_path: str | os.PathLike) -> ExportInfo | None:
    """The sidecar of `model_path` (beside it, or in a SavedModel's assets), if any."""
    path = Path(model_path)
    for candidate in (sidecar_path(path), path / "assets" / SAVED_MODEL_ASSET):
        if candidate.is_file():
            return parse(_read_text(candidate), file=str(candidate))
    return None


def parse(text: str, *, file: str | None = None, embedded: bool = False) -> ExportInfo:
    """An `ExportInfo` from JSON text: a sidecar, or (`embedded`) metadata stored in the
    model file `file`."""
    try:
        data = files.parse_json(text)
    except ValueError as exc:
        what = "metadata inside the file" if embedded else "export's JSON"
        raise ModelError(f"the {what} cannot be read: {exc}", file=file,
                         hint="export the model again" if embedded
                         else "export the model again, or remove the JSON") from None
    return ExportInfo.from_json(data, file=file)


def _read_text(path: Path) -> str:
    """The export's JSON, read as cnncli reads its record files (`files.read_record`: a
    regular file, at most `MAX_BYTES`)."""
    try:
        return files.read_record(path, limit=MAX_BYTES).decode("utf-8")
    except (OSError, ValueError) as exc:  # (too large, not a file, not UTF-8)
        raise ModelError(f"cannot read the export's JSON: {exc}", file=str(path)) from None


def labels_on_disk(path: Path) -> str | None:
    """The text of the ``labels.txt`` at `path`, read as UTF-8 (as `labels_text` is
    written, whatever the locale's encoding), or None if it is not a regular file or is
    larger than `MAX_BYTES`."""
    try:
        return files.read_record(path, limit=MAX_BYTES).decode("utf-8", errors="replace")
    except (OSError, ValueError):  # (not there, not a regular file, too large)
        return None


def labels_text(class_names) -> str:
    """``labels.txt``: one class name a line, in output order (newlines made spaces).

    >>> labels_text(["cat", "dog"])
    'cat\\ndog\\n'
    """
    return "".join(" ".join(str(n).splitlines()) + "\n" for n in class_names)
