"""The values run-config settings take: their names, limits and words (what
the sections check against and what other modules share)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal, get_args

from cnncli.errors import suggest

#: How pixels 0..255 become model inputs (cnncli.data.pipeline implements them).
#: scale: x / 255; none: float 0..255; tf: [-1, 1]; caffe: RGB->BGR minus the ImageNet
#: mean (keras.applications.vgg16.preprocess_input); torch: x / 255, then the ImageNet
#: mean / std per channel.
PREPROCESSING_MODES = ("scale", "none", "tf", "caffe", "torch")
#: The words ``train.freeze`` takes besides a number of layers or a list of names.
FREEZE_WORDS = ("backbone", "none")
#: Values of ``train.precision`` (and ``--precision``); auto: see cnncli.devices.
PRECISIONS = ("auto", "float32", "mixed_float16", "mixed_bfloat16")
#: Values of ``train.device`` (and ``--device``): auto, cpu, gpu, gpu:N.
DEVICE_PATTERN = r"^(auto|cpu|gpu|/?gpu:\d+)$"
DEVICE_FORMS = "auto, cpu, gpu or gpu:N (N = 0, 1, ... as TensorFlow numbers them)"


def device_hint(value: object) -> str:
    """What to say about a device that is none of `DEVICE_FORMS` (the did-you-mean).

    >>> device_hint("cpus"), device_hint("/cpu:0"), device_hint("TPU")
    ("did you mean 'cpu'?", "did you mean 'cpu'?", 'cnncli runs on GPUs and CPUs, not TPUs')
    >>> device_hint("gpu:0,1"), device_hint("gpus 0, 1,")[-35:]
    ("several GPUs: 'gpu' (all visible), or CUDA_VISIBLE_DEVICES=0,1 with 'gpu'", \
"CUDA_VISIBLE_DEVICES=0,1 with 'gpu'")
    """
    text = str(value).strip().lower().lstrip("/")
    if text.startswith("tpu"):
        return "cnncli runs on GPUs and CPUs, not TPUs"
    if text.startswith("gpu") and "," in text:  # gpu:0,1 / GPU 0,1: a list of GPUs
        numbers = ",".join(re.findall(r"\d+", text))
        return (f"several GPUs: 'gpu' (all visible), or CUDA_VISIBLE_DEVICES={numbers} "
                "with 'gpu'")
    if text.startswith("cpu"):  # cpu:0, /cpu:0 (TensorFlow's names): one CPU device
        return "did you mean 'cpu'?"
    return suggest(text, ["auto", "cpu", "gpu", "gpu:0"])


#: What a pattern's values are, in words, and what to say about another value.
PATTERN_WORDS = {DEVICE_PATTERN: (DEVICE_FORMS, device_hint)}
#: The largest run cnncli accepts: more is a typo (and the data order of every epoch
#: must fit the step counters).
MAX_EPOCHS = 1_000_000
MAX_STEPS = 10**9
MAX_SEED = 2**32 - 1  # what Keras' and NumPy's seeding take
MAX_IMAGE_SIDE = 16384


#: How images of another size are brought to the model's (`cnncli.data.images.resize`).
ResizeMode = Literal["stretch", "center_crop", "pad"]
RESIZE_MODES: tuple[str, ...] = get_args(ResizeMode)


#: `model.weights` words (anything else is a weights file).
WEIGHTS_WORDS = ("imagenet", "none")


class SettingError(ValueError):
    """A validator's ValueError with a hint (a did-you-mean) to show apart from it."""

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.hint = hint


def weights_setting(value: str) -> str:
    """A pretrained network's `weights` (`model.weights`, a spec's ``pretrained:``):
    imagenet or none in any case, or a weights file, whose name has a suffix
    (``.weights.h5``, ``.h5``, ``.keras``): ``imagenett`` is a typo, a ValueError.

    >>> weights_setting(" ImageNet"), weights_setting("mine.weights.h5")
    ('imagenet', 'mine.weights.h5')
    """
    if value.strip().lower() in WEIGHTS_WORDS:
        return value.strip().lower()
    if not value.strip():
        raise ValueError("is empty: give imagenet, none or a weights file")
    if not Path(value).suffix:
        raise SettingError("should be imagenet, none or a weights file (a name with its "
                           "suffix, e.g. mobilenet_v2_notop.weights.h5)",
                           suggest(value, WEIGHTS_WORDS))
    return value



#: What to write for a setting that takes a boolean and was given something else.
BOOLEAN_HINT = "write true or false (YAML's yes/no/on/off are not booleans here)"
