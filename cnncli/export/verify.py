"""Judging an exported file by what it answers, against the Keras model it came from.

Both see the same uint8 images. A float export must give the Keras model's top class on
at least `MIN_AGREEMENT` of them; a quantized one (``float16``, ``dynamic``, ``int8``)
may lose at most ``max_drop`` points of accuracy. Without labels (``--images``), a
quantized export may change the top class of at most ``max_drop`` percent of the images,
which bounds the accuracy it can lose. With labels, one that keeps the accuracy but
changes the top class of more than `WARN_CHANGES` of the images (right and wrong answers
traded: a weak model's) is kept with a warning.

>>> import numpy as np
>>> keras_p = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]])
>>> check = compare(keras_p, keras_p[:, ::-1], np.array([0, 1, 0]), quantized=False)
>>> check.passed, check.agreement, check.problem
(False, 0.0, 'the top class agrees with the Keras model on 0.00% of the images (at least 99.50% needed)')
"""  # noqa: E501

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

MIN_AGREEMENT = 0.995  # float exports: the 99.5%
DEFAULT_MAX_DROP = 1.0  # quantized exports: accuracy points they may lose
WARN_CHANGES = 0.05  # a quantized export that changes more top classes is warned of


@dataclass
class Check:
    """The figures of one exported file on the check images."""

    images: int
    agreement: float  # fraction of images whose top class is the Keras model's
    max_difference: float  # largest |p_export - p_keras| over images and classes
    quantized: bool
    max_drop: float
    keras_accuracy: float | None = None  # with labels
    accuracy: float | None = None
    passed: bool = True
    problem: str = ""
    warning: str = ""  # kept, but a client should know

    @property
    def drop(self) -> float | None:
        """Accuracy points lost (negative: gained)."""
        if self.accuracy is None or self.keras_accuracy is None:
            return None
        return round(100.0 * (self.keras_accuracy - self.accuracy), 9)  # 100*(0.38-0.37)
        # is 1.0000000000000009: rounded, a drop of exactly --max-drop is allowed

    def to_json(self) -> dict:
        return {**asdict(self), "drop_points": self.drop}


def compare(reference: np.ndarray, probabilities: np.ndarray, labels: np.ndarray | None,
            *, quantized: bool, max_drop: float = DEFAULT_MAX_DROP) -> Check:
    """`Check` of `probabilities` (the export's) against `reference` (Keras')."""
    reference = np.asarray(reference, np.float64)
    probabilities = np.asarray(probabilities, np.float64)
    if probabilities.shape != reference.shape:
        return Check(len(reference), 0.0, float("inf"), quantized, max_drop, passed=False,
                     problem=f"it gives {probabilities.shape} probabilities for "
                             f"{reference.shape} of the Keras model")
    top = probabilities.argmax(axis=1)
    agreement = float(np.mean(top == reference.argmax(axis=1)))
    check = Check(len(reference), agreement, float(np.abs(probabilities - reference).max()),
                  quantized, max_drop)
    if labels is not None:
        check.keras_accuracy = float(np.mean(reference.argmax(axis=1) == labels))
        check.accuracy = float(np.mean(top == labels))
    if not np.isfinite(probabilities).all():
        check.problem = "it gives NaN or infinite probabilities"
    elif not quantized and agreement < MIN_AGREEMENT:
        check.problem = (f"the top class agrees with the Keras model on {agreement:.2%} of "
                         f"the images (at least {MIN_AGREEMENT:.2%} needed)")
    elif quantized and check.drop is not None and check.drop > max_drop:
        check.problem = (f"accuracy drops {check.drop:.2f} points, from "
                         f"{check.keras_accuracy:.2%} to {check.accuracy:.2%} (at most "
                         f"{max_drop:g} allowed: --max-drop)")
    elif quantized and check.drop is None and round(100 * (1 - agreement), 9) > max_drop:
        check.problem = (f"the top class changes on {1 - agreement:.2%} of the images "
                         f"(at most {max_drop:g}% allowed without labels: --max-drop)")
    elif quantized and check.drop is not None and 1 - agreement > WARN_CHANGES:
        check.warning = (f"the top class changes on {1 - agreement:.2%} of the images, "
                         f"although accuracy {'drops only' if check.drop > 0 else 'does not drop'}"
                         f" ({check.keras_accuracy:.2%} -> {check.accuracy:.2%}): its "
                         "answers are not the Keras model's; check it on your own images "
                         "before deploying it")
    check.passed = not check.problem
    return check
