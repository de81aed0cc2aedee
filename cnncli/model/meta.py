"""What a trained model needs to be used as it was trained: its one typed record.

Training writes it into every model file it saves (``cnncli.json`` inside the ``.keras``
zip, see `cnncli.model.modelfile`); evaluation, prediction, export and the pictures read
it back. A file written by an older cnncli, or by hand, may lack keys: they get the
defaults below, and a value of the wrong type is a `ModelError`, never a crash later.

>>> meta = ModelMeta(model="mnist_net", input=(28, 28, 1), class_names=("0", "1"))
>>> ModelMeta.from_json(meta.to_json()) == meta
True
>>> ModelMeta.from_json({"input": [28, 28]}).input
Traceback (most recent call last):
...
cnncli.errors.ModelError: the model's cnncli.json has a bad `input` ([28, 28]): ...
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from cnncli import __version__
from cnncli.config import PREPROCESSING_MODES, RESIZE_MODES
from cnncli.errors import ModelError


@dataclass(frozen=True)
class ModelMeta:
    """How images reach the model, and what its outputs mean.

    Args:
        model: the network's name (``mnist_net``).
        input: (height, width, channels) of the model's input.
        preprocessing: how uint8 pixels become inputs (`cnncli.config.PREPROCESSING_MODES`).
        class_names: the name of each output, in order.
        dataset: the data it was trained on (a name or a path), if known.
        resize: how images of another size are brought to `input` (``stretch``,
            ``center_crop`` or ``pad``), as in training.
        backbone: the pretrained network it was fine-tuned from, if any.
        image_channels: the channels of the images it was trained on, when they differ
            from `input`'s (grey MNIST into an RGB network: 1). Prediction, evaluation
            and exports give it images with these channels, converted to the network's
            inside the graph, as training did.
        held_out: when its training held out a seeded fifth of `dataset` as test images,
            a digest of their names (`cnncli.data.dataset.Dataset.held_out_names`):
            evaluate warns when the fifth is now other images (the folder changed),
            for a model file or an exported one as for its run.
        cnncli: the version that wrote it.
    """

    model: str = "model"
    input: tuple[int, ...] = ()
    preprocessing: str = "scale"
    class_names: tuple[str, ...] = ()
    dataset: str | None = None
    resize: str = "stretch"
    backbone: str | None = None
    image_channels: int | None = None
    held_out: str | None = None
    cnncli: str = field(default=__version__)

    def to_json(self) -> dict:
        """Plain JSON values (lists, not tuples)."""
        data = asdict(self)
        data["input"], data["class_names"] = list(self.input), list(self.class_names)
        return data

    @classmethod
    def from_json(cls, data: object, *, file: str | None = None) -> ModelMeta:
        """The record in `data` (a parsed ``cnncli.json``); unknown keys are ignored."""
        if not isinstance(data, dict):
            raise ModelError("the model's cnncli.json is not a JSON object", file=file)
        values = {}
        for key, check in _CHECKS.items():
            if key not in data or data[key] is None:
                continue
            value = data[key]
            if not check(value):
                raise ModelError(f"the model's cnncli.json has a bad `{key}` ({value!r}): "
                                 f"expected {_EXPECTED[key]}", file=file,
                                 hint="save the model again with cnncli, or remove the file's "
                                      "cnncli.json to use defaults")
            values[key] = tuple(value) if isinstance(value, list) else value
        if "class_names" in values:
            values["class_names"] = tuple(str(n) for n in values["class_names"])
        return cls(**values)


def output_names(class_names, outputs: int) -> tuple[str, ...]:
    """A name for each of a model's `outputs`: its `class_names` in order, then the
    numbers of the outputs beyond them (a network given more classes than its data
    had); numbers only when there are more names than outputs (names that are not this
    model's).

    >>> output_names(["cat", "dog"], 4)
    ('cat', 'dog', '2', '3')
    >>> output_names(["cat", "dog", "fox"], 2)
    ('0', '1')
    """
    names = tuple(class_names) if len(class_names) <= outputs else ()
    return names + tuple(str(i) for i in range(len(names), outputs))


def _is_str(value) -> bool:
    return isinstance(value, str)


_CHECKS = {
    "model": _is_str, "dataset": _is_str,
    "preprocessing": lambda v: isinstance(v, str) and v in PREPROCESSING_MODES,
    "backbone": _is_str, "cnncli": _is_str, "held_out": _is_str,
    "resize": lambda v: isinstance(v, str) and v in RESIZE_MODES,
    "image_channels": lambda v: v in (1, 3) and not isinstance(v, bool),
    "input": lambda v: isinstance(v, list) and len(v) == 3
    and all(isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in v),
    "class_names": lambda v: isinstance(v, list) and all(isinstance(n, (str, int)) for n in v),
}
_EXPECTED = {key: "text" for key in _CHECKS} | {
    "resize": "stretch, center_crop or pad", "image_channels": "1 or 3",
    "preprocessing": ", ".join(PREPROCESSING_MODES),
    "input": "[height, width, channels] of positive whole numbers",
    "class_names": "a list of names"}
