"""Evaluation metrics from labels and predicted probabilities, and ``--fail-under`` checks.

Everything here is plain numpy on an (N, C) array of class probabilities, so it
works the same for any model. Results are typed records (`EvalResult`, `ClassScore`,
`ConfusedPair`, `Mistake`); `EvalResult.to_dict` is their JSON.

>>> r = compute([0, 1, 1], [[0.9, 0.1], [0.2, 0.8], [0.7, 0.3]], ["cat", "dog"])
>>> r.accuracy, r.confusion
(0.6666666666666666, [[1, 0], [1, 1]])
>>> r.misclassified[0].true_name, r.misclassified[0].predicted_name
('dog', 'cat')
>>> judge_thresholds(r, parse_thresholds(["accuracy=0.9"]))
[(False, 'accuracy 0.6667 is below 0.9')]

Zero division: a class that is never predicted has precision 0.0, and a class
with no examples has recall 0.0 (so F1 0.0 too); never NaN. Macro averages are
the plain mean over the classes that are in the labels or the predictions (as
scikit-learn's): a test set of 3 of a model's 10 classes, all right, has macro F1
1.0, not 0.3. A class with examples that is never predicted counts, as 0.0.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from cnncli.errors import ConfigError, DataError, ModelError, suggest
from cnncli.text import significant

# numpy is imported inside the functions that need it: `parse_thresholds` runs while the
# command line is read, which must stay fast (pyproject.toml bans it at module level here).

#: Metrics `--fail-under` knows. All must be at least the value given, except loss (at most).
THRESHOLD_METRICS = ("accuracy", "top5_accuracy", "macro_precision", "macro_recall",
                     "macro_f1", "loss")
#: Metrics where lower is better: ``loss=0.3`` means "loss must be at most 0.3".
LOWER_IS_BETTER = ("loss",)
_THRESHOLD_HINT = ("write name=value, e.g. accuracy=0.99 (at least 0.99) or loss=0.3 "
                   "(loss is the one metric that must be at most its value)")


@dataclass(frozen=True)
class ClassScore:
    """One class's figures (`index`: its label). In JSON ``"class"`` is its name, as in
    predict's and explain's."""

    index: int
    name: str
    precision: float
    recall: float
    f1: float
    support: int  # test images of the class

    def to_dict(self) -> dict[str, Any]:
        return {"class": self.name, "index": self.index, "precision": self.precision,
                "recall": self.recall, "f1": self.f1, "support": self.support}


@dataclass(frozen=True)
class ConfusedPair:
    """Test images of class `true` predicted as `predicted`: `count` of them."""

    true: int
    predicted: int
    true_name: str
    predicted_name: str
    count: int


@dataclass(frozen=True)
class Mistake:
    """A wrong prediction: the image's position in the test split (`index`), its `id` (a
    file name, or the position), the classes, and the probabilities of both."""

    index: int
    id: Any
    true: int
    predicted: int
    true_name: str
    predicted_name: str
    confidence: float  # of the predicted class
    true_probability: float


@dataclass
class EvalResult:
    """What `compute` measured on one dataset.

    ``loss`` is None here; the caller fills it in from the model's own evaluation.
    ``top5_accuracy`` is None when there are 5 classes or fewer (it would always be 1).
    ``confusion[t][p]`` counts examples of true class ``t`` predicted as ``p``.
    """

    count: int
    accuracy: float
    top5_accuracy: float | None
    per_class: list[ClassScore]
    macro_precision: float
    macro_recall: float
    macro_f1: float
    confusion: list[list[int]]
    most_confused: list[ConfusedPair] = field(default_factory=list)
    misclassified: list[Mistake] = field(default_factory=list)
    loss: float | None = None
    #: How many classes the macro averages are over: those in the labels or predictions.
    macro_classes: int = 0

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready copy (plain ints, floats, strings, lists and dicts)."""
        return dataclasses.asdict(self) | {"per_class": [c.to_dict() for c in self.per_class]}


def seen_classes(confusion: list[list[int]]) -> list[int]:
    """The classes in the labels or the predictions (those the macro averages are over),
    from a confusion matrix (``confusion[t][p]``).

    >>> seen_classes([[2, 0, 1], [0, 0, 0], [0, 0, 3]])
    [0, 2]
    """
    return [c for c, row in enumerate(confusion)
            if sum(row) or sum(other[c] for other in confusion)]


def _plain(value: Any) -> Any:
    """A JSON-friendly version of an id: numpy scalars to Python, paths and others to str."""
    if hasattr(value, "item") and callable(value.item):  # numpy scalar
        value = value.item()
    if isinstance(value, bool | int | float | str) or value is None:
        return value
    return str(value)


def _ratio(num: float, den: float) -> float:
    """``num / den``, or 0.0 when ``den`` is 0 (class never predicted, or no examples)."""
    return float(num) / float(den) if den else 0.0


def _check_inputs(y_true, probs, class_names):
    """Labels and probabilities as numpy arrays, after checking they fit together."""
    import numpy as np

    labels = np.asarray(y_true).reshape(-1)
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim != 2:
        raise ValueError(f"probs must be an (N, C) array, got shape {p.shape}")
    if len(labels) != len(p):
        raise ValueError(f"{len(labels)} labels but {len(p)} rows of probabilities")
    if len(labels) == 0:
        raise DataError("there are no examples to evaluate",
                        hint="check that the evaluation split or folder is not empty")
    n_classes = len(class_names)
    if p.shape[1] != n_classes:
        raise ModelError(
            f"the model gives {p.shape[1]} scores per image but the dataset has "
            f"{n_classes} classes",
            hint="evaluate with the dataset the model was trained on, or change the "
                 "last layer's units to the number of classes")
    if not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"labels must be integers, got {labels.dtype}")
    bad = labels[(labels < 0) | (labels >= n_classes)]
    if len(bad):
        raise DataError(f"label {int(bad[0])} is outside the {n_classes} classes "
                        f"0..{n_classes - 1}",
                        hint="check that the dataset's classes match the model's")
    return labels.astype(np.int64), p


def top_k(probs, k: int):
    """Indices of the `k` highest probabilities of each row, highest first; ties go to
    the lower class index (a stable sort). The one top-k of cnncli.

    >>> top_k([[0.2, 0.5, 0.3], [0.4, 0.4, 0.2]], 2).tolist()
    [[1, 2], [0, 1]]

    Rows are taken `TOP_K_ROWS` at a time, and of each only the `k` best are sorted (a
    partition finds them): the whole sort of 50,000 images' 1,000 probabilities took 5-8 s
    and a gigabyte for the 5 kept.
    """
    import numpy as np

    p = np.asarray(probs)
    if p.dtype.kind != "f":  # (float32 stays so: the same order, no copy)
        p = p.astype(np.float64)
    k = min(k, p.shape[-1])
    if k == 0 or p.shape[-1] <= 2 * k or not np.isfinite(p).all():  # (NaN: sorted last)
        return np.argsort(-p, axis=-1, kind="stable")[..., :k]
    rows = p.reshape(-1, p.shape[-1])
    best = np.concatenate([_best_rows(rows[i:i + TOP_K_ROWS], k)
                           for i in range(0, len(rows), TOP_K_ROWS)]) if len(rows) else \
        np.zeros((0, k), np.int64)
    return best.reshape(*p.shape[:-1], k)


#: Rows `top_k` works on at once (their temporary arrays: a few times 4,096 x classes).
TOP_K_ROWS = 4096


def _best_rows(p, k: int):
    """`top_k` of a 2-D block of finite rows: those above each row's k-th largest value,
    then of those equal to it the lowest indices, in the order of a stable sort."""
    import numpy as np

    kth = -np.partition(-p, k - 1, axis=1)[:, k - 1:k]
    above, equal = p > kth, p == kth
    wanted = k - above.sum(axis=1, keepdims=True)
    chosen = above | (equal & (np.cumsum(equal, axis=1) <= wanted))
    columns = np.nonzero(chosen)[1].reshape(len(p), k)  # (increasing index in each row)
    order = np.argsort(-np.take_along_axis(p, columns, axis=1), axis=1, kind="stable")
    return np.take_along_axis(columns, order, axis=1)


def top_k_accuracy(y_true, probs, k: int) -> float:
    """Fraction of examples whose true class is among the `k` highest probabilities.

    Ties are broken towards the lower class index (a stable sort).

    >>> top_k_accuracy([2, 0], [[0.5, 0.3, 0.2], [0.1, 0.2, 0.7]], 2)
    0.0
    >>> top_k_accuracy([1, 0], [[0.5, 0.3, 0.2], [0.1, 0.2, 0.7]], 2)
    0.5
    """
    import numpy as np

    labels = np.asarray(y_true).reshape(-1)
    if len(labels) == 0:
        return 0.0
    return float(np.mean(np.any(top_k(probs, k) == labels[:, None], axis=1)))


def compute(y_true, probs, class_names: list[str], *, ids: list | None = None,
            max_misclassified: int = 100) -> EvalResult:
    """Every metric of `EvalResult` from integer labels and an (N, C) probability array.

    Args:
        y_true: N integer labels in ``0..C-1``.
        probs: (N, C) class probabilities (the model's softmax output).
        class_names: the C class names, in label order.
        ids: optional N ids for the misclassified list (file names for folder
            datasets); without it, an example's id is its index.
        max_misclassified: keep at most this many misclassified examples (worst first).

    >>> r = compute([0, 0, 1], [[0.6, 0.4], [0.3, 0.7], [0.1, 0.9]], ["a", "b"],
    ...             ids=["x.png", "y.png", "z.png"])
    >>> r.per_class[1].precision, r.per_class[1].recall
    (0.5, 1.0)
    >>> r.misclassified[0].id, r.misclassified[0].confidence
    ('y.png', 0.7)
    """
    import numpy as np

    labels, p = _check_inputs(y_true, probs, class_names)
    if ids is not None and len(ids) != len(labels):
        raise ValueError(f"{len(ids)} ids for {len(labels)} examples")
    names = [str(n) for n in class_names]
    n_classes = len(names)
    predicted = np.argmax(p, axis=1)

    confusion = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(confusion, (labels, predicted), 1)

    per_class = []
    for c in range(n_classes):
        tp = confusion[c, c]
        predicted_c, actual = confusion[:, c].sum(), confusion[c, :].sum()
        precision, recall = _ratio(tp, predicted_c), _ratio(tp, actual)
        f1 = _ratio(2 * tp, predicted_c + actual)  # 2TP/(2TP+FP+FN): exact, 3/4 is 0.75
        per_class.append(ClassScore(c, names[c], precision, recall, f1,
                                    int(confusion[c, :].sum())))

    seen = [per_class[c] for c in seen_classes(confusion.tolist())]
    return EvalResult(
        count=int(len(labels)),
        accuracy=float(np.mean(predicted == labels)),
        top5_accuracy=top_k_accuracy(labels, p, 5) if n_classes > 5 else None,
        per_class=per_class,
        macro_precision=float(np.mean([c.precision for c in seen])),
        macro_recall=float(np.mean([c.recall for c in seen])),
        macro_f1=float(np.mean([c.f1 for c in seen])),
        macro_classes=len(seen),
        confusion=confusion.tolist(),
        most_confused=_most_confused(confusion, names),
        misclassified=_misclassified(labels, predicted, p, names, ids, max_misclassified),
    )


def _most_confused(confusion, names: list[str], top: int = 10) -> list[ConfusedPair]:
    """The `top` largest off-diagonal cells, largest first (ties: by true, then predicted)."""
    pairs = [(int(confusion[t, q]), t, q)
             for t in range(len(names)) for q in range(len(names))
             if t != q and confusion[t, q] > 0]
    pairs.sort(key=lambda x: (-x[0], x[1], x[2]))
    return [ConfusedPair(t, q, names[t], names[q], count) for count, t, q in pairs[:top]]


def _misclassified(labels, predicted, probs, names, ids, limit: int) -> list[Mistake]:
    """Wrong predictions, most confident first (ties: by index)."""
    import numpy as np

    wrong = np.flatnonzero(predicted != labels)
    confidence = probs[wrong, predicted[wrong]]
    order = wrong[np.lexsort((wrong, -confidence))][:max(limit, 0)]
    items = []
    for i in order:
        t, q = int(labels[i]), int(predicted[i])
        items.append(Mistake(int(i), _plain(ids[i]) if ids is not None else int(i), t, q,
                             names[t], names[q], significant(float(probs[i, q])),
                             significant(float(probs[i, t]))))  # (as predict's JSON)
    return items


def parse_thresholds(items: list[str]) -> dict[str, float]:
    """``["accuracy=0.99", "loss=0.3"]`` -> ``{"accuracy": 0.99, "loss": 0.3}``.

    ``name=value`` means the metric must be at least `value`, except ``loss``, which
    must be at most `value`. Items may also be comma-separated in one string. A name
    given twice with two values is refused (which one would gate is a guess: a later
    one could let a worse model pass). Accuracy-like values must lie in [0, 1].

    >>> parse_thresholds(["accuracy=0.99,macro_f1=0.8"])
    {'accuracy': 0.99, 'macro_f1': 0.8}
    >>> parse_thresholds(["acuracy=0.9"])
    Traceback (most recent call last):
    ...
    cnncli.errors.ConfigError: --fail-under: unknown metric 'acuracy'. Hint: did you mean 'accuracy'? valid metrics: accuracy, top5_accuracy, macro_precision, macro_recall, macro_f1, loss
    """  # noqa: E501
    thresholds: dict[str, float] = {}
    for item in (part.strip() for entry in items for part in str(entry).split(",")):
        if not item:
            continue
        name, sep, text = (s.strip() for s in item.partition("="))
        if not sep or not name:
            raise ConfigError(f"'{item}' is not of the form name=value",
                              where="--fail-under", hint=_THRESHOLD_HINT)
        if name not in THRESHOLD_METRICS:
            raise ConfigError(f"unknown metric '{name}'", where="--fail-under",
                              hint=suggest(name.rstrip("<>"), THRESHOLD_METRICS,
                                           listing="valid metrics"))
        try:
            value = float(text)
        except ValueError:
            raise ConfigError(f"the value of {name} is '{text}', not a number",
                              where="--fail-under", hint=_THRESHOLD_HINT) from None
        if not math.isfinite(value) or value < 0:
            raise ConfigError(f"the value of {name} is {text}; it must be a number >= 0",
                              where="--fail-under", hint=_THRESHOLD_HINT)
        if name not in LOWER_IS_BETTER and value > 1:
            raise ConfigError(f"the value of {name} is {text}; it must be between 0 and 1",
                              where="--fail-under",
                              hint=f"write a fraction, e.g. {name}={value / 100:g} "
                                   f"for {value:g}%")
        if thresholds.get(name, value) != value:
            raise ConfigError(f"{name} is given twice, as {thresholds[name]:g} and {value:g}",
                              where="--fail-under", hint=f"give {name} once")
        thresholds[name] = value
    return thresholds


#: How far outputs may stray outside [0, 1] and still be probabilities (an int8 export's
#: softmax is dequantized in steps of 1/256).
PROBABILITY_SLACK = 0.01


def not_probabilities(p) -> bool:
    """Whether outputs `p` (N, C) cannot be class probabilities: below 0 or above 1, as a
    model whose last layer has no softmax gives (its raw scores). Rows are not required
    to sum to 1: a quantized export's softmax does not quite.

    >>> import numpy as np
    >>> not_probabilities(np.array([[0.7, 0.3]])), not_probabilities(np.array([[2.1, -0.4]]))
    (False, True)
    """
    return bool((p < -PROBABILITY_SLACK).any() or (p > 1 + PROBABILITY_SLACK).any())


def log_loss(probs, labels) -> float:
    """The mean cross-entropy of probabilities `probs` (N, C) for class indices `labels`,
    as Keras' loss computes it from probabilities: each row scaled to sum to 1 (a
    quantized export's softmax does not quite; a sigmoid's rows do not at all), each
    probability at least 1e-7; a certain model's is 0, not -0.

    >>> import numpy as np
    >>> log_loss(np.array([[1.0, 0.0], [0.0, 1.0]]), np.array([0, 1]))
    0.0
    >>> round(log_loss(np.array([[0.5, 0.5]]), np.array([1])), 4)
    0.6931
    """
    import numpy as np

    probs = np.asarray(probs, np.float64)
    sums = probs.sum(axis=1, keepdims=True)
    probs = probs / np.where(sums > 0, sums, 1.0)
    picked = np.clip(probs[np.arange(len(labels)), labels], 1e-7, 1.0)
    return float(0.0 - np.mean(np.log(picked)))  # (-0.0 would print as "-0.0000")


def scores_note(model: str, meaning: str) -> str:
    """What predict and evaluate say of a model whose outputs are scores
    (`not_probabilities`), with `meaning`: what that means for their figures.

    >>> scores_note("net", "the figures are its raw scores").split(": ")[1]
    'the figures are its raw scores; end the model with `activation'
    """
    return (f"{model} does not give probabilities (its last layer has no softmax): "
            f"{meaning}; end the model with `activation: softmax`")


#: How far a figure may be on the wrong side of its threshold and pass: a mean of
#: fractions is computed in floating point (recalls 0.1 and 0.7 average to
#: 0.39999999999999997), and a figure printed as the threshold must meet it.
THRESHOLD_SLACK = 1e-9


def judge_thresholds(result: EvalResult, thresholds: dict[str, float]
                     ) -> list[tuple[bool, str]]:
    """(met, what) for each threshold, in their order: a `--fail-under` check list.

    A metric that was not measured (loss not filled in, top-5 with 5 classes or
    fewer) fails its threshold: a check that cannot be made does not pass. A value equal
    to its threshold passes (within `THRESHOLD_SLACK`).

    >>> r = compute([0, 1], [[0.9, 0.1], [0.4, 0.6]], ["a", "b"])
    >>> r.loss = 0.45
    >>> judge_thresholds(r, {"accuracy": 0.99, "loss": 0.3, "top5_accuracy": 0.9})[1:]
    [(False, 'loss 0.4500 is above 0.3'), \
(False, 'top5_accuracy was not measured (only with more than 5 classes)')]
    >>> judge_thresholds(r, {"accuracy": 0.99})
    [(True, 'accuracy 1.0000 is at least 0.99')]
    """
    verdicts = []
    for name, limit in thresholds.items():
        value = getattr(result, name, None)
        if value is None:
            why = ("only with more than 5 classes" if name == "top5_accuracy"
                   else "no value was computed")
            verdicts.append((False, f"{name} was not measured ({why})"))
        elif math.isnan(value):
            verdicts.append((False, f"{name} is NaN"))
        elif name in LOWER_IS_BETTER:
            met = value <= limit + THRESHOLD_SLACK
            verdicts.append((met, f"{name} {_apart(value, limit)} is "
                                  f"{'at most' if met else 'above'} {limit!r}"))
        else:
            met = value >= limit - THRESHOLD_SLACK
            verdicts.append((met, f"{name} {_apart(value, limit)} is "
                                  f"{'at least' if met else 'below'} {limit!r}"))
    return verdicts


def _apart(value: float, limit: float) -> str:
    """`value` with 4 decimals, or as many more as it takes to differ from `limit`.

    >>> _apart(0.21, 0.9), _apart(0.211, 0.21100001), _apart(0.45, 0.3)
    ('0.2100', '0.21100000', '0.4500')
    """
    for digits in range(4, 17):
        text = f"{value:.{digits}f}"
        if float(text) != limit and text != f"{limit:.{digits}f}":
            return text
    return repr(value)
